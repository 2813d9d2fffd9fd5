"""Example tasks shipped with the package, each a folder with its config, data and metric: named `example:NAME`
wherever a config file is read (`gpo-ray optimize example:orders`), listed and copied by `gpo-ray examples`.

- orders: order messages -> a JSON object, scored by a Python function with a JSON Schema (orders/orders_metric.py)
- replies: customer messages -> a support reply, scored by an LLM judge with a rubric
- triage: support tickets (CSV) -> a team, scored by a Python function with feedback (README "Your own task")

The quickstart's task (`example/reviews`, examples/quickstart.yaml) is a built-in task folder instead
(gpo_ray/tasks/examples/). The orders and replies data come from generate.py; a test checks that regenerating changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from gpo_ray.errors import ConfigError

EXAMPLES_HOME = Path(__file__).resolve().parent
CONFIG_PREFIX = "example:"


def shipped_examples() -> dict[str, Path]:
    """Example name -> its config file (the folder's `NAME.yaml`)."""
    return {d.name: d / f"{d.name}.yaml" for d in sorted(EXAMPLES_HOME.iterdir())
            if d.is_dir() and (d / f"{d.name}.yaml").is_file()}


def example_config(name: str) -> Path:
    """`orders` or `example:orders` -> the shipped config file; a ConfigError naming the examples there are."""
    bare = name.removeprefix(CONFIG_PREFIX)
    found = shipped_examples()
    if bare not in found:
        raise ConfigError(f"no shipped example {bare!r}; there are: {', '.join(found) or 'none'} "
                          "(gpo-ray examples lists them)")
    return found[bare]


def summary(config: Path) -> str:
    """The first line of the config's leading comment, without its "Shipped example (...):" opening."""
    for line in config.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("# ").strip()
        if line.startswith("#") and text:
            return text.split(": ", 1)[1] if text.startswith("Shipped example") and ": " in text else text
    return ""

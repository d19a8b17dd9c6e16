"""Rules of the code itself, read from the source with ``ast`` (docs/architecture.md, "Packages").

- No import cycle inside ``central/``: every module's imports of the package
  (at the top, inside functions, under ``TYPE_CHECKING``) form an acyclic graph.
- No shipped package (``device``, ``display``, ``sync``, ``central``) imports
  ``tests`` or ``dev``.
- ``display`` and ``sync`` import neither ``device`` nor ``central``, nor each other.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("device", "display", "sync", "central")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    found = {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}
    assert found, f"no modules found in {package}/"
    return found


def imported(path: Path) -> Iterator[str]:
    """Every module name ``path`` imports (absolute; ``from a import b`` yields ``a`` and ``a.b``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def top(name: str) -> str:
    return name.split(".")[0]


def central_graph() -> dict[str, set[str]]:
    """central's modules -> the central modules each imports (a name that is no module is left out)."""
    known = modules("central")
    return {name: {target for target in imported(path) if target in known and target != name}
            for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as the list of its modules (first one repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_central_has_no_import_cycle() -> None:
    graph = central_graph()
    assert {"central.store", "central.reads", "central.web", "central.api"} <= set(graph)
    assert "central.store" in graph["central.reads"]  # the graph sees real edges
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in central/: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("package", SHIPPED)
def test_shipped_packages_import_neither_tests_nor_dev(package: str) -> None:
    offenders = sorted(f"{name} imports {target}" for name, path in modules(package).items()
                       for target in imported(path) if top(target) in ("tests", "dev"))
    assert offenders == []


@pytest.mark.parametrize(("package", "forbidden"), [
    ("display", {"device", "central", "sync"}),
    ("sync", {"device", "central", "display"}),
])
def test_display_and_sync_stand_alone(package: str, forbidden: set[str]) -> None:
    offenders = sorted(f"{name} imports {target}" for name, path in modules(package).items()
                       for target in imported(path) if top(target) in forbidden)
    assert offenders == []


def test_the_rules_would_see_a_forbidden_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above read real import statements: a planted one is seen, lazy or relative."""
    pkg = tmp_path / "sync"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text("def f():\n    from dev.broker import free_port\n    from . import good\n")
    (pkg / "good.py").write_text("import json\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    names = set(imported(pkg / "bad.py"))
    assert {"dev.broker", "sync", "sync.good"} <= names


def test_the_architecture_table_says_what_each_central_module_imports() -> None:
    """docs/architecture.md's table of central's modules lists every module, and each imports only what it says."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Central's modules", 1)[1].split("\n## ", 1)[0]
    allowed: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0] != "module":
            name = cells[0].strip("`").removesuffix(".py").removesuffix("/")
            allowed[name] = {w.strip().split(" ")[0].strip("`") for w in cells[2].split(",")} - {"—", ""}
    graph = central_graph()
    listed = {name.removeprefix("central.").split(".")[0] for name in graph if name != "central"}
    assert listed == set(allowed), "modules missing from or extra in the table"
    for name, targets in graph.items():
        short = name.removeprefix("central.").split(".")[0]
        if name == "central":
            continue
        used = {t.removeprefix("central.") for t in targets if t != "central"}
        assert used <= allowed[short], f"{name} imports {sorted(used - allowed[short])}, not in the table"

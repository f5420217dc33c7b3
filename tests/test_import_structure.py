"""The data flow points one way in the code too: the imports of ``advisor/`` (module level or inside functions,
not those only for type checking) form no circle, and the layers keep to their side."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "advisor"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _known(name: str, modules: set[str]) -> str | None:
    """The module ``name`` refers to: itself, or the nearest enclosing module that exists."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The advisor modules ``path`` imports (a ``from X import Y`` of a submodule Y counts as Y)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and not _type_checking_only(node, parents):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not _type_checking_only(node, parents):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    targets = {_known(name, modules) for name in found if name.split(".")[0] == "advisor"}
    return {t for t in targets if t and t != _module_name(path)}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    edges = {_module_name(p): imports_of(p, modules) for p in paths}
    # a package's __init__ is imported with each of its modules: no edge to it counts as a way back
    return {m: {t for t in ts if not (PACKAGE / Path(*t.split(".")[1:]) / "__init__.py").exists()}
            for m, ts in edges.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circles(graph):
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_walk_finds_a_planted_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("layer", ["advisor.techniques", "advisor.findings"])
def test_plugins_use_only_the_public_api(graph, layer):
    """Built-in techniques and findings are plugins like any other: nothing of the runner's."""
    bad = {m: sorted(t for t in ts if t.startswith("advisor.runner")) for m, ts in graph.items()
           if m.startswith(layer)}
    assert not {m: ts for m, ts in bad.items() if ts}


def test_plugin_packages_use_only_the_public_api():
    modules = {"advisor.runner"}
    for path in sorted((ROOT / "plugins").glob("*/**/*.py")):
        if "build" in path.parts:
            continue
        assert not [name for name in imports_of(path, modules | {"advisor"}) if name.startswith("advisor.runner")], path


def test_the_store_only_reads(graph):
    assert not [t for t in graph["advisor.store"] if t.startswith("advisor.analysis")]


def test_analysis_turns_traces_into_answers_only(graph):
    """analysis/ knows nothing of findings, plugins, the runner or writing files."""
    banned = ("advisor.diagnosis", "advisor.finding", "advisor.findings", "advisor.plugins", "advisor.rundir_io",
              "advisor.pipeline", "advisor.runner")
    bad = {m: sorted(t for t in ts if t.startswith(banned)) for m, ts in graph.items()
           if m.startswith("advisor.analysis")}
    assert not {m: ts for m, ts in bad.items() if ts}


@pytest.mark.parametrize("module", ["advisor.session", "advisor.comparison", "advisor.child"])
def test_running_the_script_knows_no_view(graph, module):
    """A run reports its progress to a listener; which view shows it is the CLI's (or the TUI's) choice."""
    assert not [t for t in graph[module] if t.startswith(("advisor.views", "advisor.tui"))]


def test_ranking_and_the_views_need_no_torch():
    """The TUI ranks and shows records of a run made elsewhere: importing it must not import torch."""
    import subprocess
    import sys

    code = ("import sys, advisor.ranking, advisor.verdict, advisor.format, advisor.tui.app, advisor.report.markdown; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

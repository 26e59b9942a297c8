"""The project's import graph: no import circle, no function-local imports of project modules.

Every module of SeqClassifierLib and of SeqClassifierSlicer (the Slicer glue)
is parsed with :mod:`ast` (nothing is imported).  An edge A -> B means module A
imports project module B, at module level, inside a function, or under
``if TYPE_CHECKING:`` (an annotation-only import is a circle too: it hides a
dependency the types still have); ``from SeqClassifierLib.x import y``
points at ``SeqClassifierLib.x.y`` when ``y`` is a submodule, else at the
package ``SeqClassifierLib.x``.  The graph must be acyclic, and a project
import inside a function (the usual way to hide a circle) is allowed only
where :data:`ALLOWED_LOCAL_IMPORTS` names it with a reason.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

LIB = Path(__file__).resolve().parents[2] / "SeqClassifier" / "SeqClassifierLib"
PACKAGE = "SeqClassifierLib"
SLICER = LIB.parent / "SeqClassifierSlicer"
#: Every package of the project, (folder, package name): one graph across them.
PACKAGES = ((LIB, PACKAGE), (SLICER, "SeqClassifierSlicer"))

#: (importing module, imported module) -> why the import is inside a function: each of these pulls in
#: torch (training, checkpoints, backbones), the phantom and DICOM writer, or the DICOM readers, which
#: commands or processes that do not need them (classify, sort, --help, the Slicer panel's child
#: process, the command line's model process) must not pay for at start-up.
_TORCH = "imports torch at module level; only the commands that train or open checkpoints pay for it"
_READERS = ("the DICOM readers (pydicom, 0.4 s to import): the command line's model process, given its "
            "inputs by the header-reading child, never imports them (test_startup checks it)")
ALLOWED_LOCAL_IMPORTS: dict[tuple[str, str], str] = {
    ("SeqClassifierLib.app.startup", "SeqClassifierLib.dicom.discovery"): _READERS + " -- the child's own",
    ("SeqClassifierLib.app.stream", "SeqClassifierLib.dicom.discovery"): _READERS,
    ("SeqClassifierLib.app.cli", "SeqClassifierLib.dicom.header_cache"): _READERS + " (only with --cache)",
    ("SeqClassifierLib.app.adapt_cli", "SeqClassifierLib.dicom.discovery"): _READERS + " (only for `adapt`)",
    ("SeqClassifierLib.inputs.image", "SeqClassifierLib.dicom.tags"): _READERS + " (only where a slice is read)",
    ("SeqClassifierLib.inputs.image", "SeqClassifierLib.dicom.pixels"): _READERS + " (only where a slice is read)",
    ("SeqClassifierLib.app.cli", "SeqClassifierLib.synth"): "the phantom and DICOM writer: only for `synth`",
    ("SeqClassifierLib.app.cli", "SeqClassifierLib.model.backbones"): _TORCH,
    ("SeqClassifierLib.app.cli", "SeqClassifierLib.training.train"): _TORCH,
    ("SeqClassifierLib.app.cli", "SeqClassifierLib.training.evaluate"): _TORCH,
    ("SeqClassifierLib.app.validation_commands", "SeqClassifierLib.training.audit"): _TORCH,
    ("SeqClassifierLib.app.validation_commands", "SeqClassifierLib.training.train"): _TORCH,
    ("SeqClassifierLib.app.validation_commands", "SeqClassifierLib.training.families"): _TORCH,
    ("SeqClassifierLib.app.validation_commands", "SeqClassifierLib.training.held_out"): _TORCH,
    ("SeqClassifierLib.app.validation_commands", "SeqClassifierLib.model.checkpoint"): _TORCH,
    ("SeqClassifierLib.model.classifier", "SeqClassifierLib.model.checkpoint"): _TORCH + " (opening a model)",
    ("SeqClassifierLib.app.by_source_cli", "SeqClassifierLib.training.by_source"): _TORCH,
    ("SeqClassifierLib.app.by_source_cli", "SeqClassifierLib.training.families"): _TORCH,
    ("SeqClassifierLib.app.by_source_cli", "SeqClassifierLib.training.train"): _TORCH,
    ("SeqClassifierLib.app.by_source_cli", "SeqClassifierLib.model.backbones"): _TORCH,
    ("SeqClassifierLib.app.by_source_cli", "SeqClassifierLib.model.checkpoint"): _TORCH,
}


def module_name(path: Path, root: Path = LIB, package: str = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def project_modules(root: Path = LIB, package: str = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute module name of an ``ImportFrom`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path],
               package: "str | tuple[str, ...]" = PACKAGE) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for each project import of a module.

    ``if TYPE_CHECKING:`` imports count as edges (module level): they never run, but a circle
    through them is still a circle of the types.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    packages = (package,) if isinstance(package, str) else tuple(package)
    is_package = path.name == "__init__.py"
    local_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    local_nodes.add(id(sub))
    out = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node)
            for a in node.names:
                sub = f"{base}.{a.name}"
                targets.append(sub if sub in modules else base)
        for t in targets:
            if any(t == p or t.startswith(p + ".") for p in packages):
                # "import SeqClassifierLib.a.b" of a name that is not a module: its nearest module
                while t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                out.append((t, node.lineno, id(node) in local_nodes))
    return out


def import_graph(root: Path = LIB, package: str = PACKAGE,
                 also: tuple[tuple[Path, str], ...] = ()) -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """(module -> project modules it imports, [(module, imported, line) of function-local imports]).

    ``also``: further (folder, package) pairs read into the same graph.
    """
    modules: dict[str, Path] = {}
    for r, p in ((root, package), *also):
        modules.update(project_modules(r, p))
    names = tuple(p for _, p in ((root, package), *also))
    graph: dict[str, set[str]] = {m: set() for m in modules}
    local = []
    for name, path in modules.items():
        for target, line, is_local in imports_of(name, path, modules, names):
            if target != name:
                graph[name].add(target)
            if is_local:
                local.append((name, target, line))
    return graph, local


def find_cycle(graph: dict[str, set[str]]) -> Optional[list[str]]:
    """One import circle as [a, b, ..., a], or None when the graph is acyclic."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = {n: WHITE for n in graph}
    stack: list[str] = []

    def visit(n: str) -> Optional[list[str]]:
        color[n] = GREY
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m, WHITE) == GREY:
                return stack[stack.index(m):] + [m]
            if color.get(m, WHITE) == WHITE:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = BLACK
        return None

    for n in sorted(graph):
        if color[n] == WHITE:
            found = visit(n)
            if found:
                return found
    return None


# ----------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------

def test_cycle_finder_finds_a_planted_cycle():
    dag = {"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}
    assert find_cycle(dag) is None
    planted = {**dag, "c": {"d"}}   # c -> d -> a -> b -> c
    cycle = find_cycle(planted)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c", "d"} or set(cycle) == {"a", "c", "d"}
    for x, y in zip(cycle, cycle[1:]):
        assert y in planted[x]
    assert find_cycle({"self": {"self"}}) == ["self", "self"]


def test_graph_reader_sees_local_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "Pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from Pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "sub" / "c.py").write_text("import Pkg.sub.a\nfrom Pkg import sub\n")
    graph, local = import_graph(pkg, "Pkg")
    assert graph["Pkg.sub.a"] == {"Pkg.sub.b"}
    assert graph["Pkg.sub.b"] == {"Pkg.sub.c"}
    assert graph["Pkg.sub.c"] == {"Pkg.sub.a", "Pkg.sub"}
    assert local == [("Pkg.sub.b", "Pkg.sub.c", 2)]
    assert find_cycle(graph) == ["Pkg.sub.a", "Pkg.sub.b", "Pkg.sub.c", "Pkg.sub.a"]


def test_annotation_only_imports_are_edges(tmp_path):
    """A circle through ``if TYPE_CHECKING:`` imports is a circle (the types still depend on each other)."""
    pkg = tmp_path / "Pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from Pkg.b import B\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from Pkg.a import A\n")
    graph, local = import_graph(pkg, "Pkg")
    assert graph["Pkg.b"] == {"Pkg.a"} and local == []
    assert find_cycle(graph) == ["Pkg.a", "Pkg.b", "Pkg.a"]


def test_graph_spans_several_packages(tmp_path):
    for name, text in (("Lib", "from Glue import x\n"), ("Glue", "import Lib.y\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "Lib" / "y.py").write_text("from Glue.x import f\n")
    (tmp_path / "Glue" / "x.py").write_text("import Lib.y\n")
    graph, _ = import_graph(tmp_path / "Lib", "Lib", also=((tmp_path / "Glue", "Glue"),))
    assert graph["Lib.y"] == {"Glue.x"} and graph["Glue.x"] == {"Lib.y"}
    assert find_cycle(graph) is not None


def _project_graph():
    return import_graph(*PACKAGES[0], also=PACKAGES[1:])


def test_library_graph_is_read():
    graph, _ = _project_graph()
    assert "SeqClassifierLib.dicom.tags" in graph["SeqClassifierLib.dicom.header"]
    assert "SeqClassifierLib.dicom.discovery" in graph
    assert "SeqClassifierLib.curation.label_store" in graph["SeqClassifierSlicer.session"]
    assert "SeqClassifierSlicer.review" in graph["SeqClassifierSlicer.session"]  # relative import


def test_no_import_circle():
    graph, _ = _project_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_library_never_imports_the_slicer_glue():
    graph, _ = _project_graph()
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.startswith(PACKAGE + ".") or m == PACKAGE
                 for t in ts if t.startswith("SeqClassifierSlicer"))
    assert not bad, bad


def test_no_function_local_project_imports():
    _, local = import_graph()
    unexpected = [f"{m}:{line} imports {t} inside a function" for m, t, line in local
                  if (m, t) not in ALLOWED_LOCAL_IMPORTS]
    assert not unexpected, "\n".join(unexpected)


def test_allow_list_has_no_stale_entries():
    _, local = import_graph()
    used = {(m, t) for m, t, _ in local}
    stale = sorted(set(ALLOWED_LOCAL_IMPORTS) - used)
    assert not stale, f"allowed local imports that no longer exist (remove them): {stale}"

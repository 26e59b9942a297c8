"""Python 3.9 (Slicer 5.8) can run every file: what vermin (run by scripts/test.sh) leaves open.

vermin's ``union-types`` detection is a heuristic that also flags ``a | b`` on flags and sets, so
scripts/test.sh runs it without; this test checks the one rule it then misses: an annotation
with ``X | Y`` is evaluated (TypeError on 3.9) unless the file has
``from __future__ import annotations``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ROOTS = ("SeqClassifier", "Testing", "scripts")


def _union_annotations(tree: ast.AST) -> list[int]:
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                 any(a.name == "annotations" for a in n.names) for n in getattr(tree, "body", []))
    if future:
        return []
    lines = []
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations = [a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs
                           + [args.vararg, args.kwarg] if a is not None and a.annotation is not None]
            annotations += [node.returns] if node.returns is not None else []
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for ann in annotations:
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(ann)):
                lines.append(ann.lineno)
    return lines


def test_the_check_finds_an_evaluated_union():
    assert _union_annotations(ast.parse("def f(x: int | None) -> None: pass\ny: str | bytes = 1\n")) == [1, 2]
    assert _union_annotations(ast.parse("from __future__ import annotations\ndef f(x: int | None): pass\n")) == []
    assert _union_annotations(ast.parse("flags = 1 | 2\ndef f(x: int = 1 | 2): pass\n")) == []


def test_no_file_evaluates_a_union_annotation():
    found = []
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            lines = _union_annotations(ast.parse(path.read_text(encoding="utf-8"), str(path)))
            found += [f"{path.relative_to(REPO)}:{n}" for n in lines]
    assert found == [], "X | Y annotations evaluated on Python 3.9 (add `from __future__ import annotations`)"

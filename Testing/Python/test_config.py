"""config.py: every SEQCLASSIFIER_* variable is read there and nowhere else, and is documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from SeqClassifierLib import config

REPO = Path(__file__).resolve().parents[2]
#: Code that ships: the library, the Slicer-side package and the Slicer module.
SHIPPED = [REPO / "SeqClassifier" / "SeqClassifierLib", REPO / "SeqClassifier" / "SeqClassifierSlicer",
           REPO / "SeqClassifier" / "SeqClassifier.py"]
CONFIG = REPO / "SeqClassifier" / "SeqClassifierLib" / "config.py"
_NAME = re.compile(r"SEQCLASSIFIER_[A-Z0-9_]+")
_CONSTANTS = {n for n in dir(config) if n.endswith("_ENV") and isinstance(getattr(config, n), str)}


def _files() -> list[Path]:
    out: list[Path] = []
    for p in SHIPPED:
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` or a bare ``environ``."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def _names_seqclassifier_variable(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(_NAME.fullmatch(node.value))
    if isinstance(node, ast.Name):
        return node.id in _CONSTANTS
    if isinstance(node, ast.Attribute):
        return node.attr in _CONSTANTS
    return False


def environment_reads(source: str, filename: str = "<src>") -> list[tuple[int, str]]:
    """(line, code) of every read of a SEQCLASSIFIER_ variable: ``os.environ.get(X)``,
    ``os.environ[X]``, ``os.getenv(X)``, ``X in os.environ`` with X a ``SEQCLASSIFIER_*``
    literal or one of config's ``*_ENV`` names; and every ``SEQCLASSIFIER_*`` name literal
    (a second definition of a variable name)."""
    tree = ast.parse(source, filename=filename)
    hits = []
    for node in ast.walk(tree):
        arg = None
        if isinstance(node, ast.Call) and node.args:
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in ("get", "pop", "setdefault") and _is_environ(f.value):
                arg = node.args[0]
            elif (isinstance(f, ast.Attribute) and f.attr == "getenv") or (isinstance(f, ast.Name) and f.id == "getenv"):
                arg = node.args[0]
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            arg = node.slice
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            arg = node.left
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _NAME.fullmatch(node.value):
            hits.append((node.lineno, node.value))
            continue
        if arg is not None and _names_seqclassifier_variable(arg):
            hits.append((node.lineno, ast.unparse(node)))
    return hits


def test_the_reader_finds_planted_reads():
    planted = ("import os\nfrom os import environ, getenv\nfrom SeqClassifierLib.config import HOME_ENV\n"
               "a = os.environ.get('SEQCLASSIFIER_X')\nb = os.environ['SEQCLASSIFIER_Y']\n"
               "c = getenv(HOME_ENV)\nd = 'SEQCLASSIFIER_Z' in environ\ne = os.environ.get('HOME')\n"
               "f = 'see $SEQCLASSIFIER_CACHE/weights'\n")
    lines = sorted({line for line, _ in environment_reads(planted)})
    assert lines == [4, 5, 6, 7]


def test_no_seqclassifier_variable_read_outside_config():
    found = []
    for path in _files():
        if path == CONFIG:
            continue
        for line, code in environment_reads(path.read_text(encoding="utf-8"), str(path)):
            found.append(f"{path.relative_to(REPO)}:{line}: {code}")
    assert not found, "read these through SeqClassifierLib.config:\n" + "\n".join(found)


def test_every_variable_named_anywhere_is_in_the_table_and_the_readme():
    named = set()
    for pattern in ("*.py", "*.sh"):
        for path in REPO.rglob(pattern):
            if ".venv" in path.parts or ".git" in path.parts or path == Path(__file__).resolve():
                continue  # (this file plants made-up names)
            named |= set(_NAME.findall(path.read_text(encoding="utf-8", errors="replace")))
    table = {e.name for e in config.ENVIRONMENT}
    assert named <= table, f"not in config.ENVIRONMENT: {sorted(named - table)}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Environment variables"):]
    missing = [n for n in table if f"`{n}`" not in section]
    assert not missing, f"not in the README's Environment variables section: {missing}"


def test_accessors(monkeypatch, tmp_path):
    for e in config.ENVIRONMENT:
        monkeypatch.delenv(e.name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_root() == tmp_path / "xdg" / "seqclassifier"
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "c"))
    assert config.weights_cache_dir() == tmp_path / "c" / "weights"
    assert config.header_cache_file() == tmp_path / "c" / "headers.json"

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if config.sys.platform.startswith("linux"):
        assert config.label_store_dir() == tmp_path / "data" / "SeqClassifier"
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "home"))
    assert config.label_store_dir() == tmp_path / "home"

    assert config.model_override() is None
    monkeypatch.setenv(config.MODEL_ENV, str(tmp_path / "m.json"))
    assert config.model_override() == tmp_path / "m.json"

    assert config.offline() is False and config.fast_headers_enabled() is True
    assert config.workers_override() is None
    for value, offline, fast in (("1", True, True), ("YES", True, True), ("off", False, False), ("0", False, False),
                                 ("maybe", False, True)):
        monkeypatch.setenv(config.OFFLINE_ENV, value)
        monkeypatch.setenv(config.FAST_HEADERS_ENV, value)
        assert (config.offline(), config.fast_headers_enabled()) == (offline, fast), value
    for value, n in (("4", 4), (" 0 ", 0), ("many", None), ("", None)):
        monkeypatch.setenv(config.WORKERS_ENV, value)
        assert config.workers_override() == n


@pytest.mark.parametrize("module,name", [("SeqClassifierLib.model.classifier", "MODEL_ENV"),
                                         ("SeqClassifierLib.curation.label_store", "HOME_ENV")])
def test_old_names_still_point_at_config(module, name):
    mod = __import__(module, fromlist=[name])
    assert getattr(mod, name) == getattr(config, name)

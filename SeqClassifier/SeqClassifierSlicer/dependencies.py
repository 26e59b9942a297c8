"""Which Python requirements the chosen model needs, and which of them are missing (plain Python).

``Resources/requirements.txt`` lists what every model needs (pydicom, numpy, safetensors; torch
comes through the PyTorch extension).  A backbone library is needed only by a model whose
backbone is built by it: the card's ``model.backbone`` names a backbone of the registry
(``SeqClassifierLib/model/backbones/registry.py``), whose ``family`` (``timm``, ``open_clip`` or
``builtin``) selects ``Resources/requirements-<family>.txt`` (none for ``builtin``: the shipped
``compact_cnn``).  Lines carry environment markers (``; python_version < "3.10"``) so that each
Slicer release's Python gets ranges that exist for it; :func:`applicable` evaluates them.

The module calls :func:`model_requirements` / :func:`missing_requirements` at the first
*Classify* (never at import or in ``setup()``); :mod:`.installer` installs what is missing.
Nothing here imports torch: the card is read as JSON and the registry (pure data) by its path.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path
from typing import Callable, Mapping, Optional

#: The shipped model's card, relative to the module folder.
DEFAULT_CARD = os.path.join("SeqClassifierLib", "model", "assets", "seqclassifier_default.json")
REGISTRY_FILE = os.path.join("SeqClassifierLib", "model", "backbones", "registry.py")


def _requirement(line: str):
    from packaging.requirements import Requirement  # what pip itself uses; in every Slicer

    return Requirement(line)


def requirement_lines(path: "os.PathLike[str] | str") -> list[str]:
    """The requirement lines of a requirements file (comments, blanks and ``-`` options dropped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                out.append(line)
    return out


def running_python() -> str:
    """This interpreter's version ("3.9.10" in Slicer 5.8, "3.12.10" in 5.10 and 5.12)."""
    return platform.python_version()


def marker_environment(python_version: Optional[str] = None) -> dict:
    """The environment markers are evaluated in: ``python_version`` ("3.9.10"), else this Python's."""
    python_version = python_version or running_python()
    parts = python_version.split(".")
    return {"python_version": ".".join(parts[:2]), "python_full_version": python_version}


def applicable(lines: list[str], python_version: Optional[str] = None) -> list[str]:
    """The lines whose marker holds for this Python (or for ``python_version``)."""
    env = marker_environment(python_version)
    out = []
    for line in lines:
        marker = _requirement(line).marker
        if marker is None or marker.evaluate(env):
            out.append(line)
    return out


def distribution_name(line: str) -> str:
    return _requirement(line).name


def specifier_text(line: str) -> str:
    """``name<spec>`` without the marker (what pip is given)."""
    req = _requirement(line)
    return req.name + ("[" + ",".join(sorted(req.extras)) + "]" if req.extras else "") + str(req.specifier)


def card_path_of(model: Optional["os.PathLike[str] | str"], module_dir: str) -> Path:
    """The card (``.json``) of ``model`` (a card, weights file or stem; empty: the shipped model)."""
    if model is None or str(model).strip() in ("", "."):
        return Path(module_dir) / DEFAULT_CARD
    p = Path(str(model))
    if p.suffix.lower() == ".json":
        return p
    if p.suffix.lower() == ".safetensors":
        return p.with_suffix(".json")
    return p.with_name(p.name + ".json")


def _registry(module_dir: str):
    """``SeqClassifierLib/model/backbones/registry.py`` loaded by path (its package imports torch)."""
    key = "_seqclassifier_backbone_registry"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, os.path.join(module_dir, REGISTRY_FILE))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod  # dataclasses look their module up while the class is created
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(key, None)
        raise
    return mod


def backbone_family(card_path: "os.PathLike[str] | str", module_dir: str) -> Optional[str]:
    """The family of the card's backbone (``timm``, ``open_clip``, ``builtin``), None without one.

    Raises ValueError naming the card when it is unreadable or names an unknown backbone.
    """
    try:
        with open(card_path, encoding="utf-8") as fh:
            card = json.load(fh)
        backbone = (card.get("model") or {}).get("backbone")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{card_path}: cannot read the model card ({exc})") from None
    if not backbone:
        return None  # metadata-only model
    try:
        return _registry(module_dir).get_backbone_config(str(backbone)).family
    except KeyError:
        raise ValueError(f"{card_path}: backbone {backbone!r} is not in the backbone registry") from None


def requirement_files(module_dir: str, model=None) -> list[Path]:
    """``Resources/requirements.txt`` and, for a timm/open_clip backbone, its family's file."""
    resources = Path(module_dir) / "Resources"
    files = [resources / "requirements.txt"]
    family = backbone_family(card_path_of(model, module_dir), module_dir)
    if family and family != "builtin":
        files.append(resources / f"requirements-{family}.txt")
    return files


def model_requirements(module_dir: str, model=None, python_version: Optional[str] = None) -> list[str]:
    """The requirement lines the chosen model needs on this Python (markers evaluated)."""
    lines: list[str] = []
    for path in requirement_files(module_dir, model):
        lines += [line for line in requirement_lines(path) if line not in lines]
    return applicable(lines, python_version)


def missing_requirements(lines_or_path, version_of: Optional[Callable[[str], str]] = None) -> list[str]:
    """The lines (or lines of the requirements file at a path) not installed, or installed in a
    version outside their range.  ``version_of(name)`` defaults to ``importlib.metadata.version``."""
    lines = requirement_lines(lines_or_path) if isinstance(lines_or_path, (str, os.PathLike)) else lines_or_path
    version_of = version_of or installed_version
    missing = []
    for line in applicable(list(lines)):
        req = _requirement(line)
        try:
            version = version_of(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if not req.specifier.contains(version, prereleases=True):
            missing.append(line)
    return missing


def installed_version(name: str) -> str:
    """The installed version of a distribution (``importlib.metadata.version``)."""
    return importlib.metadata.version(name)


#: Import name of a distribution when it differs from the distribution's name (fallback when
#: the distribution's metadata does not tell its top-level modules).
IMPORT_NAMES = {"open_clip_torch": "open_clip", "opencv-python": "cv2", "pillow": "PIL", "pyyaml": "yaml"}


def import_name(distribution: str) -> str:
    """The top-level module a distribution installs (``open_clip_torch`` -> ``open_clip``)."""
    key = distribution.strip().lower()
    return IMPORT_NAMES.get(key, key.replace("-", "_"))


def already_imported(lines: list[str], modules: Optional[Mapping[str, object]] = None) -> list[str]:
    """The distributions of these requirement lines whose module this process has imported."""
    modules = sys.modules if modules is None else modules
    return [name for name in (distribution_name(line) for line in lines) if import_name(name) in modules]


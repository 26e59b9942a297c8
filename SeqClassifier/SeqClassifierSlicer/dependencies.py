"""Which of the module's Python requirements are missing (plain Python, no Slicer).

The module calls :func:`missing_requirements` at the first *Classify* (never at
import or in ``setup()``), asks the user, and installs what is listed with
``slicer.packaging.pip_ensure`` (5.12) / ``slicer.util.pip_install`` (5.8, 5.10).
A requirement whose package Slicer has already imported (:func:`already_imported`,
e.g. the pydicom Slicer loads at start-up) is only installed after telling the user
that a restart is needed.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from typing import Callable, Mapping, Optional


def _split(line: str):
    """(distribution name, specifier or None) of one requirement line."""
    try:
        from packaging.requirements import Requirement  # what pip itself uses
    except ImportError:  # very old environments: name only, any version accepted
        name = line
        for sep in ("<", ">", "=", "!", "~", "[", ";", " "):
            name = name.split(sep, 1)[0]
        return name.strip(), None
    req = Requirement(line)
    return req.name, req.specifier


def requirement_lines(path: "os.PathLike[str] | str") -> list[str]:
    """The requirement lines of a requirements file (comments, blanks and ``-`` options dropped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                out.append(line)
    return out


def missing_requirements(path: "os.PathLike[str] | str",
                         version_of: Optional[Callable[[str], str]] = None) -> list[str]:
    """Lines of the requirements file at ``path`` that are not installed, or installed in a
    version outside their range.  ``version_of(name)`` defaults to ``importlib.metadata.version``."""
    version_of = version_of or importlib.metadata.version
    missing = []
    for line in requirement_lines(path):
        name, specifier = _split(line)
        try:
            version = version_of(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if specifier is not None and not specifier.contains(version, prereleases=True):
            missing.append(line)
    return missing


#: Import name of a distribution when it differs from the distribution's name.
IMPORT_NAMES = {"open_clip_torch": "open_clip", "opencv-python": "cv2", "pillow": "PIL"}


def import_name(distribution: str) -> str:
    """The top-level module a distribution installs (``open_clip_torch`` -> ``open_clip``)."""
    key = distribution.strip().lower()
    return IMPORT_NAMES.get(key, key.replace("-", "_"))


def already_imported(lines: list[str], modules: Optional[Mapping[str, object]] = None) -> list[str]:
    """The distributions of these requirement lines whose module this process has imported.

    Installing another version of one of them does not replace the loaded copy: Slicer has to
    be restarted.  ``modules`` defaults to :data:`sys.modules`.
    """
    modules = sys.modules if modules is None else modules
    return [name for name in (_split(line)[0] for line in lines) if import_name(name) in modules]


def restart_message(names: list[str]) -> str:
    """The one line telling the user that a restart is needed after installing ``names``."""
    return ("Restart Slicer before classifying: " + ", ".join(names) + " " +
            ("was" if len(names) == 1 else "were") + " already loaded and has been updated.")

"""Which of the module's Python requirements are missing (plain Python, no Slicer).

The module calls :func:`missing_requirements` at the first *Classify* (never at
import or in ``setup()``), asks the user, and installs what is listed with
``slicer.packaging.pip_ensure`` / ``slicer.util.pip_install``.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Callable, Optional


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

"""The one rule for "may SeqClassifier write here?": never into a source.

A *source* is anything the user gave SeqClassifier to read, whatever named
it:

* a positional input path (a folder, or a file: then its folder too);
* a Slicer DICOM database: the database file itself, the folder that holds it
  (its ``dicom/`` copies live there) and the folder of every file it lists;
* any further folder a caller adds (e.g. the folders of the series a result
  row lists, for the label store).

:func:`check_writable` is used for every path SeqClassifier writes: ``--out``,
the header cache (``--cache``), the label store (and its lock and
quarantine files, which lie beside it) and every folder ``sort`` creates.
The target is resolved with :func:`os.path.realpath` first, so a symbolic
link (to the target itself or to any folder above it) cannot lead a write
into a source.

The check compares resolved paths (string prefixes per component), so it is
cheap even for a database listing 100,000 files: the listed files' folders
are collected once into a set.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


class UnsafeTargetError(ValueError):
    """Writing this path would write into a source; the message names both (one line)."""


def _real(path: PathLike) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies under it (both resolved)."""
    if path == folder:
        return True
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    return path.startswith(prefix)


class Sources:
    """Every source of one run: folders that must receive nothing, and files that must not be replaced."""

    def __init__(self) -> None:
        #: resolved folder -> how the user named it (for the message)
        self.folders: dict[str, str] = {}
        #: resolved file -> how it was named
        self.files: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Sources({len(self.folders)} folders, {len(self.files)} files)"

    def add_path(self, path: PathLike, what: str = "the input") -> "Sources":
        """A positional input: a folder is a source folder; a file is a source file and its folder one too."""
        raw = os.fspath(path)
        real = _real(raw)
        if os.path.isdir(real):
            self.folders.setdefault(real, f"{what} folder {raw}")
        else:
            self.files.setdefault(real, f"{what} file {raw}")
            self.folders.setdefault(os.path.dirname(real), f"the folder of {what} file {raw}")
        return self

    def add_folder(self, folder: PathLike, what: str) -> "Sources":
        if folder:
            self.folders.setdefault(_real(folder), what)
        return self

    def add_files(self, files: Iterable[PathLike], what: str) -> "Sources":
        """Files listed by a source (e.g. a database): each file and each of their folders."""
        seen_dirs: set[str] = set()
        for f in files:
            raw = os.fspath(f)
            parent = os.path.dirname(os.path.abspath(raw))
            if parent not in seen_dirs:  # one realpath per folder, not per file
                seen_dirs.add(parent)
                real_parent = _real(parent)
                self.folders.setdefault(real_parent, f"the folder {parent} of files listed by {what}")
            self.files.setdefault(os.path.join(_real(parent), os.path.basename(raw)), f"a file listed by {what}")
        return self

    def add_database(self, db_file: PathLike, files: Iterable[PathLike] = ()) -> "Sources":
        """A Slicer DICOM database: its file, its folder and every file it lists."""
        db = os.fspath(db_file)
        self.files.setdefault(_real(db), f"the Slicer DICOM database {db}")
        self.add_folder(os.path.dirname(os.path.abspath(db)), f"the Slicer DICOM database folder "
                                                             f"{os.path.dirname(os.path.abspath(db))}")
        return self.add_files(files, f"the Slicer DICOM database {db}")

    @classmethod
    def of(cls, paths: Iterable[PathLike] = (), db_file: Optional[PathLike] = None,
           db_files: Iterable[PathLike] = ()) -> "Sources":
        s = cls()
        for p in paths:
            s.add_path(p)
        if db_file is not None:
            s.add_database(db_file, db_files)
        return s

    def conflict(self, target: PathLike, folder: bool = False) -> Optional[str]:
        """Why ``target`` may not be written (the source it would hit), or None when it may.

        ``folder=True``: ``target`` is a folder that will receive files, so it
        must not contain a source either.
        """
        real = _real(target)
        if real in self.files:
            return f"is {self.files[real]}"
        for root, named in self.folders.items():
            if _inside(real, root):
                return f"is inside {named}"
        if folder:
            for root, named in self.folders.items():
                if _inside(root, real):
                    return f"contains {named}"
            # no loop over files: every source file's folder is in self.folders
        return None


def check_writable(target: PathLike, sources: Sources, what: str, folder: bool = False) -> None:
    """Raise :class:`UnsafeTargetError` when ``target`` would write into a source.

    ``what`` names the option or role in the message (``--out``, ``--cache``,
    ``the label store``, ``sort destination``).
    """
    reason = sources.conflict(target, folder=folder)
    if reason is not None:
        resolved = _real(target)
        via = f" (resolves to {resolved})" if resolved != os.path.abspath(os.fspath(target)) else ""
        raise UnsafeTargetError(f"{what} {os.fspath(target)}{via} {reason}; "
                                "SeqClassifier never writes into DICOM input folders or any other source "
                                "(a DICOM database, the files and folders it lists)")

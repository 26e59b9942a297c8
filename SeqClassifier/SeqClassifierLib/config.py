"""Every ``SEQCLASSIFIER_*`` environment variable and every per-user folder, in one place.

Library modules never read these variables themselves: they call the
accessors here, so that what can be set, and what it defaults to, is listed
once (:data:`ENVIRONMENT`, also the README's "Environment variables").

Folders
-------
* caches (rebuilt when deleted): :func:`cache_root` -- ``$SEQCLASSIFIER_CACHE``,
  else ``$XDG_CACHE_HOME/seqclassifier``, else ``~/.cache/seqclassifier``;
  pretrained weights in :func:`weights_cache_dir` (``<root>/weights``), the
  header cache in :func:`header_cache_file` (``<root>/headers.json``);
* the label store (labels a person confirmed: not a cache):
  :func:`label_store_dir` -- ``$SEQCLASSIFIER_HOME``, else the platform's
  user data folder (:func:`user_data_dir`).

Nothing here creates a folder.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

#: Root of every cache (weights, header cache).
CACHE_ENV = "SEQCLASSIFIER_CACHE"
#: Folder of the label store (``labels.json``).
HOME_ENV = "SEQCLASSIFIER_HOME"
#: A checkpoint (``.json`` card) to use instead of the shipped default model.
MODEL_ENV = "SEQCLASSIFIER_MODEL"
#: ``1``/``true``/``yes``/``on``: never download pretrained weights.
OFFLINE_ENV = "SEQCLASSIFIER_OFFLINE"
#: ``0``/``false``/``no``/``off``: read every header with pydicom (no fast reader).
FAST_HEADERS_ENV = "SEQCLASSIFIER_FAST_HEADERS"
#: Number of header readers in discovery (0 or 1: this process only).
WORKERS_ENV = "SEQCLASSIFIER_WORKERS"
#: ``0``/``false``/``no``/``off``: the command line reads headers after torch is imported, not meanwhile.
EARLY_DISCOVERY_ENV = "SEQCLASSIFIER_EARLY_DISCOVERY"
#: Tests and benchmarks only: the folder of the real test data.
DATA_ENV = "SEQCLASSIFIER_DATA"
#: scripts/test.sh only: ``0`` skips the short benchmark after the tests.
BENCH_ENV = "SEQCLASSIFIER_BENCH"
VERMIN_ENV = "SEQCLASSIFIER_VERMIN"
#: ``1``: the command line shows the traceback of an environment failure instead of one line.
DEBUG_ENV = "SEQCLASSIFIER_DEBUG"
#: The Slicer self-test: ``1`` runs only what needs no download (the extension build machines).
SELFTEST_OFFLINE_ENV = "SEQCLASSIFIER_SELFTEST_OFFLINE"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class EnvVar:
    """One environment variable: its name, what it means, its default."""

    name: str
    meaning: str
    default: str
    library: bool = True
    """False for variables read only by the tests and scripts."""


#: Every environment variable SeqClassifier reads (the README lists the same).
ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar(CACHE_ENV, "root folder of the caches: pretrained weights (weights/) and the header cache "
                      "(headers.json)", "$XDG_CACHE_HOME/seqclassifier, else ~/.cache/seqclassifier"),
    EnvVar(HOME_ENV, "folder of the label store (labels.json: labels a person confirmed)",
           "the user data folder: $XDG_DATA_HOME/SeqClassifier or ~/.local/share/SeqClassifier (Linux), "
           "%APPDATA%\\SeqClassifier (Windows), ~/Library/Application Support/SeqClassifier (macOS)"),
    EnvVar(MODEL_ENV, "checkpoint (.json model card) used instead of the shipped default model",
           "SeqClassifierLib/model/assets/seqclassifier_default.json"),
    EnvVar(OFFLINE_ENV, "1/true/yes/on: never download pretrained weights (local copies only)", "off"),
    EnvVar(FAST_HEADERS_ENV, "0/false/no/off: read every DICOM header with pydicom instead of the fast "
                             "reader (same results, slower)", "on"),
    EnvVar(WORKERS_ENV, "number of header readers in discovery (0 or 1: no worker processes)",
           "automatic: by file count and platform, never inside the Slicer application"),
    EnvVar(EARLY_DISCOVERY_ENV, "0/false/no/off: the command line reads the headers after importing torch and "
                                "loading the model instead of meanwhile in a forked process (same rows)",
           "on (Linux)"),
    EnvVar(DATA_ENV, "tests and benchmarks: folder of the real test data (read only)", "../shared/data",
           library=False),
    EnvVar(BENCH_ENV, "scripts/test.sh: 0 skips the short benchmark after the tests", "1", library=False),
    EnvVar(VERMIN_ENV, "scripts/test.sh: the vermin command of the Python 3.9 check (e.g. one installed aside)",
           ".venv/bin/vermin", library=False),
    EnvVar(DEBUG_ENV, "1: the command line shows the traceback of an unexpected environment failure "
                      "(a full disk, a permission) instead of one line", "off"),
    EnvVar(SELFTEST_OFFLINE_ENV, "Slicer self-test: 1 runs only what needs no download (set by the extension's "
                                 "CMake test)", "off"),
)


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


# ----------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------

def cache_root() -> Path:
    """The root folder of SeqClassifier's caches (not created here)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "seqclassifier"


def weights_cache_dir() -> Path:
    """Where downloaded / copied pretrained weights are kept: ``<cache root>/weights``."""
    return cache_root() / "weights"


def header_cache_file() -> Path:
    """The persistent header cache: ``<cache root>/headers.json``."""
    return cache_root() / "headers.json"


def user_data_dir(app: str = "SeqClassifier") -> Path:
    """The platform's per-user data folder for ``app`` (not created)."""
    if sys.platform.startswith("win"):
        base = os.environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Roaming")
        return Path(base) / app
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / app
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / app


def label_store_dir() -> Path:
    """Folder of the label store: ``$SEQCLASSIFIER_HOME``, else :func:`user_data_dir`."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    return user_data_dir()


# ----------------------------------------------------------------------------
# Switches
# ----------------------------------------------------------------------------

def model_override() -> Optional[Path]:
    """The checkpoint named by ``$SEQCLASSIFIER_MODEL``, or None."""
    env = os.environ.get(MODEL_ENV)
    return Path(env) if env else None


def offline() -> bool:
    """Whether downloads of pretrained weights are disabled (``$SEQCLASSIFIER_OFFLINE``)."""
    return _env(OFFLINE_ENV).lower() in _TRUE


def debug() -> bool:
    """Whether to show tracebacks instead of one-line errors (``$SEQCLASSIFIER_DEBUG``)."""
    return _env(DEBUG_ENV).lower() in _TRUE


def selftest_offline() -> bool:
    """Whether the Slicer self-test must not download anything (``$SEQCLASSIFIER_SELFTEST_OFFLINE``)."""
    return _env(SELFTEST_OFFLINE_ENV) not in ("", "0")


def fast_headers_enabled() -> bool:
    """Whether discovery tries the fast header reader first (``$SEQCLASSIFIER_FAST_HEADERS``, default on)."""
    return _env(FAST_HEADERS_ENV).lower() not in _FALSE


def early_discovery_enabled() -> bool:
    """Whether the command line reads headers while torch imports (``$SEQCLASSIFIER_EARLY_DISCOVERY``, default on)."""
    return _env(EARLY_DISCOVERY_ENV).lower() not in _FALSE


def workers_override() -> Optional[int]:
    """The number of header readers set by ``$SEQCLASSIFIER_WORKERS``, or None (unset or not an integer)."""
    value = _env(WORKERS_ENV)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None

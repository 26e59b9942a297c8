"""Where SeqClassifier keeps per-user files that can be rebuilt (caches).

One root for every cache, so that a user (or a test) moves all of them with
one environment variable: ``$SEQCLASSIFIER_CACHE``, else
``$XDG_CACHE_HOME/seqclassifier``, else ``~/.cache/seqclassifier``.
Pretrained weights go to ``<root>/weights``, the header cache to
``<root>/headers.json``.  Labels a person confirmed are not a cache: they live
in the label store (:mod:`.label_store`, ``$SEQCLASSIFIER_HOME``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable: root of this package's caches.
CACHE_ENV = "SEQCLASSIFIER_CACHE"


def cache_root() -> Path:
    """The root folder of SeqClassifier's caches (not created here)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "seqclassifier"

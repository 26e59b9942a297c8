"""Shared test setup: the library on sys.path and the real data beside the checkout.

Real DICOM lives in ``../shared/data`` beside the repository (override with
``SEQCLASSIFIER_DATA``); it is read, never copied or written.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "SeqClassifier"))
# The tests mirror the library's packages in sub-folders; the shared corpus helpers stay here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(os.environ.get("SEQCLASSIFIER_DATA", REPO.parent / "shared" / "data"))
PROSTATEX = DATA / "prostatex"
VENDORS = DATA / "vendors"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Caches (header cache, weights) go to a temporary folder, never the user's ~/.cache."""
    old = os.environ.get("SEQCLASSIFIER_CACHE")
    os.environ["SEQCLASSIFIER_CACHE"] = str(tmp_path_factory.mktemp("seqclassifier-cache"))
    yield
    if old is None:
        os.environ.pop("SEQCLASSIFIER_CACHE", None)
    else:
        os.environ["SEQCLASSIFIER_CACHE"] = old


def _need(path: Path) -> Path:
    from corpus import need_data

    return need_data(path)


@pytest.fixture(scope="session")
def prostatex() -> Path:
    return _need(PROSTATEX)


@pytest.fixture(scope="session")
def vendors() -> Path:
    return _need(VENDORS)


def read_labels(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def prostatex_labels(prostatex) -> list[dict]:
    return read_labels(prostatex)


@pytest.fixture(scope="session")
def prostatex_discovery(prostatex):
    from SeqClassifierLib.dicom.discovery import discover_series

    return discover_series(prostatex)


@pytest.fixture(scope="session")
def pydicom_test_files() -> Path:
    """pydicom's own bundled test files (MR_small in several transfer syntaxes)."""
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"

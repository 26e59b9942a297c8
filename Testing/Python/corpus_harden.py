"""Run-level bad-input corpus: what a new user can hand the command line, one case per situation.

:mod:`corpus` holds bad *files* beside a GOOD series (what discovery must
report); this module holds bad *runs*: output targets, sources named through
a Slicer database, model cards, undecodable and control-character file names, hostile
header text, damaged label stores, unusable databases, model cards, sort destinations and
full disks.  Every builder prepares a folder and returns a :class:`RunCase`:
the command line to run, the trees whose every byte must stay as it was
(:func:`corpus.tree_digest` before and after), the exit codes allowed, and a
regular expression the stderr must match (the input named with its reason).

The cases live in :mod:`corpus_targets`, :mod:`corpus_text` and
:mod:`corpus_inputs` (shared parts in :mod:`corpus_run`); this module
collects them in :data:`BUILDERS`.  Cases are grouped by the CLASS of
problem they belong to (:data:`CLASSES`); ``test_hardening.py`` runs every
case, ``test_write_rules.py`` tests each class's rule on the library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import corpus_inputs
import corpus_targets
import corpus_text
from corpus_run import CLASSES, RunCase, classify, csv_cells_safe, good

__all__ = ["BUILDERS", "CLASSES", "RunCase", "classify", "csv_cells_safe", "good"]


# ----------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[Path], RunCase]] = {}


def _register() -> None:
    for module in (corpus_targets, corpus_inputs):
        for name, fn in vars(module).items():
            if name.startswith(("src_", "tgt_", "db_bad", "sort_", "disk_")) and callable(fn):
                BUILDERS[name] = fn
    for label in corpus_text.BAD_FILE_NAMES:
        BUILDERS[f"name_file_{label}"] = corpus_text._bad_name_case(label)
    for label in corpus_text.GOOD_FOLDER_NAMES:
        BUILDERS[f"name_folder_{label}"] = corpus_text._good_folder_case(label)
    for label in corpus_text.HEADER_TEXT:
        BUILDERS[f"header_{label}"] = corpus_text._header_case(label)
    for label in corpus_inputs.STORES:
        BUILDERS[f"store_{label}"] = corpus_inputs._store_case(label)
    for label, (make, err) in corpus_inputs.DB_FILES.items():
        BUILDERS[f"db_file_{label}"] = corpus_inputs._db_file_case(label, make, err)
    for label, (extra, err, code) in corpus_inputs.DB_ROWS.items():
        BUILDERS[f"db_row_{label}"] = corpus_inputs._db_rows_case(label, extra, err, code)
    for label in corpus_inputs.CARDS:
        BUILDERS[f"card_{label}"] = corpus_inputs._card_case(label)
    BUILDERS["card_2gb"] = corpus_inputs.model_card_2gb


_register()


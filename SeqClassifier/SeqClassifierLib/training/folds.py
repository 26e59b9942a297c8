"""Cross-validation folds: patients never split, real sources held out whole.

:func:`group_folds` puts all series of a group (a patient) into one fold.
:func:`sample_folds` does that for synthetic series and, for the real
sources named in ``by_source``, puts each *source* (one data root: one vendor
x site) whole into one fold, the sources spread over the folds by series count
(:func:`source_groups`).  The K fold models of an ensemble trained so are
then also K leave-source-group-out models: each real series' out-of-fold
prediction comes from a model that never saw its source, which is what the
review rule is fitted on (``training.by_source``).  Deterministic in the seed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Optional, Sequence


def source_name(root: os.PathLike) -> str:
    """A source's name: its data root's folder name (``/data/corpus/nibabel_siemens`` -> ``nibabel_siemens``)."""
    return Path(str(root).rstrip("/\\")).name


def group_folds(groups: Sequence[str], k: int, seed: int) -> list[int]:
    """Fold index of each sample; all samples of a group share a fold."""
    uniq = sorted(set(groups))
    rng = random.Random(seed)
    rng.shuffle(uniq)
    fold_of = {g: i % k for i, g in enumerate(uniq)}
    return [fold_of[g] for g in groups]


def source_groups(sizes: dict[str, int], k: Optional[int]) -> list[list[str]]:
    """The sources in ``k`` bins of about equal series counts (None: one bin per source).

    Larger sources are placed first, each into the bin with the fewest series
    so far; ties by name and bin index, so the partition is deterministic.
    With fewer sources than bins some bins stay empty.
    """
    names = sorted(sizes, key=lambda n: (-sizes[n], n))
    if not k:
        return [[n] for n in names]
    bins: list[list[str]] = [[] for _ in range(k)]
    totals = [0] * k
    for n in names:
        j = min(range(k), key=lambda g: (totals[g], g))
        bins[j].append(n)
        totals[j] += sizes[n]
    return bins


def sample_folds(groups: Sequence[str], sources: Sequence[str], k: int, seed: int,
                 by_source: Sequence[str] = ()) -> list[int]:
    """Fold of each sample: by patient group, except samples of the sources named in ``by_source``
    (source names, :func:`source_name` of the data root), which share one fold per source."""
    folds = group_folds(groups, k, seed)
    names = [source_name(s) for s in sources]
    chosen = set(by_source)
    sizes: dict[str, int] = {}
    for n in names:
        if n in chosen:
            sizes[n] = sizes.get(n, 0) + 1
    fold_of = {n: j for j, b in enumerate(source_groups(sizes, k)) for n in b}
    return [fold_of.get(n, f) for n, f in zip(names, folds)]

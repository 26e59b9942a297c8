"""Attribute-group dropout: train on series as real exports lacking whole attribute groups read.

For every sample the metadata vector is computed once as it is, and once with
each optional attribute group (:data:`~SeqClassifierLib.inputs.attributes.ATTRIBUTE_GROUPS`)
removed from its whole study -- so study-context features change exactly as
they would for such an export -- plus once without any study context.  A
training batch then replaces, for each group drawn (independently, with the
group's rate), the features that group changes by the variant's values.
Groups drawn together combine; every single group is exact.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from SeqClassifierLib.inputs.attributes import GROUP_NAMES, drop_in_study
from SeqClassifierLib.inputs.features import extract_features
from SeqClassifierLib.inputs.study import study_contexts
from SeqClassifierLib.records import SeriesRecord

#: The pseudo-group "no other series of the study was given".
NO_CONTEXT = "context"
VARIANTS: tuple[str, ...] = (*GROUP_NAMES, NO_CONTEXT)

#: How often each group is dropped in training (independently).  Rates follow how often real
#: exports lack the group (docs/ATTRIBUTES.md), raised for the groups a model leans on most.
DEFAULT_RATES: dict[str, float] = {
    "names": 0.30, "image_type": 0.20, "sequence": 0.15, "contrast_timing": 0.50, "diffusion": 0.25,
    "inversion_etl": 0.15, "flip_angle": 0.10, "field_strength": 0.15, "manufacturer": 0.20,
    "times": 0.25, NO_CONTEXT: 0.20,
}


def metadata_variants(records: Sequence[SeriesRecord]) -> tuple[np.ndarray, np.ndarray]:
    """``(full [N, F], variants [N, V, F])`` for :data:`VARIANTS`, context from the records given."""
    records = list(records)
    contexts = study_contexts(records)
    full = np.stack([extract_features(r, contexts[r.key]) for r in records]) if records else \
        np.zeros((0, 0), np.float32)
    out = []
    for name in VARIANTS:
        if name == NO_CONTEXT:
            out.append(np.stack([extract_features(r, None) for r in records]))
            continue
        dropped = drop_in_study(records, [name])
        ctx = study_contexts(dropped)
        out.append(np.stack([extract_features(r, ctx[r.key]) for r in dropped]))
    return full.astype(np.float32), np.stack(out, axis=1).astype(np.float32)


def rates_vector(rates: Optional[Mapping[str, float]] = None) -> np.ndarray:
    """The rate of each of :data:`VARIANTS` (unknown names are refused)."""
    rates = dict(DEFAULT_RATES if rates is None else rates)
    unknown = set(rates) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown attribute groups {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    return np.array([float(rates.get(v, 0.0)) for v in VARIANTS], dtype=np.float32)


def apply_dropout(meta, variants, rates, rng: np.random.Generator):
    """Batch ``meta [B, F]`` (torch) with groups dropped at ``rates [V]``; ``variants [B, V, F]``."""
    import torch  # training only

    b, v, _ = variants.shape
    draw = torch.from_numpy(rng.random((b, v)) < rates[None, :]).to(meta.device)
    out = meta.clone()
    for k in range(v):
        rows = draw[:, k]
        if not bool(rows.any()):
            continue
        changed = (variants[:, k, :] != meta) & rows[:, None]
        out = torch.where(changed, variants[:, k, :], out)
    return out

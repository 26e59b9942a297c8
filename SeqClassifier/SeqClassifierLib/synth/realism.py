"""Realistic header gaps: which attributes a series loses or carries differently, and real series names.

A model trained on headers that always carry ContrastBolusAgent on DCE or a
b-value on DWI learns those as shortcuts and fails on exports without them.
With ``realism=True`` the planners draw, per study and per series, which
optional attribute groups are dropped or changed (rates in :data:`RATES`,
sources in ``docs/ATTRIBUTES.md``) and sample names from real vocabularies
(:func:`vocabulary`, derived from the IDC index by
``scripts/derive_synth_vocabulary.py``).  The label of a series never changes:
it is the truth of how the series was acquired.

Drop decisions live in ``_SeriesPlan.params["drops"]`` (a set of group names)
and ``params["set"]`` (attributes to overwrite); :func:`apply_drops` carries
them out on every data set just before it is saved, so all files of a series
agree.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Sequence

import numpy as np
from pydicom.dataset import Dataset

from SeqClassifierLib.labels import SequenceLabel
from SeqClassifierLib.synth.plan import _SeriesPlan

#: Drop / change rates.  ``study``: drawn once per study; ``series``: per series.
#: Documented (with sources) in docs/ATTRIBUTES.md; tests check observed rates.
RATES: dict[str, float] = {
    # names
    "name_blank": 0.05,            # series: SeriesDescription and ProtocolName empty
    "name_uninformative": 0.08,    # series: a generic name ("AX", "3D", "series 7", "WIP ...")
    "name_vocabulary": 0.5,        # series: T2w/DWI/ADC/DCE name drawn from the IDC vocabulary
    "seqname_drop": 0.15,          # series: SequenceName / PulseSequenceName absent
    # header detail
    "imagetype_short": 0.12,       # series: ImageType cut to its first two values
    "scanseq_drop": 0.08,          # series: ScanningSequence, SequenceVariant, ScanOptions absent
    "private_strip": 0.3,          # study: every private element removed (de-identification)
    # DCE
    "dce_no_contrast_timing": 0.45,  # study: DCE without ContrastBolus*, TriggerTime, TemporalPosition*, NumberOfTemporalPositions
    "dce_agent_drop": 0.25,        # study (when timing is kept): no ContrastBolus* on the DCE
    "dce_acqnum_const": 0.5,       # study (no timing): AcquisitionNumber 1 on every time point
    "dce_flip_as_vfa": 0.4,        # study: DCE flip angle equal to the highest VFA flip
    "dce_per_timepoint": 0.6,      # study: one series per time point (else one 4D series)
    "t1_post": 0.6,                # study: a single post-contrast T1 (OTHER) after the DCE
    "t1_post_agent": 0.6,          # study: that series carries ContrastBolusAgent
    # DWI / ADC
    "diff_std_drop": 0.35,         # study: no DiffusionBValue / Directionality (private tag only, or nothing)
    "adc_imagetype_plain": 0.3,    # series: ADC without ADC in ImageType
    "calc_imagetype_calc": 0.5,    # study (Siemens): calculated high b with CALC_BVALUE in ImageType
    # neuro extras
    "dti_b0_series": 0.6,          # study: DTI b0 volume(s) stored as a series of their own (DWI)
    "se_fieldmap": 0.5,            # study: spin-echo EPI field map / blip-up-down pair (OTHER)
    "fmri_multiband": 0.5,         # study: a multiband fMRI run with many volumes (OTHER)
    "sc_colour_map": 0.6,          # study: an RGB colour map as Secondary Capture (OTHER)
}

#: Attribute groups :func:`apply_drops` can remove.
DROP_GROUPS: dict[str, tuple[str, ...]] = {
    "seqname": ("SequenceName", "PulseSequenceName"),
    "scanseq": ("ScanningSequence", "SequenceVariant", "ScanOptions"),
    "contrast": ("ContrastBolusAgent", "ContrastBolusRoute", "ContrastBolusVolume", "ContrastBolusStartTime"),
    "timing": ("TriggerTime", "TemporalPositionIdentifier", "NumberOfTemporalPositions"),
    "diff_std": ("DiffusionBValue", "DiffusionDirectionality", "DiffusionGradientOrientation"),
}

_UNINFORMATIVE = ["AX", "3D", "Series", "MR", "new series", "WIP", "tra", "Ax 3D", "research", "SEQ", "scan",
                  "copy of series", "Pelvis", "HEAD"]

#: Hand-collected DCE names (vendor manuals, the issue tracker) beside the IDC vocabulary.
_DCE_NAMES: dict[str, list[str]] = {
    "SIEMENS": ["t1_vibe_dyn", "t1_twist_tra_dyn", "t1_vibe_fs_tra_dyn", "DCE", "Dynamic", "perfusie",
                "t1_fl3d_tra_dyn", "Perfusion", "dyn_vibe_tra"],
    "GE": ["Ax 3D T1 DCE", "DISCO", "LAVA dyn", "DCE", "Ax DISCO DCE", "Dynamic", "AX 3D LAVA-FLEX DYN"],
    "PHILIPS": ["THRIVE dyn", "eTHRIVE", "DCE", "dyn_THRIVE", "Dynamic", "perfusie", "DCE_THRIVE_SENSE"],
}
#: Names a VFA T1 map or a DCE time point may both carry (only the flip angle or the time differ).
_T1_GRE_NAMES: dict[str, list[str]] = {
    "SIEMENS": ["t1_vibe_tra", "t1_fl3d_tra", "fl3d_vibe", "t1_vibe_fs_tra", "vibe_tra"],
    "GE": ["Ax 3D T1", "Ax LAVA", "AX 3D SPGR", "Ax T1 3D FSPGR"],
    "PHILIPS": ["T1_FFE_3D", "THRIVE", "T1W_FFE", "3D T1 FFE"],
}
_POST_NAMES: dict[str, list[str]] = {
    "SIEMENS": ["t1_vibe_fs_tra_post", "t1_vibe_tra_KM", "AX T1 POST FS LARGE FOV", "t1_fl3d_tra_post"],
    "GE": ["Ax T1 FS POST", "Ax LAVA +C", "AX 3D T1 POST", "Ax T1 post gad"],
    "PHILIPS": ["T1W_TSE_AX_Gd", "THRIVE post", "T1_FFE_post", "T1W_FFE_GD"],
}


@functools.lru_cache(maxsize=1)
def vocabulary() -> dict[str, dict[str, list[tuple[str, int]]]]:
    """vendor family -> candidate class -> [(SeriesDescription, studies holding it)], from vocabulary.json."""
    path = os.path.join(os.path.dirname(__file__), "vocabulary.json")
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    return {v: {c: [(str(n), int(k)) for n, k in rows] for c, rows in cls.items()}
            for v, cls in doc["vocabulary"].items()}


def _vendor_family(vendor: str) -> str:
    return "SIEMENS" if vendor.startswith("SIEMENS") else vendor


def vocabulary_name(rng: np.random.Generator, vendor: str, label: SequenceLabel) -> str | None:
    """A real name of ``label`` for ``vendor``, drawn with the square root of its study count as weight."""
    rows = vocabulary().get(_vendor_family(vendor), {}).get(label.value, [])
    if not rows:
        return None
    w = np.sqrt(np.array([k for _, k in rows], dtype=np.float64))
    return rows[int(rng.choice(len(rows), p=w / w.sum()))][0]


def pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def uninformative_name(rng: np.random.Generator, series_number: int) -> str:
    name = pick(rng, _UNINFORMATIVE + ["series {n}", "{n}"])
    return name.format(n=series_number)


def dce_name(rng: np.random.Generator, vendor: str) -> str:
    """A DCE name: IDC vocabulary, hand list, or a plain T1 gradient-echo name shared with the VFA maps."""
    u = rng.random()
    fam = _vendor_family(vendor)
    if u < 0.35:
        name = vocabulary_name(rng, vendor, SequenceLabel.DCE)
        if name:
            return name
    if u < 0.75:
        return pick(rng, _DCE_NAMES.get(fam, _DCE_NAMES["SIEMENS"]))
    return pick(rng, _T1_GRE_NAMES.get(fam, _T1_GRE_NAMES["SIEMENS"]))


def post_name(rng: np.random.Generator, vendor: str) -> str:
    return pick(rng, _POST_NAMES.get(_vendor_family(vendor), _POST_NAMES["SIEMENS"]))


def t1_gre_name(rng: np.random.Generator, vendor: str) -> str:
    return pick(rng, _T1_GRE_NAMES.get(_vendor_family(vendor), _T1_GRE_NAMES["SIEMENS"]))


def draw_series_drops(rng: np.random.Generator, sp: _SeriesPlan, study_drops: set[str]) -> None:
    """Per-series drops and name changes of one series (names only for acquired, named series)."""
    drops = set(study_drops) | set(sp.params.get("drops", ()))
    if rng.random() < RATES["seqname_drop"]:
        drops.add("seqname")
    if rng.random() < RATES["imagetype_short"]:
        drops.add("imagetype_short")
    if rng.random() < RATES["scanseq_drop"]:
        drops.add("scanseq")
    sp.params["drops"] = drops
    u = rng.random()
    if u < RATES["name_blank"]:
        sp.description = sp.protocol = ""
        sp.note += "; names blank"
    elif u < RATES["name_blank"] + RATES["name_uninformative"]:
        sp.description = sp.protocol = uninformative_name(rng, sp.series_number)
        sp.note += "; uninformative name"


def apply_drops(ds: Dataset, sp: _SeriesPlan) -> None:
    """Carry out the series' drop / overwrite decisions on one data set (idempotent)."""
    prm = sp.params
    for key, value in prm.get("set", {}).items():
        setattr(ds, key, value)
    drops = prm.get("drops")
    if not drops:
        return
    for group in drops:
        for key in DROP_GROUPS.get(group, ()):
            if key in ds:
                delattr(ds, key)
    if "imagetype_short" in drops and "ImageType" in ds:
        it = list(ds.ImageType)
        if len(it) > 2:
            ds.ImageType = it[:2]
    if "acqnum_const" in drops and "AcquisitionNumber" in ds:
        ds.AcquisitionNumber = "1"
    if "private" in drops:
        ds.remove_private_tags()

"""Metadata features: a documented, versioned vector built from a series' headers.

The schema is fixed (no fitting on data), so a model card only needs
:data:`FEATURE_SCHEMA_VERSION` to know what its metadata input means.  Every
feature is a float32; every numeric attribute comes with a *missing* flag so
that an absent or malformed tag is a feature value, never a crash.

Groups (see :func:`schema_table` for the full list with descriptions):

``tok:*``
    keyword indicators found in SeriesDescription, ProtocolName and
    SequenceName (lower-cased, split on non-alphanumerics), e.g. ``tok:t2``,
    ``tok:adc``, ``tok:dyn``.
``it:*``
    ImageType values (ORIGINAL, DERIVED, DIFFUSION, ADC, TRACEW, FA, ...).
``ss:*``, ``sv:*``, ``so:*``, ``acq:*``
    ScanningSequence, SequenceVariant, ScanOptions, MRAcquisitionType values.
``num:*`` / ``miss:*``
    scaled numbers (EchoTime, RepetitionTime, InversionTime, FlipAngle,
    EchoTrainLength, thickness, spacing, matrix, slice count, b-values,
    temporal positions, field strength) and their missing flags.
``b:*``
    b-value summary: count, max, any b > 0, high b (>= 1000).
``mfr:*``
    Manufacturer family.
``plane:*``, ``geo:*``
    plane one-hot, obliquity, multi-frame / mosaic flags.
``agent``
    ContrastBolusAgent present.
``ctx:*``
    study context (:mod:`SeqClassifierLib.inputs.study`): dynamic /
    flip-angle / diffusion / multi-echo groups of sibling series, a diffusion
    series this one is derived from, images per slice position.

Schema 2.0 added ``ctx:*`` and ``num:repeats`` and dropped ``header:sparse``
(a count of missing attributes across groups, which made every attribute a
shortcut of every other); 2.1 added ``ctx:before_dynamic`` / ``ctx:after_dynamic``
(without FlipAngle a variable-flip-angle T1 map and a DCE time point read the same);
2.2 made dynamic groups stricter (time step at most 45 s, six series when no time is known) and let a
4D series anchor ``ctx:before_dynamic`` / ``ctx:after_dynamic``.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Optional, Sequence

import numpy as np

from SeqClassifierLib.dicom.attribute_table import ATTRIBUTES, Kind
from SeqClassifierLib.labels import Plane
from SeqClassifierLib.dicom.manufacturers import MANUFACTURER_FAMILIES, OTHER_FAMILY, manufacturer_family
from SeqClassifierLib.inputs.study import SeriesContext, repeats_per_location
from SeqClassifierLib.records import SeriesRecord

#: Bump when the meaning of a feature changes without its name changing.  A model card records the
#: feature names themselves (``feature_names``, compared name by name by the classifier); the version
#: alone is compared only for older cards that lack the names.
FEATURE_SCHEMA_VERSION = "2.2"

# Keyword groups: feature name -> (whole-word pattern, substring pattern,
# description).  Short, ambiguous tokens (t2, pd, fa, ax) count only between
# non-letters; long keywords also count inside run-together names such as
# "ep2d_diff_tra_DYNDISTCALC_BVAL".  Sequence names like "*ep_b50t" and
# "*tse2d1_25" are part of the text.
_TOKEN_PATTERNS: dict[str, tuple[str, str, str]] = {
    "tok:t2": (r"t2|t2w|t2wi", r"t2w|t2_?tse|t2_?fse|t2_?space|t2_?spc", "T2 / T2-weighted"),
    "tok:t1": (r"t1|t1w|t1wi", r"t1w|t1_?vibe|t1_?fl|t1_?tse|t1_?se|t1_?gre|t1_?ffe", "T1"),
    "tok:tse": (r"tse|fse|rare|space|spc|cube|vista", r"frfse|ssfse|haste|blade|propeller|tse2d|tse3d|turbo", "turbo/fast spin echo family"),
    "tok:pd": (r"pd|pdw", r"proton", "proton density"),
    "tok:diff": (r"dw|dwi|epi|dti|dki|ivim|trace|resolve", r"diff|ep2d|ep_b|epb|tracew|isotropic|dwi", "diffusion keywords"),
    "tok:bval": (r"b\d{2,4}t?|bval|bvalue", r"b_?value|bval|calc_?b", "a b-value in the name"),
    "tok:adc": (r"adc|dadc|eadc", r"adc|apparent", "ADC map"),
    "tok:calc": (r"cbv", r"calc|synthetic|computed", "calculated series"),
    "tok:dce": (r"dce|dyn|perf|kws", r"dynamic|dyn_|perfusion|twist|tricks|disco|lava|thrive|vibe|kinetic|dce", "dynamic contrast keywords"),
    "tok:post": (r"post|gad|gd|c|ce|contrast", r"post|gado|contrast", "post-contrast"),
    "tok:pre": (r"pre|native|nativ", r"precontrast|pre_contrast", "pre-contrast"),
    "tok:map": (r"map|vfa|flip|t1map|fa\d{1,2}", r"t1map|t1_map|mapping|vfa|despot|b1map", "parametric map / VFA"),
    "tok:fa": (r"fa|cfa", r"fractional|colfa|color_fa", "fractional anisotropy"),
    "tok:loc": (r"loc|scout|survey|pilot|cal|ref|plane|3pl|asset|sense", r"localizer|localiser|tripilot|aahead|calibration|reference|3_?plane|scout", "localizer / calibration / reference"),
    "tok:gre": (r"tfl|flash|spgr|ffe|gre|fl3d|fl2d|fspgr|fl", r"turboflash|tfl3d|tfl_3d|fl3d|spgr|ffe", "gradient echo"),
    "tok:ir": (r"flair|tirm|stir|ir|mprage", r"flair|tirm|stir|mprage", "inversion recovery"),
    "tok:fs": (r"fs|fatsat|spair|spir", r"fatsat|fat_sat|spair", "fat suppression"),
    "tok:tra": (r"tra|ax|axial|transverse", r"_tra|axial|transversal", "axial in name"),
    "tok:sag": (r"sag|sagittal", r"_sag|sagittal", "sagittal in name"),
    "tok:cor": (r"cor|coronal", r"_cor|coronal", "coronal in name"),
    "tok:3d": (r"3d", r"3d", "3D in name"),
    "tok:mosaic": (r"mosaic", r"mosaic", "mosaic"),
    "tok:sub": (r"sub|subtract|mip", r"subtract|_sub", "subtraction / MIP"),
    "tok:fmri": (r"bold|fmri|rest|resting|task", r"fmri|resting|bold", "functional MRI"),
    "tok:asl": (r"asl|pcasl|pasl|cbf", r"pcasl|pasl|_asl", "arterial spin labelling"),
    "tok:swi": (r"swi|swan|t2star|mag|pha|phase", r"venobold|t2star|t2\*|swan", "susceptibility / phase"),
    "tok:fmap": (r"fmap|shim|b0map", r"fieldmap|field_map|b0_?map|b1_?map|gre_field", "field map"),
}
_TOKEN_RE = {
    name: re.compile(r"(?:(?:^|(?<=[^a-z]))(?:" + word + r")(?=$|[^a-z]))|(?:" + sub + r")")
    for name, (word, sub, _) in _TOKEN_PATTERNS.items()
}

_IMAGE_TYPES = (
    "ORIGINAL", "DERIVED", "PRIMARY", "SECONDARY", "M", "P", "R", "I", "DIFFUSION",
    "ADC", "EADC", "TRACEW", "TRACE", "FA", "ISOTROPIC", "MOSAIC", "NORM", "DIS2D",
    "DIS3D", "MPR", "PROJECTION IMAGE", "MIP", "SUBTRACT", "PERFUSION", "T1", "T2",
    "OTHER", "CALC", "CALC_BVALUE", "ND", "FIL", "SW", "FFE", "SE", "IR", "EPI",
)
_SCANNING_SEQUENCES = ("SE", "GR", "IR", "EP", "RM")
_SEQUENCE_VARIANTS = ("SK", "SS", "SP", "MP", "OSP", "MTC", "TRSS", "NONE")
_SCAN_OPTIONS = ("FS", "SAT1", "SAT2", "PFP", "PFF", "IR", "FC", "SP", "EPI_GEMS", "FAST_GEMS", "TRF_GEMS", "ACC_GEMS", "PER", "CG", "RG", "PPG")


def _log1p(v: float) -> float:
    return math.log1p(max(v, 0.0))


# Numeric features: name -> (function of the record returning a float or None,
# scaling, description).  Scaling maps typical values to about 0..3.
def _h(key: str) -> Callable[[SeriesRecord], Optional[float]]:
    def get(r: SeriesRecord) -> Optional[float]:
        v = r.header.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            return float(v)
        return None
    return get


def _pixel_spacing(r: SeriesRecord) -> Optional[float]:
    ps = r.header.get("PixelSpacing")  # (the one SPACING attribute of the table)
    return float(ps[0]) if isinstance(ps, (list, tuple)) and ps else None


def _n_slices(r: SeriesRecord) -> Optional[float]:
    locs = {f.location for f in r.frames if f.location is not None}
    return float(len(locs)) if locs else float(r.n_frames) if r.n_frames else None


#: Numeric features made from the record rather than one header attribute: name -> (position among the
#: numeric features, getter, scaling, description).  The header attributes' own ``num:*`` features come
#: from the attribute table (dicom.attribute_table), each at its ``order``.
_DERIVED_NUMERIC: dict[str, tuple[float, Callable[[SeriesRecord], Optional[float]], Callable[[float], float], str]] = {
    "num:slices": (110, _n_slices, lambda v: _log1p(v) / 2.0, "log1p(distinct slice positions)/2"),
    "num:frames": (120, lambda r: float(r.n_frames) if r.n_frames else None, lambda v: _log1p(v) / 3.0,
                   "log1p(number of 2D images)/3"),
    "num:temporal": (130, lambda r: float(r.temporal_positions), lambda v: _log1p(v - 1.0),
                     "log1p(temporal positions - 1)"),
    "num:repeats": (150, lambda r: float(repeats_per_location(r)) if r.frames else None,
                    lambda v: _log1p(v - 1.0) / 2.0,
                    "log1p(images per slice position - 1)/2 (time points / b-values / echoes in one series)"),
}


def _numeric_features() -> dict[str, tuple[Callable[[SeriesRecord], Optional[float]], Callable[[float], float], str]]:
    rows = dict(_DERIVED_NUMERIC)
    for a in ATTRIBUTES:
        if a.header and a.feature is not None:
            get = _pixel_spacing if a.kind == Kind.SPACING else _h(a.keyword)
            rows[a.feature.name] = (a.feature.order, get, a.feature.scale, a.feature.description)
    ordered = sorted(rows.items(), key=lambda item: item[1][0])
    return {name: (get, scale, desc) for name, (_, get, scale, desc) in ordered}


_NUMERIC: dict[str, tuple[Callable[[SeriesRecord], Optional[float]], Callable[[float], float], str]] = _numeric_features()

#: Study-context features: name -> (function of the context, description).
_CONTEXT: dict[str, tuple[Callable[[SeriesContext], float], str]] = {
    "ctx:available": (lambda c: float(c.available), "other series of the study were given"),
    "ctx:n_series": (lambda c: _log1p(c.n_study_series - 1) / 4.0, "log1p(other series in the study)/4"),
    "ctx:same_signature": (lambda c: _log1p(c.same_signature - 1) / 3.0,
                           "log1p(series sharing geometry + ScanningSequence/TE/TR)/3"),
    "ctx:dynamic": (lambda c: float(c.kind == "dynamic"), "one time point of a dynamic group of series"),
    "ctx:dyn_n": (lambda c: _log1p(c.group_size) / 4.0 if c.kind == "dynamic" else 0.0, "log1p(time points)/4"),
    "ctx:dyn_rank": (lambda c: c.rank / max(1, c.group_size - 1) if c.kind == "dynamic" else 0.0,
                     "rank in time / (time points - 1)"),
    "ctx:dyn_step": (lambda c: _log1p(c.time_step_s or 0.0) / 5.0 if c.kind == "dynamic" else 0.0,
                     "log1p(median time step s)/5"),
    "ctx:flip_set": (lambda c: float(c.kind == "flip_angle"), "member of a flip-angle-only set (VFA T1 mapping)"),
    "ctx:flip_n": (lambda c: _log1p(c.group_size) / 2.0 if c.kind == "flip_angle" else 0.0, "log1p(flip angles)/2"),
    "ctx:flip_rank": (lambda c: c.rank / max(1, c.group_size - 1) if c.kind == "flip_angle" else 0.0,
                      "rank of the flip angle in the set"),
    "ctx:diffusion_set": (lambda c: float(c.kind == "diffusion"), "member of a set that differs only by b-value"),
    "ctx:multi_echo": (lambda c: float(c.kind == "multi_echo"), "member of a set that differs only by echo time"),
    "ctx:diffusion_linked": (lambda c: float(c.diffusion_linked),
                             "no b > 0 of its own, geometry + TE + TR of a diffusion series"),
    "ctx:source_b": (lambda c: _log1p(c.source_b_max) / 7.0, "log1p(b max of the linked diffusion series)/7"),
    "ctx:time_missing": (lambda c: float(c.time_missing), "no acquisition / content / series time"),
    "ctx:before_dynamic": (lambda c: float(c.dynamic_relation == "before"),
                           "same geometry and sequence as a dynamic group, acquired before it (pre-contrast)"),
    "ctx:after_dynamic": (lambda c: float(c.dynamic_relation == "after"),
                          "same geometry and sequence as a dynamic group, acquired after it (static post-contrast)"),
}


def _b_features(r: SeriesRecord) -> dict[str, float]:
    bs = [b for b in r.b_values if b is not None]
    bmax = max(bs) if bs else 0.0
    return {
        "b:count": _log1p(len(bs)),
        "b:max": _log1p(bmax) / 7.0,
        "b:any_positive": float(bmax > 0),
        "b:high": float(bmax >= 1000),
        "b:multi": float(len([b for b in bs if b > 0]) > 1),
    }


def _text_blob(r: SeriesRecord) -> str:
    parts = [r.description, r.protocol_name, str(r.header.get("SequenceName", "")),
             str(r.header.get("PulseSequenceName", ""))]
    return " ".join(p for p in parts if p).lower()


def _values(r: SeriesRecord, key: str) -> set[str]:
    v = r.header.get(key)
    if isinstance(v, (list, tuple)):
        return {str(x).upper() for x in v}
    if isinstance(v, str) and v:
        return {t.strip().upper() for t in v.split("\\")}
    return set()


def _build_names() -> list[tuple[str, str]]:
    names: list[tuple[str, str]] = []
    names += [(n, f"keyword: {desc}") for n, (_, _, desc) in _TOKEN_PATTERNS.items()]
    names += [("tok:empty", "description, protocol and sequence name all empty")]
    names += [(f"it:{v}", f"ImageType contains {v}") for v in _IMAGE_TYPES]
    names += [(f"ss:{v}", f"ScanningSequence contains {v}") for v in _SCANNING_SEQUENCES]
    names += [(f"sv:{v}", f"SequenceVariant contains {v}") for v in _SEQUENCE_VARIANTS]
    names += [(f"so:{v}", f"ScanOptions contains {v}") for v in _SCAN_OPTIONS]
    names += [("acq:2D", "MRAcquisitionType 2D"), ("acq:3D", "MRAcquisitionType 3D")]
    for n, (_, _, desc) in _NUMERIC.items():
        names += [(n, desc), ("miss:" + n[4:], f"{n[4:]} missing or malformed")]
    names += [("b:count", "log1p(number of b-values)"), ("b:max", "log1p(max b)/7"),
              ("b:any_positive", "some b > 0"), ("b:high", "max b >= 1000"),
              ("b:multi", "several b > 0")]
    names += [(f"mfr:{m}", f"manufacturer {m}") for m in (*MANUFACTURER_FAMILIES, OTHER_FAMILY)]
    names += [(f"plane:{p.value}", f"plane {p.value}") for p in Plane]
    names += [("geo:oblique", "obliquity degrees / 45"), ("geo:multiframe", "enhanced multi-frame"),
              ("geo:mosaic", "Siemens mosaic"), ("agent", "ContrastBolusAgent present")]
    names += [(n, desc) for n, (_, desc) in _CONTEXT.items()]
    return names


_SCHEMA: list[tuple[str, str]] = _build_names()
FEATURE_NAMES: tuple[str, ...] = tuple(n for n, _ in _SCHEMA)
N_FEATURES: int = len(FEATURE_NAMES)
_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}

def feature_difference(names: Sequence[str], limit: int = 8) -> str:
    """How ``names`` (a model card's feature names) differ from :data:`FEATURE_NAMES` ("" when identical)."""
    names = tuple(names)
    if names == FEATURE_NAMES:
        return ""
    ours, theirs = set(FEATURE_NAMES), set(names)

    def listed(items: list[str]) -> str:
        return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")

    added = [n for n in FEATURE_NAMES if n not in theirs]
    missing = [n for n in names if n not in ours]
    parts = []
    if added:
        parts.append(f"{len(added)} added in this SeqClassifier ({listed(added)})")
    if missing:
        parts.append(f"{len(missing)} missing from it ({listed(missing)})")
    if not parts:
        parts.append("the same features in another order" if len(names) == len(FEATURE_NAMES)
                     else "some features repeated")
    return "; ".join(parts)


def schema_table() -> list[tuple[str, str]]:
    """(name, description) of every feature, in vector order."""
    return list(_SCHEMA)


def extract_features(record: SeriesRecord, context: Optional[SeriesContext] = None) -> np.ndarray:
    """The metadata feature vector of one series (float32, length :data:`N_FEATURES`).

    ``context``: the series' study context (:func:`~SeqClassifierLib.inputs.study.study_contexts`);
    None means no other series of its study is known.
    """
    x = np.zeros(N_FEATURES, dtype=np.float32)

    def put(name: str, value: float) -> None:
        x[_INDEX[name]] = value

    text = _text_blob(record)
    if not text.strip():
        put("tok:empty", 1.0)
    for name, rx in _TOKEN_RE.items():
        if rx.search(text):
            put(name, 1.0)
    for prefix, key, vocab in (("it", "ImageType", _IMAGE_TYPES), ("ss", "ScanningSequence", _SCANNING_SEQUENCES),
                               ("sv", "SequenceVariant", _SEQUENCE_VARIANTS), ("so", "ScanOptions", _SCAN_OPTIONS)):
        present = _values(record, key)
        for v in vocab:
            if v in present:
                put(f"{prefix}:{v}", 1.0)
    acq = str(record.header.get("MRAcquisitionType", "")).upper()
    if acq in ("2D", "3D"):
        put(f"acq:{acq}", 1.0)
    for name, (get, scale, _) in _NUMERIC.items():
        try:
            v = get(record)
            val = scale(v) if v is not None else None
        except (TypeError, ValueError, OverflowError):
            val = None
        if val is None or not math.isfinite(val):
            put("miss:" + name[4:], 1.0)
        else:
            put(name, float(np.clip(val, -10.0, 10.0)))
    for name, v in _b_features(record).items():
        put(name, v)
    put(f"mfr:{manufacturer_family(record.manufacturer)}", 1.0)
    put(f"plane:{record.plane.value}", 1.0)
    if record.obliquity_deg is not None:
        put("geo:oblique", min(record.obliquity_deg, 45.0) / 45.0)
    put("geo:multiframe", float(record.is_multiframe))
    put("geo:mosaic", float(record.is_mosaic))
    agent = str(record.header.get("ContrastBolusAgent", "")).strip()
    put("agent", float(bool(agent) and agent.upper() not in ("NONE", "NO", "-")))
    context = context if context is not None else SeriesContext(repeats=repeats_per_location(record))
    for name, (get, _) in _CONTEXT.items():
        put(name, float(np.clip(get(context), -10.0, 10.0)))
    return x


def feature_dict(record: SeriesRecord, context: Optional[SeriesContext] = None) -> dict[str, float]:
    """Named non-zero features of a series (for explanations and debugging)."""
    x = extract_features(record, context)
    return {n: float(v) for n, v in zip(FEATURE_NAMES, x) if v != 0.0}

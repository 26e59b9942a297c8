"""Evidence checks: DICOM facts that no prediction should contradict silently.

A model can be sure and wrong (the per-time-point DCE of a real study came
out OTHER at 0.998).  Some header facts are strong evidence for or against a
class whatever the model learned: ImageType ADC, diffusion weighting (b > 0),
a localizer, a dynamic group of 70 time points, an echo time no dynamic T1
acquisition has.  :func:`evidence_conflicts` lists, for one prediction, every
such fact it contradicts.  A conflict raises a review reason; it never changes
the label.

Each check is one entry of :data:`CHECKS` (name, the class it concerns, and a
function returning the conflict text or None), so adding a check is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from SeqClassifierLib.dicom.sop_classes import SECONDARY_CAPTURE_SOP_CLASSES
from SeqClassifierLib.inputs.study import SeriesContext, max_b_value
from SeqClassifierLib.labels import SequenceLabel
from SeqClassifierLib.records import SeriesRecord


def _image_type(record: SeriesRecord) -> set[str]:
    v = record.header.get("ImageType")
    if isinstance(v, (list, tuple)):
        return {str(x).upper() for x in v}
    if isinstance(v, str):
        return {x.strip().upper() for x in v.split("\\")}
    return set()


def _num(record: SeriesRecord, key: str) -> Optional[float]:
    v = record.header.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _scanning(record: SeriesRecord) -> set[str]:
    v = record.header.get("ScanningSequence") or []
    return {str(x).upper() for x in v} if isinstance(v, (list, tuple)) else {str(v).upper()}


@dataclass(frozen=True)
class Facts:
    """What the headers and the study say, computed once per series."""

    image_type: frozenset
    b_max: float
    te: Optional[float]
    tr: Optional[float]
    epi: bool
    #: ScanningSequence says gradient echo (None: ScanningSequence missing).
    gradient_echo: Optional[bool]
    time_points: int
    context: SeriesContext
    secondary_capture: bool
    #: ScanningSequence values, upper case (empty when missing).
    scanning: frozenset = frozenset()
    #: SequenceName and PulseSequenceName, lower case, joined by a space.
    sequence_text: str = ""

    @classmethod
    def of(cls, record: SeriesRecord, context: Optional[SeriesContext]) -> "Facts":
        context = context or SeriesContext()
        it = frozenset(_image_type(record))
        seq_text = " ".join(str(record.header.get(k, "")) for k in ("SequenceName", "PulseSequenceName")).lower()
        scanning = frozenset(_scanning(record)) if record.header.get("ScanningSequence") else frozenset()
        epi = "EP" in scanning or "EPI" in it or "epi" in seq_text or "ep2d" in seq_text
        time_points = max(int(record.temporal_positions or 1), context.repeats if max_b_value(record) == 0 else 1,
                          context.group_size if context.kind == "dynamic" else 1)
        return cls(image_type=it, b_max=max_b_value(record), te=_num(record, "EchoTime"), tr=_num(record, "RepetitionTime"),
                   epi=epi, gradient_echo=("GR" in scanning) if scanning else None,
                   time_points=time_points, context=context,
                   secondary_capture=record.sop_class_uid in SECONDARY_CAPTURE_SOP_CLASSES,
                   scanning=scanning, sequence_text=seq_text)


Check = Callable[[SequenceLabel, Facts], Optional[str]]


def _adc_type(label: SequenceLabel, f: Facts) -> Optional[str]:
    if {"ADC", "EADC"} & f.image_type and "ADC" in f.image_type and label is not SequenceLabel.ADC:
        return "ImageType says ADC"
    return None


def _diffusion_weighted(label: SequenceLabel, f: Facts) -> Optional[str]:
    if f.b_max >= 50 and label not in (SequenceLabel.DWI, SequenceLabel.ADC) and not ({"FA"} & f.image_type):
        return f"b-values up to {f.b_max:g} say diffusion-weighted"
    return None


def _dwi_without_diffusion(label: SequenceLabel, f: Facts) -> Optional[str]:
    if label is not SequenceLabel.DWI:
        return None
    if f.b_max > 0 or {"DIFFUSION", "TRACEW", "TRACE", "ISOTROPIC", "CALC_BVALUE"} & f.image_type:
        return None
    if f.context.kind == "diffusion" or f.context.diffusion_linked:
        return None
    why = "no b-value > 0, no diffusion ImageType, no diffusion series of the same geometry"
    return why + ("" if f.epi else ", not EPI")


def _adc_without_diffusion(label: SequenceLabel, f: Facts) -> Optional[str]:
    if label is not SequenceLabel.ADC or "ADC" in f.image_type:
        return None
    if f.context.diffusion_linked or f.context.kind == "diffusion" or f.b_max > 0 or f.epi:
        return None
    return "ADC predicted, but no ADC ImageType, not EPI and no diffusion series of the same geometry"


def _localizer(label: SequenceLabel, f: Facts) -> Optional[str]:
    if "LOCALIZER" in f.image_type and label is not SequenceLabel.OTHER:
        return "ImageType says LOCALIZER"
    return None


def _dynamic_not_dce(label: SequenceLabel, f: Facts) -> Optional[str]:
    if label is SequenceLabel.DCE or f.epi or f.b_max > 0:
        return None
    if f.context.kind == "dynamic" and f.context.group_size >= 5:
        return f"one of {f.context.group_size} time points of a dynamic acquisition"
    if f.time_points >= 5 and (f.te is None or f.te < 10) and f.gradient_echo is not False:
        return f"{f.time_points} time points of a gradient echo in one series"
    return None


def _dce_not_dynamic(label: SequenceLabel, f: Facts) -> Optional[str]:
    if label is not SequenceLabel.DCE:
        return None
    reasons = []
    if f.time_points < 2 and f.context.available:
        reasons.append("a single time point, in no dynamic group of the study")
    if f.epi:
        reasons.append("EPI (fMRI or perfusion EPI, not a T1-weighted dynamic)")
    if f.te is not None and f.te > 10:
        reasons.append(f"EchoTime {f.te:g} ms is too long for a T1-weighted gradient echo")
    if f.b_max > 0:
        reasons.append(f"b-values up to {f.b_max:g}")
    return "DCE predicted, but " + "; ".join(reasons) if reasons else None


def _derived_map(label: SequenceLabel, f: Facts) -> Optional[str]:
    if f.secondary_capture and label is not SequenceLabel.OTHER:
        return "Secondary Capture (a derived picture, not an acquired MR image)"
    if {"FA", "CBF", "PERFUSION", "T1MAP", "T2MAP"} & f.image_type and label is not SequenceLabel.OTHER:
        return "ImageType says parametric map (" + ", ".join(sorted({"FA", "CBF", "PERFUSION", "T1MAP",
                                                                      "T2MAP"} & f.image_type)) + ")"
    return None


#: Below these a spin echo is proton-density or T1 weighted, not T2 weighted (T2 weighting needs a long
#: echo time and a repetition time long enough for T1 to recover; T2w TSE: TE 80-130 ms, TR > 2000 ms).
T2W_MIN_TE_MS = 50.0
T2W_MIN_TR_MS = 1200.0


def _t2w_short_te_tr(label: SequenceLabel, f: Facts) -> Optional[str]:
    if label is not SequenceLabel.T2w or f.epi:
        return None
    why = []
    if f.te is not None and 0 < f.te < T2W_MIN_TE_MS:
        why.append(f"EchoTime {f.te:g} ms")
    if f.tr is not None and 0 < f.tr < T2W_MIN_TR_MS:
        why.append(f"RepetitionTime {f.tr:g} ms")
    return ("T2w predicted, but " + " and ".join(why) + " say proton-density or T1 weighting") if why else None


#: name -> check.  Each returns the conflict in words, or None.
CHECKS: dict[str, Check] = {
    "adc_image_type": _adc_type,
    "diffusion_weighted": _diffusion_weighted,
    "dwi_without_diffusion": _dwi_without_diffusion,
    "adc_without_diffusion": _adc_without_diffusion,
    "localizer": _localizer,
    "dynamic_not_dce": _dynamic_not_dce,
    "dce_not_dynamic": _dce_not_dynamic,
    "derived_map": _derived_map,
    "t2w_short_te_tr": _t2w_short_te_tr,
}


def evidence_conflict_items(record: SeriesRecord, label: Optional[SequenceLabel],
                            context: Optional[SeriesContext] = None,
                            facts: Optional[Facts] = None) -> list[tuple[str, str]]:
    """``(check name, conflict in words)`` of every fact that ``label`` contradicts (empty: none)."""
    if label is None:
        return []
    facts = facts if facts is not None else Facts.of(record, context)
    return [(name, text) for name, check in CHECKS.items() if (text := check(label, facts))]


def evidence_conflicts(record: SeriesRecord, label: Optional[SequenceLabel],
                       context: Optional[SeriesContext] = None) -> list[str]:
    """Every header or study fact that ``label`` contradicts, in words (empty: none)."""
    return [text for _, text in evidence_conflict_items(record, label, context)]

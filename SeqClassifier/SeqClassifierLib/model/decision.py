"""Hard evidence in the decision: DICOM facts that rule a class in or out.

:mod:`.evidence` lists the facts a prediction contradicts and raises a review
reason.  Some facts are not a matter of opinion: a series with no diffusion
encoding anywhere (no b-value above 0, no diffusion ImageType, no diffusion
sequence name, no diffusion series of its geometry in the study) is not
diffusion-weighted, however much its EPI read-out looks like it -- the real
failure behind this module was BOLD fMRI, spin-echo EPI field maps and ASL
called DWI at up to 0.98 while the row said "no b-value > 0".

Each rule is one entry of :data:`RULES`: a name, and a function of the
series' :class:`~.evidence.Facts` that returns the classes it rules out (or
None when it does not apply).  :func:`decide` zeroes those classes'
probabilities and renormalises the rest; the rules that changed anything are
returned by name for the row's note.  If the rules together would rule out
every class (contradictory headers), the model's probabilities stand.

Each rule fires only on an attribute a de-identified export keeps (standard
ImageType, ScanningSequence, SequenceName, b-values in standard or vendor
tags), never on a description or a name, and never on an attribute's
*absence* alone: ``no_diffusion_encoding`` needs the b-value, ImageType,
sequence name and study context all to say "no diffusion" *and* a read-out
that no diffusion sequence has.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from SeqClassifierLib.labels import CLASS_NAMES, SequenceLabel
from SeqClassifierLib.model.evidence import Facts
from SeqClassifierLib.records import SeriesRecord

L = SequenceLabel
ALL = frozenset(CLASS_NAMES)

#: ImageType values that say diffusion (Siemens, Philips, GE, enhanced MR's defined terms).
DIFFUSION_IMAGE_TYPES = frozenset({"DIFFUSION", "TRACEW", "TRACE", "ISOTROPIC", "CALC_BVALUE", "ADC", "EADC",
                                   "FA", "DTI", "TENSOR", "B0", "COLFA"})
#: Substrings of SequenceName / PulseSequenceName that say diffusion
#: (Siemens ``*ep_b1000t``, ``*re_b800``, ``ep2d_diff``; Philips ``DwiSE``; GE ``epi2_diff``...).
DIFFUSION_SEQUENCE_MARKS = ("ep_b", "re_b", "diff", "dwi", "dti", "_b0", "tensor")
#: ImageType values of parametric maps that are OTHER by definition.
PARAMETRIC_IMAGE_TYPES = frozenset({"FA", "COLFA", "T1MAP", "T2MAP", "CBF", "CBV", "MTT", "TTP"})

Rule = Callable[[Facts, SeriesRecord], Optional[frozenset]]


def has_diffusion_encoding(f: Facts, record: SeriesRecord) -> bool:
    """Any sign of diffusion weighting in the series or its study (see :func:`no_diffusion_encoding`)."""
    return bool(f.b_max > 0 or (DIFFUSION_IMAGE_TYPES & f.image_type)
                or any(m in f.sequence_text for m in DIFFUSION_SEQUENCE_MARKS)
                or f.context.kind == "diffusion" or f.context.diffusion_linked)


def no_diffusion_encoding(f: Facts, record: SeriesRecord) -> Optional[frozenset]:
    """No sign of diffusion weighting, and a read-out that says so: not DWI.

    "No sign" means no b-value above 0, no diffusion ImageType, no diffusion
    sequence name, and no diffusion series of the same geometry in the study
    (a DTI b = 0 volume stored on its own keeps DWI through the last three).
    A b-value of 0 alone is no evidence either way (GE writes one on every EPI,
    Philips on every image).  Absent b-values are not enough on their own: an
    old Philips export keeps its b-value only in a private tag that
    de-identification may remove, and its ImageType and ScanningSequence (SE)
    then look like any spin echo.  So the rule needs one more positive fact:

    * a gradient-echo read-out (ScanningSequence GR without SE: BOLD fMRI,
      GRE field maps, B0 maps) -- no clinical diffusion sequence is one;
    * or a Siemens sequence name that is not a diffusion one (Siemens always
      names its diffusion sequences ``*ep_b...`` / ``*re_b...``; a spin-echo
      EPI field map is ``epse2d1``).
    """
    if has_diffusion_encoding(f, record):
        return None
    gradient_echo = "GR" in f.scanning and "SE" not in f.scanning
    manufacturer = str(record.manufacturer or record.header.get("Manufacturer") or "").upper()
    siemens_named = "SIEMENS" in manufacturer and bool(str(record.header.get("SequenceName") or "").strip())
    if gradient_echo or siemens_named:
        return frozenset({L.DWI.value})
    return None


def image_type_adc(f: Facts, record: SeriesRecord) -> Optional[frozenset]:
    """ImageType holds ADC (not eADC, not FA): an ADC map."""
    if "ADC" in f.image_type and not ({"FA", "COLFA", "EADC"} & f.image_type):
        return ALL - {L.ADC.value}
    return None


def image_type_localizer(f: Facts, record: SeriesRecord) -> Optional[frozenset]:
    """ImageType LOCALIZER: a scout, OTHER by definition (even when T2-weighted)."""
    return ALL - {L.OTHER.value} if "LOCALIZER" in f.image_type else None


def image_type_parametric(f: Facts, record: SeriesRecord) -> Optional[frozenset]:
    """ImageType of a parametric map (FA, T1/T2 map, perfusion maps): OTHER by definition."""
    return ALL - {L.OTHER.value} if PARAMETRIC_IMAGE_TYPES & f.image_type else None


def epi_not_dce(f: Facts, record: SeriesRecord) -> Optional[frozenset]:
    """An EPI read-out (ScanningSequence EP) is no T1-weighted DCE gradient echo (DSC perfusion and fMRI are OTHER)."""
    return frozenset({L.DCE.value}) if f.epi else None


def diffusion_weighted(f: Facts, record: SeriesRecord) -> Optional[frozenset]:
    """b-values of 50 and more: diffusion-weighted, so neither a T2w TSE nor a DCE."""
    return frozenset({L.T2w.value, L.DCE.value}) if f.b_max >= 50 else None


#: name -> rule.  Each returns the classes it rules out, or None.
RULES: dict[str, Rule] = {
    "no_diffusion_encoding": no_diffusion_encoding,
    "image_type_adc": image_type_adc,
    "image_type_localizer": image_type_localizer,
    "image_type_parametric": image_type_parametric,
    "epi_not_dce": epi_not_dce,
    "diffusion_weighted": diffusion_weighted,
}


def ruled_out(record: SeriesRecord, facts: Facts, rules: Optional[Sequence[str]] = None) -> dict[str, frozenset]:
    """``{rule name: classes it rules out}`` of the rules that apply to this series."""
    names = RULES if rules is None else [n for n in rules if n in RULES]
    out = {}
    for name in names:
        excluded = RULES[name](facts, record)
        if excluded:
            out[name] = excluded
    return out


def decide(probs: np.ndarray, record: SeriesRecord, facts: Facts,
           rules: Optional[Sequence[str]] = None) -> tuple[np.ndarray, list[str]]:
    """``(probabilities with ruled-out classes at 0, renormalised; names of the rules that changed them)``.

    The input array is not modified.  Rules whose classes already have no
    probability are not named.
    """
    applied = ruled_out(record, facts, rules)
    if not applied:
        return probs, []
    excluded = frozenset().union(*applied.values())
    mask = np.array([c in excluded for c in CLASS_NAMES])
    if mask.all():
        return probs, []
    out = np.where(mask, 0.0, probs).astype(probs.dtype)
    total = float(out.sum())
    if total <= 0:  # the model gave every allowed class 0: share evenly among them
        out = (~mask).astype(probs.dtype) / float((~mask).sum())
    else:
        out = (out / total).astype(probs.dtype)
    changed = [n for n, ex in applied.items() if float(probs[[CLASS_NAMES.index(c) for c in ex]].sum()) > 0]
    return out, changed

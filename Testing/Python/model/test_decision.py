"""Hard evidence in the decision (model/decision.py): each rule rules classes out, on real and built headers."""

from __future__ import annotations

import numpy as np
import pytest

from SeqClassifierLib.inputs.study import SeriesContext, study_contexts
from SeqClassifierLib.labels import CLASS_NAMES, Plane
from SeqClassifierLib.model.decision import RULES, decide, ruled_out
from SeqClassifierLib.model.evidence import Facts
from SeqClassifierLib.records import FrameRef, SeriesRecord


def _rec(image_type=("ORIGINAL", "PRIMARY", "M"), b=(), te=30.0, ss=("EP",), seq="epfid2d1_64", reps=40,
         manufacturer="SIEMENS"):
    frames = [FrameRef(f"/x/{k}_{loc}.dcm", 0, float(loc), None, None) for k in range(reps) for loc in range(10)]
    return SeriesRecord(series_uid="1.2", study_uid="S", patient_id="P", frames=frames, manufacturer=manufacturer,
                        files=[f.path for f in frames], plane=Plane.AXIAL, b_values=list(b),
                        header={"ImageType": list(image_type), "EchoTime": te, "RepetitionTime": 2000.0,
                                "ScanningSequence": list(ss), "SequenceName": seq})


def _p(**kw):
    v = np.array([kw.get(c, 0.0) for c in CLASS_NAMES], dtype=np.float32)
    return v / v.sum()


def test_bold_fmri_called_dwi_becomes_other():
    rec = _rec()
    probs, applied = decide(_p(DWI=0.9, OTHER=0.08, DCE=0.02), rec, Facts.of(rec, None))
    assert applied == ["no_diffusion_encoding", "epi_not_dce"]
    assert CLASS_NAMES[int(np.argmax(probs))] == "OTHER"
    assert probs[CLASS_NAMES.index("DWI")] == 0 and probs.sum() == pytest.approx(1.0)


def test_ge_private_b0_on_fmri_is_no_diffusion_encoding():
    rec = _rec(b=(0.0,), manufacturer="GE MEDICAL SYSTEMS", seq="", ss=("EP", "GR"))
    assert "no_diffusion_encoding" in ruled_out(rec, Facts.of(rec, None))


@pytest.mark.parametrize("kw", [
    dict(b=(0.0, 1000.0)),                                    # b-values of its own
    dict(image_type=("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"), reps=1),  # diffusion ImageType
    dict(seq="*ep_b0", b=(), reps=1),                        # Siemens diffusion sequence name, b=0 volume
    dict(seq="DwiSE", reps=1, manufacturer="Philips"),      # Philips diffusion sequence name
])
def test_any_diffusion_sign_keeps_dwi(kw):
    rec = _rec(**kw)
    assert "no_diffusion_encoding" not in ruled_out(rec, Facts.of(rec, None))


def test_b0_series_linked_to_a_diffusion_series_keeps_dwi():
    b0 = _rec(seq="", reps=1)
    ctx = SeriesContext(available=True, n_study_series=3, diffusion_linked=True, source_b_max=1000.0)
    assert "no_diffusion_encoding" not in ruled_out(b0, Facts.of(b0, ctx))


def test_header_without_image_type_or_scanning_sequence_is_left_to_the_model():
    rec = _rec(image_type=(), ss=(), seq="")
    rec.header.pop("ScanningSequence")
    rec.header.pop("ImageType")
    assert ruled_out(rec, Facts.of(rec, None)) == {}


def test_spin_echo_without_b_values_is_left_to_the_model():
    """An old Philips DWI whose b-value lived in a removed private tag: ImageType M_SE, ScanningSequence SE."""
    rec = _rec(image_type=("ORIGINAL", "SECONDARY", "M_SE", "M", "SE"), ss=("SE",), seq="", reps=1,
               manufacturer="Philips Medical Systems")
    assert "no_diffusion_encoding" not in ruled_out(rec, Facts.of(rec, None))
    # the same spin echo from Siemens names its sequence: a spin-echo EPI field map is no DWI
    se_fmap = _rec(ss=("EP",), seq="epse2d1_86", reps=1)
    assert "no_diffusion_encoding" in ruled_out(se_fmap, Facts.of(se_fmap, None))
    # gradient-echo EPI of any vendor (BOLD): no DWI
    ge_bold = _rec(ss=("EP", "GR"), seq="", manufacturer="GE MEDICAL SYSTEMS")
    assert "no_diffusion_encoding" in ruled_out(ge_bold, Facts.of(ge_bold, None))


def test_image_type_rules_force_their_class():
    adc = _rec(image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"), b=(50.0, 800.0), reps=1)
    probs, applied = decide(_p(DWI=0.7, ADC=0.3), adc, Facts.of(adc, None))
    assert "image_type_adc" in applied and CLASS_NAMES[int(np.argmax(probs))] == "ADC"
    loc = _rec(image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), ss=("SE",), seq="*tse2d1_3", reps=1, te=100.0)
    probs, applied = decide(_p(T2w=0.95, OTHER=0.05), loc, Facts.of(loc, None))
    assert applied == ["image_type_localizer"] and probs[CLASS_NAMES.index("OTHER")] == pytest.approx(1.0)
    fa = _rec(image_type=("DERIVED", "PRIMARY", "DIFFUSION", "FA"), b=(0.0, 1000.0), reps=1)
    probs, applied = decide(_p(DWI=0.6, ADC=0.3, OTHER=0.1), fa, Facts.of(fa, None))
    assert "image_type_parametric" in applied and CLASS_NAMES[int(np.argmax(probs))] == "OTHER"
    eadc = _rec(image_type=("DERIVED", "PRIMARY", "DIFFUSION", "EADC"), b=(50.0, 800.0), reps=1)
    assert "image_type_adc" not in ruled_out(eadc, Facts.of(eadc, None))


def test_contradictory_rules_leave_the_model_probabilities():
    # ImageType ADC (only ADC allowed) and LOCALIZER (only OTHER allowed): nothing is left, so nothing changes
    rec = _rec(image_type=("DERIVED", "ADC", "LOCALIZER"), b=(800.0,), reps=1)
    p = _p(ADC=0.6, OTHER=0.4)
    out, applied = decide(p, rec, Facts.of(rec, None))
    assert applied == [] and np.array_equal(out, p)


def test_rule_that_removes_no_probability_is_not_named():
    rec = _rec()
    p = _p(OTHER=1.0)
    out, applied = decide(p, rec, Facts.of(rec, None))
    assert applied == [] and np.array_equal(out, p)


def test_real_prostatex_and_vendor_series_keep_their_classes(prostatex, vendors):
    """On the real ProstateX and vendor headers no rule removes the reference label of any series."""
    import csv

    from SeqClassifierLib.dicom.discovery import discover_series

    seen = 0
    for root in (prostatex, vendors):
        truth = {r["SeriesInstanceUID"]: r["label"] for r in csv.DictReader(open(root / "labels.csv"))
                 if r["label"] != "?"}
        records = discover_series(root).series
        contexts = study_contexts(records)
        for rec in records:
            if rec.series_uid not in truth:
                continue
            excluded = set().union(*ruled_out(rec, Facts.of(rec, contexts.get(rec.series_uid))).values())
            assert truth[rec.series_uid] not in excluded, (rec.description, rec.files[0], excluded)
            seen += 1
    assert seen >= 25


def test_every_rule_is_documented():
    assert all(fn.__doc__ for fn in RULES.values())

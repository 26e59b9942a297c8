"""Evidence checks: header and study facts a prediction contradicts (model/evidence.py)."""

from __future__ import annotations

from SeqClassifierLib.inputs.study import SeriesContext, study_contexts
from SeqClassifierLib.labels import Plane, SequenceLabel as L
from SeqClassifierLib.model.evidence import CHECKS, evidence_conflicts
from SeqClassifierLib.records import FrameRef, SeriesRecord


def _rec(image_type=("ORIGINAL", "PRIMARY", "M"), b=(), te=80.0, ss=("EP",), seq="", sop="1.2.840.10008.5.1.4.1.1.4",
         reps=1, temporal=1):
    frames = [FrameRef(f"/x/{k}.dcm", 0, float(loc), None, None) for k in range(reps) for loc in range(10)]
    return SeriesRecord(series_uid="1.2", study_uid="S", patient_id="P", sop_class_uid=sop, frames=frames,
                        files=[f.path for f in frames], plane=Plane.AXIAL, b_values=list(b), temporal_positions=temporal,
                        header={"ImageType": list(image_type), "EchoTime": te, "RepetitionTime": 3000.0,
                                "ScanningSequence": list(ss), "SequenceName": seq})


def test_adc_image_type_predicted_dwi_is_a_conflict():
    rec = _rec(("DERIVED", "PRIMARY", "DIFFUSION", "ADC"), b=(50.0, 800.0))
    assert evidence_conflicts(rec, L.DWI) == ["ImageType says ADC"]
    assert evidence_conflicts(rec, L.ADC) == []


def test_b_values_contradict_other_and_t2w():
    rec = _rec(b=(0.0, 1000.0))
    assert evidence_conflicts(rec, L.OTHER) == ["b-values up to 1000 say diffusion-weighted"]
    assert evidence_conflicts(rec, L.DWI) == []


def test_epi_fmri_with_ge_b0_predicted_dwi_or_dce():
    fmri = _rec(b=(0.0,), te=30.0, ss=("EP", "GR"), reps=40)
    dwi = evidence_conflicts(fmri, L.DWI)
    assert len(dwi) == 1 and dwi[0].startswith("no b-value > 0")
    dce = evidence_conflicts(fmri, L.DCE, SeriesContext(available=True, n_study_series=5, repeats=40))
    assert dce == ["DCE predicted, but EPI (fMRI or perfusion EPI, not a T1-weighted dynamic); "
                   "EchoTime 30 ms is too long for a T1-weighted gradient echo"]
    assert evidence_conflicts(fmri, L.OTHER) == []


def test_b0_series_of_a_diffusion_set_predicted_dwi_is_no_conflict():
    b0 = _rec(b=(0.0,))
    ctx = SeriesContext(available=True, n_study_series=3, kind="diffusion", group_size=2)
    assert evidence_conflicts(b0, L.DWI, ctx) == []


def test_dynamic_group_predicted_other_is_a_conflict():
    rec = _rec(te=1.4, ss=("GR",))
    ctx = SeriesContext(available=True, n_study_series=75, kind="dynamic", group_size=70, rank=3)
    assert evidence_conflicts(rec, L.OTHER, ctx) == ["one of 70 time points of a dynamic acquisition"]
    assert evidence_conflicts(rec, L.DCE, ctx) == []
    single = SeriesContext(available=True, n_study_series=10)
    assert evidence_conflicts(rec, L.DCE, single) == [
        "DCE predicted, but a single time point, in no dynamic group of the study"]
    four_d = _rec(te=1.4, ss=("GR",), reps=30)
    assert evidence_conflicts(four_d, L.OTHER, SeriesContext(repeats=30)) == [
        "30 time points of a gradient echo in one series"]


def test_localizer_and_derived_maps():
    assert evidence_conflicts(_rec(("ORIGINAL", "PRIMARY", "LOCALIZER")), L.T2w) == ["ImageType says LOCALIZER"]
    fa = _rec(("DERIVED", "PRIMARY", "FA"), b=(0.0, 1000.0))
    assert evidence_conflicts(fa, L.DWI) == ["ImageType says parametric map (FA)"]
    assert evidence_conflicts(fa, L.OTHER) == []
    sc = _rec(sop="1.2.840.10008.5.1.4.1.1.7")
    assert "Secondary Capture" in evidence_conflicts(sc, L.ADC)[0]


def test_no_label_no_conflict_and_every_check_named():
    assert evidence_conflicts(_rec(b=(1000.0,)), None) == []
    assert set(CHECKS) >= {"adc_image_type", "dynamic_not_dce", "dce_not_dynamic", "dwi_without_diffusion"}


def test_real_prostatex_right_labels_raise_no_conflict(prostatex_discovery, prostatex_labels):
    truth = {row["SeriesInstanceUID"]: L.parse(row["label"]) for row in prostatex_labels}
    ctx = study_contexts(prostatex_discovery.series)
    conflicts = {r.description: evidence_conflicts(r, truth[r.series_uid], ctx[r.key])
                 for r in prostatex_discovery.series}
    assert all(v == [] for v in conflicts.values()), conflicts


def test_t2w_with_short_echo_or_repetition_time_is_a_conflict():
    pd = _rec(te=22.0, ss=("SE",))
    pd.header["RepetitionTime"] = 2300.0
    assert evidence_conflicts(pd, L.T2w) == ["T2w predicted, but EchoTime 22 ms say proton-density or T1 weighting"]
    t1 = _rec(te=15.0, ss=("SE",))
    t1.header["RepetitionTime"] = 500.0
    assert evidence_conflicts(t1, L.T2w) == [
        "T2w predicted, but EchoTime 15 ms and RepetitionTime 500 ms say proton-density or T1 weighting"]
    t2 = _rec(te=102.0, ss=("SE",))
    assert evidence_conflicts(t2, L.T2w) == [] and evidence_conflicts(pd, L.OTHER) == []

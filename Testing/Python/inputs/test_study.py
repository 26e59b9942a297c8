"""Study context: dynamic, flip-angle, diffusion and multi-echo groups from sibling series (inputs/study.py)."""

from __future__ import annotations

import dataclasses

import pytest

from SeqClassifierLib.inputs.attributes import drop_in_study
from SeqClassifierLib.inputs.features import FEATURE_NAMES, extract_features
from SeqClassifierLib.inputs.study import SeriesContext, series_time
from SeqClassifierLib.inputs.study import study_contexts as _keyed_contexts
from SeqClassifierLib.labels import Plane
from SeqClassifierLib.records import FrameRef, SeriesRecord


def _series(uid, number, t, flip: "float | None" = 15.0, te=1.4, tr=4.1, b=(), n_loc=20, reps=1, rows=192, study="S1", normal=(0, 0, 1),
            extra=None):
    frames = [FrameRef(f"/x/{uid}/{k}.dcm", 0, float(loc * 3), b[0] if b else None, None)
              for k in range(reps) for loc in range(n_loc)]
    header = {"ScanningSequence": ["GR"], "EchoTime": te, "RepetitionTime": tr, "FlipAngle": flip,
              "Rows": float(rows), "Columns": float(rows), "PixelSpacing": [1.7, 1.7]}
    if t is not None:
        header["AcquisitionTime"] = t
    header.update(extra or {})
    return SeriesRecord(series_uid=uid, study_uid=study, patient_id="P", series_number=number,
                        files=[f.path for f in frames], frames=frames, plane=Plane.AXIAL, normal=normal,
                        b_values=list(b), header=header)


def study_contexts(records):
    """The contexts by SeriesInstanceUID, for series whose UIDs are unique here (keys checked)."""
    records = list(records)
    ctx = _keyed_contexts(records)
    assert set(ctx) == {r.key for r in records}
    return {key.series_uid: c for key, c in ctx.items()}


def _tm(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def _dce_study(n_points=70, with_times=True, vfa_flips=(2.0, 5.0, 10.0, 15.0), step=8.0):
    """VFA T1 maps, then one series per DCE time point: same geometry, TE and TR, no contrast or timing tags."""
    out = [_series(f"vfa{i}", 10 + i, _tm(36000 + 60 * i) if with_times else None, flip=f)
           for i, f in enumerate(vfa_flips)]
    out += [_series(f"dce{i}", 20 + i, _tm(36600 + step * i) if with_times else None, flip=15.0)
            for i in range(n_points)]
    out.append(_series("t2", 5, _tm(35000), flip=160.0, te=104.0, tr=5660.0, rows=320, n_loc=19,
                       extra={"ScanningSequence": ["SE"]}))
    return out


def test_per_time_point_dce_next_to_vfa_with_same_te_tr():
    recs = _dce_study()
    ctx = study_contexts(recs)
    dce = [ctx[f"dce{i}"] for i in range(70)]
    assert all(c.kind == "dynamic" and c.group_size == 70 for c in dce)
    assert [c.rank for c in dce] == list(range(70))
    assert dce[0].time_step_s == pytest.approx(8.0)
    assert dce[0].group == "dynamic, 70 time points, every 8 s"
    # the VFA series at the DCE's flip angle (15) is minutes before the first time point: not dynamic
    vfa = [ctx[f"vfa{i}"] for i in range(4)]
    assert all(c.kind == "flip_angle" and c.group_size == 4 for c in vfa)
    assert [c.rank for c in vfa] == [0, 1, 2, 3]
    assert ctx["t2"].kind == "" and ctx["t2"].available and ctx["t2"].n_study_series == 75
    # the T1 maps precede the dynamic series of their geometry and sequence -- also when FlipAngle is gone,
    # the one attribute that tells a T1 map from a DCE time point
    assert all(c.dynamic_relation == "before" for c in vfa) and ctx["t2"].dynamic_relation == ""
    stripped = study_contexts(drop_in_study(recs, ["flip_angle"]))
    assert [stripped[f"vfa{i}"].dynamic_relation for i in range(4)] == ["before"] * 4
    assert stripped["vfa0"].kind == "" and stripped["dce0"].kind == "dynamic"
    x = extract_features(recs[10], ctx["dce6"])
    assert x[FEATURE_NAMES.index("ctx:dynamic")] == 1.0 and x[FEATURE_NAMES.index("ctx:flip_set")] == 0.0
    y = extract_features(recs[0], ctx["vfa0"])
    assert y[FEATURE_NAMES.index("ctx:dynamic")] == 0.0 and y[FEATURE_NAMES.index("ctx:flip_set")] == 1.0


def test_dynamic_without_any_time_attribute_ordered_by_series_number():
    recs = _dce_study(n_points=12, with_times=False, vfa_flips=(2.0, 5.0))
    ctx = study_contexts(recs)
    assert all(ctx[f"dce{i}"].kind == "dynamic" and ctx[f"dce{i}"].rank == i for i in range(12))
    assert ctx["dce0"].time_missing and ctx["dce0"].time_step_s is None
    assert ctx["dce0"].group == "dynamic, 12 time points"


def test_repeated_anatomical_scans_minutes_apart_are_not_dynamic():
    recs = [_series(f"t2_{i}", i, _tm(36000 + 240 * i), flip=160, te=104, tr=5660) for i in range(3)]
    ctx = study_contexts(recs)
    assert all(c.kind == "" and c.same_signature == 3 for c in ctx.values())


def test_4d_dce_series_counts_time_points_inside_the_series():
    rec = _series("dce4d", 7, _tm(36000), reps=40, n_loc=16)
    ctx = study_contexts([rec])["dce4d"]
    assert ctx.repeats == 40 and not ctx.available
    assert ctx.note == "no study context: no other series of this study was given"
    x = extract_features(rec, ctx)
    assert x[FEATURE_NAMES.index("num:repeats")] > 1.5 and x[FEATURE_NAMES.index("ctx:available")] == 0.0


def test_diffusion_set_and_linked_adc_without_image_type():
    dwi = _series("dwi", 6, _tm(40000), flip=90, te=63, tr=2700, b=(800.0,), reps=3)
    b0 = _series("b0", 5, _tm(39900), flip=90, te=63, tr=2700, b=(0.0,))
    adc = _series("adc", 7, _tm(40010), flip=90, te=63, tr=2700)  # no b-values, no ImageType: derived by geometry
    ctx = study_contexts([dwi, b0, adc])
    assert ctx["dwi"].kind == "diffusion" and ctx["b0"].kind == "diffusion"
    assert ctx["adc"].diffusion_linked and ctx["adc"].source_b_max == 800.0
    assert ctx["b0"].diffusion_linked  # b = 0 only: no diffusion weighting of its own
    assert not ctx["dwi"].diffusion_linked


def test_multi_echo_set():
    recs = [_series(f"me{i}", i, _tm(36000 + i), flip=20, te=te, tr=40, extra={"ScanningSequence": ["GR"]})
            for i, te in enumerate((4.0, 11.0, 18.0))]
    ctx = study_contexts(recs)
    assert all(c.kind == "multi_echo" and c.group_size == 3 for c in ctx.values())


def test_studies_and_patients_are_kept_apart():
    a = _dce_study(n_points=5, vfa_flips=(2.0, 5.0))
    b = [dataclasses.replace(r, series_uid="B" + r.series_uid, study_uid="S2") for r in a[:4]]
    ctx = study_contexts(a + b)
    assert ctx["dce0"].group_size == 5 and ctx["dce0"].n_study_series == len(a)
    assert ctx["Bdce0"].kind == "" and ctx["Bdce0"].n_study_series == 4


@pytest.mark.parametrize("value, seconds", [("101530.5", 36930.5), ("10:15:30", 36930.0), ("1015", 36900.0),
                                            ("", None), ("99", None), ("ab", None)])
def test_time_parsing(value, seconds):
    rec = _series("x", 1, value)
    assert series_time(rec) == (pytest.approx(seconds) if seconds is not None else None)


def test_real_prostatex_context(prostatex_discovery):
    ctx = study_contexts(prostatex_discovery.series)
    by_desc = {}
    for r in prostatex_discovery.series:
        by_desc.setdefault(r.description, []).append(ctx[r.series_uid])
    assert {c.kind for c in by_desc["ep2d_diff_tra_DYNDIST"]} == {"diffusion"}
    assert {c.kind for c in by_desc["t2_tse_tra"]} == {""}
    assert all(c.available for cs in by_desc.values() for c in cs)
    assert not any(c.kind == "dynamic" for cs in by_desc.values() for c in cs)
    assert isinstance(next(iter(ctx.values())), SeriesContext)


def test_t1_maps_without_flip_angles_or_times_are_not_dynamic():
    """Two T1 maps and a PD reference a minute apart, FlipAngle stripped: a short set, not a dynamic series;
    next to a 4D DCE series of the same geometry and sequence they read as acquired before it."""
    maps = [_series(f"m{i}", 10 + i, _tm(36000 + 60 * i), flip=None) for i in range(3)]
    dce4d = _series("dce4d", 20, _tm(36300), flip=None, reps=40)
    ctx = study_contexts(maps + [dce4d])
    assert all(ctx[f"m{i}"].kind == "" and ctx[f"m{i}"].dynamic_relation == "before" for i in range(3))
    untimed = [_series(f"u{i}", 10 + i, None, flip=None) for i in range(4)]
    assert all(c.kind == "" for c in study_contexts(untimed).values())

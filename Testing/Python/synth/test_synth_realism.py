"""Realistic header gaps of the synthetic generator (``realism=True``): headers, labels, names, rates.

Studies are generated at ``size="tiny"``; where a test needs one protocol for
sure it pins the relevant rates of :data:`realism.RATES` to 0 or 1 (the
planners read that dict at call time), so every test sees its case.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from SeqClassifierLib.labels import SequenceLabel
from SeqClassifierLib.synth import LABELS_COLUMNS, generate_studies
from SeqClassifierLib.synth import realism
from SeqClassifierLib.synth.base import _size_spec
from SeqClassifierLib.synth.neuro import _plan_neuro_study
from SeqClassifierLib.synth.phantom import _prostate_center
from SeqClassifierLib.synth.prostate_plan import _plan_study

SC = "1.2.840.10008.5.1.4.1.1.7"
DCE_ATTRS = ("ContrastBolusAgent", "ContrastBolusRoute", "TriggerTime", "TemporalPositionIdentifier",
             "NumberOfTemporalPositions")
CLEAN = dict(name_blank=0.0, name_uninformative=0.0, seqname_drop=0.0, imagetype_short=0.0, scanseq_drop=0.0,
             private_strip=0.0, name_vocabulary=0.0)


def generate(tmp_path_factory, name: str, rates: dict[str, float], **kw):
    out = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**CLEAN, **rates}.items():
            mp.setitem(realism.RATES, key, value)
        series = generate_studies(out, size="tiny", realism=True, **kw)
    return out, series


def files(root: Path, s) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted((root / s.series_dir).glob("*.dcm"))]


@pytest.fixture(scope="module")
def dce_bare(tmp_path_factory):
    """Siemens prostate: per-time-point DCE without contrast/timing attributes, VFA maps, post-contrast T1."""
    return generate(tmp_path_factory, "dce_bare",
                    dict(dce_per_timepoint=1.0, dce_no_contrast_timing=1.0, dce_acqnum_const=1.0, t1_post=1.0,
                         t1_post_agent=1.0), studies=1, seed=4, vendors=["SIEMENS"])


@pytest.fixture(scope="module")
def neuro_ge(tmp_path_factory):
    """GE neuro study with every realism extra: DTI b0 series, SE-EPI field maps, multiband fMRI, SC map."""
    return generate(tmp_path_factory, "neuro_ge",
                    dict(dti_b0_series=1.0, se_fieldmap=1.0, fmri_multiband=1.0, sc_colour_map=1.0),
                    studies=1, seed=2, vendors=["GE"], kinds=("neuro",))


def test_per_timepoint_dce_without_contrast_or_timing_beside_vfa_maps(dce_bare):
    out, series = dce_bare
    dce = [s for s in series if s.label == SequenceLabel.DCE]
    vfa = [s for s in series if s.variant == "t1_vfa"]
    assert len(dce) >= 4 and all(s.variant == "dce_per_timepoint" for s in dce)
    assert {s.family for s in dce} == {"SIEMENS/dce_per_timepoint_no_timing"}
    assert len(vfa) == 2 and all(s.label == SequenceLabel.OTHER for s in vfa)
    dce_hdr = [files(out, s)[0] for s in dce]
    vfa_hdr = [files(out, s)[0] for s in vfa]
    for ds in dce_hdr:
        assert not [a for a in DCE_ATTRS if a in ds], ds.SeriesDescription
        assert ds.AcquisitionNumber == 1
    te_tr = {(float(ds.EchoTime), float(ds.RepetitionTime)) for ds in dce_hdr + vfa_hdr}
    assert len(te_tr) == 1                                   # same TE and TR as the T1 maps
    assert len({float(ds.FlipAngle) for ds in vfa_hdr}) == 2  # the maps differ by flip angle
    assert len({ds.AcquisitionTime for ds in dce_hdr}) == len(dce)   # time points differ by time
    assert len({ds.ImageOrientationPatient[4] for ds in dce_hdr + vfa_hdr}) == 1


def test_static_post_contrast_t1_is_other_even_with_an_agent(dce_bare):
    out, series = dce_bare
    post = [s for s in series if s.variant == "t1_post"]
    assert len(post) == 1 and post[0].label == SequenceLabel.OTHER
    ds = files(out, post[0])[0]
    assert ds.ContrastBolusAgent and "TriggerTime" not in ds


def test_one_4d_dce_series(tmp_path_factory):
    out, series = generate(tmp_path_factory, "dce4d", dict(dce_per_timepoint=0.0, dce_no_contrast_timing=0.0,
                                                           dce_agent_drop=1.0), studies=1, seed=5, vendors=["GE"])
    dce = [s for s in series if s.label == SequenceLabel.DCE]
    assert len(dce) == 1 and dce[0].family == "GE/dce_4d"
    hdr = files(out, dce[0])
    positions = Counter(tuple(ds.ImagePositionPatient) for ds in hdr)
    n_t = int(hdr[0].NumberOfTemporalPositions)
    assert n_t >= 4 and set(positions.values()) == {n_t}
    assert {int(ds.TemporalPositionIdentifier) for ds in hdr} == set(range(1, n_t + 1))
    assert not any("ContrastBolusAgent" in ds for ds in hdr)   # agent dropped, timing kept


def test_ge_fmri_with_private_b0_is_other(neuro_ge):
    out, series = neuro_ge
    fmri = [s for s in series if s.family in ("GE/fmri_epi", "GE/fmri_multiband")]
    assert len(fmri) == 2 and all(s.label == SequenceLabel.OTHER for s in fmri)
    for s in fmri:
        ds = files(out, s)[0]
        blk = ds.private_block(0x0043, "GEMS_PARM_01")
        assert int(blk[0x39].value[0]) == 1_000_000_000        # b = 0
        assert "DiffusionBValue" not in ds and ds.ScanningSequence == "EP"
    mb = next(s for s in fmri if s.family == "GE/fmri_multiband")
    single = next(s for s in fmri if s.family == "GE/fmri_epi")
    assert mb.n_files > single.n_files


def test_ge_spin_echo_epi_field_maps_are_other(neuro_ge):
    out, series = neuro_ge
    fm = [s for s in series if s.variant == "se_epi_fieldmap"]
    assert len(fm) == 2 and all(s.label == SequenceLabel.OTHER for s in fm)
    ds = files(out, fm[0])[0]
    assert list(ds.ScanningSequence) == ["EP", "SE"]
    assert int(ds.private_block(0x0043, "GEMS_PARM_01")[0x39].value[0]) == 1_000_000_000


def test_dti_b0_series_is_dwi(neuro_ge):
    out, series = neuro_ge
    b0 = [s for s in series if s.variant == "dti_b0"]
    assert len(b0) == 1 and b0[0].label == SequenceLabel.DWI
    for ds in files(out, b0[0]):
        assert int(ds.private_block(0x0043, "GEMS_PARM_01")[0x39].value[0]) == 1_000_000_000


def test_secondary_capture_colour_map_is_other(neuro_ge):
    out, series = neuro_ge
    sc = [s for s in series if s.variant == "sc_colour_map"]
    assert len(sc) == 1 and sc[0].label == SequenceLabel.OTHER
    hdr = files(out, sc[0])
    ds = hdr[0]
    assert ds.SOPClassUID == SC and ds.file_meta.MediaStorageSOPClassUID == SC
    assert ds.Modality in ("MR", "OT") and ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    rgb = np.stack([d.pixel_array for d in hdr])
    assert rgb.shape[-1] == 3 and rgb.dtype == np.uint8
    assert (rgb[..., 0] != rgb[..., 2]).any()                 # colour, not grey


def test_names_come_from_the_vocabulary_table(tmp_path_factory):
    out, series = generate(tmp_path_factory, "vocab", dict(name_vocabulary=1.0), studies=3, seed=6)
    vocab = realism.vocabulary()
    checked = 0
    for s in series:
        if s.variant in ("t2_tra", "t2_tra_tilted", "t2_sag", "t2_cor", "dwi_multib", "dwi_calc_highb", "adc",
                         "philips_enhanced"):
            names = {n.replace("{tt}", "30.0") for n, _ in vocab[s.vendor][s.label.value]}
            assert s.description in names, (s.vendor, s.label, s.description)
            checked += 1
    assert checked >= 12
    for lab in ("T2w", "DWI", "ADC", "DCE", "OTHER"):      # the table covers every class of Siemens
        assert vocab["SIEMENS"][lab]


def test_labels_csv_has_the_family_column(dce_bare):
    out, series = dce_bare
    with open(out / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == LABELS_COLUMNS and LABELS_COLUMNS[-1] == "family"
    by_dir = {r["series_dir"]: r for r in rows}
    for s in series:
        assert by_dir[s.series_dir]["family"] == s.family and s.family.startswith("SIEMENS/")
        assert by_dir[s.series_dir]["label"] == s.label.value


def _observed_rates(n_studies: int) -> tuple[Counter, Counter, int, int]:
    spec = _size_spec("tiny")
    per_series, per_study = Counter(), Counter()
    n_series = 0
    for i in range(n_studies):
        vendor = ("SIEMENS", "GE", "PHILIPS")[i % 3]
        plan = _plan_study(11, i, vendor, i // 3, spec, _prostate_center(11, i), realism=True)
        drops = [sp.params["drops"] for sp in plan.series if not sp.misleading]
        n_series += len(drops)
        for d in drops:
            for group in ("seqname", "imagetype_short", "scanseq"):
                per_series[group] += group in d
        per_study["private"] += "private" in plan.series[0].params["drops"]
        dce = [sp for sp in plan.series if sp.kind == "dce"]
        per_study["dce_no_timing"] += "timing" in dce[0].params["drops"]
        per_study["per_timepoint"] += len(dce) > 1
        per_study["t1_post"] += any(sp.kind == "t1post" for sp in plan.series)
    return per_series, per_study, n_series, n_studies


def test_drop_rates_match_the_documented_rates():
    per_series, per_study, n_series, n_studies = _observed_rates(240)
    R = realism.RATES
    assert n_series > 3000
    for group, rate in (("seqname", R["seqname_drop"]), ("imagetype_short", R["imagetype_short"]),
                        ("scanseq", R["scanseq_drop"])):
        assert abs(per_series[group] / n_series - rate) < 0.03, group
    for key, rate in (("private", R["private_strip"]), ("dce_no_timing", R["dce_no_contrast_timing"]),
                      ("per_timepoint", R["dce_per_timepoint"]), ("t1_post", R["t1_post"])):
        assert abs(per_study[key] / n_studies - rate) < 0.09, key


def test_realism_off_keeps_headers_complete(tmp_path):
    series = generate_studies(tmp_path, studies=1, seed=4, size="tiny", vendors=["SIEMENS"])
    dce = [s for s in series if s.label == SequenceLabel.DCE]
    ds = pydicom.dcmread(next((tmp_path / dce[0].series_dir).glob("*.dcm")))
    assert ds.ContrastBolusAgent and "TriggerTime" in ds


def test_neuro_plans_are_cheap_and_keep_labels():
    plan = _plan_neuro_study(3, 0, "PHILIPS", 0, "tiny", realism=True)
    labels = {sp.label for sp in plan.series}
    assert labels == {SequenceLabel.T2w, SequenceLabel.DWI, SequenceLabel.ADC, SequenceLabel.OTHER}

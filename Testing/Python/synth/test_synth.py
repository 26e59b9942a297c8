"""Synthetic study generator: files, labels, vendor headers, geometry and contrast.

Everything is generated at ``size="tiny"`` into pytest's temporary folders.
Contrast checks use the generator's own ground truth: the phantom of a study
(:func:`study_phantom`) tells which tissue each written pixel shows, from the
pixel's patient position computed from the file's geometry -- so they also
check that the geometry headers match the pixel content.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest

from SeqClassifierLib.labels import Plane, SequenceLabel
from SeqClassifierLib.synth import (LABELS_COLUMNS, SynthSeries, Tissue, generate_studies,
                                    study_phantom)

SEED = 0
MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


# -----------------------------------------------------------------------------
# Fixtures and helpers
# -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """One tiny study per vendor (Siemens, GE, Philips), seed 0."""
    out = tmp_path_factory.mktemp("synth3")
    calls = []
    series = generate_studies(out, studies=3, seed=SEED, size="tiny",
                              progress=lambda done, total: calls.append((done, total)))
    return out, series, calls


@pytest.fixture(scope="module")
def philips2(tmp_path_factory):
    """Two Philips studies: the first stores its DWI enhanced, the second classic."""
    out = tmp_path_factory.mktemp("philips2")
    return out, generate_studies(out, studies=2, seed=SEED, size="tiny", vendors=["PHILIPS"])


def files_of(root: Path, s: SynthSeries) -> list[Path]:
    return sorted((root / s.series_dir).glob("*.dcm"))


def study_index(s: SynthSeries) -> int:
    return int(s.patient_id.rsplit("-", 1)[1]) - 1


def phantom_of(s: SynthSeries, seed: int = SEED):
    return study_phantom(seed, study_index(s), "tiny", s.vendor)


def pixel_positions(ipp, iop, ps, rows, cols) -> np.ndarray:
    r, c = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    i = np.arange(rows)[:, None, None]
    j = np.arange(cols)[None, :, None]
    return np.asarray(ipp, float) + j * float(ps[1]) * r + i * float(ps[0]) * c


def frames(path: Path):
    """(image in physical units, ipp, iop, pixel spacing, b-value, temporal index) per 2D frame."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.float64)
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        iop = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
        ps = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
        for k, g in enumerate(ds.PerFrameFunctionalGroupsSequence):
            pvt = g.PixelValueTransformationSequence[0]
            img = arr[k] * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
            b = float(g.MRDiffusionSequence[0].DiffusionBValue) if "MRDiffusionSequence" in g else None
            yield img, [float(v) for v in g.PlanePositionSequence[0].ImagePositionPatient], iop, ps, b, \
                int(g.FrameContentSequence[0].TemporalPositionIndex)
        return
    img = arr * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
    b = None
    if "DiffusionBValue" in ds:
        b = float(ds.DiffusionBValue)
    elif (0x0019, 0x100C) in ds:
        b = float(ds[0x0019, 0x100C].value)
    elif (0x0043, 0x1039) in ds:
        b = float(ds[0x0043, 0x1039].value[0]) - 1e9
    elif (0x2001, 0x1003) in ds:
        b = float(ds[0x2001, 0x1003].value)
    tp = int(ds.TemporalPositionIdentifier) if "TemporalPositionIdentifier" in ds else int(ds.AcquisitionNumber)
    yield img, [float(v) for v in ds.ImagePositionPatient], [float(v) for v in ds.ImageOrientationPatient], \
        [float(v) for v in ds.PixelSpacing], b, tp


def tissue_means(root: Path, s: SynthSeries, tissues, key=lambda b, tp: b):
    """Mean physical pixel value per (key, tissue) over all frames of a series.

    ``tissues`` holds :class:`Tissue` members or tuples of them (a tuple is one
    region, keyed by its first member).  Only "core" pixels count: the region
    also covers the pixel one step away in every in-plane direction.
    """
    ph = phantom_of(s)
    acc = defaultdict(list)
    for path in files_of(root, s):
        for img, ipp, iop, ps, b, tp in frames(path):
            lab = ph.label_at(pixel_positions(ipp, iop, ps, *img.shape))
            for t in tissues:
                group = t if isinstance(t, tuple) else (t,)
                inside = np.isin(lab, [int(g) for g in group])
                core = inside.copy()
                for axis in (0, 1):
                    for shift in (1, -1):
                        core &= np.roll(inside, shift, axis)
                if core.any():
                    acc[(key(b, tp), group[0])].append(img[core])
    return {k: float(np.concatenate(v).mean()) for k, v in acc.items()}


def normal_of(iop) -> np.ndarray:
    n = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return n / np.linalg.norm(n)


def angle_deg(n, axis) -> float:
    return math.degrees(math.acos(min(1.0, abs(float(np.dot(n, axis))))))


def read_labels(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -----------------------------------------------------------------------------
# Layout and labels
# -----------------------------------------------------------------------------

def test_labels_csv_matches_the_written_files(three):
    root, series, _ = three
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == LABELS_COLUMNS == ("series_dir", "SeriesInstanceUID", "label", "SeriesDescription", "note",
                                               "family")
    rows = read_labels(root)
    assert [r["SeriesInstanceUID"] for r in rows] == [s.series_uid for s in series]
    assert len({s.series_uid for s in series}) == len(series)
    for row, s in zip(rows, series):
        assert row["series_dir"] == s.series_dir
        assert row["label"] == s.label.value
        assert SequenceLabel.parse(row["label"]) is s.label
        assert row["SeriesDescription"] == s.description
        assert row["note"].startswith("synthetic")
        assert row["family"] == s.family and s.family.split("/", 1)[0] == s.vendor
        parts = s.series_dir.split("/")
        assert parts[0] == s.patient_id and len(parts) == 3 and len(parts[1]) == 8 and parts[1].isdigit()
        assert parts[2].startswith(f"{s.series_number}-")
        paths = files_of(root, s)
        assert len(paths) == s.n_files > 0
        assert [p.name for p in paths] == [f"IM_{i:04d}.dcm" for i in range(1, len(paths) + 1)]
        for p in paths:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            assert ds.SeriesInstanceUID == s.series_uid
            assert ds.StudyInstanceUID == s.study_uid
            assert ds.PatientID == s.patient_id
            assert int(ds.SeriesNumber) == s.series_number
            assert ds.SeriesDescription == s.description


def test_every_study_has_all_five_labels_and_the_protocol(three):
    root, series, _ = three
    by_patient = defaultdict(list)
    for s in series:
        by_patient[s.patient_id].append(s)
    assert [s.vendor for s in series if s.series_number == min(x.series_number for x in by_patient[s.patient_id])] \
        == ["SIEMENS", "GE", "PHILIPS"]
    for pid, ss in by_patient.items():
        assert {s.label for s in ss} == set(SequenceLabel), pid
        assert {s.plane for s in ss if s.label is SequenceLabel.T2w} == {Plane.AXIAL, Plane.SAGITTAL, Plane.CORONAL}
        assert sum(s.label is SequenceLabel.ADC for s in ss) == 1
        assert sum(s.label is SequenceLabel.DWI for s in ss) >= 2           # acquired + calculated
        assert sum(s.label is SequenceLabel.OTHER for s in ss) >= 4         # localizer, 2 VFA, PD ref
        assert len({s.study_uid for s in ss}) == 1
        assert len({s.series_number for s in ss}) == len(ss)
    variants = {s.variant for s in series}
    assert {"dce_4d", "dce_per_timepoint", "mosaic", "philips_enhanced", "dwi_calc_highb"} <= variants


def test_localizer_has_three_orientations_and_is_other(three):
    root, series, _ = three
    locs = [s for s in series if "localizer" in read_note(root, s)]
    assert len(locs) == 3
    for s in locs:
        assert s.label is SequenceLabel.OTHER
        iops = [tuple(round(float(v), 3) for v in pydicom.dcmread(p, stop_before_pixels=True).ImageOrientationPatient)
                for p in files_of(root, s)]
        counts = defaultdict(int)
        for iop in iops:
            counts[iop] += 1
        assert len(counts) == 3
        majority = max(counts, key=counts.get)
        assert majority == iops[0]
        n = normal_of(majority)
        assert s.plane is (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)[int(np.argmax(np.abs(n)))]
        if s.vendor == "SIEMENS":  # Siemens localizers are T2-weighted (HASTE) spin echo
            ds = pydicom.dcmread(files_of(root, s)[0], stop_before_pixels=True)
            assert ds.ScanningSequence == "SE" and float(ds.EchoTime) > 80


def read_note(root: Path, s: SynthSeries) -> str:
    return next(r["note"] for r in read_labels(root) if r["SeriesInstanceUID"] == s.series_uid)


def test_dicom_basics_and_private_creators(three):
    root, series, _ = three
    for s in series:
        for p in files_of(root, s)[:2]:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert ds.SOPClassUID in (MR, ENHANCED_MR)
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.Modality == "MR" and ds.BitsAllocated == 16
            assert ds.Manufacturer.upper().startswith(s.vendor)
            for key in ("ManufacturerModelName", "StudyDate", "PatientName", "ProtocolName", "ImageType",
                        "MRAcquisitionType", "Rows", "Columns", "FrameOfReferenceUID"):
                assert key in ds, (s.series_dir, key)
            if ds.SOPClassUID == MR:
                for key in ("ScanningSequence", "SequenceVariant", "SequenceName", "EchoTime", "RepetitionTime",
                            "FlipAngle", "SliceThickness", "PixelSpacing", "ImagePositionPatient",
                            "ImageOrientationPatient", "SliceLocation", "InstanceNumber"):
                    assert key in ds, (s.series_dir, key)
            for elem in ds:
                if elem.tag.is_private and elem.tag.element >= 0x1000:
                    creator = (elem.tag.group, elem.tag.element >> 8)
                    assert creator in ds and ds[creator].VR == "LO", (s.series_dir, elem.tag)


def test_progress_reports_every_series(three):
    _, series, calls = three
    assert calls == [(i, len(series)) for i in range(1, len(series) + 1)]


# -----------------------------------------------------------------------------
# Determinism and the output folder
# -----------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_studies(tmp_path / "a", studies=1, seed=7, size="tiny")
    b = generate_studies(tmp_path / "b", studies=1, seed=7, size="tiny")
    c = generate_studies(tmp_path / "c", studies=1, seed=8, size="tiny")
    assert a == b
    assert [s.series_uid for s in a] == [s.series_uid for s in b]
    da, db = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert da == db and len(da) == sum(s.n_files for s in a) + 1
    dwi = next(s for s in a if s.variant == "dwi_multib" or s.label is SequenceLabel.DWI)
    one = files_of(tmp_path / "a", dwi)[0]
    assert one.read_bytes() == (tmp_path / "b" / one.relative_to(tmp_path / "a")).read_bytes()
    assert not {s.series_uid for s in a} & {s.series_uid for s in c}
    assert a[0].study_uid != c[0].study_uid
    pa = pydicom.dcmread(files_of(tmp_path / "a", a[1])[0]).pixel_array
    pc = pydicom.dcmread(files_of(tmp_path / "c", c[1])[0]).pixel_array
    assert pa.shape != pc.shape or not np.array_equal(pa, pc)


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate_studies(foreign, size="tiny")
    # A labels.csv with the right columns but not written by the generator.
    other = tmp_path / "other"
    other.mkdir()
    (other / "labels.csv").write_text("series_dir,SeriesInstanceUID,label,SeriesDescription,note\r\n"
                                      "a/b,1.2.3,T2w,t2_tse_tra,T2 turbo spin echo\r\n")
    with pytest.raises(ValueError):
        generate_studies(other, size="tiny")
    assert sorted(p.name for p in other.iterdir()) == ["labels.csv"]
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_adds_to_its_own_folder_and_keeps_earlier_rows(tmp_path):
    out = tmp_path / "out"
    first = generate_studies(out, studies=1, seed=3, size="tiny", vendors=["GE"])
    second = generate_studies(out, studies=1, seed=4, size="tiny", vendors=["GE"])
    rows = read_labels(out)
    assert {r["SeriesInstanceUID"] for r in rows} == {s.series_uid for s in first + second}
    again = generate_studies(out, studies=1, seed=4, size="tiny", vendors=["GE"])
    assert again == second and len(read_labels(out)) == len(rows)


@pytest.mark.parametrize("kwargs", [dict(size="huge"), dict(vendors=["HITACHI"]), dict(seed=-1),
                                    dict(studies=0), dict(vendors=[])])
def test_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_studies(tmp_path / "x", **kwargs)


# -----------------------------------------------------------------------------
# Vendor headers
# -----------------------------------------------------------------------------

def acquired_dwi(root: Path, series, vendor: str, study: int = None) -> SynthSeries:
    """The acquired multi-b DWI series of a vendor (found by its note, whatever its description)."""
    return next(s for s in series if s.vendor == vendor and s.label is SequenceLabel.DWI
                and (study is None or study_index(s) == study)
                and "; b=" in read_note(root, s))


def calculated_dwi(root: Path, series, vendor: str) -> SynthSeries:
    return next(s for s in series if s.vendor == vendor and "calculated b=" in read_note(root, s))


def test_siemens_b_values_in_private_tag(three):
    root, series, _ = three
    s = acquired_dwi(root, series, "SIEMENS")
    bs = set()
    for p in files_of(root, s):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert ds[0x0019, 0x0010].value == "SIEMENS MR HEADER"
        elem = ds[0x0019, 0x100C]
        assert elem.VR in ("IS", "DS")
        b = float(elem.value)
        assert ds.SequenceName == f"*ep_b{int(b)}t"
        assert list(ds.ImageType)[:4] == ["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"]
        bs.add(b)
    assert len(bs) >= 2 and min(bs) <= 100 and max(bs) >= 800
    calc = calculated_dwi(root, series, "SIEMENS")
    ds = pydicom.dcmread(files_of(root, calc)[0], stop_before_pixels=True)
    assert list(ds.ImageType)[:4] == ["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"]
    assert float(ds[0x0019, 0x100C].value) >= 1400


def test_ge_b_values_in_private_tag(three):
    root, series, _ = three
    s = acquired_dwi(root, series, "GE")
    bs = set()
    for p in files_of(root, s):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert ds[0x0043, 0x0010].value == "GEMS_PARM_01"
        elem = ds[0x0043, 0x1039]
        assert elem.VR == "IS" and len(elem.value) == 4
        assert int(elem.value[0]) >= 1_000_000_000
        bs.add(int(elem.value[0]) - 1_000_000_000)
    assert len(bs) >= 2 and min(bs) <= 100 and max(bs) >= 800


def test_philips_b_values_in_private_tag(philips2):
    root, series = philips2
    acquired = acquired_dwi(root, series, "PHILIPS", study=1)   # study 0 stores its DWI enhanced
    assert acquired.n_files > 1
    bs = set()
    for p in files_of(root, acquired):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert ds[0x2001, 0x0010].value == "Philips Imaging DD 001"
        elem = ds[0x2001, 0x1003]
        assert elem.VR == "FL"
        assert float(ds.DiffusionBValue) == pytest.approx(float(elem.value))   # standard tag too
        bs.add(float(elem.value))
    assert len(bs) >= 2 and min(bs) == 0 and max(bs) >= 800


def test_philips_enhanced_dwi_is_one_multiframe_file(philips2):
    root, series = philips2
    s = acquired_dwi(root, series, "PHILIPS", study=0)
    assert s.n_files == 1
    path, = files_of(root, s)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == ENHANCED_MR
    n = int(ds.NumberOfFrames)
    per = ds.PerFrameFunctionalGroupsSequence
    assert n == len(per) > 1
    assert ds.pixel_array.shape == (n, ds.Rows, ds.Columns)
    shared = ds.SharedFunctionalGroupsSequence[0]
    for key in ("PlaneOrientationSequence", "PixelMeasuresSequence", "MRTimingAndRelatedParametersSequence"):
        assert key in shared
    bs, positions = [], set()
    for g in per:
        bs.append(float(g.MRDiffusionSequence[0].DiffusionBValue))
        fc = g.FrameContentSequence[0]
        assert "TemporalPositionIndex" in fc and int(fc.InStackPositionNumber) >= 1
        positions.add(tuple(float(v) for v in g.PlanePositionSequence[0].ImagePositionPatient))
        assert float(g.PixelValueTransformationSequence[0].RescaleSlope) > 1.0
    assert len(set(bs)) >= 2 and min(bs) == 0.0
    assert len(positions) == n // len(set(bs))


def test_siemens_mosaic(three):
    root, series, _ = three
    s = next(s for s in series if s.variant == "mosaic")
    assert s.vendor == "SIEMENS" and s.label is SequenceLabel.DWI
    dwi = acquired_dwi(root, series, "SIEMENS")
    tile = pydicom.dcmread(files_of(root, dwi)[0], stop_before_pixels=True)
    n_slices = dwi.n_files // len({float(pydicom.dcmread(p, stop_before_pixels=True)[0x0019, 0x100C].value)
                                    for p in files_of(root, dwi)})
    for p in files_of(root, s):
        ds = pydicom.dcmread(p)
        assert "MOSAIC" in ds.ImageType
        elem = ds[0x0019, 0x100A]
        assert elem.VR == "US" and elem.value == n_slices
        grid = math.ceil(math.sqrt(n_slices))
        assert (ds.Rows, ds.Columns) == (grid * tile.Rows, grid * tile.Columns)
        px = ds.pixel_array
        tiles = [px[r * tile.Rows:(r + 1) * tile.Rows, c * tile.Columns:(c + 1) * tile.Columns]
                 for r in range(grid) for c in range(grid)]
        assert all(t.max() > 0 for t in tiles[:n_slices]) and all(t.max() == 0 for t in tiles[n_slices:])


# -----------------------------------------------------------------------------
# Geometry
# -----------------------------------------------------------------------------

def image_orientation(path: Path) -> list[float]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if "SharedFunctionalGroupsSequence" in ds:
        ds = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    return [float(v) for v in ds.ImageOrientationPatient]


@pytest.mark.parametrize("fixture", ["three", "philips2"])
def test_plane_orientations_and_slice_positions(fixture, request):
    root, series = request.getfixturevalue(fixture)[:2]
    tilted = 0
    for s in series:
        if s.label is not SequenceLabel.T2w:
            continue
        paths = files_of(root, s)
        n = normal_of(image_orientation(paths[0]))
        axis = {Plane.AXIAL: (0, 0, 1), Plane.SAGITTAL: (1, 0, 0), Plane.CORONAL: (0, 1, 0)}[s.plane]
        angle = angle_deg(n, axis)
        assert angle < {Plane.AXIAL: 25.0, Plane.SAGITTAL: 5.0, Plane.CORONAL: 25.0}[s.plane], (s.series_dir, angle)
        if s.variant == "t2_tra_tilted":      # tilted 10-20 degrees about left-right, still axial
            assert 10.0 <= angle <= 20.0 and abs(n[0]) < 1e-6
            tilted += 1
        if len(paths) < 2:
            continue
        dss = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
        ipps = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
        steps = np.diff(ipps, axis=0)
        along = steps @ n
        assert np.allclose(np.abs(along), float(dss[0].SpacingBetweenSlices), atol=1e-3)
        assert np.all(np.sign(along) == np.sign(along[0]))
        assert np.allclose(steps - np.outer(along, n), 0, atol=1e-3)     # no in-plane drift
        for d, p in zip(dss, ipps):
            assert float(d.SliceLocation) == pytest.approx(float(p @ n), abs=1e-3)
    if fixture == "philips2":
        assert tilted >= 1


def test_discovery_reads_what_was_written(three):
    from SeqClassifierLib.dicom.discovery import discover_series

    root, series, _ = three
    found = discover_series(root).by_uid()
    assert set(found) == {s.series_uid for s in series}
    for s in series:
        rec = found[s.series_uid]
        assert rec.plane is s.plane, s.series_dir
        if s.label is SequenceLabel.DWI and s.variant != "dwi_calc_highb":
            assert len(rec.b_values) >= 2 or "calculated" in read_note(root, s), s.series_dir
        if s.variant == "dce_4d":
            assert rec.temporal_positions > 1


# -----------------------------------------------------------------------------
# Contrast: the label is the truth of the content
# -----------------------------------------------------------------------------

def test_t2_fluid_brighter_than_muscle(three):
    root, series, _ = three
    for s in series:
        if s.label is not SequenceLabel.T2w:
            continue
        m = tissue_means(root, s, (Tissue.URINE, Tissue.MUSCLE, Tissue.FAT))
        urine, muscle = m.get((None, Tissue.URINE)), m.get((None, Tissue.MUSCLE))
        assert muscle is not None, s.series_dir
        if urine is not None:
            assert urine > 2.0 * muscle, (s.series_dir, urine, muscle)
        assert m[(None, Tissue.FAT)] > 1.5 * muscle


def test_dwi_lesion_to_prostate_ratio_rises_with_b(three):
    root, series, _ = three
    checked = 0
    for pid in {s.patient_id for s in series}:
        study = [s for s in series if s.patient_id == pid]
        if not phantom_of(study[0]).has_lesion:
            continue
        ratios = {}
        for s in study:
            if s.label is not SequenceLabel.DWI or s.variant == "mosaic":
                continue
            m = tissue_means(root, s, (Tissue.LESION, Tissue.PERIPHERAL_ZONE, Tissue.TRANSITION_ZONE))
            for (b, t), v in m.items():
                if t is Tissue.LESION and (b, Tissue.PERIPHERAL_ZONE) in m:
                    ratios[b] = v / m[(b, Tissue.PERIPHERAL_ZONE)]
        bs = sorted(ratios)
        assert len(bs) >= 3, (pid, ratios)
        assert all(ratios[b1] < ratios[b2] for b1, b2 in zip(bs, bs[1:])), (pid, ratios)
        assert ratios[bs[0]] < 1.0 < ratios[bs[-1]]       # dark at low b, bright at high b
        checked += 1
    assert checked >= 1


def test_adc_maps_in_physical_units(three):
    root, series, _ = three
    for s in series:
        if s.label is not SequenceLabel.ADC:
            continue
        ds = pydicom.dcmread(files_of(root, s)[0], stop_before_pixels=True)
        assert "ADC" in list(ds.ImageType)
        gland = (Tissue.PERIPHERAL_ZONE, Tissue.TRANSITION_ZONE)
        m = tissue_means(root, s, (Tissue.URINE, gland, Tissue.LESION),
                         key=lambda b, tp: None)   # Siemens/GE ADC maps carry the top b-value too
        assert m[(None, Tissue.URINE)] > 2500, s.series_dir                 # free water ~3000
        assert 1000 < m[(None, Tissue.PERIPHERAL_ZONE)] < 1800, (s.series_dir, m)
        if (None, Tissue.LESION) in m:
            assert 550 < m[(None, Tissue.LESION)] < 1050
        for p in files_of(root, s):
            for img, *_ in frames(p):
                assert img.min() >= 0 and img.max() < 4096


def test_dce_enhances_after_the_first_time_point(three):
    root, series, _ = three
    for pid in sorted({s.patient_id for s in series}):
        dce = [s for s in series if s.patient_id == pid and s.label is SequenceLabel.DCE]
        assert dce
        means = defaultdict(dict)
        triggers = []
        for s in dce:
            for p in files_of(root, s):
                ds = pydicom.dcmread(p, stop_before_pixels=True)
                assert ds.ContrastBolusAgent and "TriggerTime" in ds
                triggers.append(float(ds.TriggerTime))
            m = tissue_means(root, s, ((Tissue.PERIPHERAL_ZONE, Tissue.TRANSITION_ZONE),), key=lambda b, tp: tp)
            for (tp, t), v in m.items():
                means[t][tp] = v
        prostate = means[Tissue.PERIPHERAL_ZONE]
        tps = sorted(prostate)
        assert len(tps) >= 3 and tps[0] == 1
        first = prostate[tps[0]]
        assert all(prostate[t] > first for t in tps[1:]), (pid, prostate)
        assert max(prostate[t] for t in tps[1:]) > 1.2 * first
        if len(dce) == 1:
            ds = pydicom.dcmread(files_of(root, dce[0])[0], stop_before_pixels=True)
            assert int(ds.NumberOfTemporalPositions) == len(tps)
        assert len(set(triggers)) == len(tps)


def test_misleading_descriptions_keep_the_true_label(three):
    root, series, _ = three
    rows = {r["SeriesInstanceUID"]: r for r in read_labels(root)}
    misled = [s for s in series if s.variant == "misleading_description"]
    assert 1 <= len(misled) <= len(series) // 3
    for s in misled:
        assert "misleading" in rows[s.series_uid]["note"]
        assert rows[s.series_uid]["label"] == s.label.value


def test_small_size_stays_small(tmp_path):
    series = generate_studies(tmp_path / "small", studies=1, seed=1, size="small")
    assert sum(s.n_files for s in series) <= 400
    root = tmp_path / "small"
    for s in series:
        if s.n_files > 1 and s.variant not in ("mosaic",):
            ds = pydicom.dcmread(files_of(root, s)[0], stop_before_pixels=True)
            n_pos = len({tuple(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient)
                         for p in files_of(root, s)})
            assert n_pos <= 20, s.series_dir
            assert max(ds.Rows, ds.Columns) <= 192


# -----------------------------------------------------------------------------
# Neuro studies, new vendors, prostate extras
# -----------------------------------------------------------------------------

# sha256 over (relative path, bytes) of the DICOM files of generate_studies(out, studies=3, seed=0,
# size="tiny"), computed with the single-file generator before the split into modules (labels.csv is
# left out: it has since gained the family column): the default DICOM output must not change.
PROSTATE_TINY3_DIGEST = "9ccd3e84a29310933345059201a94d24838b18be73bc6abe59ad5ea152c6d60e"


def test_default_prostate_output_is_unchanged(three):
    root, series, _ = three
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and p.name != "labels.csv":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    assert h.hexdigest() == PROSTATE_TINY3_DIGEST


@pytest.fixture(scope="module")
def neuro(tmp_path_factory):
    """Five tiny neuro studies, one per default neuro vendor."""
    out = tmp_path_factory.mktemp("neuro")
    return out, generate_studies(out, studies=5, seed=SEED, size="tiny", kinds=("neuro",))


def true_kind(root: Path, s: SynthSeries) -> str:
    note = read_note(root, s)
    return note.rsplit("[", 1)[-1].rstrip("]") if s.variant != "misleading_description" else \
        note.split("true variant ", 1)[1].split(")")[0]


def neuro_series(root, series, vendor, what):
    return next(s for s in series if s.vendor == vendor and true_kind(root, s).startswith(what))


def test_neuro_labels_vendors_and_manufacturers(neuro):
    root, series = neuro
    assert [s.vendor for s in series if s.series_number in (1, 101)] == \
        ["SIEMENS_XA", "GE", "PHILIPS", "UIH", "CANON"]
    for pid in {s.patient_id for s in series}:
        labels = {s.label for s in series if s.patient_id == pid}
        assert labels == {SequenceLabel.DWI, SequenceLabel.ADC, SequenceLabel.T2w, SequenceLabel.OTHER}
    manu = {"SIEMENS_XA": {"Siemens Healthineers"}, "UIH": {"UIH"}, "CANON": {"CANON_MEC", "TOSHIBA"},
            "GE": {"GE MEDICAL SYSTEMS"}, "PHILIPS": {"Philips Medical Systems"}}
    for s in series:
        ds = pydicom.dcmread(files_of(root, s)[0], stop_before_pixels=True)
        assert ds.Manufacturer in manu[s.vendor]
        assert ds.BodyPartExamined in ("HEAD", "BRAIN")
        if s.vendor == "SIEMENS_XA":
            assert ds.SoftwareVersions.startswith("syngo MR XA")
    rows = read_labels(root)
    assert all(r["note"].startswith("synthetic") for r in rows)


def test_neuro_fmri_is_epi_time_series_without_diffusion(neuro):
    from SeqClassifierLib.dicom.discovery import discover_series
    root, series = neuro
    found = discover_series(str(root))
    found = getattr(found, "series", found)
    by_uid = {getattr(x, "series_uid", None) or getattr(x, "SeriesInstanceUID", None): x for x in found}
    for vendor in ("SIEMENS_XA", "GE", "UIH"):
        s = neuro_series(root, series, vendor, "fmri")
        assert s.label is SequenceLabel.OTHER
        info = by_uid[s.series_uid]
        assert info.temporal_positions >= 10
        assert not [b for b in (info.b_values or []) if b > 0]
        ds = pydicom.dcmread(files_of(root, s)[0], stop_before_pixels=True)
        if "EchoPlanarPulseSequence" in ds:
            assert ds.EchoPlanarPulseSequence == "YES"
        else:
            ss = ds.ScanningSequence
            assert "EP" in ([ss] if isinstance(ss, str) else list(ss))
            assert "DiffusionBValue" not in ds


def test_neuro_dti_one_series_many_directions(neuro):
    root, series = neuro
    for vendor in ("GE", "UIH", "CANON", "SIEMENS_XA"):
        s = neuro_series(root, series, vendor, "dti")
        assert s.label is SequenceLabel.DWI
        per_pos = defaultdict(list)
        for path in files_of(root, s):
            for img, ipp, iop, ps, b, tp in frames(path):
                per_pos[tuple(np.round(ipp, 2))].append(b)
        assert {b for bs in per_pos.values() for b in bs} == {0.0, 1000.0}
        assert min(len(bs) for bs in per_pos.values()) >= 7
    xa = neuro_series(root, series, "SIEMENS_XA", "dti")
    ds = pydicom.dcmread(files_of(root, xa)[0], stop_before_pixels=True)
    dirs = [g.MRDiffusionSequence[0].DiffusionGradientDirectionSequence[0].DiffusionGradientOrientation
            for g in ds.PerFrameFunctionalGroupsSequence if g.MRDiffusionSequence[0].DiffusionBValue > 0]
    assert len({tuple(d) for d in dirs}) >= 6


def test_neuro_standard_b_value_tags(neuro):
    root, series = neuro
    for vendor in ("UIH", "CANON"):
        s = neuro_series(root, series, vendor, "dwi")
        bs = {float(pydicom.dcmread(p, stop_before_pixels=True).DiffusionBValue) for p in files_of(root, s)}
        assert bs == {0.0, 1000.0}
    ge = neuro_series(root, series, "GE", "dwi")
    ds = pydicom.dcmread(files_of(root, ge)[-1], stop_before_pixels=True)
    assert ds.private_block(0x0043, "GEMS_PARM_01")[0x39].value[0] - 1_000_000_000 in (0, 1000)
    xa = neuro_series(root, series, "SIEMENS_XA", "dwi")
    paths = files_of(root, xa)
    assert len(paths) == 1
    ds = pydicom.dcmread(paths[0])
    assert ds.SOPClassUID == ENHANCED_MR
    bs = [float(g.MRDiffusionSequence[0].DiffusionBValue) for g in ds.PerFrameFunctionalGroupsSequence]
    assert sorted(set(bs)) == [0.0, 1000.0] and len(bs) == int(ds.NumberOfFrames)


def test_neuro_fieldmap_magnitude_and_phase_and_derived_maps(neuro):
    root, series = neuro
    for vendor in ("GE", "UIH", "CANON", "PHILIPS"):
        types = set()
        for s in series:
            if s.vendor == vendor and true_kind(root, s).startswith("fmap"):
                assert s.label is SequenceLabel.OTHER
                types |= {tuple(pydicom.dcmread(p, stop_before_pixels=True).ImageType) for p in files_of(root, s)}
        assert any("M" in t for t in types) and any("P" in t for t in types)
    for what in ("fa", "cbf", "asl", "t1", "flair", "swi"):
        assert neuro_series(root, series, "GE", what).label is SequenceLabel.OTHER


def head_means(root, s, tissues):
    ph = study_phantom(SEED, study_index(s), "tiny", s.vendor, kinds=("neuro",))
    assert ph.kind == "neuro"
    acc = defaultdict(list)
    for path in files_of(root, s):
        for img, ipp, iop, ps, b, tp in frames(path):
            lab = ph.label_at(pixel_positions(ipp, iop, ps, *img.shape))
            for t in tissues:
                inside = lab == int(t)
                core = inside.copy()
                for axis in (0, 1):
                    for shift in (1, -1):
                        core &= np.roll(inside, shift, axis)
                if core.any():
                    acc[(b, t)].append(img[core])
    return {k: float(np.concatenate(v).mean()) for k, v in acc.items()}


def test_head_phantom_contrast(neuro):
    from SeqClassifierLib.synth import HeadTissue as H
    root, series = neuro
    t2 = neuro_series(root, series, "GE", "t2")
    m = head_means(root, t2, (H.CSF, H.WHITE_MATTER))
    assert m[(None, H.CSF)] > 2 * m[(None, H.WHITE_MATTER)]
    adc = neuro_series(root, series, "UIH", "adc")
    m = head_means(root, adc, (H.CSF, H.WHITE_MATTER))
    assert m[(None, H.CSF)] > 2500
    assert 450 < m[(None, H.WHITE_MATTER)] < 1000


def test_mixed_kinds_and_prostate_extras(tmp_path):
    series = generate_studies(tmp_path / "mix", studies=2, seed=SEED, size="tiny",
                              kinds=("prostate", "neuro"), prostate_extras=True)
    root = tmp_path / "mix"
    assert {s.vendor for s in series} == {"SIEMENS", "SIEMENS_XA"}
    three_scan = [s for s in series if true_kind(root, s) == "dwi_3scan"]
    assert three_scan and three_scan[0].label is SequenceLabel.DWI
    ds = pydicom.dcmread(files_of(root, three_scan[0])[-1], stop_before_pixels=True)
    assert list(ds.ImageType[:4]) == ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
    assert ds.private_block(0x0019, "SIEMENS MR HEADER")[0x0D].value == "DIRECTIONAL"
    with pytest.raises(ValueError):
        generate_studies(tmp_path / "bad", size="tiny", kinds=("knee",))
    with pytest.raises(ValueError):
        generate_studies(tmp_path / "bad2", size="tiny", vendors=["UIH"])


def test_save_dataset_uses_the_keyword_of_the_installed_pydicom(monkeypatch):
    """pydicom 3 takes enforce_file_format=True, pydicom 2.4 write_like_original=False (same file)."""
    from SeqClassifierLib.synth import writer

    calls = []

    class FakeDs:
        def save_as(self, path, **kw):
            calls.append((path, kw))

    monkeypatch.setattr(writer, "_PYDICOM_MAJOR", 3)
    writer.save_dataset(FakeDs(), "a.dcm")
    monkeypatch.setattr(writer, "_PYDICOM_MAJOR", 2)
    writer.save_dataset(FakeDs(), "b.dcm")
    assert calls == [("a.dcm", {"enforce_file_format": True}), ("b.dcm", {"write_like_original": False})]

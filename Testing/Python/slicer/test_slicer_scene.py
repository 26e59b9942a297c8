"""SeqClassifierSlicer: MRML naming/tagging with slicer-core on a real series, and the review model.

The MRML part needs the ``slicer-core`` wheel (``import slicer`` without the
application); it is skipped cleanly when that cannot be imported.  The
review-table part is plain Python and always runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from SeqClassifierLib.records import ResultRow
from SeqClassifierSlicer import review
from SeqClassifierSlicer.review import ReviewRow

T2_AXIAL = Path("ProstateX-0000") / "07-07-2011" / "4.000000-t2tsetra-00702"


def _center_slice(folder: Path):
    """Middle slice (by position along the normal) read with pydicom directly, and its header."""
    import pydicom

    headers = []
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        headers.append((float(np.dot(normal, np.array(ds.ImagePositionPatient, dtype=float))), f))
    headers.sort()
    ds = pydicom.dcmread(headers[len(headers) // 2][1])
    arr = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1) \
        + float(getattr(ds, "RescaleIntercept", 0) or 0)
    return arr, ds


@pytest.fixture()
def mrml():
    """A fresh MRML scene installed as ``slicer.mrmlScene`` (slicer-core has no application scene)."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("this 'slicer' package has no MRML classes")
    import slicer.util  # noqa: F401  (addVolumeFromArray, updateVolumeFromArray)

    previous = getattr(slicer, "mrmlScene", None)
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene  # slicer.util.* uses the module-level scene, as inside the application
    yield slicer, scene
    scene.Clear(1)
    if previous is None:
        del slicer.mrmlScene
    else:
        slicer.mrmlScene = previous


def test_tag_real_series(mrml, prostatex):
    slicer, scene = mrml
    from SeqClassifierSlicer import scene as sc

    arr, ds = _center_slice(prostatex / T2_AXIAL)
    assert arr.ndim == 2 and arr.max() > 0
    node = slicer.util.addVolumeFromArray(arr[np.newaxis], name="4: t2_tse_tra")
    assert node.GetScene() is scene
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node)[0], arr)

    prediction = {"series_uid": str(ds.SeriesInstanceUID), "label": "T2w", "confidence": 0.9734,
                  "needs_review": False, "model": "seqclassifier-v1@3", "plane": "axial",
                  "description": str(ds.SeriesDescription), "series_number": int(ds.SeriesNumber)}
    item = sc.tag_from_prediction(node, prediction)
    assert item and item == sc.item_for_node(node, create=False)
    assert node.GetName() == "T2w axial \u2014 t2_tse_tra"
    tags = sc.read_tags(node)
    assert tags == {
        "SeqClassifier.Label": "T2w", "SeqClassifier.PredictedLabel": "T2w", "SeqClassifier.Confidence": "0.973",
        "SeqClassifier.ModelVersion": "seqclassifier-v1@3", "SeqClassifier.Confirmed": "false",
        "SeqClassifier.NeedsReview": "false", "SeqClassifier.Plane": "axial",
        "SeqClassifier.SeriesInstanceUID": str(ds.SeriesInstanceUID)}
    sh = sc.subject_hierarchy(scene)
    uid_name = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()
    assert sh.GetItemUID(item, uid_name) == str(ds.SeriesInstanceUID)
    assert sh.GetItemByUID(uid_name, str(ds.SeriesInstanceUID)) == item
    assert sh.GetItemName(item) == node.GetName()  # the subject hierarchy follows the node name

    # the radiologist corrects it: confirmed label wins, prediction kept
    sc.tag_from_prediction(node, prediction, confirmed_label="OTHER")
    tags = sc.read_tags(item, scene)
    assert node.GetName() == "OTHER axial \u2014 t2_tse_tra"
    assert tags["SeqClassifier.Label"] == "OTHER" and tags["SeqClassifier.PredictedLabel"] == "T2w"
    assert tags["SeqClassifier.Confirmed"] == "true"
    assert sc.tagged_nodes(scene) == [node] and sc.tagged_nodes(scene, "T2w") == []


def test_untrained_and_store_entry(mrml, tmp_path):
    slicer, scene = mrml
    from SeqClassifierLib.curation.label_store import LabelStore
    from SeqClassifierLib.labels import SequenceLabel
    from SeqClassifierLib.records import Prediction
    from SeqClassifierSlicer import scene as sc

    node = slicer.util.addVolumeFromArray(np.zeros((1, 8, 8), np.float32), name="raw")
    untrained = Prediction("1.2.3", None, None, {}, True, "untrained", "no trained model")
    sc.tag_from_prediction(node, untrained, plane="sagittal", description="t2_tse_sag")
    assert node.GetName() == "unlabeled sagittal \u2014 t2_tse_sag"
    tags = sc.read_tags(node)
    assert tags["SeqClassifier.Label"] == "" and tags["SeqClassifier.Confidence"] == ""
    assert tags["SeqClassifier.ModelVersion"] == "untrained" and tags["SeqClassifier.Confirmed"] == "false"

    store = LabelStore(tmp_path / "labels.json")
    store.record_predictions([ResultRow.from_dict({"series_uid": "1.2.3", "label": "DWI", "confidence": 0.51,
                                                   "needs_review": True, "model": "m@1", "plane": "axial",
                                                   "description": "ep2d_diff", "folder": ""})])
    store.confirm("1.2.3", SequenceLabel.ADC, user="rad")
    node2 = slicer.util.addVolumeFromArray(np.ones((1, 8, 8), np.float32), name="raw2")
    sc.tag_from_prediction(node2, store.get("1.2.3"))
    tags = sc.read_tags(node2)
    assert node2.GetName() == "ADC axial \u2014 ep2d_diff"
    assert (tags["SeqClassifier.Label"], tags["SeqClassifier.PredictedLabel"], tags["SeqClassifier.Confirmed"],
            tags["SeqClassifier.NeedsReview"]) == ("ADC", "DWI", "true", "true")


def test_add_slice_volume_thumbnail(mrml, prostatex):
    slicer, scene = mrml
    from SeqClassifierSlicer import scene as sc

    arr, ds = _center_slice(prostatex / T2_AXIAL)
    other = slicer.vtkMRMLScene()  # any scene, not only slicer.mrmlScene
    node = sc.add_slice_volume(arr, "thumb", scene=other, spacing=[float(x) for x in ds.PixelSpacing])
    assert node.GetScene() is other and other.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1
    assert node.GetImageData().GetDimensions() == (arr.shape[1], arr.shape[0], 1)
    assert node.GetSpacing()[0] == pytest.approx(float(ds.PixelSpacing[1]))
    assert node.GetDisplayNode() is not None
    with pytest.raises(ValueError):
        sc.add_slice_volume(np.zeros((2, 2, 2)), "bad", scene=other)
    other.Clear(1)


def test_node_name():
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from SeqClassifierLib.labels import Plane, SequenceLabel
    from SeqClassifierSlicer.scene import node_name

    assert node_name(SequenceLabel.DWI, Plane.AXIAL, "ep2d_diff") == "DWI axial \u2014 ep2d_diff"
    assert node_name(None, "coronal", "") == "unlabeled coronal"
    assert node_name("ADC", None, "", series_number=7) == "ADC \u2014 series 7"


# ---- review model (no Slicer needed) -------------------------------------------------------------

def _rows():
    def row(uid, label, plane="axial", number=1, desc="", b=(), study="S1", conf=0.95, review_=False):
        return ReviewRow.from_result_row(ResultRow.from_dict({
            "series_uid": uid, "label": label, "plane": plane, "series_number": number, "description": desc,
            "b_values": list(b), "study_uid": study, "patient_id": "P", "confidence": conf,
            "needs_review": review_, "model": "m"}))
    return [
        row("t2ax", "T2w", number=4), row("t2sag", "T2w", "sagittal", 3),
        row("dwi", "DWI", number=6, b=(50, 400, 800)), row("adc", "ADC", number=7),
        row("calc", "DWI", number=8, b=(1400,)), row("loc", "OTHER", number=1),
        row("t2ax2", "T2w", number=4, study="S2"), row("dwi2a", "DWI", number=5, desc="diff b800", study="S2"),
        row("dwi2b", "DWI", number=9, desc="diff b1500", study="S2"),
        row("dwi3a", "DWI", number=5, study="S3"), row("dwi3b", "DWI", number=6, study="S3"),
    ]


def test_presets():
    rows = _rows()
    assert review.select_preset(rows, review.PRESET_AXIAL_T2_HIGHB_DWI_ADC) == {
        "t2ax", "adc", "calc", "t2ax2", "dwi2b", "dwi3b"}
    assert review.select_preset(rows, review.PRESET_ALL_BUT_OTHER) == {r.series_uid for r in rows} - {"loc"}
    assert review.select_preset(rows, review.PRESET_NONE) == set()
    rows[0].confirmed_label = "OTHER"  # a confirmed correction changes the selection
    assert "t2ax" not in review.select_preset(rows, review.PRESET_AXIAL_T2_HIGHB_DWI_ADC)
    with pytest.raises(ValueError):
        review.select_preset(rows, "bogus")


def test_colours_status_thumbnail():
    assert review.confidence_color(None) == review.COLOR_NONE
    assert review.confidence_color(0.97) == review.COLOR_HIGH
    assert review.confidence_color(0.7) == review.COLOR_MEDIUM
    assert review.confidence_color(0.97, needs_review=True) == review.COLOR_LOW
    assert review.format_confidence(0.973) == "97%" and review.format_confidence(None) == ""

    untrained = [ReviewRow(ResultRow("a")), ReviewRow(ResultRow("b"))]
    assert review.is_untrained(untrained) and not review.is_untrained([])
    assert review.status_text(untrained, None).startswith("Untrained model")
    assert review.status_text(_rows(), False).startswith("Untrained model")
    rows = _rows()
    rows[2].result.needs_review = True
    assert review.status_text(rows, True, n_skipped=2) == \
        "11 series classified, 1 need review, 0 confirmed, 2 files skipped."

    img = np.arange(200 * 100, dtype=np.float32).reshape(200, 100)
    th = review.thumbnail_uint8(img, 64)
    assert th.shape == (64, 64) and th.dtype == np.uint8
    assert th[:, :16].max() == 0 and th[:, 16:48].max() >= 250  # aspect kept, padded
    assert review.thumbnail_uint8(np.zeros((0, 0))).shape == (64, 64)


def test_label_to_load_prefers_overrides_then_confirmed_then_predicted(tmp_path):
    from SeqClassifierLib.curation.label_store import LabelStore

    store = LabelStore(tmp_path / "labels.json")
    store.record_predictions([ResultRow.from_dict(d) for d in [
        {"series_uid": "1.1", "label": "DWI", "confidence": 0.51, "needs_review": True, "model": "m@1",
         "plane": "axial", "description": "ep2d_diff", "folder": ""},
        {"series_uid": "1.2", "label": "T2w", "confidence": 0.99, "needs_review": False, "model": "m@1",
         "plane": "axial", "description": "t2_tse_tra", "folder": ""},
    ]])
    store.confirm("1.1", "ADC", user="rad")
    entries = {key.series_uid: e for key, e in store.load().items()}  # no patient/study given: UID-only keys
    # confirmed in the store, no table row: the row is rebuilt from the store, label ADC, confirmed
    row, label, confirmed = review.label_to_load("1.1", None, entries["1.1"])
    assert (row.description, label, confirmed) == ("ep2d_diff", "ADC", True)
    # prediction only: loaded as predicted, not confirmed
    assert review.label_to_load("1.2", None, entries["1.2"])[1:] == ("T2w", False)
    # a caller's override is not a confirmation, even over a confirmed label
    assert review.label_to_load("1.1", None, entries["1.1"], {"1.1": "DWI"})[1:] == ("DWI", False)
    # the table's row wins over the store's copy of it
    table_row = ReviewRow(ResultRow(series_uid="1.2", label="OTHER", confidence=0.4))
    assert review.label_to_load("1.2", table_row, entries["1.2"])[1:] == ("OTHER", False)
    # nothing known
    assert review.label_to_load("9.9", None, None) == (None, None, False)


def test_missing_requirements(tmp_path):
    from SeqClassifierSlicer.dependencies import missing_requirements, requirement_lines

    req = tmp_path / "requirements.txt"
    req.write_text("# comment\n\nnumpy>=1.0  # present\nnumpy<0.1\n--extra-index-url x\n"
                   "no-such-package-seqclassifier>=1\npydicom>=3.0,<4\n", encoding="utf-8")
    assert requirement_lines(req) == ["numpy>=1.0", "numpy<0.1", "no-such-package-seqclassifier>=1",
                                      "pydicom>=3.0,<4"]
    assert missing_requirements(req) == ["numpy<0.1", "no-such-package-seqclassifier>=1"]
    # versions come from the given lookup: an old pydicom is reported
    versions = {"numpy": "2.0", "pydicom": "2.4.4", "no-such-package-seqclassifier": "1.0"}
    assert missing_requirements(req, versions.__getitem__) == ["numpy<0.1", "pydicom>=3.0,<4"]


def test_shipped_requirements_are_parseable():
    from SeqClassifierSlicer.dependencies import requirement_lines

    lines = requirement_lines(Path(__file__).resolve().parents[3] / "SeqClassifier" / "Resources" / "requirements.txt")
    assert any(line.startswith("pydicom") for line in lines) and not any(line.startswith("torch") for line in lines)


def test_presets_never_tick_a_row_awaiting_review():
    rows = _rows()
    by_uid = {r.series_uid: r for r in rows}
    for uid in ("t2ax", "calc", "dwi2b"):
        by_uid[uid].result.needs_review = True
        by_uid[uid].result.review_reasons = ["low confidence"]
    for preset in review.PRESETS:
        chosen = review.select_preset(rows, preset)
        assert not chosen & {"t2ax", "calc", "dwi2b"}, preset
    # the highest-b DWI that needs review gives way to the next DWI of its study
    assert "dwi" in review.select_preset(rows, review.PRESET_AXIAL_T2_HIGHB_DWI_ADC)
    assert "dwi2a" in review.select_preset(rows, review.PRESET_AXIAL_T2_HIGHB_DWI_ADC)
    # once a person confirmed it, it can be ticked again
    by_uid["calc"].confirmed_label = "DWI"
    assert "calc" in review.select_preset(rows, review.PRESET_AXIAL_T2_HIGHB_DWI_ADC)
    assert "calc" in review.select_preset(rows, review.PRESET_ALL)


def test_review_row_carries_the_result_row():
    result = ResultRow.from_dict({"series_uid": "1.9", "label": "DCE", "confidence": 0.6, "needs_review": True,
                                  "review_reasons": ["low confidence", "unlike the training data"],
                                  "group": "dynamic, 70 time points", "plane": "axial", "model": "m"})
    row = ReviewRow.from_result_row(result)
    assert row.result is result and row.group == "dynamic, 70 time points" and row.predicted_label == "DCE"
    assert review.review_text(row) == "low confidence; unlike the training data"
    assert review.review_tooltip(row) == "low confidence\nunlike the training data"
    row.confirmed_label, row.confirmed_by = "DCE", "rad"
    assert review.review_text(row) == "confirmed by rad" and not row.awaits_review
    plain = ReviewRow.from_result_row(ResultRow("2.0", label="T2w"))
    assert review.review_text(plain) == "" and review.review_tooltip(plain) == ""


def test_thumbnail_encoding_round_trip():
    from SeqClassifierLib.app import thumbnails

    img = np.arange(120 * 80, dtype=np.float32).reshape(120, 80)
    pixels = thumbnails.thumbnail_uint8(img)
    data = thumbnails.encode(pixels)
    assert data["width"] == data["height"] == 64 and data["format"] == "gray8"
    np.testing.assert_array_equal(thumbnails.decode(data), pixels)
    assert thumbnails.decode(None) is None
    assert thumbnails.decode({**data, "width": 63}) is None  # size does not match the bytes
    assert thumbnails.decode({**data, "data": "not base64!"}) is None


def test_restart_notice_names_every_changed_package():
    from SeqClassifierSlicer.dependencies import already_imported, import_name
    from SeqClassifierSlicer.installer import InstallReport, changed_versions, restart_notice

    assert import_name("open_clip_torch") == "open_clip" and import_name("pydicom") == "pydicom"
    modules = {"pydicom": object(), "numpy": object()}
    assert already_imported(["pydicom>=2.4,<4", "timm>=0.9", "open_clip_torch>=2.23"], modules) == ["pydicom"]
    changes = changed_versions({"numpy": "1.26.4", "pydicom": "2.4.4"},
                               {"numpy": "2.0.2", "pydicom": "2.4.4", "safetensors": "0.7.0"})
    assert changes == [("numpy", "1.26.4", "2.0.2"), ("safetensors", None, "0.7.0")]
    text = restart_notice(InstallReport(changes, loaded=["numpy"]))
    assert "numpy 1.26.4 -> 2.0.2 (already loaded)" in text and "safetensors (new) -> 0.7.0;" not in text
    assert "safetensors (new) -> 0.7.0." in text and "Restart Slicer before classifying: numpy was" in text
    quiet = restart_notice(InstallReport(changes[1:], loaded=[]))
    assert "safetensors" in quiet and "Restart" not in quiet
    assert restart_notice(InstallReport([], [])) == ""


@pytest.mark.parametrize("python", ["3.9.10", "3.12.10"])
def test_bundled_pydicom_satisfies_the_requirements(python, monkeypatch):
    """Slicer 5.8/5.10 bundle pydicom 2.4.4 and import it at start-up: it must not be 'missing'."""
    from SeqClassifierSlicer import dependencies

    monkeypatch.setattr(dependencies, "running_python", lambda: python)
    reqs = Path(__file__).resolve().parents[3] / "SeqClassifier" / "Resources" / "requirements.txt"
    versions = {"pydicom": "2.4.4", "numpy": "1.26.4", "safetensors": "0.4.3"}
    assert dependencies.missing_requirements(reqs, version_of=versions.__getitem__) == []
    versions["pydicom"] = "2.3.1"
    missing = dependencies.missing_requirements(reqs, version_of=versions.__getitem__)
    assert [dependencies.distribution_name(m) for m in missing] == ["pydicom"]

"""IDC planning and download (curation/idc.py) on the offline index of idc-index-data; download mocked."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

pq = pytest.importorskip("pyarrow.parquet")
idc_index_data = pytest.importorskip("idc_index_data")

from SeqClassifierLib.app import cli  # noqa: E402
from SeqClassifierLib.curation import idc  # noqa: E402
from SeqClassifierLib.dicom.discovery import discover_series  # noqa: E402

SEVEN = {"prostatex", "prostate_mri_us_biopsy", "qin_prostate_repeatability", "prostate_diagnosis",
         "prostate_3t", "prostate_mri", "prostate_fused_mri_pathology"}


@pytest.fixture(scope="module")
def mr_counts() -> Counter:
    """MR series per collection, counted straight from the bundled parquet (independent of idc.plan)."""
    t = pq.read_table(idc_index_data.IDC_INDEX_PARQUET_FILEPATH, columns=["collection_id", "Modality"])
    return Counter(c for c, m in zip(t.column("collection_id").to_pylist(), t.column("Modality").to_pylist())
                   if m == "MR" and c in SEVEN)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    path = tmp_path_factory.mktemp("idc") / "manifest.csv"
    assert cli.main(["idc", "plan", "--out", str(path), "--quiet"]) == 0
    return path


def test_default_plan_is_the_mr_series_of_the_papers_seven_collections(manifest, mr_counts, capsys):
    assert set(idc.DEFAULT_COLLECTIONS) == SEVEN
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    per = Counter(r["collection_id"] for r in rows)
    assert per == mr_counts and set(per) == SEVEN
    assert per["prostatex"] >= 18_000
    assert {r["Modality"] for r in rows} == {"MR"}
    assert len({r["SeriesInstanceUID"] for r in rows}) == len(rows)
    assert {r["candidate_status"] for r in rows} == {"unconfirmed"}
    assert {r["candidate_label"] for r in rows} <= {"T2w", "DWI", "ADC", "DCE", "OTHER"}
    assert all(int(r["instanceCount"]) > 0 and float(r["series_size_MB"]) > 0 for r in rows)
    assert tuple(rows[0]) == idc.MANIFEST_FIELDS


def test_plan_prints_each_collection_next_to_table_2(mr_counts, tmp_path, capsys):
    assert cli.main(["idc", "plan", "--out", str(tmp_path / "m.csv")]) == 0
    out, err = capsys.readouterr()
    for cid, (name, paper) in idc.PAPER_TABLE2.items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert line.split()[1] == str(mr_counts[cid])
        assert f"{paper['T2w'][0]} ({paper['T2w'][1]})" in line
    assert f"wrote {sum(mr_counts.values())} series" in err and "unconfirmed" in err


@pytest.mark.parametrize("description, label", [
    ("t2_tse_tra", "T2w"), ("T2W_TSE_AX", "T2w"), ("t2_localizer", "OTHER"), ("t2_loc sag", "OTHER"),
    ("ep2d_diff_tra_DYNDIST", "DWI"), ("ep2d_diff_tra_DYNDISTCALC_BVAL", "DWI"),
    ("ep2d_diff_tra_DYNDIST_ADC", "ADC"), ("Apparent Diffusion Coefficient", "ADC"),
    ("tfl_dyn_fast_tra_1.5x1.5_t3.5sec", "DCE"), ("dyn_THRIVE", "DCE"), ("DCE", "DCE"),
    ("tfl_3d PD ref_tra_1.5x1.5_t3", "OTHER"), ("fl3d_vibe_pre 15 flip AXIAL", "OTHER"), ("", "OTHER"),
])
def test_candidate_labels_from_real_idc_descriptions(description, label):
    assert idc.candidate_label(description) == label


def test_candidate_labels_of_prostatex_match_the_paper_order_of_magnitude(manifest):
    with open(manifest, newline="") as fh:
        c = Counter(r["candidate_label"] for r in csv.DictReader(fh) if r["collection_id"] == "prostatex")
    paper = idc.PAPER_TABLE2["prostatex"][1]
    # candidates are hints: DCE dominates ProstateX as in Table 2, T2w within a factor of 3 of the paper
    assert c["DCE"] > c["T2w"] + c["DWI"] + c["ADC"]
    assert paper["T2w"][0] / 3 < c["T2w"] < paper["T2w"][0] * 3


def test_unknown_collection_is_an_error(tmp_path, capsys):
    assert cli.main(["idc", "plan", "--collections", "no_such_collection", "--out", str(tmp_path / "m.csv")]) == 1
    assert "no_such_collection" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


class FakeClient:
    """Stands in for idc_index.IDCClient: 'downloads' the shared ProstateX series the manifest asks for."""

    calls: list = []

    def __init__(self, source: Path):
        self.source = source

    def download_from_selection(self, downloadDir, seriesInstanceUID, dirTemplate, **kw):
        FakeClient.calls.append({"dest": downloadDir, "uids": list(seriesInstanceUID), "template": dirTemplate, **kw})
        for s in discover_series(self.source).series:
            if s.series_uid in seriesInstanceUID:
                folder = Path(downloadDir, "prostatex", s.patient_id, s.study_uid, f"MR_{s.series_uid}")
                folder.mkdir(parents=True, exist_ok=True)
                for f in s.files:
                    shutil.copy(f, folder / Path(f).name)


def test_download_hands_the_manifest_to_idc_index_and_feeds_classify(manifest, prostatex, tmp_path,
                                                                       monkeypatch, capsys):
    with open(manifest, newline="") as fh:
        px = [r for r in csv.DictReader(fh) if r["PatientID"] in ("ProstateX-0000", "ProstateX-0001")]
    small = tmp_path / "two_patients.csv"
    with open(small, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=idc.MANIFEST_FIELDS)
        w.writeheader()
        w.writerows(px)
    FakeClient.calls = []
    monkeypatch.setattr(idc, "_default_client", lambda: FakeClient(prostatex))
    dest = tmp_path / "idc"
    assert cli.main(["idc", "download", str(small), str(dest)]) == 0
    assert len(FakeClient.calls) == 1
    call = FakeClient.calls[0]
    assert sorted(call["uids"]) == sorted(r["SeriesInstanceUID"] for r in px)
    assert call["template"] == idc.DIR_TEMPLATE and call["dest"] == str(dest) and call["dry_run"] is False
    out = tmp_path / "r.jsonl"
    assert cli.main(["classify", str(dest), "--format", "jsonl", "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line)["row"] for line in open(out) if '"type": "series"' in line]
    local = {s.series_uid for s in discover_series(prostatex).series}
    assert {r["series_uid"] for r in rows} == local & set(call["uids"]) and len(rows) > 0


def test_download_in_chunks_and_dry_run(manifest, tmp_path):
    calls = []

    class Recorder:
        def download_from_selection(self, **kw):
            calls.append(kw)

    with open(manifest, newline="") as fh:
        n = sum(1 for r in csv.DictReader(fh) if r["collection_id"] == "prostate_3t")
    sub = tmp_path / "p3t.csv"
    assert cli.main(["idc", "plan", "--collections", "prostate_3t", "--out", str(sub), "--quiet"]) == 0
    got, mb = idc.download(sub, tmp_path / "d", dry_run=True, client_factory=Recorder, chunk=10)
    assert got == n and mb > 0
    assert [len(c["seriesInstanceUID"]) for c in calls] == [10] * (n // 10) + ([n % 10] if n % 10 else [])
    assert all(c["dry_run"] for c in calls)

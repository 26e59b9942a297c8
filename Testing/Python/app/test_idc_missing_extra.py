"""``seqclassifier idc plan`` / ``download`` without the ``idc`` extra: one line saying what to install."""

from __future__ import annotations

import sys

import pytest

from SeqClassifierLib.app import cli


@pytest.mark.parametrize("command,blocked", [("plan", ("pyarrow", "pyarrow.parquet")), ("plan", ("idc_index_data",)),
                                             ("download", ("idc_index",))])
def test_missing_extra_is_one_line(blocked, command, monkeypatch, tmp_path, capsys):
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # "import name" raises ImportError
    manifest = tmp_path / "m.csv"
    manifest.write_text("collection_id,PatientID,StudyInstanceUID,SeriesInstanceUID,Modality,series_size_MB\n"
                        "c,p,1.2,1.2.3,MR,1.0\n")
    argv = ["idc", "plan", "--out", str(tmp_path / "out.csv")] if command == "plan" else \
        ["idc", "download", str(manifest), str(tmp_path / "dest")]
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and 'pip install "seqclassifier[idc]"' in err[0] and blocked[0] in err[0], err
    assert "Traceback" not in err[0]

"""``classify --format jsonl --thumbnails``: each centre slice is decoded once, for the model and the picture.

The thumbnails the classifier makes from the slice it prepares for the model
must be exactly those made by reading the slice again
(:func:`~SeqClassifierLib.app.thumbnails.series_thumbnail`), and the command
must read each centre slice once (counted on the real ProstateX study).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from SeqClassifierLib.app import cli, thumbnails
from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib.inputs import prepared as prepared_mod
from SeqClassifierLib.inputs.image import load_center_slice
from SeqClassifierLib.inputs.prepared import prepare_input
from SeqClassifierLib.inputs.thumbnail import SIZE, thumbnail_uint8


def test_the_prepared_thumbnail_is_the_one_read_again_and_changes_nothing_else(prostatex):
    records = discover_series(prostatex, workers=1).series
    kw = dict(size=128, mean=(0.5,) * 3, std=(0.5,) * 3, uses_image=True)
    for r in records:
        with_thumb = prepare_input(r, None, thumbnail_size=SIZE, **kw)
        plain = prepare_input(r, None, **kw)
        again = thumbnail_uint8(load_center_slice(r))
        assert with_thumb.thumbnail is not None and with_thumb.thumbnail.dtype == np.uint8
        assert with_thumb.thumbnail.shape == (SIZE, SIZE)
        assert with_thumb.thumbnail.tobytes() == again.tobytes()
        assert with_thumb.meta.tobytes() == plain.meta.tobytes() and with_thumb.quality == plain.quality
        assert (with_thumb.image is None) == (plain.image is None)
        if plain.image is not None:
            assert with_thumb.image.tobytes() == plain.image.tobytes()
        assert plain.thumbnail is None
    # a metadata-only model still gets its pictures
    meta_only = prepare_input(records[0], None, thumbnail_size=SIZE, **{**kw, "uses_image": False})
    assert meta_only.image is None and meta_only.thumbnail.tobytes() == \
        thumbnail_uint8(load_center_slice(records[0])).tobytes()


def test_cli_decodes_each_centre_slice_once(prostatex, monkeypatch, capsys):
    from SeqClassifierLib.model.classifier import Classifier

    if not Classifier(device="cpu").is_trained:
        pytest.skip("no shipped model: the untrained path prepares no inputs")
    monkeypatch.setenv("SEQCLASSIFIER_WORKERS", "1")  # in this process, so the reads can be counted
    reads: list = []

    def counted(record, *args, **kwargs):
        reads.append(record.key)
        return load_center_slice(record, *args, **kwargs)

    monkeypatch.setattr(prepared_mod, "load_center_slice", counted)
    monkeypatch.setattr(thumbnails, "load_center_slice", counted)
    code = cli.main(["classify", str(prostatex), "--format", "jsonl", "--thumbnails", "--quiet",
                     "--device", "cpu", "--precision", "fp32"])
    out = capsys.readouterr().out
    found = discover_series(prostatex, workers=1)
    assert code == (cli.EXIT_SKIPPED if found.skipped else cli.EXIT_OK)  # the study's label file is skipped
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    series = [e for e in events if e["type"] == "series"]
    assert len(series) == 18
    assert len(reads) == 18 and len(set(reads)) == 18  # one read a series, for the model and the picture
    by_uid = {r.series_uid: r for r in found.series}
    for e in series:
        record = by_uid[e["row"]["series_uid"]]
        assert e["thumbnail"] == thumbnails.encode(thumbnail_uint8(load_center_slice(record)))

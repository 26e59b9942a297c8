"""The command line's start-up overlap (app.startup): headers read and inputs prepared in a forked
child while torch imports give exactly what this process would have made, and failures come back."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from SeqClassifierLib.app import startup
from SeqClassifierLib.dicom.discovery import discover_series
from SeqClassifierLib.inputs.prepared import prepare_input
from SeqClassifierLib.inputs.study import study_contexts
from SeqClassifierLib.model.card import parse_card, read_card_json
from SeqClassifierLib.model.classifier import default_model_path

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the overlap forks (Linux only)")

SPEC = (64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), True)


def _same_discovery(a, b) -> None:
    assert a.n_files == b.n_files
    assert [(s.path, s.reason) for s in a.skipped] == [(s.path, s.reason) for s in b.skipped]
    assert [s.key for s in a.series] == [s.key for s in b.series]
    assert [s.files for s in a.series] == [s.files for s in b.series]
    assert a.series == b.series


@pytest.mark.parametrize("workers", [1, 2])  # 2: the child's own reader and preparation processes
def test_child_discovery_and_inputs_are_this_process_ones(prostatex, workers):
    early = startup.EarlyDiscovery([str(prostatex)], workers=workers, spec=SPEC)
    found = early.result()
    here = discover_series([str(prostatex)], workers=1)
    _same_discovery(found, here)
    assert len(here.series) == 18

    class Card:  # what EarlyDiscovery.prepared compares: the card's preprocessing
        class preprocessing:
            input_size, mean, std = SPEC[0], list(SPEC[1]), list(SPEC[2])
        uses_image = True

    prepared = early.prepared(Card)
    assert prepared is not None and len(prepared) == 18
    contexts = study_contexts(here.series)
    with_image = 0
    for rec, got in zip(here.series, prepared):
        want = prepare_input(rec, contexts.get(rec.key), size=SPEC[0], mean=SPEC[1], std=SPEC[2])
        got = got.standardized(SPEC[1], SPEC[2])
        assert np.array_equal(got.meta, want.meta)
        assert got.image_note == want.image_note
        assert (got.image is None) == (want.image is None)
        if want.image is not None:
            with_image += 1
            assert got.image.shape == (3, 64, 64) and got.image.dtype == np.float32
            assert np.array_equal(got.image, want.image)  # the same bits
        assert got.quality == want.quality
    assert with_image == 18


def test_child_makes_the_thumbnails_asked_for(prostatex):
    from SeqClassifierLib.inputs.image import load_center_slice
    from SeqClassifierLib.inputs.thumbnail import SIZE, thumbnail_uint8

    early = startup.EarlyDiscovery([str(prostatex)], workers=1, spec=SPEC, thumbnail_size=SIZE)
    found = early.result()
    card = type("Card", (), {"preprocessing": type("P", (), {"input_size": SPEC[0], "mean": list(SPEC[1]),
                                                             "std": list(SPEC[2])}), "uses_image": True})
    prepared = early.prepared(card)
    assert len(prepared) == len(found.series) == 18
    for rec, got in zip(found.series, prepared):
        assert got.thumbnail.tobytes() == thumbnail_uint8(load_center_slice(rec), SIZE).tobytes()


def test_inputs_made_for_another_preprocessing_are_not_used(prostatex):
    early = startup.EarlyDiscovery([str(prostatex)], workers=1, spec=SPEC)
    early.result()

    class Other:
        class preprocessing:
            input_size, mean, std = 128, [0.5] * 3, [0.25] * 3
        uses_image = True

    assert early.prepared(Other) is None
    assert early.prepared(None) is None


def test_an_error_in_the_child_is_raised_here(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise ValueError("disk on fire")

    import SeqClassifierLib.dicom.discovery as discovery

    monkeypatch.setattr(discovery, "discover_series", broken)  # the fork inherits the patched module
    early = startup.EarlyDiscovery([str(tmp_path)], workers=1)
    with pytest.raises(ValueError, match="disk on fire"):
        early.result()


def test_not_started_where_unsafe_or_unwanted(tmp_path, monkeypatch):
    import torch  # noqa: F401  -- imported: the overlap would not pay

    assert startup.start_discovery([str(tmp_path)]) is None
    assert startup.start_discovery([str(tmp_path)], cache=object(), force=True) is None
    monkeypatch.setenv(startup.EARLY_ENV, "0")
    assert startup.start_discovery([str(tmp_path)], force=True) is None


def test_card_spec_is_the_shipped_cards_preprocessing():
    path = default_model_path()
    if path is None:
        pytest.skip("no shipped model")
    card = parse_card(read_card_json(path), path)
    pre = card.preprocessing
    assert startup.card_spec(None) == (pre.input_size, tuple(pre.mean), tuple(pre.std), card.uses_image)
    assert startup.card_spec(path.with_suffix("")) == startup.card_spec(None)
    assert startup.card_spec(path.with_name("missing.json")) is None


def _cli_csv(prostatex, tmp_path, name, early: str) -> tuple[bytes, bool]:
    """(the CSV of ``classify``, whether the command's own process imported pydicom)."""
    out = tmp_path / name
    env = dict(os.environ, **{startup.EARLY_ENV: early})
    proc = subprocess.run([sys.executable, "-c", "import os, sys; sys.path.insert(0, sys.argv[1]); "
                           "from SeqClassifierLib.app.cli import main; code = main(sys.argv[2:]); "
                           "print('pydicom' in sys.modules); sys.stdout.flush(); os._exit(code)",
                           str(REPO / "SeqClassifier"), "classify", str(prostatex), "--format", "csv",
                           "--precision", "fp32", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "1 skipped" in proc.stderr, proc.stderr[-2000:]  # labels.csv is skipped
    return out.read_bytes(), proc.stdout.split()[-1] == "True"


def test_cli_rows_are_identical_with_and_without_the_overlap(prostatex, tmp_path):
    """The same rows; and with the overlap the command's process (torch, the model) never imports the
    DICOM readers (pydicom: 0.4 s on its way to the model) -- only the header-reading child does."""
    if default_model_path() is None:
        pytest.skip("no shipped model")
    overlapped, readers_here = _cli_csv(prostatex, tmp_path, "early.csv", "1")
    in_process, readers_in_process = _cli_csv(prostatex, tmp_path, "plain.csv", "0")
    assert overlapped == in_process
    assert overlapped.count(b"\n") == 19  # header + 18 series
    assert not readers_here and readers_in_process

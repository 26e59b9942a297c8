"""The K-fold ensemble: calibrated fold probabilities, averaged; checks of its inputs."""

from __future__ import annotations

import contextlib

import pytest
import torch

from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.model.checkpoint import load_checkpoint, save_checkpoint
from SeqClassifierLib.model.ensemble import EnsembleModel, checked_temperature
from SeqClassifierLib.model.fusion import create_model

N_META = 6


def _folds(n=3, strategy="metadata"):
    out = []
    for i in range(n):
        torch.manual_seed(100 + i)
        out.append(create_model(strategy, num_meta_features=N_META).eval())
    return out


def test_forward_is_the_mean_of_tempered_softmax_over_folds():
    folds = _folds(3)
    meta = torch.randn(5, N_META)
    ens = EnsembleModel(folds, {"temperature": 2.5}).eval()
    with torch.no_grad():
        manual = sum(torch.softmax(m(None, meta) / 2.5, dim=1) for m in folds) / 3
        probs = ens(None, meta)
        per_fold = ens.fold_probabilities(None, meta)
    torch.testing.assert_close(probs, manual, rtol=1e-6, atol=1e-7)
    assert per_fold.shape == (3, 5, len(CLASS_NAMES))
    torch.testing.assert_close(per_fold.mean(0), probs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    # the folds really differ, so the average is not one member's output
    assert not torch.allclose(per_fold[0], per_fold[1], atol=1e-3)


def test_average_runs_a_hook_around_every_fold():
    folds = _folds(3)
    meta = torch.randn(2, N_META)
    seen = []

    @contextlib.contextmanager
    def around(model):
        seen.append(("enter", id(model)))
        yield f"fold {len(seen)}"
        seen.append(("exit", id(model)))

    ens = EnsembleModel(folds)
    with torch.no_grad():
        probs, entered = ens.average(None, meta, around=around)
        torch.testing.assert_close(probs, ens(None, meta))
    assert entered == ["fold 1", "fold 3", "fold 5"]
    assert seen == [(k, id(m)) for m in folds for k in ("enter", "exit")]
    assert ens.average(None, meta)[1] == [None, None, None]


def test_temperature_sharpens_or_flattens_but_keeps_the_label():
    folds = _folds(1)
    meta = torch.randn(8, N_META)
    with torch.no_grad():
        cold = EnsembleModel(folds, {"temperature": 0.5})(None, meta)
        plain = EnsembleModel(folds, {})(None, meta)
        warm = EnsembleModel(folds, {"temperature": 4.0})(None, meta)
    assert torch.equal(cold.argmax(1), plain.argmax(1)) and torch.equal(warm.argmax(1), plain.argmax(1))
    assert bool((cold.max(1).values >= plain.max(1).values).all())
    assert bool((warm.max(1).values <= plain.max(1).values).all())


@pytest.mark.parametrize("value, expected", [(None, 1.0), (2, 2.0), ("0.75", 0.75)])
def test_checked_temperature_accepts(value, expected):
    assert checked_temperature(value) == expected


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "warm", [1.0]])
def test_checked_temperature_refuses(value):
    with pytest.raises(ValueError, match="invalid temperature"):
        checked_temperature(value)


def test_refuses_an_empty_or_mixed_ensemble():
    with pytest.raises(ValueError, match="at least one model"):
        EnsembleModel([])
    mixed = _folds(1) + [create_model("metadata", num_meta_features=N_META, meta_dim=32)]
    with pytest.raises(ValueError, match="fold 1 has a different model configuration"):
        EnsembleModel(mixed)
    with pytest.raises(ValueError, match="names 2 classes"):
        EnsembleModel(_folds(1), {"classes": ["a", "b"]})


def test_same_probabilities_as_the_loaded_checkpoint(tmp_path):
    folds = _folds(2)
    save_checkpoint(tmp_path / "m.json", folds, {"temperature": 1.7})
    loaded, card = load_checkpoint(tmp_path / "m.json")
    meta = torch.randn(4, N_META)
    with torch.no_grad():
        torch.testing.assert_close(EnsembleModel(folds, card)(None, meta), loaded(None, meta))
    ens = EnsembleModel(folds, card)
    assert ens.n_folds == 2 and ens.strategy == "metadata" and ens.uses_metadata and not ens.uses_image
    assert ens.input_size is None and ens.classes == tuple(CLASS_NAMES)

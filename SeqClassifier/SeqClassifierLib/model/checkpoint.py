"""Trusted checkpoints: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (card).

A checkpoint holds the fold models of a cross-validation ensemble.  The
weights of fold ``i`` are stored under the tensor-name prefix ``fold{i}.`` in one
safetensors file whose header metadata is minimal (format marker and fold
count).  Everything else lives in the human-readable JSON *card*: format
version, class names, the model configuration (enough to rebuild the
architecture with :func:`~SeqClassifierLib.model.fusion.model_from_config`), the
number of folds, the SHA-256 of the weights file, and whatever the trainer
adds (feature schema version, preprocessing, training-data summary, metrics,
temperature, review threshold, ...).

Loading reads only JSON and safetensors -- never pickle -- and verifies the
weights' SHA-256 against the card before any tensor is read, so a checkpoint
can be shared and loaded without executing code from it.  Both files are
written atomically (temporary file, fsync, ``os.replace``).

``torch`` and ``safetensors`` are imported at module level; this module is
only imported when a model is needed and never imports ``slicer`` or ``qt``.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from safetensors import safe_open
from safetensors.torch import load_file as _st_load_file
from safetensors.torch import save_file as _st_save_file

from SeqClassifierLib.model.backbones import get_backbone_config, sha256_file
from SeqClassifierLib.model.card import (CARD_FORMAT_VERSION, CardError, CheckpointError, ModelCard, checkpoint_paths,
                                         parse_card, read_card_json)
from SeqClassifierLib.model.fusion import SequenceModel, model_from_config
from SeqClassifierLib.model.ensemble import EnsembleModel, checked_temperature
from SeqClassifierLib.model.ood import OodScorer, stats_from_tensors, stats_to_tensors
from SeqClassifierLib.atomic import atomic_write, atomic_write_bytes
from SeqClassifierLib.labels import CLASS_NAMES

__all__ = [
    "CARD_FORMAT_VERSION",
    "CheckpointError",
    "CardError",
    "ModelCard",
    "EnsembleModel",
    "save_checkpoint",
    "load_checkpoint",
    "read_card",
    "checkpoint_paths",
    "sha256_file",
]


_FORMAT_MARKER = "seqclassifier-checkpoint"

#: Card keys computed by :func:`save_checkpoint`; a caller may not override them.
_RESERVED_KEYS = ("format", "format_version", "classes", "model", "n_folds", "weights_file", "weights_sha256",
                  "weights_dtype")

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------------
# Paths and atomic writes
# --------------------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    """Convert to strict JSON types: numpy/torch scalars and arrays to Python,
    enums to their values, tuples to lists, paths to strings, NaN/inf to ``None``."""
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return _jsonable(obj.tolist())
    raise TypeError(f"card value of type {type(obj).__name__} is not JSON-serialisable: {obj!r}")


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def _fold_tensors(models: Sequence[SequenceModel], dtype: Optional[torch.dtype] = None) -> Dict[str, torch.Tensor]:
    tensors: Dict[str, torch.Tensor] = {}
    seen_storage = set()
    for i, model in enumerate(models):
        for key, value in model.state_dict().items():
            t = value.detach().to("cpu")
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            # safetensors refuses non-contiguous tensors and tensors sharing storage.
            ptr = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
            if not t.is_contiguous() or (ptr is not None and ptr in seen_storage):
                t = t.contiguous().clone()
            elif ptr is not None:
                seen_storage.add(ptr)
            tensors[f"fold{i}.{key}"] = t
    return tensors


def save_checkpoint(path: PathLike, models: Sequence[SequenceModel], card: Optional[Dict[str, Any]] = None,
                    *, dtype: Optional[torch.dtype] = None,
                    ood_stats: Optional[Sequence[Dict[str, Dict[str, torch.Tensor]]]] = None) -> Path:
    """Write the fold ``models`` and their ``card``; returns the card's path.

    ``dtype=torch.float16`` stores floating-point tensors in half precision
    (half the file size; loading copies them back into the float32 model).
    ``ood_stats``: per fold, the training-data statistics of :mod:`~.ood`
    (stored in float32 in the same file, so the weights' hash covers them).

    All models must share one architecture (identical ``.config``) and predict
    :data:`~SeqClassifierLib.labels.CLASS_NAMES`.  The card written is the
    caller's ``card`` plus ``format``, ``format_version``, ``classes``,
    ``model`` (the config), ``n_folds``, ``weights_file``, ``weights_sha256``
    and ``created`` (UTC, unless given).  Values are converted to strict JSON
    (non-finite floats become ``null``).
    """
    models = list(models)
    if not models:
        raise ValueError("save_checkpoint needs at least one model")
    config = models[0].config
    for i, m in enumerate(models[1:], start=1):
        if m.config != config:
            raise ValueError(f"fold {i} has a different model configuration than fold 0")
    if int(config["num_classes"]) != len(CLASS_NAMES):
        raise ValueError(
            f"models predict {config['num_classes']} classes but the library's classes are {list(CLASS_NAMES)}"
        )
    card = dict(card or {})
    given_classes = card.pop("classes", None)
    if given_classes is not None and [str(c) for c in _jsonable(list(given_classes))] != list(CLASS_NAMES):
        raise ValueError(f"card classes {given_classes} differ from the library's {list(CLASS_NAMES)}")
    clash = [k for k in _RESERVED_KEYS if k in card]
    if clash:
        raise ValueError(f"card keys {clash} are written by save_checkpoint and cannot be given")
    checked_temperature(card.get("temperature"))  # ValueError naming the value

    card_path, weights_path = checkpoint_paths(path)
    card_path.parent.mkdir(parents=True, exist_ok=True)

    # 1) weights, atomically
    tensors = _fold_tensors(models, dtype)
    if ood_stats:
        if len(ood_stats) != len(models):
            raise ValueError(f"{len(ood_stats)} folds of OOD statistics for {len(models)} models")
        tensors.update(stats_to_tensors(ood_stats))
    digest = ""

    def write_weights(tmp: str) -> None:
        nonlocal digest
        _st_save_file(tensors, tmp, metadata={"format": "pt", "seqclassifier": _FORMAT_MARKER,
                                              "format_version": str(CARD_FORMAT_VERSION),
                                              "n_folds": str(len(models))})
        digest = sha256_file(tmp)

    atomic_write(weights_path, write_weights)

    # 2) card, atomically
    full = {
        "format": _FORMAT_MARKER,
        "format_version": CARD_FORMAT_VERSION,
        "classes": list(CLASS_NAMES),
        "model": config,
        "n_folds": len(models),
        "weights_file": weights_path.name,
        "weights_sha256": digest,
        "weights_dtype": str(dtype or torch.float32).replace("torch.", ""),
    }
    full.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    for key, value in card.items():
        full[key] = value
    full["torch_version"] = full.get("torch_version", torch.__version__)
    text = json.dumps(_jsonable(full), indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(card_path, text.encode("utf-8"))
    return card_path


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def read_card(path: PathLike) -> Dict[str, Any]:
    """Read a checkpoint's JSON card as it is on disk (weights untouched; at most
    :data:`~.card.MAX_CARD_BYTES`).  :func:`~.card.parse_card` gives the typed, validated card."""
    card_path, _ = checkpoint_paths(path)
    return read_card_json(card_path)


def update_card(path: PathLike, **entries: Any) -> Path:
    """Add or replace top-level entries of a checkpoint's card (e.g. an audit report), atomically.

    The weights and their hash are untouched; entries written by
    :func:`save_checkpoint` itself cannot be replaced this way.
    """
    card_path, _ = checkpoint_paths(path)
    card = read_card(card_path)
    clash = [k for k in entries if k in _RESERVED_KEYS]
    if clash:
        raise ValueError(f"card keys {clash} are written by save_checkpoint and cannot be replaced")
    card.update(entries)
    text = json.dumps(_jsonable(card), indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(card_path, text.encode("utf-8"))
    return card_path


class _StateMismatch(RuntimeError):
    """A fold's tensors do not fit the architecture of the card (missing, unexpected, other shapes)."""


def _load_fold(config: Dict[str, Any], state: Dict[str, torch.Tensor]) -> SequenceModel:
    """The model of ``config`` holding the tensors ``state`` (strictly: every one, no other).

    A builtin backbone (or none) is built on the meta device -- no memory, no random initialisation:
    that was 40 % of loading the shipped model, only to be overwritten -- and the checkpoint's tensors
    are put in place, each in the dtype the module declares (fp16 weights become fp32 exactly as
    ``copy_`` made them).  timm and open_clip models, whose initialisers are not ours to check on the
    meta device, and any module left with a tensor outside its state dict are built the ordinary way.
    Raises ``KeyError``/``ValueError``/``TypeError`` for an unusable config, :class:`_StateMismatch`
    for tensors that do not fit.
    """
    if not _builds_on_meta(config):
        return _load_built(model_from_config(config), state)
    with torch.device("meta"):
        model = model_from_config(config)
    _check_classes(model)
    declared = model.state_dict()
    placed = {k: v.to(dtype=declared[k].dtype) if k in declared else v for k, v in state.items()}
    try:
        model.load_state_dict(placed, strict=True, assign=True)
    except RuntimeError as exc:
        raise _StateMismatch(str(exc)) from None
    if not any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        return model
    return _load_built(model_from_config(config), state)  # e.g. a buffer computed in __init__, not saved


def _builds_on_meta(config: Dict[str, Any]) -> bool:
    """True when every module of ``config`` is ours (builtin backbone or none): their initialisers skip
    meta tensors."""
    if config.get("strategy") == "metadata":
        return True
    try:
        return get_backbone_config(config.get("backbone") or "compact_cnn").family == "builtin"
    except (KeyError, ValueError):
        return False


def _load_built(model: SequenceModel, state: Dict[str, torch.Tensor]) -> SequenceModel:
    """``state`` copied into ``model``, built (and initialised) the ordinary way."""
    _check_classes(model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise _StateMismatch(str(exc)) from None
    return model


def _check_classes(model: SequenceModel) -> None:
    if model.num_classes != len(CLASS_NAMES):
        raise CheckpointError(f"checkpoint model predicts {model.num_classes} classes, expected {len(CLASS_NAMES)}")


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu",
                    validate: Optional[Callable[[ModelCard], None]] = None) -> Tuple[EnsembleModel, ModelCard]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    ``path`` may be the ``.json`` card, the ``.safetensors`` file or their
    common stem.  The weights file's SHA-256 is verified against the card
    before anything else is read from it; a mismatch raises
    :class:`CheckpointError` naming the file and both hashes.  Returns the
    ensemble (in ``eval`` mode, parameters with ``requires_grad=False``, on
    ``map_location``) and the typed card (:class:`~.card.ModelCard`; ``card.raw`` is the JSON as read).
    Every number of the card is range-checked before anything is built from it; ``validate(card)``
    (e.g. the classifier's feature-schema check) runs then too, before the weights are hashed or read.
    """
    card_path, default_weights = checkpoint_paths(path)
    # every field range-checked before anything is allocated from it (CardError names the field)
    card = parse_card(read_card(card_path), card_path)
    if validate is not None:
        validate(card)
    weights_path = card_path.parent / (card.weights_file or default_weights.name)
    if not weights_path.is_file():
        raise CheckpointError(
            f"weights file {weights_path} referenced by checkpoint card {card_path} does not exist "
            "(copy the .safetensors file next to the .json card)"
        )

    actual = sha256_file(weights_path)
    expected = card.weights_sha256
    if actual != expected:
        raise CheckpointError(
            f"weights file {weights_path} has SHA-256 {actual}, but its card {card_path} expects {expected}; "
            "refusing to load a modified or mismatched checkpoint"
        )

    try:
        with safe_open(str(weights_path), framework="pt") as fh:
            header = fh.metadata() or {}
        device = str(torch.device(map_location))
        tensors = _st_load_file(str(weights_path), device=device)
    except Exception as exc:  # corrupt header etc.
        raise CheckpointError(f"cannot read weights file {weights_path}: {exc}") from exc
    n_folds = card.n_folds
    if header.get("n_folds") not in (None, str(n_folds)):
        raise CheckpointError(
            f"weights file {weights_path} holds {header.get('n_folds')} folds but its card says {n_folds}"
        )

    models: List[SequenceModel] = []
    for i in range(n_folds):
        prefix = f"fold{i}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f"weights file {weights_path} has no tensors for fold {i}")
        try:
            model = _load_fold(dict(card.model.config), state)
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint card {card_path} has an unusable model config: {exc}") from exc
        except _StateMismatch as exc:
            raise CheckpointError(f"fold {i} weights in {weights_path} do not match the model config: {exc}") from exc
        models.append(model)
    ood_tensors = {k: v for k, v in tensors.items() if k.startswith("ood.")}
    extra = [k for k in tensors if not k.startswith("ood.")
             and not any(k.startswith(f"fold{i}.") for i in range(n_folds))]
    if extra:
        raise CheckpointError(f"weights file {weights_path} holds unexpected tensors, e.g. {extra[:3]}")
    scorer = None
    if ood_tensors:
        try:
            per_fold = stats_from_tensors(ood_tensors, n_folds)
        except ValueError as exc:
            raise CheckpointError(f"weights file {weights_path}: {exc}") from exc
        scorer = OodScorer(per_fold, dict(card.ood_thresholds))

    ensemble = EnsembleModel(models, card).to(map_location)
    ensemble.ood = scorer
    ensemble.eval()
    # An inference artefact: no autograd bookkeeping (re-enable on ``ensemble.models[i]``
    # with ``requires_grad_(True)`` to fine-tune from a checkpoint).
    ensemble.requires_grad_(False)
    return ensemble, card

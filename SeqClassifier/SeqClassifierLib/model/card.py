"""The model card, typed: :class:`ModelCard`, parsed and validated once.

A checkpoint's ``<stem>.json`` card (see :mod:`.checkpoint`) is free-form JSON
written by the trainer.  What the library *reads* from it -- the architecture,
the preprocessing, the calibration, the review threshold, the out-of-distribution
thresholds, the feature schema -- is parsed here into frozen dataclasses (like
timm's ``PretrainedCfg``), so no other module reads ``card["..."]``.

Every number is range-checked before anything is built from it: a card whose
image size, channel count, feature count, layer width or fold count would size
an allocation beyond :data:`LIMITS` is refused with one line naming the card
file and the field (:class:`CardError`), instead of the process being killed for
memory.  The JSON on disk is unchanged: :attr:`ModelCard.raw` keeps it as read
(training summary, metrics, history, ...), for writing a card back.

Pure Python: no torch, no numpy.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

from SeqClassifierLib.labels import CLASS_NAMES
from SeqClassifierLib.model.decision import RULES as DECISION_RULES
from SeqClassifierLib.model.review_rule import ReviewRule

__all__ = ["CheckpointError", "CardError", "ModelCard", "Architecture", "Preprocessing", "LoraSpec",
           "LIMITS", "MAX_CARD_BYTES", "CARD_FORMAT_VERSION", "parse_card", "read_card_json", "load_card",
           "checkpoint_paths"]

#: Version of the card / file layout written by :func:`~.checkpoint.save_checkpoint`.
CARD_FORMAT_VERSION = 1
#: A card file larger than this is refused before it is read (the shipped card is ~50 KB).
MAX_CARD_BYTES = 16 * 1024 * 1024
#: Model config version this library rebuilds (see :mod:`.fusion`).
MAX_MODEL_CONFIG_VERSION = 1

#: (lowest, highest) of every number of a card that sizes an allocation or a computation.
LIMITS: dict[str, Tuple[float, float]] = {
    "n_folds": (1, 64),
    "model.num_meta_features": (1, 65536),
    "model.num_classes": (2, 1000),
    "model.meta_hidden": (1, 16384),
    "model.meta_dim": (1, 16384),
    "model.fusion_hidden": (1, 16384),
    "model.input_size": (8, 2048),
    "model.lora.rank": (1, 1024),
    "preprocessing.input_size": (8, 2048),
    "format_version": (0, CARD_FORMAT_VERSION),
    "model.model_config_version": (0, MAX_MODEL_CONFIG_VERSION),
    "training.seed": (0, 2 ** 63 - 1),
    "data.n_series": (0, 10 ** 9),
}
#: Image channels the library feeds a backbone (length of ``mean`` and ``std``).
CHANNELS = 3
#: Most feature names a card may list.
MAX_FEATURE_NAMES = int(LIMITS["model.num_meta_features"][1])

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, tampered with or incompatible."""


class CardError(CheckpointError):
    """A card field is missing, of the wrong type or out of range (the message names the file and field)."""


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    targets: Tuple[str, ...]
    dropout: float


@dataclass(frozen=True)
class Architecture:
    """The card's ``model`` entry: enough to rebuild the network (:func:`~.fusion.model_from_config`)."""

    strategy: str
    backbone: Optional[str]
    num_meta_features: int
    num_classes: int
    meta_hidden: int
    meta_dim: int
    fusion_hidden: int
    dropout: float
    lora: Optional[LoraSpec]
    input_size: Optional[int]
    config_version: int
    #: The entry as on disk (what :func:`~.fusion.model_from_config` is given, after validation).
    config: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def uses_image(self) -> bool:
        return self.strategy != "metadata"


@dataclass(frozen=True)
class Preprocessing:
    """How the centre slice is turned into the model's image (:mod:`~SeqClassifierLib.inputs.image`)."""

    input_size: int = 224
    mean: Tuple[float, ...] = (0.5,) * CHANNELS
    std: Tuple[float, ...] = (0.5,) * CHANNELS


@dataclass(frozen=True)
class ModelCard:
    """What the library reads from a checkpoint's card (see the module docstring)."""

    path: Optional[Path]
    format_version: int
    classes: Tuple[str, ...]
    model: Architecture
    n_folds: int
    weights_file: Optional[str]
    weights_sha256: str
    weights_dtype: str
    name: str
    version: str
    feature_schema_version: str
    #: The metadata feature names the model was trained on, in order (None: an older card without them).
    feature_names: Optional[Tuple[str, ...]]
    preprocessing: Preprocessing
    #: Softmax temperature fitted on the out-of-fold logits (1.0 when absent).
    temperature: float
    #: Confidence below which a prediction is flagged for review (None: the library's default).
    review_threshold: Optional[float]
    #: Out-of-distribution distance threshold per place (image, meta, fused, header).
    ood_thresholds: Mapping[str, float]
    training_seed: int
    #: Labelled series the model was trained on (None when not recorded).
    n_training_series: Optional[int]
    #: Names of the decision rules (:mod:`.decision`) the model was validated with (None: none apply).
    decision_rules: Optional[Tuple[str, ...]] = None
    #: The review rule fitted on real out-of-source predictions (:mod:`.review_rule`; None: the older rule).
    review_rule: Optional[ReviewRule] = None
    #: The card as read (free-form entries: training summary, metrics, history ...).
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def uses_image(self) -> bool:
        return self.model.uses_image

    def display_name(self, fallback: str) -> str:
        """``name@version`` (``fallback`` when the card has no name)."""
        return (self.name or fallback) + (f"@{self.version}" if self.version else "")


# ----------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------

_MISSING = object()


class _Reader:
    """Typed, range-checked access to one card's entries; errors name the card and the field."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, name: str, what: str) -> CardError:
        return CardError(f"checkpoint card {self.where}: {name} {what}")

    def section(self, obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        v = obj.get(key)
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise self.fail(key, f"is {type(v).__name__}, not an object")
        return v

    def integer(self, value: Any, name: str, default: Any = _MISSING) -> Any:
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self.fail(name, "is missing")
            return default
        lo, hi = LIMITS[name]
        given = value
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            value = int(value)  # 128.0 as written by some JSON tools
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"= {_short(given)} is not an integer")
        if not lo <= value <= hi:
            raise self.fail(name, f"= {_short(given)} is out of range [{lo}, {hi}]")
        return value

    def number(self, value: Any, name: str, lo: float, hi: float, *, lo_open: bool = False,
               hi_open: bool = False, default: Any = _MISSING) -> Any:
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self.fail(name, "is missing")
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(name, f"= {_short(value)} is not a number")
        v = float(value)
        ok = math.isfinite(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
        if not ok:
            bounds = ("(" if lo_open else "[") + f"{lo:g}, {hi:g}" + (")" if hi_open else "]")
            raise self.fail(name, f"= {_short(value)} is out of range {bounds}")
        return v

    def text(self, value: Any, name: str, default: Any = _MISSING, max_len: int = 4096) -> Any:
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self.fail(name, "is missing")
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # e.g. a version written as a number
        if not isinstance(value, str):
            raise self.fail(name, f"= {_short(value)} is not text")
        if len(value) > max_len:
            raise self.fail(name, f"is {len(value)} characters long (at most {max_len})")
        return value

    def channels(self, value: Any, name: str, default: Tuple[float, ...], positive: bool) -> Tuple[float, ...]:
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, (list, tuple)):
            raise self.fail(name, f"= {_short(value)} is not a list of {CHANNELS} numbers")
        if len(value) != CHANNELS:
            raise self.fail(name, f"has {len(value)} values; the model's image has {CHANNELS} channels")
        lo = 0.0 if positive else -1e6
        return tuple(self.number(v, f"{name}[{i}]", lo, 1e6, lo_open=positive) for i, v in enumerate(value))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _lora(r: _Reader, value: Any) -> Optional[LoraSpec]:
    if value is None or value is _MISSING:
        return None
    if not isinstance(value, Mapping):
        raise r.fail("model.lora", f"is {type(value).__name__}, not an object")
    targets = value.get("targets", ())
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets) or len(targets) > 64:
        raise r.fail("model.lora.targets", "is not a list of at most 64 module names")
    return LoraSpec(rank=r.integer(value.get("rank", _MISSING), "model.lora.rank"),
                    alpha=r.number(value.get("alpha", 8.0), "model.lora.alpha", 0.0, 1e6, lo_open=True),
                    targets=tuple(targets),
                    dropout=r.number(value.get("dropout", 0.0), "model.lora.dropout", 0.0, 1.0, hi_open=True))


def _architecture(r: _Reader, m: Mapping[str, Any]) -> Architecture:
    strategy = r.text(m.get("strategy", _MISSING), "model.strategy", max_len=64)
    backbone = r.text(m.get("backbone"), "model.backbone", default=None, max_len=200)
    return Architecture(
        strategy=strategy,
        backbone=backbone,
        # an image-only model has no metadata branch: 0 (or nothing) is its feature count
        num_meta_features=0 if strategy == "image" and m.get("num_meta_features") in (None, 0)
        else r.integer(m.get("num_meta_features", _MISSING), "model.num_meta_features"),
        num_classes=r.integer(m.get("num_classes", _MISSING), "model.num_classes"),
        meta_hidden=r.integer(m.get("meta_hidden"), "model.meta_hidden", default=128),
        meta_dim=r.integer(m.get("meta_dim"), "model.meta_dim", default=64),
        fusion_hidden=r.integer(m.get("fusion_hidden"), "model.fusion_hidden", default=256),
        dropout=r.number(m.get("dropout"), "model.dropout", 0.0, 1.0, hi_open=True, default=0.1),
        lora=_lora(r, m.get("lora")),
        input_size=r.integer(m.get("input_size"), "model.input_size", default=None),
        config_version=r.integer(m.get("model_config_version"), "model.model_config_version", default=1),
        config=dict(m),
    )


def _feature_names(r: _Reader, value: Any) -> Optional[Tuple[str, ...]]:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_FEATURE_NAMES:
        raise r.fail("feature_names", f"is not a list of at most {MAX_FEATURE_NAMES} names")
    if not all(isinstance(n, str) and 0 < len(n) <= 200 for n in value):
        raise r.fail("feature_names", "holds an entry that is not a name")
    return tuple(value)


def parse_card(raw: Any, where: object = "<card>") -> ModelCard:
    """The :class:`ModelCard` of a card's JSON object; :class:`CardError` naming ``where`` and the field."""
    r = _Reader(str(where))
    if not isinstance(raw, Mapping):
        raise CardError(f"checkpoint card {where} is not a JSON object")
    if not isinstance(raw.get("format_version"), int) or isinstance(raw.get("format_version"), bool):
        raise CardError(f"checkpoint card {where} has no integer format_version")
    version = raw["format_version"]
    if version > CARD_FORMAT_VERSION:
        raise CardError(f"checkpoint card {where} has format_version {version}; this SeqClassifier reads "
                        f"up to {CARD_FORMAT_VERSION} (update SeqClassifier)")
    classes = raw.get("classes")
    if classes != list(CLASS_NAMES):
        raise CardError(f"checkpoint {where} predicts classes {_short(classes)}, but this SeqClassifier uses "
                        f"{list(CLASS_NAMES)}")
    for key in ("model", "n_folds", "weights_sha256"):
        if key not in raw:
            raise CardError(f"checkpoint card {where} lacks {key!r}")
    model = r.section(raw, "model")
    arch = _architecture(r, model)
    if arch.num_classes != len(CLASS_NAMES):
        raise r.fail("model.num_classes", f"= {arch.num_classes}, but the card's classes are {len(CLASS_NAMES)}")
    pre = r.section(raw, "preprocessing")
    default = Preprocessing()
    preprocessing = Preprocessing(
        input_size=r.integer(pre.get("input_size"), "preprocessing.input_size", default=default.input_size),
        mean=r.channels(pre.get("mean"), "preprocessing.mean", default.mean, positive=False),
        std=r.channels(pre.get("std"), "preprocessing.std", default.std, positive=True))
    ood = r.section(raw, "ood")
    thresholds = ood.get("thresholds") if isinstance(ood.get("thresholds"), Mapping) else {}
    # (as before: a threshold that is not a finite number turns that place's check off)
    ood_thresholds = {str(k): float(v) for k, v in thresholds.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    training = r.section(raw, "training")
    data = r.section(raw, "data")
    temperature = r.number(raw.get("temperature"), "temperature", 0.0, 1e6, lo_open=True, default=1.0)
    weights_file = r.text(raw.get("weights_file"), "weights_file", default=None, max_len=255)
    if weights_file is not None and os.path.basename(weights_file) != weights_file:
        raise CardError(f"checkpoint card {where} names a weights file outside its folder: {weights_file!r}")
    sha = r.text(raw.get("weights_sha256"), "weights_sha256", max_len=128)
    decision_rules = raw.get("decision_rules")
    if decision_rules is not None:
        unknown = [x for x in decision_rules if x not in DECISION_RULES] if isinstance(decision_rules, list) \
            else [decision_rules]
        if unknown:
            raise r.fail("decision_rules", f"names unknown decision rules {_short(unknown)}")
        decision_rules = tuple(decision_rules)
    review_rule = None
    if raw.get("review_rule") is not None:
        try:
            review_rule = ReviewRule.from_dict(raw["review_rule"])
        except (TypeError, ValueError) as exc:
            raise CardError(f"checkpoint card {where}: {exc}") from None
    return ModelCard(
        path=Path(os.fspath(where)) if isinstance(where, (str, os.PathLike)) else None,
        format_version=version,
        classes=tuple(classes),
        model=arch,
        n_folds=r.integer(raw.get("n_folds", _MISSING), "n_folds"),
        weights_file=weights_file,
        weights_sha256=sha.lower(),
        weights_dtype=r.text(raw.get("weights_dtype"), "weights_dtype", default="float32", max_len=32),
        name=r.text(raw.get("name"), "name", default="", max_len=200),
        version=r.text(raw.get("version"), "version", default="", max_len=200),
        feature_schema_version=r.text(raw.get("feature_schema_version"), "feature_schema_version", default="",
                                      max_len=64),
        feature_names=_feature_names(r, raw.get("feature_names")),
        preprocessing=preprocessing,
        temperature=temperature,
        review_threshold=r.number(raw.get("review_threshold"), "review_threshold", 0.0, 1.0, default=None),
        ood_thresholds=ood_thresholds,
        training_seed=r.integer(training.get("seed"), "training.seed", default=0),
        n_training_series=r.integer(data.get("n_series"), "data.n_series", default=None),
        decision_rules=decision_rules,
        review_rule=review_rule,
        raw=raw,
    )


def read_card_json(card_path: Path) -> dict:
    """The card file's JSON object, read only when it is a regular file of at most :data:`MAX_CARD_BYTES`."""
    if not card_path.is_file():
        raise CheckpointError(f"checkpoint card {card_path} does not exist")
    try:
        size = card_path.stat().st_size
        if size > MAX_CARD_BYTES:
            raise CardError(f"checkpoint card {card_path} is {size} bytes; a card is at most "
                            f"{MAX_CARD_BYTES >> 20} MiB (not read)")
        with open(card_path, "r", encoding="utf-8") as fh:
            card = json.loads(fh.read(MAX_CARD_BYTES + 1))
    except RecursionError:
        raise CardError(f"cannot read checkpoint card {card_path}: JSON nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint card {card_path}: {exc}") from exc
    if not isinstance(card, dict):
        raise CheckpointError(f"checkpoint card {card_path} is not a JSON object")
    version = card.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"checkpoint card {card_path} has no integer format_version")
    if version > CARD_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint card {card_path} has format_version {version}; this SeqClassifier reads "
            f"up to {CARD_FORMAT_VERSION} (update SeqClassifier)"
        )
    return card


def checkpoint_paths(path: PathLike) -> Tuple[Path, Path]:
    """``(card_path, weights_path)`` for a ``.json`` path, a ``.safetensors``
    path or a stem (``models/seqclassifier`` -> ``models/seqclassifier.json``,
    ``models/seqclassifier.safetensors``)."""
    p = Path(os.fspath(path)).expanduser()
    if p.suffix.lower() in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".safetensors")


def load_card(card_path: PathLike) -> ModelCard:
    """Read and validate a card file (weights untouched)."""
    p = Path(os.fspath(card_path))
    return parse_card(read_card_json(p), p)

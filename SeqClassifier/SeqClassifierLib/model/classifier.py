"""Prediction: series records in, one :class:`~.records.Prediction` per series out.

:class:`Classifier` loads a checkpoint (safetensors + JSON card, see
:mod:`.checkpoint`) once and classifies batches of series: metadata features
and center slices are prepared with every core (worker processes,
:mod:`~SeqClassifierLib.inputs.prepare_pool`), then run through the model in batches under
``torch.inference_mode``, in bfloat16 mixed precision where the hardware
computes it natively (a CUDA GPU; a CPU with AMX / AVX512-BF16), else in
float32 (see :func:`resolve_precision`; ``precision="fp32"`` forces float32).

When no trained model is available the classifier says so and returns no
labels: SeqClassifier never invents a label.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from SeqClassifierLib.config import MODEL_ENV, model_override  # noqa: F401  (MODEL_ENV: API)
from SeqClassifierLib.inputs.prepare_pool import prepare_many, spec_of
from SeqClassifierLib.inputs.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES, feature_difference
from SeqClassifierLib.inputs.quality import ImageQuality
from SeqClassifierLib.inputs.study import SeriesContext, study_contexts
from SeqClassifierLib.inputs.thumbnail import SIZE as THUMBNAIL_SIZE
from SeqClassifierLib.model.card import ModelCard
from SeqClassifierLib.model.decision import decide
from SeqClassifierLib.model.evidence import Facts, evidence_conflict_items
from SeqClassifierLib.model.reasons import Reason, ReasonKind, review_reasons
from SeqClassifierLib.model.review_rule import ReviewRule
from SeqClassifierLib.labels import CLASS_NAMES, SequenceLabel
from SeqClassifierLib.lifetime import interrupts_deferred, raise_if_terminated
from SeqClassifierLib.inputs.prepared import PreparedInput, prepare_input  # noqa: F401  (PreparedInput: API)
from SeqClassifierLib.records import Prediction, SeriesRecord
from SeqClassifierLib.resident import gpu_device_nodes, handing_back_while_importing, release_gpu_library_pages

ProgressFn = Callable[[int, int], None]

DEFAULT_MODEL_NAME = "seqclassifier_default.json"
#: Confidence below which a prediction is flagged for review when the card sets none.
DEFAULT_REVIEW_THRESHOLD = 0.80
UNTRAINED = "untrained"


def assets_dir() -> Path:
    """The folder of the shipped model, package data of ``SeqClassifierLib.model``.

    It travels with the library wherever it goes (a pip wheel, the Slicer
    extension, a source checkout), so there is one place to look.
    """
    return Path(__file__).resolve().parent / "assets"


def default_model_path() -> Optional[Path]:
    """The checkpoint ``classify`` uses by default, or None if none ships."""
    override = model_override()
    if override is not None:
        return override
    path = assets_dir() / DEFAULT_MODEL_NAME
    return path if path.is_file() else None


def check_feature_schema(card: Union[ModelCard, Mapping[str, Any]], where: object) -> None:
    """ValueError unless the model's metadata features are exactly the ones this library computes.

    A card lists its feature names (``feature_names``): they are compared name by name and the message
    says which were added or are missing.  An older card without them stands for the names of its
    ``feature_schema_version``: accepted when that is this library's version with as many features.
    """
    if isinstance(card, ModelCard):
        names, schema, n = card.feature_names, card.feature_schema_version, card.model.num_meta_features
    else:
        names = card.get("feature_names")
        schema = str(card.get("feature_schema_version", ""))
        n = (card.get("model") or {}).get("num_meta_features")
    if names is None:
        if schema != FEATURE_SCHEMA_VERSION or (n is not None and int(n) != N_FEATURES):
            raise ValueError(
                f"{where}: the model was trained on metadata feature schema {schema or '(none)'} with {n} features; "
                f"this SeqClassifier computes schema {FEATURE_SCHEMA_VERSION} with {N_FEATURES} features. "
                "Retrain the model with this version (seqclassifier train) or use the SeqClassifier it was made with.")
        names = FEATURE_NAMES
    names = tuple(names)
    if n and int(n) != len(names):
        raise ValueError(f"{where}: the card lists {len(names)} feature names for a model of {n} metadata inputs")
    difference = feature_difference(names)
    if difference:
        raise ValueError(
            f"{where}: the model was trained on {len(names)} metadata features, this SeqClassifier computes "
            f"{N_FEATURES}: {difference}. Retrain the model with this version (seqclassifier train) or use the "
            "SeqClassifier it was made with.")
    if schema and schema != FEATURE_SCHEMA_VERSION:
        raise ValueError(
            f"{where}: the model's feature names are this SeqClassifier's, but their meaning changed: it was "
            f"trained on schema {schema}, this SeqClassifier computes schema {FEATURE_SCHEMA_VERSION}. Retrain "
            "the model with this version (seqclassifier train) or use the SeqClassifier it was made with.")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; explicit values are checked."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA GPU is available to torch")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


PRECISIONS = ("auto", "fp32", "bf16")


def _cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AMX tiles or AVX512-BF16): there
    oneDNN's bf16 convolutions are ~2x faster than fp32; elsewhere they are emulated and slower."""
    import torch

    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        probe = getattr(torch.cpu, name, None)  # private probes; absent on old torch: fp32
        try:
            if probe is not None and probe():
                return True
        except Exception:
            pass
    return False


def _checked_precision(precision: Optional[str]) -> str:
    """``precision`` lower-cased (None: ``auto``); ValueError unless one of :data:`PRECISIONS`."""
    value = (precision or "auto").lower()
    if value not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return value


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``bf16`` on CUDA and on CPUs with native bfloat16, else ``fp32``.

    bf16 changes probabilities by about 1e-3 (measured on the shipped model: same
    label for every real series, largest difference 0.002).  ``fp32`` gives the same rows
    whatever the thread count or batch size (measured with 1-4 threads and batches of 7 and 64);
    the unrounded probabilities differ there only in the last bits (up to 2e-7), since the CPU
    kernels split their sums by thread and by batch.
    """
    precision = _checked_precision(precision)
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16"
    return "bf16" if _cpu_has_native_bf16() else "fp32"


class Classifier:
    """Classify series with a trained checkpoint.

    ``model`` is a checkpoint path (``.json`` card or ``.safetensors``), or
    None for the shipped default.  If neither exists the classifier is
    *untrained*: :meth:`classify` returns predictions with ``label=None``.
    :meth:`from_ensemble` builds one around an ensemble already in memory
    (e.g. one fold of a checkpoint, see :mod:`~SeqClassifierLib.training.held_out`).
    ``hand_back_gpu_pages``: on the CPU, unmap the clean pages of the GPU libraries ``import torch``
    maps (:mod:`SeqClassifierLib.resident`): while torch imports where no GPU device node is seen (or
    ``device="cpu"``), else before the weights are read; the command line asks for it, the library
    never does by itself.
    """

    #: Names of the decision rules (model.decision) the card was validated with; None: none apply.
    decision_rules: Optional[list] = None
    #: The card's review rule (model.review_rule), fitted on real out-of-source predictions; None: the
    #: older rule (confidence below review_threshold, every distance place, every evidence conflict).
    review_rule: Optional[ReviewRule] = None
    #: Set to a list to receive each classified series' raw distances ({place: value}), in order.
    score_log: Optional[list] = None
    #: Optional site hook (:class:`SeqClassifierLib.adaptation.hook.SiteHook`): sees each series'
    #: features and its shipped prediction, may return an adapted one. None: the shipped behaviour.
    site: Any = None
    #: Processes preparing the model inputs (this one included); None: automatic (see
    #: :func:`~SeqClassifierLib.inputs.prepare_pool.plan_processes`), 1: this process only.
    processes: Optional[int] = None
    #: Set to a dict to receive each classified series' thumbnail (uint8 ``[SIZE, SIZE]`` or None,
    #: :mod:`~SeqClassifierLib.inputs.thumbnail`) by series key, made from the slice the model reads.
    thumbnails: Optional[dict] = None
    #: Batches prepared at a time before the model runs on them (bounds the prepared inputs in memory).
    window_batches: int = 4

    def __init__(self, model: Union[str, os.PathLike, None] = None, device: str = "auto",
                 batch_size: int = 64, workers: int = 4, precision: str = "auto",
                 hand_back_gpu_pages: bool = False):
        _checked_precision(precision)  # refused even when no model is installed
        self.precision = "fp32"
        self.batch_size = batch_size
        self.workers = workers
        self.model_path: Optional[Path] = Path(model) if model is not None else default_model_path()
        #: The typed card of the loaded checkpoint (None: untrained).
        self.card: Optional[ModelCard] = None
        self._model = None
        self.device = "cpu"
        if model is not None and not Path(model).exists():
            raise FileNotFoundError(f"model checkpoint not found: {model}")
        if self.model_path is not None:
            # on a CPU-only machine (or --device cpu) the pages go while torch imports, before the import's
            # own peak; a GPU machine keeps them (its run needs them)
            cpu_bound = hand_back_gpu_pages and (str(device).lower() == "cpu" or (
                str(device).lower() == "auto" and not gpu_device_nodes()))
            # Ctrl-C while torch imports would abort the process from its C++ start-up: raised after it
            with interrupts_deferred(), (handing_back_while_importing() if cpu_bound else nullcontext()):
                from SeqClassifierLib.model.checkpoint import load_checkpoint  # torch: only when a model is used

                device = resolve_device(device)
                if hand_back_gpu_pages and device == "cpu":
                    # before the weights are read, so that what they and the model need comes on top of
                    # less: the GPU libraries' pages (where they did not go while torch imported) and
                    # those of torch's CPU libraries that only its import touched
                    release_gpu_library_pages(torch_cpu=True)
                # the feature schema is checked on the card, before the weights are hashed, read and built
                ensemble, card = load_checkpoint(self.model_path, map_location=device,
                                                 validate=lambda c: check_feature_schema(c, c.path or self.model_path))
            self._attach(ensemble, card, device, precision, checked=True)

    @classmethod
    def from_ensemble(cls, ensemble: Any, card: ModelCard, *, device: str = "cpu", precision: str = "fp32",
                      batch_size: int = 64, workers: int = 4,
                      model_path: Union[str, os.PathLike, None] = None) -> "Classifier":
        """A classifier around an :class:`~.ensemble.EnsembleModel` already in memory, with the card of
        the checkpoint it came from (preprocessing, review threshold, name).  Nothing is read from disk."""
        self = cls.__new__(cls)
        _checked_precision(precision)
        self.batch_size, self.workers, self.precision = batch_size, workers, "fp32"
        self.model_path = Path(model_path) if model_path is not None else card.path
        self.card, self._model, self.device = None, None, "cpu"
        self._attach(ensemble, card, resolve_device(device), precision)
        return self

    def _attach(self, ensemble: Any, card: ModelCard, device: str, precision: str, checked: bool = False) -> None:
        """Use ``ensemble`` (described by ``card``) on ``device``: the one place a model is installed.
        ``checked``: the card's feature schema was checked already (when the checkpoint was read)."""
        if not checked:
            check_feature_schema(card, card.path or self.model_path)
        self.device = device
        self.precision = resolve_precision(precision, device)
        self._model, self.card = ensemble, card
        self._model.to(self.device).eval()
        if card.uses_image:
            import torch

            # NHWC: oneDNN / cuDNN convolutions run ~1.7x faster on the CPU than NCHW, same fp32 math
            self._model.to(memory_format=torch.channels_last)
        if self.device.startswith("cuda"):
            self._warm_up()
        self._apply_card_rules()

    def _apply_card_rules(self) -> None:
        """The card's decision rules and review rule (both validated when the card was parsed)."""
        rules = self.card.decision_rules
        self.decision_rules = list(rules) if rules is not None else None
        self.review_rule = self.card.review_rule

    def _unlike(self, scores: Mapping[str, np.ndarray], i: int) -> list:
        """The "unlike training data" reasons of series ``i``: with a review rule, only the places it
        names at its thresholds; else every place over the card's threshold.  (The card's thresholds
        stay on the scorer: the site memory measures its radius in them.)"""
        if not scores:
            return []
        rule = self.review_rule
        return self._model.ood.reasons(scores, i, None if rule is None else rule.distances)

    def _warm_up(self) -> None:
        """One dummy batch at load time: CUDA context, cuDNN autotuning and kernel
        compilation happen here instead of delaying the first real series."""
        import torch

        size = self.card.preprocessing.input_size
        images = torch.zeros(2, 3, size, size, device=self.device) if self.card.uses_image else None
        meta = torch.zeros(2, N_FEATURES, device=self.device)
        with torch.inference_mode(), self._autocast():
            self._model(images, meta)
        torch.cuda.synchronize()

    def _autocast(self):
        """The mixed-precision context of :attr:`precision` on :attr:`device`."""
        import torch

        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @property
    def is_trained(self) -> bool:
        return self._model is not None

    @property
    def model_name(self) -> str:
        if not self.is_trained:
            return UNTRAINED
        return self.card.display_name(self.model_path.stem if self.model_path is not None else "model")

    @property
    def review_threshold(self) -> float:
        if self.review_rule is not None:
            return float(self.review_rule.confidence)
        t = self.card.review_threshold if self.card is not None else None
        return float(DEFAULT_REVIEW_THRESHOLD if t is None else t)

    def _prepare(self, record: SeriesRecord, context: Optional[SeriesContext]) -> PreparedInput:
        """The :class:`PreparedInput` of one series."""
        pre = self.card.preprocessing
        return prepare_input(record, context, size=pre.input_size, mean=pre.mean, std=pre.std,
                             uses_image=self.card.uses_image)

    def classify(self, records: Sequence[SeriesRecord], progress: Optional[ProgressFn] = None,
                 prepared: Optional[Sequence[PreparedInput]] = None) -> list[Prediction]:
        """One prediction per record, in the same order.  ``prepared``: their inputs, already made by
        :func:`~SeqClassifierLib.inputs.prepared.prepare_input` with this card's preprocessing (the
        command line's header-reading process makes them while torch imports); None: made here."""
        records = list(records)
        given = list(prepared) if prepared is not None else None
        if given is not None and len(given) != len(records):
            raise ValueError(f"{len(given)} prepared inputs for {len(records)} series")
        if not self.is_trained:
            out = [
                Prediction(r.series_uid, None, None, {}, True, UNTRAINED,
                           "untrained: no trained model is installed, so no label is given")
                for r in records
            ]
            if progress:
                progress(len(records), len(records))
            return out

        pre = self.card.preprocessing
        spec = spec_of(self.card)
        size, uses_image = spec[0], spec[3]
        contexts = study_contexts(records)
        results: list[Prediction] = []
        done = 0
        # Windows of a few batches: each one's inputs are prepared with every core (worker processes,
        # inputs.prepare_pool), then the model runs on its batches; the two never run side by side (on
        # the CPU they would share the cores and the GIL).  The batches are those of one pass.
        window = self.batch_size * max(1, self.window_batches)
        for lo in range(0, len(records), window):
            raise_if_terminated()
            part = records[lo:lo + window]
            if given is not None:
                inputs = [p.standardized(pre.mean, pre.std) for p in given[lo:lo + len(part)]]
            else:
                inputs = prepare_many(part, contexts, spec, processes=self.processes, threads=self.workers,
                                      thumbnail_size=THUMBNAIL_SIZE if self.thumbnails is not None else None)
            for b in range(0, len(part), self.batch_size):
                raise_if_terminated()
                batch = part[b:b + self.batch_size]
                results.extend(self._run_batch(batch, inputs[b:b + self.batch_size], contexts, size, uses_image))
                done += len(batch)
                if progress:
                    progress(done, len(records))
        return results

    def _run_batch(self, batch: Sequence[SeriesRecord], prepared: Sequence[PreparedInput], contexts: dict,
                   size: int, uses_image: bool) -> list[Prediction]:
        """The model on one batch of prepared inputs, and a prediction per series."""
        import torch

        meta = torch.from_numpy(np.stack([p.meta for p in prepared])).to(self.device)
        present = torch.tensor([p.image is not None for p in prepared], device=self.device)
        images = None
        if uses_image:
            # filled in NHWC order: the NCHW view of it is channels-last already (no second copy)
            arr = np.zeros((len(batch), size, size, 3), dtype=np.float32)
            for i, p in enumerate(prepared):
                if p.image is not None:
                    arr[i] = p.image.transpose(1, 2, 0)
            images = torch.from_numpy(arr).permute(0, 3, 1, 2).to(self.device, non_blocking=True).contiguous(
                memory_format=torch.channels_last)
        meta_present = torch.ones(len(batch), dtype=torch.bool, device=self.device)
        captured = None
        with torch.inference_mode(), self._autocast():
            if self.site is None:
                probs, scores = self._model.forward_with_scores(images, meta, image_present=present,
                                                                meta_present=meta_present)
            else:
                probs, scores, captured = self._model.forward_with_features(
                    images, meta, image_present=present, meta_present=meta_present)
        probs = probs.float().cpu().numpy()
        out = []
        for i, (r, p, prep) in enumerate(zip(batch, probs, prepared)):
            if self.score_log is not None:
                self.score_log.append({place: float(v[i]) for place, v in scores.items()
                                       if place != "image" or prep.image is not None})
            unlike = self._unlike(scores, i)
            # without an image the image place's distance measures the "missing" vector
            if prep.image is None:
                unlike = [u for u in unlike if u.place != "image"]
            if self.thumbnails is not None and prep.thumbnail is not None:
                self.thumbnails[r.key] = prep.thumbnail
            pred = self._to_prediction(r, p, prep.image_note, contexts.get(r.key), prep.quality, unlike)
            if self.site is not None:
                pred = self.site.adapt(self, r, p, pred, captured, i, scores, unlike, prep.image_note,
                                       contexts.get(r.key), prep.quality, prep.image is not None)
            out.append(pred)
        return out

    def _to_prediction(self, record: SeriesRecord, probs: np.ndarray, note: str,
                       context: Optional[SeriesContext] = None, quality: Optional[ImageQuality] = None,
                       unlike: Sequence[Reason] = ()) -> Prediction:
        facts = Facts.of(record, context)
        ruled = []
        if self.decision_rules is not None:
            probs, ruled = decide(probs, record, facts, self.decision_rules)
        k = int(np.argmax(probs))
        conf = float(probs[k])
        label = SequenceLabel(CLASS_NAMES[k])
        items = evidence_conflict_items(record, label, context, facts)
        rule = self.review_rule
        conflicts = [t for n, t in items if rule is None or n in rule.conflicts]
        reasons = review_reasons(conf, self.review_threshold, image_note=note, unlike=unlike, conflicts=conflicts,
                                 quality=quality if rule is None or rule.quality else None)
        notes = [note] if note else []
        if context is not None and context.note:
            notes.append(context.note)
        notes += [f"ruled out by evidence ({name})" for name in ruled]
        notes += [r for r in reasons if r.kind is not ReasonKind.IMAGE_UNREADABLE]
        notes += [f"evidence: {t}" for n, t in items if rule is not None and n not in rule.conflicts]
        return Prediction(
            series_uid=record.series_uid,
            label=label,
            confidence=round(conf, 4),
            probabilities={c: round(float(p), 4) for c, p in zip(CLASS_NAMES, probs)},
            needs_review=bool(reasons),
            model=self.model_name,
            note="; ".join(notes),
            review_reasons=reasons,
            group=context.group if context is not None else "",
            image_quality=round(quality.score, 3) if quality is not None else None,
        )

"""Prediction: series records in, one :class:`~.records.Prediction` per series out.

:class:`Classifier` loads a checkpoint (safetensors + JSON card, see
:mod:`.checkpoint`) once and classifies batches of series: metadata features
and center slices are prepared on a small thread pool (I/O and decoding
overlap with the model), then run through the model in batches under
``torch.inference_mode``, in bfloat16 mixed precision where the hardware
computes it natively (a CUDA GPU; a CPU with AMX / AVX512-BF16), else in
float32 (see :func:`resolve_precision`; ``precision="fp32"`` forces float32).

When no trained model is available the classifier says so and returns no
labels: SeqClassifier never invents a label.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from SeqClassifierLib.config import MODEL_ENV, model_override  # noqa: F401  (MODEL_ENV: API)
from SeqClassifierLib.inputs.features import FEATURE_SCHEMA_VERSION, N_FEATURES, extract_features
from SeqClassifierLib.inputs.quality import ImageQuality, image_quality
from SeqClassifierLib.inputs.study import SeriesContext, study_contexts
from SeqClassifierLib.model.evidence import evidence_conflicts
from SeqClassifierLib.model.reasons import review_reasons
from SeqClassifierLib.labels import CLASS_NAMES, SequenceLabel
from SeqClassifierLib.inputs.image import ImageUnavailable, load_center_slice, square_slice, standardize
from SeqClassifierLib.records import Prediction, SeriesRecord

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


def check_feature_schema(card: dict, where: object) -> None:
    """ValueError unless the card's feature schema is exactly the one this library computes."""
    schema = str(card.get("feature_schema_version", ""))
    n = (card.get("model") or {}).get("num_meta_features")
    if schema != FEATURE_SCHEMA_VERSION or (n is not None and int(n) != N_FEATURES):
        raise ValueError(
            f"{where}: the model was trained on metadata feature schema {schema or '(none)'} with {n} features; "
            f"this SeqClassifier computes schema {FEATURE_SCHEMA_VERSION} with {N_FEATURES} features. "
            "Retrain the model with this version (seqclassifier train) or use the SeqClassifier it was made with.")


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
    label for every real series, largest difference 0.002); ``fp32`` gives
    the same numbers on every machine.
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
    """

    def __init__(self, model: Union[str, os.PathLike, None] = None, device: str = "auto",
                 batch_size: int = 64, workers: int = 4, precision: str = "auto"):
        _checked_precision(precision)  # refused even when no model is installed
        self.precision = "fp32"
        self.batch_size = batch_size
        self.workers = workers
        self.model_path: Optional[Path] = Path(model) if model is not None else default_model_path()
        self.card: dict = {}
        self._model = None
        self.device = "cpu"
        #: Optional site hook (:class:`SeqClassifierLib.adaptation.hook.SiteHook`): sees each series'
        #: features and its shipped prediction, may return an adapted one. None: the shipped behaviour.
        self.site = None
        if model is not None and not Path(model).exists():
            raise FileNotFoundError(f"model checkpoint not found: {model}")
        if self.model_path is not None:
            from SeqClassifierLib.model.checkpoint import load_checkpoint  # torch: only when a model is used

            self.device = resolve_device(device)
            self.precision = resolve_precision(precision, self.device)
            self._model, self.card = load_checkpoint(self.model_path, map_location=self.device)
            self._model.to(self.device).eval()
            if self._preprocessing()[3]:
                import torch

                # NHWC: oneDNN / cuDNN convolutions run ~1.7x faster on the CPU than NCHW, same fp32 math
                self._model.to(memory_format=torch.channels_last)
            if self.device.startswith("cuda"):
                self._warm_up()
            check_feature_schema(self.card, self.model_path)

    def _warm_up(self) -> None:
        """One dummy batch at load time: CUDA context, cuDNN autotuning and kernel
        compilation happen here instead of delaying the first real series."""
        import torch

        size, _, _, uses_image = self._preprocessing()
        images = torch.zeros(2, 3, size, size, device=self.device) if uses_image else None
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
        return str(self.card.get("name") or self.model_path.stem) + (
            f"@{self.card['version']}" if self.card.get("version") else ""
        )

    @property
    def review_threshold(self) -> float:
        return float(self.card.get("review_threshold", DEFAULT_REVIEW_THRESHOLD))

    def _preprocessing(self) -> tuple[int, Sequence[float], Sequence[float], bool]:
        pre = self.card.get("preprocessing", {})
        uses_image = self.card.get("model", {}).get("strategy", "joint") != "metadata"
        return int(pre.get("input_size", 224)), pre.get("mean", (0.5,) * 3), pre.get("std", (0.5,) * 3), uses_image

    def _prepare(self, record: SeriesRecord, context: Optional[SeriesContext]):
        """(metadata vector, model image or None, image note, image quality or None) of one series."""
        size, mean, std, uses_image = self._preprocessing()
        meta = extract_features(record, context)
        img, note, quality = None, "", None
        if uses_image:
            try:
                raw = load_center_slice(record)
                quality = image_quality(raw)
                # A slice of too low quality (blank, pure noise, clipped) tells the image branch nothing it
                # was trained on: the model decides from the metadata, as for a missing image.
                if not quality.is_low:
                    img = standardize(square_slice(raw, size), mean, std)  # the one image path (inputs.image)
            except ImageUnavailable as exc:
                note = f"image unavailable, metadata only: {exc}"
            except Exception as exc:  # a corrupt slice must not stop the batch
                note = f"image unreadable, metadata only: {type(exc).__name__}: {exc}"
        return meta, img, note, quality

    def classify(self, records: Sequence[SeriesRecord], progress: Optional[ProgressFn] = None) -> list[Prediction]:
        """One prediction per record, in the same order."""
        records = list(records)
        if not self.is_trained:
            out = [
                Prediction(r.series_uid, None, None, {}, True, UNTRAINED,
                           "untrained: no trained model is installed, so no label is given")
                for r in records
            ]
            if progress:
                progress(len(records), len(records))
            return out
        import torch

        size, _, _, uses_image = self._preprocessing()
        contexts = study_contexts(records)
        results: list[Prediction] = []
        done = 0
        batches = [records[i:i + self.batch_size] for i in range(0, len(records), self.batch_size)]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            # The next batch's slices are read and resized while the model runs on this one;
            # at most two batches of prepared inputs exist at a time.
            def submit(k: int) -> list:
                return [pool.submit(self._prepare, r, contexts.get(r.series_uid))
                        for r in batches[k]] if k < len(batches) else []

            pending = submit(0)
            for k, batch in enumerate(batches):
                prepared = [f.result() for f in pending]
                pending = submit(k + 1)
                meta = torch.from_numpy(np.stack([p[0] for p in prepared])).to(self.device)
                present = torch.tensor([p[1] is not None for p in prepared], device=self.device)
                images = None
                if uses_image:
                    arr = np.zeros((len(batch), 3, size, size), dtype=np.float32)
                    for i, p in enumerate(prepared):
                        if p[1] is not None:
                            arr[i] = p[1]
                    images = torch.from_numpy(arr).to(self.device, non_blocking=True).contiguous(
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
                for i, (r, p, (_, _, note, quality)) in enumerate(zip(batch, probs, prepared)):
                    unlike = self._model.ood.reasons(scores, i) if scores else []
                    # without an image the image place's distance measures the "missing" vector
                    if prepared[i][1] is None:
                        unlike = [u for u in unlike if "(image distance" not in u]
                    pred = self._to_prediction(r, p, note, contexts.get(r.series_uid), quality, unlike)
                    if self.site is not None:
                        pred = self.site.adapt(self, r, p, pred, captured, i, scores, unlike, note,
                                               contexts.get(r.series_uid), quality, prepared[i][1] is not None)
                    results.append(pred)
                done += len(batch)
                if progress:
                    progress(done, len(records))
        return results

    def _to_prediction(self, record: SeriesRecord, probs: np.ndarray, note: str,
                       context: Optional[SeriesContext] = None, quality: Optional[ImageQuality] = None,
                       unlike: Sequence[str] = ()) -> Prediction:
        k = int(np.argmax(probs))
        conf = float(probs[k])
        label = SequenceLabel(CLASS_NAMES[k])
        reasons = review_reasons(conf, self.review_threshold, image_note=note, unlike=unlike,
                                 conflicts=evidence_conflicts(record, label, context), quality=quality)
        notes = [note] if note else []
        if context is not None and context.note:
            notes.append(context.note)
        notes += [r for r in reasons if not r.startswith("image unreadable")]
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

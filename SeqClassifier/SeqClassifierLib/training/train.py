"""Training: labelled series -> a K-fold ensemble checkpoint with calibrated confidence.

Recipes
-------
``paper`` (Denner et al., MIDL 2025, Appendix A; for pretrained backbones)
    stage 1: backbone frozen, only the new layers train for ``head_epochs``
    (5) epochs at lr 1e-4; stage 2: everything unfrozen at lr 1e-6 until the
    class-weighted cross-entropy on the validation fold stops improving
    (``patience`` epochs without a better value; the best epoch is kept).
``scratch`` (for a backbone without pretrained weights, e.g. ``compact_cnn``)
    one stage, all parameters at lr 1e-3 (AdamW, cosine decay) with the same
    early stopping on validation loss.  Fine-tuning at 1e-6 cannot train a
    randomly initialised network, so the recipe is chosen by whether weights
    are pretrained and is recorded in the model card.

Both: class-weighted cross-entropy (inverse class frequency), K folds split by
patient (no patient in two folds), fixed seeds, MR-style augmentation
(intensity/contrast/gamma jitter, smooth bias field, noise, flips, small
rotations, scaled crops), modality dropout (metadata masked, image masked, the
description keywords blanked, or the b-value features blanked) so that
stripped headers or unreadable images are still classified.  After training, one temperature is fitted on
the out-of-fold validation logits and the needs-review threshold is set from
out-of-fold errors; both go into the card.
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from SeqClassifierLib.inputs.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES
from SeqClassifierLib.model.checkpoint import save_checkpoint
from SeqClassifierLib.model.classifier import resolve_device
from SeqClassifierLib.model.fusion import create_model
from SeqClassifierLib.model.lora import apply_lora
from SeqClassifierLib.model.ood import PLACES, capture, distances, fit_statistics, threshold
from SeqClassifierLib.training.folds import sample_folds
from SeqClassifierLib.training.dropout import VARIANTS, apply_dropout, metadata_variants, rates_vector
from SeqClassifierLib.labels import CLASS_NAMES, SequenceLabel
from SeqClassifierLib.inputs.image import ImageUnavailable, load_center_slice, square_slice
from SeqClassifierLib.inputs.quality import image_quality
from SeqClassifierLib.records import SeriesRecord
from SeqClassifierLib.dicom.discovery import discover_series

LogFn = Callable[[str], None]



# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

@dataclass
class Sample:
    """One labelled series with its cached inputs."""

    record: SeriesRecord
    label: int
    group: str           # patient: folds never split a group
    source: str          # which data root it came from
    meta: np.ndarray
    image: Optional[np.ndarray]  # inputs.image.model_slice: [S, S] float32 in [0, 1], S = model input size
    #: The metadata vector with each attribute group dropped ([V, F], training.dropout.VARIANTS).
    meta_variants: Optional[np.ndarray] = None
    #: Quality score of the image (inputs.quality); None without an image.
    image_quality: Optional[float] = None


def read_labels_csv(path: os.PathLike) -> list[dict[str, str]]:
    """Rows of a labels CSV (``series_dir`` and/or ``SeriesInstanceUID``, ``label``)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "label" not in rows[0]:
        raise ValueError(f"{path}: no 'label' column (expected series_dir,SeriesInstanceUID,label,...)")
    return rows


def _cache_image(record: SeriesRecord, size: int) -> tuple[Optional[np.ndarray], Optional[float]]:
    """(the model's image, its quality score) -- the classifier's own image path (inputs.image),
    so that training sees what inference sees."""
    try:
        raw = load_center_slice(record)
        return square_slice(raw, size), image_quality(raw).score
    except (ImageUnavailable, Exception):
        return None, None


def labelled_series(labels: Sequence[os.PathLike], roots: Sequence[os.PathLike],
                    log: LogFn = print) -> list[tuple[SeriesRecord, int, str]]:
    """Match labelled rows to discovered series: ``(record, class index, root)``.

    Rows are matched by SeriesInstanceUID, or by ``series_dir`` relative to the
    labels file's folder.  Rows labelled ``?`` (uncertain) are ignored; rows
    that match no series are reported.
    """
    wanted: dict[str, SequenceLabel] = {}
    by_dir: dict[str, SequenceLabel] = {}
    for lab in labels:
        base = Path(lab).resolve().parent
        for row in read_labels_csv(lab):
            text = (row.get("label") or "").strip()
            if not text or text == "?":
                continue
            label = SequenceLabel.parse(text)
            uid = (row.get("SeriesInstanceUID") or "").strip()
            if uid:
                wanted[uid] = label
            if row.get("series_dir"):
                by_dir[str((base / row["series_dir"]).resolve())] = label
    out: list[tuple[SeriesRecord, int, str]] = []
    matched: set[str] = set()
    for root in roots:
        for rec in discover_series(root).series:
            label = wanted.get(rec.series_uid)
            if label is None and rec.files:
                label = by_dir.get(str(Path(rec.files[0]).resolve().parent))
            if label is None:
                continue
            matched.add(rec.series_uid)
            out.append((rec, CLASS_NAMES.index(label.value), str(root)))
    missing = [u for u in wanted if u not in matched]
    if missing:
        log(f"warning: {len(missing)} labelled series were not found under the data roots")
    return out


def load_samples(labels: Sequence[os.PathLike], roots: Sequence[os.PathLike], input_size: int,
                 log: LogFn = print, progress: Optional[Callable[[int, int], None]] = None,
                 with_images: bool = True) -> list[Sample]:
    """:func:`labelled_series` with each series' features and center slice cached.

    ``input_size``: the model's image size; the slice is cached as the classifier
    prepares it (:func:`~SeqClassifierLib.inputs.image.model_slice`).
    """
    found = labelled_series(labels, roots, log)
    # Study context comes from the labelled series given, as at inference from the series given.
    full, variants = metadata_variants([rec for rec, _, _ in found])
    samples = []
    for i, (rec, label, root) in enumerate(found, 1):
        image, quality = _cache_image(rec, input_size) if with_images else (None, None)
        samples.append(Sample(record=rec, label=label, group=rec.patient_id or rec.study_uid, source=root,
                              meta=full[i - 1], image=image, meta_variants=variants[i - 1],
                              image_quality=quality))
        if progress:
            progress(i, len(found))
    return samples


# ----------------------------------------------------------------------------
# Augmentation (on batches of normalised single-channel images)
# ----------------------------------------------------------------------------

def augment_images(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """MR-style augmentation of a batch ``[B, 1, H, W]`` in [0, 1]."""
    b, _, h, w = x.shape
    dev = x.device

    def u(lo, hi, *shape):
        return torch.rand(*shape, generator=gen, device="cpu").to(dev) * (hi - lo) + lo

    # geometry: rotation +-10 deg, scale 0.85-1.15 (crop/zoom), shift +-8 %, h-flip
    ang = u(-10, 10, b) * math.pi / 180
    scale = u(0.85, 1.15, b)
    flip = torch.where(torch.rand(b, generator=gen).to(dev) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, u(-0.08, 0.08, b)], 1),
                         torch.stack([sin * flip, cos, u(-0.08, 0.08, b)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # smooth multiplicative bias field from a coarse random grid
    coarse = 1.0 + u(-0.25, 0.25, b, 1, 4, 4)
    x = x * F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    # gamma, contrast, brightness
    gamma = torch.exp(u(-0.35, 0.35, b, 1, 1, 1))
    x = x.clamp(min=0) ** gamma
    x = x * u(0.8, 1.2, b, 1, 1, 1) + u(-0.08, 0.08, b, 1, 1, 1)
    # noise (Gaussian, level varies per image)
    x = x + torch.randn(x.shape, generator=gen).to(dev) * u(0.0, 0.05, b, 1, 1, 1)
    return x.clamp(0.0, 1.2)


def _model_input(x1: torch.Tensor, mean, std) -> torch.Tensor:
    """``[B, 1, S, S]`` -> ``[B, 3, S, S]`` standardised: inputs.image.standardize on a batch."""
    x = x1.expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


# ----------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------

@dataclass
class TrainConfig:
    strategy: str = "joint"
    backbone: str = "compact_cnn"
    pretrained: Any = False
    folds: int = 4
    recipe: str = "auto"             # auto | paper | scratch
    head_epochs: int = 5
    head_lr: float = 1e-4
    finetune_lr: float = 1e-6
    scratch_lr: float = 1e-3
    max_epochs: int = 60
    patience: int = 6
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    p_drop_meta: float = 0.15
    p_drop_image: float = 0.15
    #: Attribute-group dropout rates (training.dropout.DEFAULT_RATES when None).
    drop_rates: Optional[dict] = None
    lora_rank: int = 0
    weight_decay: float = 1e-4
    half_weights: bool = True          # store the checkpoint in float16 (half the size)
    ood_rate: float = 0.01             # share of held-out series flagged "unlike training data", per place
    min_image_quality: float = 0.0     # images scoring below (inputs.quality) are treated as missing
    #: data root -> how many times its series count per epoch (real series among many synthetic ones)
    oversample: dict = field(default_factory=dict)
    #: Names of the real sources (data root folder names) held out whole, one fold per source (training.folds).
    folds_by_source: tuple = ()
    extra: dict = field(default_factory=dict)

    def resolved_recipe(self) -> str:
        if self.recipe != "auto":
            return self.recipe
        return "paper" if self.pretrained else "scratch"


def class_weights(labels: Sequence[int], n: int = len(CLASS_NAMES)) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1; absent classes get weight 0."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n, 0.0)
    w = w / w[w > 0].mean()
    return torch.tensor(w, dtype=torch.float32)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(idx: np.ndarray, bs: int, shuffle: bool, rng: np.random.Generator):
    idx = np.array(idx)
    if shuffle:
        rng.shuffle(idx)
    for i in range(0, len(idx), bs):
        yield idx[i:i + bs]


class _Tensors:
    """All samples as tensors on the training device (small data sets)."""

    def __init__(self, samples: Sequence[Sample], cache_size: int, device: str, min_image_quality: float = 0.0):
        imgs = np.zeros((len(samples), 1, cache_size, cache_size), dtype=np.float32)
        has_img = np.zeros(len(samples), dtype=bool)
        for i, s in enumerate(samples):
            # an image below the quality floor trains the metadata branch only (filter by quality)
            if s.image is not None and (s.image_quality is None or s.image_quality >= min_image_quality):
                imgs[i, 0] = s.image.astype(np.float32)
                has_img[i] = True
        self.images = torch.from_numpy(imgs).to(device)
        self.has_image = torch.from_numpy(has_img).to(device)
        self.meta = torch.from_numpy(np.stack([s.meta for s in samples])).to(device)
        self.meta_variants = torch.from_numpy(np.stack([
            s.meta_variants if s.meta_variants is not None else np.repeat(s.meta[None], len(VARIANTS), 0)
            for s in samples])).to(device)
        self.labels = torch.tensor([s.label for s in samples], dtype=torch.long, device=device)


def _forward_batch(model, data: _Tensors, idx, cfg: TrainConfig, train: bool, gen: torch.Generator,
                   rng: np.random.Generator):
    dev = data.images.device
    ii = torch.as_tensor(idx, device=dev)
    x = data.images[ii]
    meta = data.meta[ii].clone()
    img_present = data.has_image[ii].clone()
    meta_present = torch.ones(len(idx), dtype=torch.bool, device=dev)
    if train:
        x = augment_images(x, gen)
        r = torch.from_numpy(rng.random(len(idx))).to(dev)
        drop_meta = r < cfg.p_drop_meta
        drop_img = (r >= cfg.p_drop_meta) & (r < cfg.p_drop_meta + cfg.p_drop_image) & img_present
        meta_present &= ~drop_meta
        img_present &= ~drop_img
        # Real exports lack whole attribute groups (names, private b-values, contrast and timing
        # tags, ...): the model must not hang on any one of them.
        meta = apply_dropout(meta, data.meta_variants[ii], rates_vector(cfg.drop_rates), rng)
    images = _model_input(x, model.mean or (0.5,) * 3, model.std or (0.5,) * 3) if model.uses_image else None
    return images, meta, img_present, meta_present, data.labels[ii]


def _epoch(model, data, idx, cfg, opt, weights, gen, rng, sched=None) -> float:
    model.train()
    total, n = 0.0, 0
    for bidx in _batches(idx, cfg.batch_size, True, rng):
        images, meta, ip, mp, y = _forward_batch(model, data, bidx, cfg, True, gen, rng)
        logits_list = model.loss_logits(images, meta, ip, mp)
        loss = sum(F.cross_entropy(lg.float(), y, weight=weights) for lg in logits_list)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 5.0)
        opt.step()
        if sched is not None:
            sched.step()
        total += loss.item() * len(bidx)
        n += len(bidx)
    return total / max(n, 1)


@torch.no_grad()
def _logits(model, data, idx, cfg) -> tuple[torch.Tensor, float, torch.Tensor]:
    model.eval()
    out = []
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    for bidx in _batches(idx, 128, False, rng):
        images, meta, ip, mp, _ = _forward_batch(model, data, bidx, cfg, False, gen, rng)
        out.append(model(images, meta, ip, mp).float())
    logits = torch.cat(out) if out else torch.zeros(0, len(CLASS_NAMES))
    y = data.labels[torch.as_tensor(idx, device=data.labels.device)]
    return logits, 0.0, y


def _val_loss(model, data, idx, cfg, weights) -> float:
    logits, _, y = _logits(model, data, idx, cfg)
    return float(F.cross_entropy(logits, y, weight=weights)) if len(y) else 0.0


def train_one(samples_idx_train, samples_idx_val, data: _Tensors, cfg: TrainConfig, n_meta: int,
              fold: int, log: LogFn):
    """Train one fold model with early stopping on validation loss; returns (model, history)."""

    _seed_all(cfg.seed + fold)
    dev = data.images.device
    model = create_model(cfg.strategy, backbone=cfg.backbone, num_meta_features=n_meta,
                         pretrained=cfg.pretrained)
    if cfg.lora_rank > 0:
        apply_lora(model, rank=cfg.lora_rank)
    model.to(dev)
    train_labels = data.labels[torch.as_tensor(samples_idx_train, device=dev)].cpu().numpy()
    weights = class_weights(train_labels).to(dev)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + fold)
    rng = np.random.default_rng(cfg.seed * 1000 + fold)
    history = []
    recipe = cfg.resolved_recipe()

    def run_stage(name, params, lr, epochs, early_stop, cosine):
        best = (math.inf, None, -1)
        params = [p for p in params if p.requires_grad]
        if not params:
            return best
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        steps = max(1, epochs * math.ceil(len(samples_idx_train) / cfg.batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1) if cosine else None
        bad = 0
        for ep in range(epochs):
            t0 = time.perf_counter()
            tl = _epoch(model, data, samples_idx_train, cfg, opt, weights, gen, rng, sched)
            vl = _val_loss(model, data, samples_idx_val, cfg, weights) if len(samples_idx_val) else tl
            history.append({"fold": fold + 1, "stage": name, "epoch": ep + 1, "train_loss": round(tl, 5),
                            "val_loss": round(vl, 5), "seconds": round(time.perf_counter() - t0, 2)})
            log(f"fold {fold + 1} {name} epoch {ep + 1}/{epochs}: train {tl:.4f} val {vl:.4f}")
            if vl < best[0] - 1e-5:
                best = (vl, {k: v.detach().clone() for k, v in model.state_dict().items()}, ep + 1)
                bad = 0
            else:
                bad += 1
                if early_stop and bad >= cfg.patience:
                    log(f"fold {fold + 1} {name}: validation loss converged (best epoch {best[2]})")
                    break
        if best[1] is not None:
            model.load_state_dict(best[1])
        return best

    if recipe == "paper":
        model.freeze_backbone()
        run_stage("head", model.head_parameters() + model.adapter_parameters(), cfg.head_lr, cfg.head_epochs, False, False)
        if cfg.lora_rank == 0:
            model.unfreeze_backbone()
        run_stage("finetune", list(model.parameters()), cfg.finetune_lr, cfg.max_epochs, True, False)
    elif recipe == "scratch":
        run_stage("scratch", list(model.parameters()), cfg.scratch_lr, cfg.max_epochs, True, True)
    else:
        raise ValueError(f"unknown recipe {recipe!r}; use auto, paper or scratch")
    model.eval()
    return model, history


def fold_ood(model, data: _Tensors, trn, val, cfg: TrainConfig):
    """One fold's training-data statistics (model.ood) and its held-out samples' distances."""

    with capture(model) as cap:
        _logits(model, data, trn, cfg)
    y = data.labels[torch.as_tensor(trn, device=data.labels.device)].cpu()
    stats = {place: fit_statistics(f.cpu(), y, len(CLASS_NAMES)) for place, f in cap.items()}
    held: dict[str, np.ndarray] = {}
    if len(val):
        with capture(model) as capv:
            _logits(model, data, val, cfg)
        held = {place: distances(f.cpu(), stats[place]).numpy() for place, f in capv.items()}
    return stats, held


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """One temperature minimising the NLL of out-of-fold logits (temperature scaling).

    A bounded golden-section search over log T in [log 0.05, log 20]: the NLL
    is unimodal in T, and unlike a gradient method this cannot diverge.
    """
    if len(y) == 0:
        return 1.0
    logits = logits.double()
    y = torch.as_tensor(y)

    def nll(log_t: float) -> float:
        v = float(F.cross_entropy(logits / math.exp(log_t), y))
        return v if math.isfinite(v) else math.inf

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = nll(c), nll(d)
    for _ in range(60):
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = nll(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = nll(d)
    t = math.exp((lo + hi) / 2)
    return t if math.isfinite(t) and nll(math.log(t)) <= nll(0.0) else 1.0


def review_threshold(probs: np.ndarray, y: np.ndarray, floor: float = 0.5, cap: float = 0.95) -> float:
    """Confidence below which predictions are flagged: just above the most confident OOF error."""
    pred = probs.argmax(1)
    conf = probs.max(1)
    wrong = conf[pred != y]
    if len(wrong) == 0:
        return floor if len(conf) == 0 else float(np.clip(np.quantile(conf, 0.02), floor, cap))
    return float(np.clip(wrong.max() + 1e-3, floor, cap))


def classification_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Per-class precision/recall/F1, macro-F1 over classes present, accuracy, confusion matrix."""
    k = len(CLASS_NAMES)
    cm = np.zeros((k, k), dtype=int)
    for a, b in zip(y, pred):
        cm[a, b] += 1
    per = {}
    f1s = []
    for i, c in enumerate(CLASS_NAMES):
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = {"precision": round(float(prec), 4), "recall": round(float(rec), 4), "f1": round(float(f1), 4),
                  "support": int(cm[i].sum())}
        if cm[i].sum() or cm[:, i].sum():
            f1s.append(f1)
    return {"accuracy": round(float((y == pred).mean()) if len(y) else 0.0, 4),
            "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),
            "per_class": per, "confusion": cm.tolist(), "n": int(len(y))}


def train(samples: Sequence[Sample], cfg: TrainConfig, out: os.PathLike, log: LogFn = print,
          command: str = "", data_summary: Optional[dict] = None) -> dict[str, Any]:
    """Train the K-fold ensemble on ``samples`` and save it to ``out``; returns the card."""

    if len(samples) < 2:
        raise ValueError("need at least two labelled series to train")
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    _seed_all(cfg.seed)
    probe = create_model(cfg.strategy, backbone=cfg.backbone, num_meta_features=N_FEATURES, pretrained=False)
    cached = [s.image.shape for s in samples if s.image is not None]
    size = probe.input_size or (cached[0][0] if cached else 128)  # metadata only: the images are not used
    for s in samples:
        if s.image is not None and s.image.shape != (size, size):
            raise ValueError(f"series {s.record.series_uid}: image cached at {s.image.shape} px but backbone "
                             f"{cfg.backbone!r} takes {size} x {size}; load the samples with input_size={size}")
    data = _Tensors(samples, size, device, cfg.min_image_quality)
    groups = [s.group for s in samples]
    k = max(1, cfg.folds)
    n_groups = len(set(groups))
    if k > n_groups:
        raise ValueError(f"--folds {k} needs at least {k} patients; the data has {n_groups}")
    folds = sample_folds(groups, [s.source for s in samples], k if k > 1 else 5, cfg.seed, cfg.folds_by_source)
    models, history, ood_stats, ood_held = [], [], [], []
    oof_logits = torch.zeros(len(samples), len(CLASS_NAMES))
    oof_mask = np.zeros(len(samples), dtype=bool)
    for fold in range(k):
        val = np.array([i for i, f in enumerate(folds) if f == fold])
        trn = np.array([i for i, f in enumerate(folds) if f != fold
                        for _ in range(max(1, int(cfg.oversample.get(samples[i].source, 1))))])
        log(f"fold {fold + 1}/{k}: {len(trn)} training, {len(val)} validation series")
        model, hist = train_one(trn, val, data, cfg, N_FEATURES, fold, log)
        history += hist
        logits, _, _ = _logits(model, data, val, cfg)
        oof_logits[val] = logits.cpu()
        oof_mask[val] = True
        stats, held = fold_ood(model, data, trn, val, cfg)
        ood_stats.append(stats)
        ood_held.append(held)
        models.append(model.cpu())
    y = np.array([s.label for s in samples])
    idx = np.nonzero(oof_mask)[0]
    temperature = fit_temperature(oof_logits[idx], torch.as_tensor(y[idx]))
    probs = torch.softmax(oof_logits[idx] / temperature, 1).numpy()
    threshold = review_threshold(probs, y[idx])
    metrics = classification_metrics(y[idx], probs.argmax(1))
    metrics["expected_calibration_error"] = round(expected_calibration_error(probs, y[idx]), 4)
    misclassified = [
        {"series_uid": samples[i].record.series_uid, "description": samples[i].record.description,
         "true": CLASS_NAMES[y[i]], "predicted": CLASS_NAMES[int(p.argmax())], "confidence": round(float(p.max()), 4)}
        for i, p in zip(idx, probs) if p.argmax() != y[i]
    ]
    counts = np.bincount(y, minlength=len(CLASS_NAMES))
    ood_card = ood_summary(ood_held, cfg.ood_rate)
    card = {
        "name": Path(out).stem,
        "version": time.strftime("%Y%m%d"),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "preprocessing": {"input_size": int(size), "mean": list(probe.mean or (0.5,) * 3),
                          "std": list(probe.std or (0.5,) * 3), "center_slice_rule": "see inputs.image.choose_volume",
                          "intensity": "percentile 0.5-99.5 -> [0,1], pad to square, resize"},
        "training": {
            "recipe": cfg.resolved_recipe(), "strategy": cfg.strategy, "backbone": cfg.backbone,
            "pretrained": str(cfg.pretrained), "folds": k, "seed": cfg.seed, "device": device,
            "head_epochs": cfg.head_epochs, "head_lr": cfg.head_lr, "finetune_lr": cfg.finetune_lr,
            "scratch_lr": cfg.scratch_lr, "max_epochs": cfg.max_epochs, "patience": cfg.patience,
            "batch_size": cfg.batch_size, "modality_dropout": {"meta": cfg.p_drop_meta, "image": cfg.p_drop_image},
            "attribute_group_dropout": {k: round(float(v), 4) for k, v in zip(VARIANTS, rates_vector(cfg.drop_rates))},
            "lora_rank": cfg.lora_rank, "min_image_quality": cfg.min_image_quality,
            "oversample": {os.path.basename(str(k).rstrip("/")): v for k, v in cfg.oversample.items()},
            "folds_by_source": sorted(cfg.folds_by_source),
            "command": command,
            "wall_time_s": round(time.perf_counter() - t_start, 1),
            "torch": torch.__version__,
        },
        "data": {"n_series": len(samples), "n_patients": n_groups,
                 "per_class": {c: int(n) for c, n in zip(CLASS_NAMES, counts)},
                 **(data_summary or {})},
        "metrics": {"out_of_fold": metrics, "misclassified": misclassified},
        "ood": ood_card,
        "temperature": round(temperature, 4),
        "review_threshold": round(threshold, 4),
        "history": history,
    }
    save_checkpoint(out, models, card, dtype=torch.float16 if cfg.half_weights else None, ood_stats=ood_stats)
    log(f"saved {out}: out-of-fold macro-F1 {metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f}, "
        f"temperature {temperature:.2f}, review below {threshold:.2f}, "
        f"{card['training']['wall_time_s']:.0f} s on {device}")
    return card


def ood_summary(held_per_fold: Sequence[dict], rate: float) -> dict[str, Any]:
    """The card's ``ood`` entry: method, thresholds per place and the held-out share flagged."""

    thresholds, flagged = {}, {}
    for place in PLACES:
        values = np.concatenate([h[place] for h in held_per_fold if place in h]) \
            if any(place in h for h in held_per_fold) else np.zeros(0)
        t = threshold(values, rate)
        if t is not None:
            thresholds[place] = round(t, 3)
            flagged[place] = round(float(np.mean(values > t)), 4)
    return {"method": "min class-conditional Mahalanobis distance, shared covariance shrunk 10 %, mean over folds",
            "target_rate_per_place": rate, "thresholds": thresholds, "held_out_flagged": flagged,
            "n_held_out": int(sum(len(next(iter(h.values()), [])) for h in held_per_fold))}


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted by count."""
    if len(y) == 0:
        return 0.0
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)

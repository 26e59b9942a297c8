"""Image / metadata fusion models behind one factory.

Five strategies (Denner et al., MIDL 2025, following Imrie et al. 2025):

``image``     backbone -> linear head (image only).
``metadata``  :class:`MetadataEncoder` -> linear head (DICOM metadata only).
``early``     *frozen* backbone features (always ``no_grad`` and ``eval``)
              concatenated with the metadata embedding -> MLP head.
``late``      an ``image`` model and a ``metadata`` model side by side; the
              output is the log of the mean of their softmax probabilities, so
              ``softmax(output)`` is the ensemble's probability.
``joint``     trainable backbone features + metadata embedding -> concat ->
              MLP head, trained end to end.

Every model has the signature ``forward(image, meta, image_present=None,
meta_present=None) -> logits[B, num_classes]``.  ``image`` is ``[B, 3, H, W]``
(already normalised with the model's ``mean``/``std``), ``meta`` is
``[B, num_meta_features]``.  A sample whose modality is absent (modality
dropout during training, stripped headers or an unreadable image at inference)
is marked ``False`` in ``image_present`` / ``meta_present``; its image features
or metadata embedding are then replaced by a learned "missing" vector
(full-modality masking as in MM-DINOv2).  Passing ``image=None`` / ``meta=None``
marks the modality missing for the whole batch.

LoRA adapters for the ViT backbones are in :mod:`.lora` (``create_model(...,
lora=dict(rank=...))`` applies them).  ``torch`` is imported at module level;
this module is only imported when a model is needed and never imports
``slicer`` or ``qt``.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from SeqClassifierLib.model.backbones import Backbone, BackboneConfig, create_backbone, get_backbone_config
from SeqClassifierLib.model.lora import LoRALinear, apply_lora
from SeqClassifierLib.labels import CLASSES

__all__ = [
    "STRATEGIES",
    "MODEL_CONFIG_VERSION",
    "MetadataEncoder",
    "SequenceModel",
    "ImageModel",
    "MetadataModel",
    "EarlyFusionModel",
    "LateFusionModel",
    "JointFusionModel",
    "create_model",
    "model_from_config",
]

#: Valid fusion strategies, in the order of the paper's table.
STRATEGIES: Tuple[str, ...] = ("image", "metadata", "early", "late", "joint")

#: Version of the dict returned by :attr:`SequenceModel.config`.
MODEL_CONFIG_VERSION = 1

_IMAGE_STRATEGIES = ("image", "early", "late", "joint")
_META_STRATEGIES = ("metadata", "early", "late", "joint")

#: Defaults of the architecture hyper-parameters accepted by :func:`create_model`.
_DEFAULT_HPARAMS: Dict[str, Any] = {
    "meta_hidden": 128,
    "meta_dim": 64,
    "fusion_hidden": 256,
    "dropout": 0.1,
}


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


class MetadataEncoder(nn.Module):
    """MLP embedding of the numeric metadata feature vector.

    ``LayerNorm(n_features) -> Linear(n_features, hidden) -> GELU -> Dropout ->
    Linear(hidden, out_dim) -> GELU``.  The input LayerNorm makes the encoder
    insensitive to the scale of the (already imputed / encoded) features.
    """

    def __init__(self, n_features: int, hidden: int = 128, out_dim: int = 64, dropout: float = 0.1):
        super().__init__()
        if n_features < 1:
            raise ValueError("MetadataEncoder needs at least one input feature")
        self.n_features = int(n_features)
        self.out_dim = int(out_dim)
        self.net = nn.Sequential(
            nn.LayerNorm(n_features),
            nn.Linear(n_features, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _missing_vector(dim: int) -> nn.Parameter:
    """A learned placeholder for an absent modality (small random init, like mask tokens)."""
    p = nn.Parameter(torch.empty(dim))
    if not p.is_meta:  # built on the meta device to load a checkpoint into: nothing to initialise
        nn.init.normal_(p, std=0.02)
    return p


def _present_mask(
    x: Optional[torch.Tensor], present: Optional[torch.Tensor], batch: int, device: torch.device
) -> torch.Tensor:
    """Boolean ``[B]`` mask of samples whose modality is available."""
    if x is None:
        if present is not None and bool(torch.as_tensor(present).bool().any()):
            raise ValueError("a modality is marked present but its tensor is None")
        return torch.zeros(batch, dtype=torch.bool, device=device)
    if present is None:
        return torch.ones(batch, dtype=torch.bool, device=device)
    mask = torch.as_tensor(present, device=device).bool().reshape(-1)
    if mask.numel() != batch:
        raise ValueError(f"presence mask has {mask.numel()} entries for a batch of {batch}")
    return mask


def _zero_missing(x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Zero the rows of absent samples (so NaN/garbage there cannot leak into gradients); ``x`` itself
    when every sample is present (``where`` would copy it unchanged: 3 % of the shipped model's time)."""
    if bool(present.all()):
        return x
    shape = (-1,) + (1,) * (x.dim() - 1)
    return torch.where(present.view(shape), x, torch.zeros((), dtype=x.dtype, device=x.device))


def _substitute(features: torch.Tensor, present: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
    """Replace rows of absent samples by the learned ``missing`` vector."""
    return torch.where(present.view(-1, 1), features, missing.to(features.dtype).expand_as(features))


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


class SequenceModel(nn.Module):
    """Base of all fusion models.

    Attributes: ``strategy``, ``backbone_name`` (``None`` for ``metadata``),
    ``input_size`` / ``mean`` / ``std`` (the image preprocessing the model
    expects; ``None`` when it uses no image), ``uses_image``, ``uses_metadata``,
    ``num_classes``, ``num_meta_features`` and :attr:`config`, a JSON-able dict
    from which :func:`model_from_config` rebuilds the architecture.
    """

    strategy: str = ""

    def __init__(self, config: Dict[str, Any], backbone_config: Optional[BackboneConfig]):
        super().__init__()
        self._config = copy.deepcopy(config)
        self.backbone_config = backbone_config
        self.num_classes = int(config["num_classes"])
        self.num_meta_features = int(config["num_meta_features"])
        self.uses_image = self.strategy in _IMAGE_STRATEGIES
        self.uses_metadata = self.strategy in _META_STRATEGIES

    # -- description --------------------------------------------------------------------

    @property
    def config(self) -> Dict[str, Any]:
        """JSON-able description sufficient to rebuild the (untrained) model."""
        return copy.deepcopy(self._config)

    @property
    def backbone_name(self) -> Optional[str]:
        return self.backbone_config.name if self.backbone_config is not None else None

    @property
    def input_size(self) -> Optional[int]:
        return self.backbone_config.input_size if self.backbone_config is not None else None

    @property
    def mean(self) -> Optional[Tuple[float, ...]]:
        return tuple(self.backbone_config.mean) if self.backbone_config is not None else None

    @property
    def std(self) -> Optional[Tuple[float, ...]]:
        return tuple(self.backbone_config.std) if self.backbone_config is not None else None

    # -- parameter groups ---------------------------------------------------------------

    def backbones(self) -> List[Backbone]:
        """The image backbones inside this model (empty for ``metadata``)."""
        return [m for m in self.modules() if isinstance(m, Backbone)]

    def backbone_parameters(self) -> List[nn.Parameter]:
        """All parameters of the backbones (including LoRA adapters)."""
        return [p for b in self.backbones() for p in b.parameters()]

    def adapter_parameters(self) -> List[nn.Parameter]:
        """LoRA adapter parameters (empty without :func:`apply_lora`)."""
        out: List[nn.Parameter] = []
        for b in self.backbones():
            for m in b.modules():
                if isinstance(m, LoRALinear):
                    out.extend([m.lora_A, m.lora_B])
        return out

    def head_parameters(self) -> List[nn.Parameter]:
        """The newly added layers (everything outside the backbones): metadata
        encoder, missing-modality vectors, fusion MLP / classifier heads.  These
        are what the paper's stage 1 trains while the backbone is frozen."""
        in_backbone = {id(p) for p in self.backbone_parameters()}
        return [p for p in self.parameters() if id(p) not in in_backbone]

    def freeze_backbone(self) -> None:
        """Make every backbone parameter (adapters included) non-trainable."""
        for p in self.backbone_parameters():
            p.requires_grad_(False)

    def unfreeze_backbone(self) -> None:
        """Make the backbone trainable again.  With LoRA only the adapters become
        trainable (base weights stay frozen); early fusion keeps its backbone
        frozen by definition."""
        adapters = {id(p) for p in self.adapter_parameters()}
        for p in self.backbone_parameters():
            p.requires_grad_(not adapters or id(p) in adapters)

    # -- forward ------------------------------------------------------------------------

    @staticmethod
    def _batch_size(image, meta, image_present, meta_present) -> int:
        for t in (image, meta, image_present, meta_present):
            if t is not None:
                return int(torch.as_tensor(t).shape[0])
        raise ValueError("forward needs at least an image or a metadata tensor")

    def _device_dtype(self) -> Tuple[torch.device, torch.dtype]:
        for p in self.parameters():
            return p.device, p.dtype
        return torch.device("cpu"), torch.float32

    def _prepare(self, image, meta, image_present, meta_present):
        batch = self._batch_size(image, meta, image_present, meta_present)
        device, dtype = self._device_dtype()
        img_mask = _present_mask(image, image_present, batch, device) if self.uses_image else None
        meta_mask = _present_mask(meta, meta_present, batch, device) if self.uses_metadata else None
        if self.uses_metadata and meta is not None:
            if meta.dim() != 2 or meta.shape[1] != self.num_meta_features:
                raise ValueError(
                    f"metadata must be [B, {self.num_meta_features}], got {tuple(meta.shape)}"
                )
            # Features should already be imputed; never let a stray NaN poison the batch.
            meta = torch.nan_to_num(meta.to(device=device, dtype=dtype), nan=0.0, posinf=0.0, neginf=0.0)
        if self.uses_image and image is not None:
            image = image.to(device=device, dtype=dtype)
        return batch, image, meta, img_mask, meta_mask

    def forward(
        self,
        image: Optional[torch.Tensor],
        meta: Optional[torch.Tensor],
        image_present: Optional[torch.Tensor] = None,
        meta_present: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Logits ``[B, num_classes]``; see the module docstring for the arguments."""
        raise NotImplementedError

    def loss_logits(
        self,
        image: Optional[torch.Tensor],
        meta: Optional[torch.Tensor],
        image_present: Optional[torch.Tensor] = None,
        meta_present: Optional[torch.Tensor] = None,
    ) -> List[torch.Tensor]:
        """The logits a training loop should apply its loss to (and sum).

        ``[forward(...)]`` for every strategy except ``late``, which returns its
        two members' own logits so that they are trained independently, side
        by side, as in late fusion (the fused output is not trained directly).
        """
        return [self.forward(image, meta, image_present, meta_present)]

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}, backbone={self.backbone_name!r}"


class _ImageBranch(nn.Module):
    """Backbone + missing-image substitution -> features ``[B, D]``."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone
        self.missing_image = _missing_vector(backbone.num_features)

    def forward(self, image: Optional[torch.Tensor], present: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        batch = present.shape[0]
        if image is None or not bool(present.any()):
            return self.missing_image.unsqueeze(0).expand(batch, -1)
        image = _zero_missing(image, present)
        if frozen:
            with torch.no_grad():
                feats = self.backbone(image)
            feats = feats.detach()
        else:
            feats = self.backbone(image)
        return _substitute(feats, present, self.missing_image)


class _MetaBranch(nn.Module):
    """Metadata encoder + missing-metadata substitution -> embedding ``[B, E]``."""

    def __init__(self, n_features: int, hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.encoder = MetadataEncoder(n_features, hidden=hidden, out_dim=out_dim, dropout=dropout)
        self.missing_meta = _missing_vector(out_dim)

    def forward(self, meta: Optional[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        batch = present.shape[0]
        if meta is None or not bool(present.any()):
            return self.missing_meta.unsqueeze(0).expand(batch, -1)
        emb = self.encoder(_zero_missing(meta, present))
        return _substitute(emb, present, self.missing_meta)


class ImageModel(SequenceModel):
    """``image`` strategy: backbone -> dropout -> linear head."""

    strategy = "image"

    def __init__(self, config, backbone: Backbone):
        super().__init__(config, backbone.config)
        self.image_branch = _ImageBranch(backbone)
        self.head = nn.Sequential(nn.Dropout(config["dropout"]), nn.Linear(backbone.num_features, self.num_classes))

    def forward(self, image, meta=None, image_present=None, meta_present=None):
        batch, image, _, img_mask, _ = self._prepare(image, None, image_present, None)
        return self.head(self.image_branch(image, img_mask))


class MetadataModel(SequenceModel):
    """``metadata`` strategy: metadata encoder -> dropout -> linear head."""

    strategy = "metadata"

    def __init__(self, config):
        super().__init__(config, None)
        self.meta_branch = _MetaBranch(
            self.num_meta_features, config["meta_hidden"], config["meta_dim"], config["dropout"]
        )
        self.head = nn.Sequential(nn.Dropout(config["dropout"]), nn.Linear(config["meta_dim"], self.num_classes))

    def forward(self, image, meta, image_present=None, meta_present=None):
        batch, _, meta, _, meta_mask = self._prepare(None, meta, None, meta_present)
        return self.head(self.meta_branch(meta, meta_mask))


class _ConcatFusion(SequenceModel):
    """Shared body of early and joint fusion:
    ``[LayerNorm(image features), metadata embedding] -> Linear -> GELU -> Dropout -> Linear``."""

    _frozen_backbone = False

    def __init__(self, config, backbone: Backbone):
        super().__init__(config, backbone.config)
        self.image_branch = _ImageBranch(backbone)
        self.meta_branch = _MetaBranch(
            self.num_meta_features, config["meta_hidden"], config["meta_dim"], config["dropout"]
        )
        self.image_norm = nn.LayerNorm(backbone.num_features)
        self.head = nn.Sequential(
            nn.Linear(backbone.num_features + config["meta_dim"], config["fusion_hidden"]),
            nn.GELU(),
            nn.Dropout(config["dropout"]),
            nn.Linear(config["fusion_hidden"], self.num_classes),
        )

    def forward(self, image, meta, image_present=None, meta_present=None):
        batch, image, meta, img_mask, meta_mask = self._prepare(image, meta, image_present, meta_present)
        img = self.image_norm(self.image_branch(image, img_mask, frozen=self._frozen_backbone))
        emb = self.meta_branch(meta, meta_mask)
        return self.head(torch.cat([img, emb], dim=1))


class EarlyFusionModel(_ConcatFusion):
    """``early`` strategy: features of a *frozen* backbone (always evaluated in
    ``eval`` mode under ``no_grad``) concatenated with the metadata embedding."""

    strategy = "early"
    _frozen_backbone = True

    def __init__(self, config, backbone: Backbone):
        super().__init__(config, backbone)
        self.freeze_backbone()
        backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        for b in self.backbones():
            b.eval()
        return self

    def unfreeze_backbone(self) -> None:
        """No-op: early fusion uses fixed pretrained features by definition."""
        self.freeze_backbone()


class JointFusionModel(_ConcatFusion):
    """``joint`` strategy: like early fusion, but the backbone is trained end to end."""

    strategy = "joint"


class LateFusionModel(SequenceModel):
    """``late`` strategy: an image model and a metadata model side by side.

    Output: ``log(mean_k softmax(logits_k))`` over the members whose modality
    is present for the sample (both members if neither is), so
    ``softmax(output)`` is the ensemble probability.  Train with
    :meth:`loss_logits`, which returns the members' own logits (each member is
    fitted on its own, as in late fusion), or on the fused output.
    """

    strategy = "late"

    def __init__(self, config, backbone: Backbone):
        super().__init__(config, backbone.config)
        image_cfg = dict(config, strategy="image")
        meta_cfg = dict(config, strategy="metadata")
        self.image_model = ImageModel(image_cfg, backbone)
        self.meta_model = MetadataModel(meta_cfg)

    def member_logits(
        self, image, meta, image_present=None, meta_present=None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(image_logits, meta_logits, image_present, meta_present)``."""
        batch, image, meta, img_mask, meta_mask = self._prepare(image, meta, image_present, meta_present)
        img_logits = self.image_model(image, None, img_mask, None)
        meta_logits = self.meta_model(None, meta, None, meta_mask)
        return img_logits, meta_logits, img_mask, meta_mask

    def forward(self, image, meta, image_present=None, meta_present=None):
        img_logits, meta_logits, img_mask, meta_mask = self.member_logits(image, meta, image_present, meta_present)
        weights = torch.stack([img_mask, meta_mask], dim=1).to(img_logits.dtype)  # [B, 2]
        neither = weights.sum(dim=1, keepdim=True) == 0
        weights = torch.where(neither, torch.ones_like(weights), weights)
        log_w = torch.log(weights / weights.sum(dim=1, keepdim=True))  # -inf for absent members
        logp = torch.stack([F.log_softmax(img_logits, dim=1), F.log_softmax(meta_logits, dim=1)], dim=1)
        return torch.logsumexp(logp + log_w.unsqueeze(-1), dim=1)

    def loss_logits(self, image, meta, image_present=None, meta_present=None):
        img_logits, meta_logits, _, _ = self.member_logits(image, meta, image_present, meta_present)
        return [img_logits, meta_logits]


_CLASSES_BY_STRATEGY = {
    "image": ImageModel,
    "metadata": MetadataModel,
    "early": EarlyFusionModel,
    "late": LateFusionModel,
    "joint": JointFusionModel,
}


# --------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------


def create_model(
    strategy: str,
    backbone: str = "compact_cnn",
    num_meta_features: int = 0,
    num_classes: int = len(CLASSES),
    pretrained=False,
    *,
    cache_dir=None,
    lora: Optional[Dict[str, Any]] = None,
    **kw: Any,
) -> SequenceModel:
    """Build a :class:`SequenceModel`.

    ``strategy``: one of :data:`STRATEGIES`.  ``backbone``: a registered backbone
    name (ignored for ``metadata``).  ``num_meta_features``: length of the
    metadata vector (required >= 1 for strategies using metadata).
    ``pretrained`` / ``cache_dir``: passed to
    :func:`~SeqClassifierLib.model.backbones.create_backbone`.  ``lora``: optional
    ``dict(rank=, alpha=, targets=, dropout=)`` to apply :func:`apply_lora`.
    Architecture keywords (``kw``): ``meta_hidden`` (128), ``meta_dim`` (64),
    ``fusion_hidden`` (256), ``dropout`` (0.1).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown fusion strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
    unknown = set(kw) - set(_DEFAULT_HPARAMS)
    if unknown:
        raise TypeError(
            f"unknown create_model arguments {sorted(unknown)}; architecture options are {sorted(_DEFAULT_HPARAMS)}"
        )
    hp = {**_DEFAULT_HPARAMS, **kw}
    num_meta_features = int(num_meta_features)
    if strategy in _META_STRATEGIES and num_meta_features < 1:
        raise ValueError(f"strategy {strategy!r} uses metadata: num_meta_features must be >= 1")
    if int(num_classes) < 2:
        raise ValueError("num_classes must be >= 2")

    bb_config = get_backbone_config(backbone) if strategy != "metadata" else None
    config: Dict[str, Any] = {
        "model_config_version": MODEL_CONFIG_VERSION,
        "strategy": strategy,
        "backbone": bb_config.name if bb_config is not None else None,
        "num_meta_features": num_meta_features,
        "num_classes": int(num_classes),
        "meta_hidden": int(hp["meta_hidden"]),
        "meta_dim": int(hp["meta_dim"]),
        "fusion_hidden": int(hp["fusion_hidden"]),
        "dropout": float(hp["dropout"]),
        "lora": None,
        # Derived, for consumers that need preprocessing without building the model.
        "input_size": bb_config.input_size if bb_config is not None else None,
        "mean": list(bb_config.mean) if bb_config is not None else None,
        "std": list(bb_config.std) if bb_config is not None else None,
    }
    cls = _CLASSES_BY_STRATEGY[strategy]
    if strategy == "metadata":
        model = cls(config)
    else:
        bb = create_backbone(bb_config.name, pretrained=pretrained, cache_dir=cache_dir)
        model = cls(config, bb)
    if lora:
        apply_lora(model, **lora)
    return model


def model_from_config(config: Dict[str, Any]) -> SequenceModel:
    """Rebuild an untrained model (``pretrained=False``) of the architecture
    described by ``config`` (as returned by :attr:`SequenceModel.config`)."""
    version = int(config.get("model_config_version", 1))
    if version > MODEL_CONFIG_VERSION:
        raise ValueError(
            f"model config version {version} is newer than this library supports ({MODEL_CONFIG_VERSION})"
        )
    kw = {k: config[k] for k in _DEFAULT_HPARAMS if k in config}
    return create_model(
        config["strategy"],
        backbone=config.get("backbone") or "compact_cnn",
        num_meta_features=int(config.get("num_meta_features", 0)),
        num_classes=int(config["num_classes"]),
        pretrained=False,
        lora=config.get("lora"),
        **kw,
    )

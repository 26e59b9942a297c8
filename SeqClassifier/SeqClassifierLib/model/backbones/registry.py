"""The backbone registry: every image backbone declared as data.

A :class:`BackboneConfig` says which library builds the backbone (``timm``,
``open_clip`` or a ``builtin`` module of this package), the architecture, the
input size and intensity normalisation it expects, the dimension of the pooled
feature vector it returns, and where its pretrained weights come from
(:class:`PretrainedSource`).  One registry maps names to configurations, as in
timm / open_clip: :func:`list_backbones`, :func:`get_backbone_config`,
:func:`register_backbone`, :func:`unregister_backbone`.

Pure data: no torch, no timm.  Building a backbone is :mod:`.builders`,
finding its weights :mod:`.weights`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__all__ = [
    "PretrainedSource",
    "BackboneConfig",
    "FAMILIES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "list_backbones",
    "get_backbone_config",
    "register_backbone",
    "unregister_backbone",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainedSource:
    """Where the pretrained weights of a backbone come from.

    ``hf_hub_id`` + ``hf_filename`` name the file on the Hugging Face Hub (and
    thereby its location in a local Hugging Face cache); ``url`` is a direct
    download address of the same file.  ``sha256`` pins its content; when it is
    ``None`` the hash of a downloaded file is computed, logged and written next
    to it (``<file>.sha256``) so that a user can pin it.
    """

    hf_hub_id: Optional[str] = None
    hf_filename: Optional[str] = None
    url: Optional[str] = None
    sha256: Optional[str] = None
    license: Optional[str] = None

    @property
    def filename(self) -> Optional[str]:
        """The weights file's name: ``hf_filename``, else the URL's last path part."""
        if self.hf_filename:
            return self.hf_filename
        if self.url:
            return os.path.basename(self.url.split("?", 1)[0]) or None
        return None


@dataclass(frozen=True)
class BackboneConfig:
    """Declaration of one image backbone.

    ``family`` selects the builder: ``"timm"`` (``timm.create_model(arch,
    num_classes=0, **kwargs)``), ``"open_clip"`` (open_clip's vision tower built
    from ``kwargs = {"embed_dim": ..., "vision_cfg": {...}}``) or
    ``"builtin"`` (a module of this package, ``arch`` names it, see
    :mod:`.builders`).
    ``input_size`` is the square side in pixels, ``mean``/``std`` the per-channel
    normalisation of images scaled to [0, 1], ``feature_dim`` the size of the
    pooled feature vector.
    """

    name: str
    family: str
    arch: str
    input_size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    feature_dim: int
    pretrained: Optional[PretrainedSource] = None
    description: str = ""
    kwargs: Dict[str, Any] = field(default_factory=dict)

    # ``kwargs`` is a dict, so the generated hash would fail; hash by identity fields.
    def __hash__(self) -> int:  # pragma: no cover - trivial
        return hash((self.name, self.family, self.arch, self.input_size, self.feature_dim))

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-able copy (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d


def _hf_resolve_url(hub_id: str, filename: str) -> str:
    return f"https://huggingface.co/{hub_id}/resolve/main/{filename}"


def _timm_source(hub_id: str, license: str = "apache-2.0", filename: str = "model.safetensors") -> PretrainedSource:
    # timm publishes every pretrained tag as a Hub repository holding
    # ``model.safetensors`` (keys already in timm layout), so the same file
    # serves the HF-cache lookup and the direct download.
    return PretrainedSource(
        hf_hub_id=hub_id,
        hf_filename=filename,
        url=_hf_resolve_url(hub_id, filename),
        sha256=None,
        license=license,
    )


#: BiomedCLIP's vision tower as declared in the hub repository's
#: ``open_clip_config.json`` (``model_cfg.embed_dim`` / ``model_cfg.vision_cfg``).
#: Only the vision tower is built, so no PubMedBERT text model is needed.
_BIOMEDCLIP_VISION = {
    "embed_dim": 512,
    "vision_cfg": {
        "timm_model_name": "vit_base_patch16_224",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": 224,
    },
}

_BIOMEDCLIP_HUB = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"

_BUILTIN_CONFIGS = (
    BackboneConfig(
        name="vit_b16",
        family="timm",
        arch="vit_base_patch16_224.augreg2_in21k_ft_in1k",
        input_size=224,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        feature_dim=768,
        pretrained=_timm_source("timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"),
        description="ViT-B/16, supervised ImageNet-21k pretraining, fine-tuned on ImageNet-1k (timm augreg2).",
    ),
    BackboneConfig(
        name="vit_l16",
        family="timm",
        arch="vit_large_patch16_224.augreg_in21k_ft_in1k",
        input_size=224,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        feature_dim=1024,
        # timm's own cfg points at the original .npz (custom numpy loader);
        # we use the Hub's safetensors export of the same weights instead.
        pretrained=_timm_source("timm/vit_large_patch16_224.augreg_in21k_ft_in1k"),
        description="ViT-L/16, supervised ImageNet-21k pretraining, fine-tuned on ImageNet-1k (timm augreg).",
    ),
    BackboneConfig(
        name="dinov2_s14",
        family="timm",
        arch="vit_small_patch14_dinov2.lvd142m",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=384,
        pretrained=_timm_source("timm/vit_small_patch14_dinov2.lvd142m"),
        description="DINOv2 ViT-S/14, self-supervised on LVD-142M; position embeddings resampled from 518 to 224 px.",
        kwargs={"img_size": 224},
    ),
    BackboneConfig(
        name="dinov2_b14",
        family="timm",
        arch="vit_base_patch14_dinov2.lvd142m",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=768,
        pretrained=_timm_source("timm/vit_base_patch14_dinov2.lvd142m"),
        description="DINOv2 ViT-B/14, self-supervised on LVD-142M; position embeddings resampled from 518 to 224 px.",
        kwargs={"img_size": 224},
    ),
    BackboneConfig(
        name="dinov2_l14",
        family="timm",
        arch="vit_large_patch14_dinov2.lvd142m",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_dim=1024,
        pretrained=_timm_source("timm/vit_large_patch14_dinov2.lvd142m"),
        description="DINOv2 ViT-L/14, self-supervised on LVD-142M; position embeddings resampled from 518 to 224 px.",
        kwargs={"img_size": 224},
    ),
    BackboneConfig(
        name="biomedclip_b16",
        family="open_clip",
        arch="vit_base_patch16_224",
        input_size=224,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        feature_dim=_BIOMEDCLIP_VISION["embed_dim"],
        pretrained=PretrainedSource(
            hf_hub_id=_BIOMEDCLIP_HUB,
            hf_filename="open_clip_pytorch_model.bin",
            url=_hf_resolve_url(_BIOMEDCLIP_HUB, "open_clip_pytorch_model.bin"),
            sha256=None,
            license="mit",
        ),
        description=(
            "BiomedCLIP ViT-B/16 vision tower (weakly supervised on PMC-15M figure-caption pairs); "
            "timm ViT-B/16 trunk + linear projection to the 512-d CLIP embedding, no text tower."
        ),
        kwargs=_BIOMEDCLIP_VISION,
    ),
    BackboneConfig(
        name="vit_tiny_test",
        family="timm",
        arch="vit_tiny_patch16_224",
        input_size=32,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        feature_dim=32,
        pretrained=None,
        description="Tiny randomly initialised ViT (32 px, patch 8, 2 blocks, width 32) for tests only.",
        kwargs={"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
    ),
    BackboneConfig(
        name="compact_cnn",
        family="builtin",
        arch="CompactCNN",
        input_size=128,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        feature_dim=256,
        pretrained=None,
        description=(
            "Small 5-stage residual CNN with GroupNorm and global average pooling (~1.5 M parameters), "
            "trained from scratch; single-intensity slices replicated to 3 channels."
        ),
        kwargs={"widths": [24, 48, 96, 160, 256], "groups": 8},
    ),
)

_REGISTRY: Dict[str, BackboneConfig] = {c.name: c for c in _BUILTIN_CONFIGS}

FAMILIES = ("timm", "open_clip", "builtin")


def list_backbones(pattern: Optional[str] = None, family: Optional[str] = None) -> List[str]:
    """Names of the registered backbones, in registration order.

    ``pattern``: a shell-style wildcard on the name (``"dinov2_*"``);
    ``family``: only backbones built by that library (one of :data:`FAMILIES`).
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown backbone family {family!r}; expected one of {FAMILIES}")
    return [
        name for name, config in _REGISTRY.items()
        if (pattern is None or fnmatch.fnmatchcase(name, pattern)) and (family is None or config.family == family)
    ]


def get_backbone_config(name: str) -> BackboneConfig:
    """The :class:`BackboneConfig` registered under ``name``.

    Raises ``KeyError`` listing the valid names for an unknown one.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown backbone {name!r}; valid names: {', '.join(_REGISTRY)}"
        ) from None


def register_backbone(config: BackboneConfig, *, overwrite: bool = False) -> BackboneConfig:
    """Add a backbone declaration (e.g. a locally trained or extra architecture)."""
    if not isinstance(config, BackboneConfig):
        raise TypeError("config must be a BackboneConfig")
    if config.family not in FAMILIES:
        raise ValueError(f"unknown backbone family {config.family!r}; expected one of {FAMILIES}")
    if config.name in _REGISTRY and not overwrite:
        raise ValueError(f"backbone {config.name!r} is already registered")
    _REGISTRY[config.name] = config
    return config


def unregister_backbone(name: str) -> None:
    """Remove a registered backbone (no error if it is not registered)."""
    _REGISTRY.pop(name, None)

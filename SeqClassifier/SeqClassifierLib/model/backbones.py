"""Registry of image backbones (feature extractors) and their pretrained weights.

Every backbone is declared as *data* (:class:`BackboneConfig`): which library
builds it (``timm``, ``open_clip`` or a ``builtin`` module of this package),
the architecture, the input size and intensity normalisation it expects, the
dimension of the pooled feature vector it returns, and where its pretrained
weights come from (:class:`PretrainedSource`).  :func:`create_backbone` turns a
name into a :class:`Backbone` -- an ``nn.Module`` mapping ``[B, 3, H, W]``
images to pooled ``[B, D]`` features, with no classifier.

Pretrained weights are never fetched implicitly by timm / open_clip (their
models are always built with ``pretrained=False``).  Instead
:func:`resolve_pretrained_weights` looks for the file in this order:

1. an explicit local file (``pretrained="/path/to/model.safetensors"``);
2. the local Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME`` /
   ``~/.cache/huggingface/hub``, ``models--org--name/snapshots/*/<file>``),
   without any network access;
3. this package's own download cache (``<cache_dir>/<backbone>/<file>``,
   default ``$SEQCLASSIFIER_CACHE/weights`` or ``~/.cache/seqclassifier/weights``);
4. a download of the declared URL (skipped when ``SEQCLASSIFIER_OFFLINE=1``),
   streamed to a temporary file next to its destination and verified against
   the declared SHA-256 *before* it is moved into the cache;
5. otherwise :class:`WeightsNotFoundError`, whose message says which file to
   put where.

Weight files are read only through ``safetensors`` or
``torch.load(..., weights_only=True)``: a weights file can never execute code.

``torch`` is imported at module level; ``timm`` and ``open_clip`` are imported
lazily inside the builders, so the default builtin CNN (and anything that only
needs the registry) works with torch alone.  This module is only imported when
a model is needed and never imports ``slicer`` or ``qt``.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import logging
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from SeqClassifierLib.config import CACHE_ENV, OFFLINE_ENV, offline as _offline, weights_cache_dir  # one place for every setting

__all__ = [
    "PretrainedSource",
    "BackboneConfig",
    "Backbone",
    "CompactCNN",
    "ResolvedWeights",
    "WeightsNotFoundError",
    "WeightsIntegrityError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "list_backbones",
    "get_backbone_config",
    "register_backbone",
    "unregister_backbone",
    "create_backbone",
    "resolve_pretrained_weights",
    "load_weights_file",
    "load_pretrained_into",
    "hf_cache_dirs",
    "hf_cache_file_path",
    "default_cache_dir",
    "sha256_file",
    "OFFLINE_ENV",
    "CACHE_ENV",
]

log = logging.getLogger(__name__)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

PathLike = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[int, Optional[int]], None]


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are needed but no file could be found or downloaded."""


class WeightsIntegrityError(RuntimeError):
    """A weights file does not have the SHA-256 it is declared (or pinned) to have."""


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
    ``"builtin"`` (a module of this file, ``arch`` names it).
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

_FAMILIES = ("timm", "open_clip", "builtin")


def list_backbones() -> list:
    """Names of all registered backbones, in registration order."""
    return list(_REGISTRY)


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
    if config.family not in _FAMILIES:
        raise ValueError(f"unknown backbone family {config.family!r}; expected one of {_FAMILIES}")
    if config.name in _REGISTRY and not overwrite:
        raise ValueError(f"backbone {config.name!r} is already registered")
    _REGISTRY[config.name] = config
    return config


def unregister_backbone(name: str) -> None:
    """Remove a registered backbone (no error if it is not registered)."""
    _REGISTRY.pop(name, None)


# --------------------------------------------------------------------------------------
# The builtin CNN
# --------------------------------------------------------------------------------------


class _ConvNormAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int, act: bool = True):
        layers = [
            nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.GroupNorm(min(groups, c_out), c_out),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _Stage(nn.Module):
    """Strided conv (downsampling) followed by one residual 3x3 conv."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.down = _ConvNormAct(c_in, c_out, stride=2, groups=groups)
        self.conv = _ConvNormAct(c_out, c_out, stride=1, groups=groups, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.act(x + self.conv(x))


class CompactCNN(nn.Module):
    """Small CNN for training from scratch on 128 px single-intensity slices.

    Five stages, each halving the resolution (128 -> 4 px), GroupNorm (batch-size
    independent, so it behaves the same for one series at inference as for a
    training batch), global average pooling to ``widths[-1]`` features.
    """

    def __init__(self, in_chans: int = 3, widths=(24, 48, 96, 160, 256), groups: int = 8):
        super().__init__()
        stages = []
        c_in = in_chans
        for w in widths:
            stages.append(_Stage(c_in, int(w), groups))
            c_in = int(w)
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c_in
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(x)).flatten(1)


_BUILTIN_ARCHS: Dict[str, Callable[..., nn.Module]] = {"CompactCNN": CompactCNN}


# --------------------------------------------------------------------------------------
# The Backbone module
# --------------------------------------------------------------------------------------


class Backbone(nn.Module):
    """An image feature extractor: ``forward(x[B, 3, H, W]) -> features[B, D]``.

    Attributes: ``config`` (:class:`BackboneConfig`), ``num_features`` (D),
    ``body`` (the wrapped timm / open_clip / builtin module) and, when
    pretrained weights were loaded, ``weights_path`` / ``weights_sha256`` /
    ``weights_source`` for provenance records.
    """

    def __init__(self, config: BackboneConfig, body: nn.Module):
        super().__init__()
        self.config = config
        self.body = body
        self.num_features = int(config.feature_dim)
        self.weights_path: Optional[str] = None
        self.weights_sha256: Optional[str] = None
        self.weights_source: Optional[str] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def extra_repr(self) -> str:
        return f"name={self.config.name!r}, num_features={self.num_features}"


def _build_body(config: BackboneConfig) -> nn.Module:
    kwargs = dict(config.kwargs)
    if config.family == "timm":
        import timm  # lazy: only needed for timm backbones

        # pretrained=False: weights are resolved and loaded by this module, never
        # fetched implicitly by timm.  num_classes=0 -> pooled features, no head.
        return timm.create_model(config.arch, pretrained=False, num_classes=0, **kwargs)
    if config.family == "open_clip":
        # lazy: open_clip is a heavy import and only needed for CLIP towers.
        # ``_build_vision_tower`` is open_clip's (private) builder used by
        # ``CLIP.__init__``; with a ``timm_model_name`` it returns a
        # ``TimmModel`` (timm trunk + projection head), built without weights.
        from open_clip.model import _build_vision_tower

        vision_cfg = dict(kwargs.get("vision_cfg", {}))
        vision_cfg["timm_model_pretrained"] = False
        return _build_vision_tower(
            embed_dim=int(kwargs["embed_dim"]),
            vision_cfg=vision_cfg,
            quick_gelu=bool(kwargs.get("quick_gelu", False)),
        )
    if config.family == "builtin":
        try:
            cls = _BUILTIN_ARCHS[config.arch]
        except KeyError:
            raise ValueError(f"unknown builtin architecture {config.arch!r}") from None
        return cls(**kwargs)
    raise ValueError(f"unknown backbone family {config.family!r}; expected one of {_FAMILIES}")


def create_backbone(
    name: str,
    pretrained: Union[bool, PathLike] = False,
    cache_dir: Optional[PathLike] = None,
    *,
    sha256: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
) -> Backbone:
    """Build the backbone registered as ``name``.

    ``pretrained``: ``False`` -> random initialisation; ``True`` -> resolve the
    declared pretrained weights (see :func:`resolve_pretrained_weights`); a path
    -> load that local file.  ``sha256`` pins the expected hash of the weights
    file (overrides the declared one).  ``progress(done_bytes, total_bytes)`` is
    called while downloading.
    """
    config = get_backbone_config(name)
    body = _build_body(config)
    built_dim = getattr(body, "num_features", None)
    if config.family == "open_clip":
        built_dim = int(config.kwargs["embed_dim"])
    if built_dim is not None and int(built_dim) != int(config.feature_dim):
        raise RuntimeError(
            f"backbone {name!r} declares feature_dim={config.feature_dim} but the built model "
            f"has {built_dim} features"
        )
    backbone = Backbone(config, body)
    if pretrained is not False and pretrained is not None:
        resolved = resolve_pretrained_weights(
            config, pretrained, cache_dir=cache_dir, sha256=sha256, progress=progress
        )
        state_dict = load_weights_file(resolved.path)
        load_pretrained_into(backbone, state_dict)
        backbone.weights_path = str(resolved.path)
        backbone.weights_sha256 = resolved.sha256
        backbone.weights_source = resolved.source
        log.info(
            "loaded pretrained weights for %s from %s (%s, sha256 %s)",
            name, resolved.path, resolved.source, resolved.sha256,
        )
    return backbone


# --------------------------------------------------------------------------------------
# Weight resolution
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedWeights:
    """A located weights file: its path, SHA-256 and where it was found
    (``"file"``, ``"hf_cache"``, ``"cache"`` or ``"download"``)."""

    path: Path
    sha256: str
    source: str


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """This package's weights cache: ``$SEQCLASSIFIER_CACHE/weights`` or
    ``~/.cache/seqclassifier/weights`` (``$XDG_CACHE_HOME`` respected)."""
    return weights_cache_dir()


def hf_cache_dirs() -> list:
    """Candidate Hugging Face hub cache directories, most specific first, following
    huggingface_hub's conventions (``HF_HUB_CACHE``, legacy ``HUGGINGFACE_HUB_CACHE``,
    ``HF_HOME/hub``, ``XDG_CACHE_HOME/huggingface/hub``, ``~/.cache/huggingface/hub``)."""
    candidates = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]).expanduser())
    if os.environ.get("HF_HOME"):
        candidates.append(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    if os.environ.get("XDG_CACHE_HOME"):
        candidates.append(Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub")
    candidates.append(Path.home() / ".cache" / "huggingface" / "hub")
    unique = []
    for c in candidates:
        if c not in unique:
            unique.append(c)
    return unique


def _hf_repo_folder(hub_id: str) -> str:
    return "models--" + hub_id.replace("/", "--")


def hf_cache_file_path(hub_id: str, filename: str, revision: str = "main") -> Path:
    """Where a file can be placed by hand so that it is found in the (primary)
    Hugging Face cache: ``<hub cache>/models--org--name/snapshots/<revision>/<filename>``.
    Any snapshot folder name is accepted by the lookup."""
    return hf_cache_dirs()[0] / _hf_repo_folder(hub_id) / "snapshots" / revision / filename


def _find_in_hf_cache(hub_id: str, filename: str) -> Optional[Path]:
    """Look up ``filename`` of repository ``hub_id`` in the local HF caches.

    Prefers the snapshot that ``refs/main`` points at, then the most recently
    modified snapshot.  Purely local: no network access.
    """
    for cache in hf_cache_dirs():
        repo_dir = cache / _hf_repo_folder(hub_id)
        if not repo_dir.is_dir():
            continue
        ref = repo_dir / "refs" / "main"
        if ref.is_file():
            commit = ref.read_text(encoding="utf-8").strip()
            candidate = repo_dir / "snapshots" / commit / filename
            if candidate.is_file():
                return candidate
        hits = [Path(p) for p in glob.glob(str(repo_dir / "snapshots" / "*" / filename))]
        hits = [p for p in hits if p.is_file()]
        if hits:
            hits.sort(key=lambda p: p.stat().st_mtime, reverse=True)
            return hits[0]
    return None


def _verify(path: Path, expected: Optional[str], what: str) -> str:
    actual = sha256_file(path)
    if expected and actual.lower() != expected.lower():
        raise WeightsIntegrityError(
            f"{what} {path} has SHA-256 {actual} but {expected.lower()} was expected; "
            "the file is corrupt or not the declared weights (delete it and try again)."
        )
    return actual


def _download(
    url: str,
    dest: Path,
    expected_sha256: Optional[str],
    progress: Optional[ProgressCallback],
    chunk_size: int = 1 << 20,
) -> str:
    """Stream ``url`` to a temporary file next to ``dest``, verify, then move it in.

    Returns the SHA-256 of the downloaded file.  On any failure (network error,
    hash mismatch) the temporary file is deleted and nothing is left at ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=str(dest.parent))
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "SeqClassifier"})
            with urllib.request.urlopen(request, timeout=60) as response:
                total = None
                headers = getattr(response, "headers", None)
                if headers is not None:
                    length = headers.get("Content-Length")
                    if length and str(length).isdigit():
                        total = int(length)
                done = 0
                if progress is not None:
                    progress(0, total)
                while True:
                    block = response.read(chunk_size)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and done != total:
            raise OSError(f"download of {url} truncated: got {done} of {total} bytes")
        actual = h.hexdigest()
        if expected_sha256 and actual.lower() != expected_sha256.lower():
            raise WeightsIntegrityError(
                f"downloaded {url} has SHA-256 {actual} but {expected_sha256.lower()} was expected; "
                "the file was discarded."
            )
        os.replace(tmp, dest)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return actual


def _not_found_message(config: BackboneConfig, src: PretrainedSource, cache_root: Path, reason: str) -> str:
    filename = src.filename or "<weights file>"
    lines = [f"Pretrained weights for backbone {config.name!r} were not found ({reason})."]
    where = []
    if src.hf_hub_id:
        lines.append(f"Get the file {filename!r} from the Hugging Face Hub repository {src.hf_hub_id!r}")
        if src.url:
            lines.append(f"  ({src.url})")
        where.append(
            f"  - put it into the Hugging Face cache at {hf_cache_file_path(src.hf_hub_id, filename)}\n"
            f"    (e.g. `huggingface-cli download {src.hf_hub_id} {filename}` on a machine with network "
            "access, then copy the cache folder), or"
        )
    elif src.url:
        lines.append(f"Get the file {filename!r} from {src.url}")
    else:
        lines.append(f"No download source is declared for {config.name!r}.")
    where.append(f"  - put it at {cache_root / config.name / filename}, or")
    where.append(f"  - pass the file explicitly: --pretrained /path/to/{filename}")
    lines.append("and do one of:")
    lines.extend(where)
    if src.sha256:
        lines.append(f"Its SHA-256 must be {src.sha256}.")
    return "\n".join(lines)


def resolve_pretrained_weights(
    config: Union[str, BackboneConfig],
    pretrained: Union[bool, PathLike] = True,
    cache_dir: Optional[PathLike] = None,
    *,
    sha256: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    offline: Optional[bool] = None,
) -> ResolvedWeights:
    """Locate (and if necessary download) the weights file of a backbone.

    See the module docstring for the search order.  ``sha256`` overrides the
    declared hash; an explicit local file is only checked against an explicitly
    passed ``sha256`` (it may be the user's own weights).  ``offline`` defaults
    to the ``SEQCLASSIFIER_OFFLINE`` environment variable.
    """
    if isinstance(config, str):
        config = get_backbone_config(config)
    if pretrained is False or pretrained is None:
        raise ValueError("resolve_pretrained_weights called with pretrained=False")

    # (a) explicit local file
    if not isinstance(pretrained, bool):
        path = Path(os.fspath(pretrained)).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"pretrained weights file {path} does not exist (backbone {config.name!r})")
        return ResolvedWeights(path, _verify(path, sha256, "weights file"), "file")

    src = config.pretrained
    if src is None:
        raise WeightsNotFoundError(
            f"backbone {config.name!r} declares no pretrained weights; use pretrained=False "
            "or pass a weights file (--pretrained /path/to/file)"
        )
    expected = sha256 or src.sha256
    filename = src.filename
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    # (b) local Hugging Face cache
    if src.hf_hub_id and filename:
        hit = _find_in_hf_cache(src.hf_hub_id, filename)
        if hit is not None:
            return ResolvedWeights(hit, _verify(hit, expected, "cached weights file"), "hf_cache")

    # (b') this package's own download cache
    if filename:
        own = cache_root / config.name / filename
        if own.is_file():
            return ResolvedWeights(own, _verify(own, expected, "cached weights file"), "cache")

    # (c) download
    if offline is None:
        offline = _offline()
    reason = "no local copy"
    if src.url and filename and not offline:
        dest = cache_root / config.name / filename
        log.info("downloading pretrained weights for %s from %s to %s", config.name, src.url, dest)
        try:
            actual = _download(src.url, dest, expected, progress)
        except WeightsIntegrityError:
            raise
        except OSError as exc:  # URLError, HTTPError, timeouts are OSErrors
            reason = f"no local copy and the download from {src.url} failed: {exc}"
        else:
            if not expected:
                # Record the hash so the user can pin it (PretrainedSource.sha256 / sha256=...).
                try:
                    dest.with_name(dest.name + ".sha256").write_text(f"{actual}  {dest.name}\n", encoding="utf-8")
                except OSError:
                    pass
                log.warning(
                    "downloaded %s without a declared SHA-256; its SHA-256 is %s (pin it to verify future copies)",
                    dest, actual,
                )
            return ResolvedWeights(dest, actual, "download")
    elif offline and src.url:
        reason = f"no local copy and downloads are disabled ({OFFLINE_ENV}=1)"
    raise WeightsNotFoundError(_not_found_message(config, src, cache_root, reason))


# --------------------------------------------------------------------------------------
# Reading and mapping weight files
# --------------------------------------------------------------------------------------


def load_weights_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` (preferred) or ``.bin/.pth/.pt``.

    Pickle-based files are read with ``torch.load(weights_only=True)`` only,
    which refuses anything but tensors and plain containers.  Common wrappers
    (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if suffix in (".bin", ".pth", ".pt"):
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        for key in ("state_dict", "model", "module"):
            if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
                obj = obj[key]
        if not isinstance(obj, dict):
            raise ValueError(f"{path} does not contain a state dict")
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    raise ValueError(
        f"unsupported weights file type {path.suffix!r} ({path}); use .safetensors (preferred) or .bin/.pth"
    )


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefixes) -> Dict[str, torch.Tensor]:
    out = dict(state_dict)
    for prefix in prefixes:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def _timm_filter(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Apply the checkpoint filter of the timm module that defines ``model``
    (e.g. ``timm.models.vision_transformer.checkpoint_filter_fn``: original
    DINOv2 / CLIP layouts, position-embedding resampling to our input size)."""
    module = sys.modules.get(type(model).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:
        return state_dict
    return fn(state_dict, model)


def load_pretrained_into(backbone: Backbone, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Map ``state_dict`` onto ``backbone.body`` and load it.

    timm: strip ``module.``, apply timm's checkpoint filter; classifier weights
    (absent from our head-less model) are dropped.  open_clip: keep ``visual.*``
    keys with the prefix removed (the text tower is ignored) and run timm's
    filter on the ``trunk.*`` part.  Any model parameter left unfilled is an
    error; unexpected checkpoint keys are logged and ignored.
    """
    config = backbone.config
    body = backbone.body
    sd = _strip_prefix(state_dict, ("module.",))
    if config.family == "timm":
        sd = _timm_filter(sd, body)
    elif config.family == "open_clip":
        if any(k.startswith("visual.") for k in sd):
            sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
        trunk = getattr(body, "trunk", None)
        if trunk is not None:
            trunk_sd = {k[len("trunk."):]: v for k, v in sd.items() if k.startswith("trunk.")}
            rest = {k: v for k, v in sd.items() if not k.startswith("trunk.")}
            trunk_sd = _timm_filter(trunk_sd, trunk)
            sd = {**rest, **{"trunk." + k: v for k, v in trunk_sd.items()}}
    own = body.state_dict()
    unexpected = sorted(k for k in sd if k not in own)
    sd = {k: v for k, v in sd.items() if k in own}
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in sd.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise RuntimeError(
            f"pretrained weights do not fit backbone {config.name!r}: " + "; ".join(mismatched[:10])
        )
    missing = sorted(k for k in own if k not in sd)
    if missing:
        raise RuntimeError(
            f"pretrained weights for backbone {config.name!r} lack {len(missing)} tensors, e.g. "
            + ", ".join(missing[:10])
        )
    if unexpected:
        log.info("ignored %d checkpoint tensors not used by %s (e.g. %s)",
                 len(unexpected), config.name, ", ".join(unexpected[:5]))
    body.load_state_dict(sd, strict=True)

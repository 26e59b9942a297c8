"""One factory for every registered backbone: :func:`create_backbone`.

``create_backbone(name, pretrained=...)`` builds the architecture declared in
:mod:`.registry` and returns a :class:`Backbone` -- an ``nn.Module`` mapping
``[B, 3, H, W]`` images to pooled ``[B, D]`` features, with no classifier --
and, when asked, loads pretrained weights located by :mod:`.weights`.

timm and open_clip models are always built with ``pretrained=False``: their
libraries never fetch weights implicitly.  ``torch`` is imported at module
level; ``timm`` and ``open_clip`` lazily inside :func:`_build_body`, so the
builtin CNN works with torch alone.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Optional, Union

from torch import nn

from SeqClassifierLib.model.backbones.backbone import Backbone
from SeqClassifierLib.model.backbones.compact_cnn import CompactCNN
from SeqClassifierLib.model.backbones.registry import FAMILIES, BackboneConfig, get_backbone_config
from SeqClassifierLib.model.backbones.weights import (
    PathLike,
    ProgressCallback,
    load_pretrained_into,
    load_weights_file,
    resolve_pretrained_weights,
)

__all__ = ["Backbone", "create_backbone", "BUILTIN_ARCHS"]

log = logging.getLogger(__name__)

#: Modules of the ``builtin`` family, by :attr:`BackboneConfig.arch`.
BUILTIN_ARCHS: Dict[str, Callable[..., nn.Module]] = {"CompactCNN": CompactCNN}


def _build_body(config: BackboneConfig) -> nn.Module:
    kwargs = dict(config.kwargs)
    if config.family == "timm":
        try:
            import timm  # lazy: only needed for timm backbones
        except ImportError:
            raise ImportError(f"backbone {config.name!r} needs timm, which is not installed: "
                              'pip install "seqclassifier[foundation]"') from None

        # pretrained=False: weights are resolved by .weights and loaded by create_backbone, never
        # fetched implicitly by timm.  num_classes=0 -> pooled features, no head.
        return timm.create_model(config.arch, pretrained=False, num_classes=0, **kwargs)
    if config.family == "open_clip":
        # lazy: open_clip is a heavy import and only needed for CLIP towers.
        # ``_build_vision_tower`` is open_clip's (private) builder used by
        # ``CLIP.__init__``; with a ``timm_model_name`` it returns a
        # ``TimmModel`` (timm trunk + projection head), built without weights.
        try:
            from open_clip.model import _build_vision_tower
        except ImportError:
            raise ImportError(f"backbone {config.name!r} needs open_clip_torch, which is not installed: "
                              'pip install "seqclassifier[foundation]"') from None

        vision_cfg = dict(kwargs.get("vision_cfg", {}))
        vision_cfg["timm_model_pretrained"] = False
        return _build_vision_tower(
            embed_dim=int(kwargs["embed_dim"]),
            vision_cfg=vision_cfg,
            quick_gelu=bool(kwargs.get("quick_gelu", False)),
        )
    if config.family == "builtin":
        try:
            cls = BUILTIN_ARCHS[config.arch]
        except KeyError:
            raise ValueError(f"unknown builtin architecture {config.arch!r}") from None
        return cls(**kwargs)
    raise ValueError(f"unknown backbone family {config.family!r}; expected one of {FAMILIES}")


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

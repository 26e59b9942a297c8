"""Image backbones (feature extractors) and their pretrained weights.

:mod:`.registry`     every backbone declared as data (:class:`BackboneConfig`), one registry;
:mod:`.backbone`     the :class:`Backbone` type (a feature extractor and its weights' provenance);
:mod:`.builders`     one factory, :func:`create_backbone`, returning a :class:`Backbone`;
:mod:`.compact_cnn`  the builtin CNN trained from scratch (the shipped model's backbone);
:mod:`.weights`      pretrained weight resolution (file, HF cache, own cache, URL + SHA-256).

Everything is re-exported here: ``from SeqClassifierLib.model.backbones import
create_backbone, get_backbone_config`` is the usual entry.  ``torch`` is
imported (by builders / weights); ``timm`` and ``open_clip`` only when a
backbone of theirs is built.  Never imports ``slicer`` or ``qt``.
"""

from SeqClassifierLib.model.backbones.registry import (
    FAMILIES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    BackboneConfig,
    PretrainedSource,
    get_backbone_config,
    list_backbones,
    register_backbone,
    unregister_backbone,
)
from SeqClassifierLib.model.backbones.weights import (
    CACHE_ENV,
    OFFLINE_ENV,
    ResolvedWeights,
    WeightsIntegrityError,
    WeightsNotFoundError,
    default_cache_dir,
    hf_cache_dirs,
    hf_cache_file_path,
    load_pretrained_into,
    load_weights_file,
    resolve_pretrained_weights,
    sha256_file,
)
from SeqClassifierLib.model.backbones.compact_cnn import CompactCNN
from SeqClassifierLib.model.backbones.builders import BUILTIN_ARCHS, Backbone, create_backbone

__all__ = [
    "PretrainedSource",
    "BackboneConfig",
    "Backbone",
    "CompactCNN",
    "BUILTIN_ARCHS",
    "FAMILIES",
    "ResolvedWeights",
    "WeightsNotFoundError",
    "WeightsIntegrityError",
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

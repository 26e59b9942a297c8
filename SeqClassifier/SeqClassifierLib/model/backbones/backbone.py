"""The :class:`Backbone` type: an image feature extractor with its provenance.

Its own module so that :mod:`.builders` (which makes backbones) and
:mod:`.weights` (which loads weights into one) both use it without importing
each other.  ``torch`` is imported at module level.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from SeqClassifierLib.model.backbones.registry import BackboneConfig


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

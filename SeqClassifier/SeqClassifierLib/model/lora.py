"""Low-rank adapters (LoRA) for the ViT backbones of the fusion models.

:class:`LoRALinear` wraps an ``nn.Linear`` with a trainable low-rank update
while its base weights stay frozen; :func:`apply_lora` wraps the attention /
MLP projections of a model's backbone(s) and records the adapters in the
model's config so that :func:`~SeqClassifierLib.model.fusion.model_from_config`
rebuilds them.

``torch`` is imported at module level; never imports ``slicer`` or ``qt``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F


__all__ = ["LoRALinear", "apply_lora"]


class LoRALinear(nn.Module):
    """``nn.Linear`` with a low-rank adapter: ``base(x) + (alpha/rank) * B(A(x))``.

    The base weights are frozen; ``lora_A`` is Kaiming-initialised and
    ``lora_B`` zero-initialised, so at creation the output equals the base
    layer's exactly.  ``weight`` / ``bias`` / ``in_features`` / ``out_features``
    proxy the base layer for code that inspects them.
    """

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 8.0, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError("LoRA rank must be >= 1")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank = int(rank)
        self.alpha = float(alpha)
        self.scaling = self.alpha / self.rank
        dev, dt = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(self.rank, base.in_features, device=dev, dtype=dt))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, self.rank, device=dev, dtype=dt))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)
        return self.base(x) + update * self.scaling

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"



def apply_lora(
    model: nn.Module,
    rank: int = 4,
    alpha: float = 8.0,
    targets: Sequence[str] = ("qkv", "proj"),
    dropout: float = 0.0,
) -> nn.Module:
    """Wrap the ``nn.Linear`` layers of a :class:`~SeqClassifierLib.model.fusion.SequenceModel`'s
    ViT backbone(s) whose attribute name is in ``targets`` (timm ViT: ``qkv``, ``proj``, ``fc1``,
    ``fc2``) with :class:`LoRALinear` adapters, freezing all other backbone
    weights.  Recorded in ``model.config["lora"]`` so that
    :func:`model_from_config` rebuilds it.  Returns ``model`` (modified in place).

    Apply after loading pretrained backbone weights and before loading a
    fine-tuned state dict (the adapted layers' keys become ``...qkv.base.weight``).
    """
    if model.strategy == "early":
        raise ValueError("LoRA does not apply to early fusion (its backbone is frozen by definition)")
    if model._config.get("lora"):
        raise ValueError("LoRA adapters are already applied to this model")
    targets = tuple(targets)
    backbones = model.backbones()
    if not backbones:
        raise ValueError(f"strategy {model.strategy!r} has no image backbone to adapt")
    n_wrapped = 0
    for bb in backbones:
        for p in bb.parameters():
            p.requires_grad_(False)
        replacements = []
        for parent_name, parent in bb.named_modules():
            for child_name, child in parent.named_children():
                if child_name in targets and type(child) is nn.Linear:
                    replacements.append((parent, child_name, child))
        for parent, child_name, child in replacements:
            setattr(parent, child_name, LoRALinear(child, rank=rank, alpha=alpha, dropout=dropout))
            n_wrapped += 1
    if n_wrapped == 0:
        raise ValueError(
            f"no nn.Linear layers named {targets} in backbone {model.backbone_name!r}; LoRA needs a ViT backbone"
        )
    model._config["lora"] = {"rank": int(rank), "alpha": float(alpha), "targets": list(targets), "dropout": float(dropout)}
    return model

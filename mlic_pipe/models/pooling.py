"""`PoolHead`: global average or max pooling, then a linear classifier (the baseline head)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["POOLS", "PoolHead"]

POOLS = ("avg", "max")


class PoolHead(nn.Module):
    """Pool the (B, D, h, w) map to (B, D), then a linear layer to (B, C) logits.

    Args:
        pool: "avg" (the usual) or "max".
        cosine: output cosines between the pooled feature and each class weight (for `AAMLoss`),
            instead of logits; then there is no bias.
        dropout: on the pooled feature.
    """

    def __init__(self, num_features: int, num_classes: int, pool: str = "avg", cosine: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool, self.cosine = pool, bool(cosine)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes, bias=not cosine)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean((2, 3)) if self.pool == "avg" else features.amax((2, 3))
        pooled = self.dropout(pooled)
        if self.cosine:
            return F.linear(F.normalize(pooled, dim=1), F.normalize(self.fc.weight, dim=1))
        return self.fc(pooled)

"""`CSRA`: class-specific residual attention (Zhu and Wu, ICCV 2021).

A 1x1 classifier turns the feature map into per-class score maps, each divided by the norm of its
class weight vector. A class's logit is the mean of its map (the global-average baseline) plus
lambda times an attention-pooled score: the softmax(T * score)-weighted sum over positions, which is
the max at T = inf. Multi-head CSRA sums H such heads with fixed temperature sets. One linear layer
per head, so it costs almost nothing over average pooling.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["CSRA", "CSRA_TEMPERATURES"]

INF = math.inf
# the paper's temperature set for each number of heads
CSRA_TEMPERATURES = {
    1: (1.0,),
    2: (1.0, INF),
    4: (1.0, 2.0, 4.0, INF),
    6: (1.0, 2.0, 3.0, 4.0, 5.0, INF),
    8: (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, INF),
}


class CSRA(nn.Module):
    """Multi-head CSRA over a (B, D, h, w) feature map -> (B, C) logits.

    Args:
        num_heads: 1, 2, 4, 6 or 8, picking the paper's temperatures (see `CSRA_TEMPERATURES`).
        lam: weight of the attention term. Published runs (Kevinz-code/CSRA): COCO ResNet-101 with
            num_heads=6, lam=0.5 (0.4 from the CutMix-pretrained backbone); COCO ViT-L/16 with 8
            heads, 0.3; VOC 2007 ResNet-101 with 1 head, 0.1.
        temperatures: override the set (one per head; ``math.inf`` is max pooling).
    """

    def __init__(self, num_features: int, num_classes: int, num_heads: int = 1, lam: float = 0.1,
                 temperatures: tuple[float, ...] | None = None):
        super().__init__()
        if temperatures is None:
            if num_heads not in CSRA_TEMPERATURES:
                raise ValueError(f"num_heads must be one of {sorted(CSRA_TEMPERATURES)} (the paper's temperature "
                                 f"sets), or give temperatures explicitly; got {num_heads}")
            temperatures = CSRA_TEMPERATURES[num_heads]
        if len(temperatures) == 0 or any(t <= 0 for t in temperatures):
            raise ValueError(f"temperatures must be positive (inf = max), got {temperatures}")
        self.temperatures = tuple(float(t) for t in temperatures)
        self.lam = float(lam)
        self.classifiers = nn.ModuleList(nn.Conv2d(num_features, num_classes, 1, bias=False)
                                         for _ in self.temperatures)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = 0
        for classifier, temperature in zip(self.classifiers, self.temperatures):
            norm = classifier.weight.flatten(1).norm(dim=1)  # (C,)
            score = (classifier(features) / norm[:, None, None]).flatten(2)  # (B, C, hw)
            base = score.mean(2)
            if math.isinf(temperature):
                attention = score.amax(2)
            else:
                attention = (torch.softmax(score * temperature, dim=2) * score).sum(2)
            logits = logits + base + self.lam * attention
        return logits

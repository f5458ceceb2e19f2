"""`build_model`: a timm backbone plus a multi-label head, as one `MLICModel`."""
from __future__ import annotations

import torch
from torch import nn

from mlic_pipe.mix.cells import splice_cell_logits
from mlic_pipe.mix.plan import MixPlan
from mlic_pipe.models.backbone import TimmBackbone
from mlic_pipe.models.csra import CSRA
from mlic_pipe.models.graph import GraphReweight
from mlic_pipe.models.ml_decoder import MLDecoder
from mlic_pipe.models.pooling import PoolHead
from mlic_pipe.registry import Registry

__all__ = ["HEADS", "MLICModel", "build_head", "build_model"]


class MLICModel(nn.Module):
    """``head(backbone(images))``, with the two halves callable on their own.

    `features(images)` gives the (B, D, h, w) map and `head(features)` the (B, C) logits;
    SpliceMix-CL needs both. ``forward(images, splice_plan=plan, cell_form=...)`` also runs the cells of
    the spliced images through the head (`splice_cell_logits`) and returns ``(logits, cell_logits, cell_sources)``: doing that
    inside `forward` keeps DistributedDataParallel's rule of one forward per step.
    """

    def __init__(self, backbone: TimmBackbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor, splice_plan: MixPlan | None = None, cell_form: str = "published"):
        features = self.backbone(images)
        logits = self.head(features)
        if splice_plan is None:
            return logits
        cell_logits, sources = splice_cell_logits(self.head, features, splice_plan, form=cell_form)
        return logits, cell_logits, sources


def _graph_head(num_features: int, num_classes: int, **kwargs) -> GraphReweight:
    """graph re-weighting of a pooling head (needs adjacency=cooccurrence_adjacency(train targets))"""
    if "adjacency" not in kwargs:
        raise ValueError("the graph head needs adjacency=cooccurrence_adjacency(train_index.targets)")
    cosine = kwargs.pop("cosine", False)
    return GraphReweight(num_features, num_classes, head=PoolHead(num_features, num_classes, cosine=cosine), **kwargs)


HEADS: Registry[nn.Module] = Registry("head")
HEADS.register("avg", lambda d, c, **kw: PoolHead(d, c, pool="avg", **kw), "global average pooling + linear")
HEADS.register("max", lambda d, c, **kw: PoolHead(d, c, pool="max", **kw), "global max pooling + linear")
HEADS.register("csra", CSRA, "CSRA: class-specific residual attention (num_heads 1/2/4/6/8, lam)")
HEADS.register("mldecoder", MLDecoder, "ML-Decoder: cross-attention group decoding (num_queries, embed_dim, ...)")
HEADS.register("graph", _graph_head, "graph re-weighting of label co-occurrence on a pooling head")


def build_head(head: str, num_features: int, num_classes: int, **kwargs) -> nn.Module:
    """A head by its name in `HEADS`; `kwargs` go to its class."""
    return HEADS.create(head, num_features, num_classes, **kwargs)


def build_model(backbone: str, head: str, num_classes: int, pretrained: bool = False, *,
                image_size: int | None = None, backbone_kwargs: dict | None = None, **head_kwargs) -> MLICModel:
    """A timm `backbone` with a multi-label `head` for `num_classes` classes.

    Args:
        backbone: a timm model name; CNNs and ViT-style token models both work (see `TimmBackbone`).
        head: one of `HEADS`; `head_kwargs` go to its class (`PoolHead`, `CSRA`, `MLDecoder`, `GraphReweight`).
        pretrained: timm's pretrained weights (a clear error when they cannot be reached).
        image_size: build fixed-size models (ViTs) for this input size.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    trunk = TimmBackbone(backbone, pretrained=pretrained, image_size=image_size, **(backbone_kwargs or {}))
    return MLICModel(trunk, build_head(head, trunk.num_features, num_classes, **head_kwargs))

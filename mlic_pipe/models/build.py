"""`build_model`: a timm backbone plus a multi-label head, as one `MLICModel`."""
from __future__ import annotations

import torch
from torch import nn

from mlic_pipe.errors import ConfigError
from mlic_pipe.mix.cells import splice_cell_logits
from mlic_pipe.mix.plan import MixPlan
from mlic_pipe.models.backbone import TimmBackbone
from mlic_pipe.models.csra import CSRA
from mlic_pipe.models.graph import GraphReweight
from mlic_pipe.models.ml_decoder import MLDecoder
from mlic_pipe.models.pooling import PoolHead
from mlic_pipe.registry import Registry

__all__ = ["HEADS", "MLICModel", "build_head", "build_model", "uncertainty_vectors"]


def uncertainty_vectors(layer: nn.Linear, pooled: torch.Tensor) -> torch.Tensor:
    """SUMix's uncertainty vectors: the L2-normalized softmax of a linear map of the pooled features."""
    vectors = torch.softmax(layer(pooled), dim=-1)
    return vectors / vectors.pow(2).sum(1).sqrt()[:, None]


class MLICModel(nn.Module):
    """``head(backbone(images))``, with the two halves callable on their own.

    `features(images)` gives the (B, D, h, w) map and `head(features)` the (B, C) logits;
    SpliceMix-CL needs both. ``forward(images, splice_plan=plan, cell_form=...)`` also runs the cells of
    the spliced images through the head (`splice_cell_logits`) and returns ``(logits, cell_logits, cell_sources)``: doing that
    inside `forward` keeps DistributedDataParallel's rule of one forward per step.
    """

    def __init__(self, backbone: TimmBackbone, head: nn.Module, uncertainty: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.uncertainty = uncertainty  # SUMix's uncertainty layer on the pooled features, when trained with it

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor, splice_plan: MixPlan | None = None, cell_form: str = "published",
                with_uncertainty: bool = False):
        """Logits; with `splice_plan` also the cells' (SpliceMix-CL), with `with_uncertainty` SUMix's vectors."""
        features = self.backbone(images)
        logits = self.head(features)
        if with_uncertainty:
            if self.uncertainty is None:
                raise ValueError("this model has no uncertainty layer: build it with build_model(..., uncertainty=True)")
            return logits, uncertainty_vectors(self.uncertainty, features.float().mean((2, 3)))
        if splice_plan is None:
            return logits
        cell_logits, sources = splice_cell_logits(self.head, features, splice_plan, form=cell_form)
        return logits, cell_logits, sources


def _graph_head(num_features: int, num_classes: int, **kwargs) -> GraphReweight:
    """graph re-weighting of a pooling head (needs adjacency=cooccurrence_adjacency(train targets))"""
    if "adjacency" not in kwargs:
        raise ValueError("the graph head needs adjacency=cooccurrence_adjacency(train_index.positives)")
    cosine = kwargs.pop("cosine", False)
    return GraphReweight(num_features, num_classes, head=PoolHead(num_features, num_classes, cosine=cosine), **kwargs)


HEADS: Registry[nn.Module] = Registry("head")
HEADS.register("avg", lambda d, c, **kw: PoolHead(d, c, pool="avg", **kw), "global average pooling + linear")
HEADS.register("max", lambda d, c, **kw: PoolHead(d, c, pool="max", **kw), "global max pooling + linear")
HEADS.register("csra", CSRA, "CSRA: class-specific residual attention (num_heads 1/2/4/6/8, lam)")
HEADS.register("mldecoder", MLDecoder, "ML-Decoder: cross-attention group decoding (num_queries, embed_dim, ...)")
HEADS.register("graph", _graph_head, "graph re-weighting of label co-occurrence on a pooling head")


def build_head(head: str, num_features: int, num_classes: int, **kwargs) -> nn.Module:
    """A head by its name in `HEADS`; `kwargs` go to its class (ConfigError naming {head_kwargs} if it refuses them)."""
    try:
        return HEADS.create(head, num_features, num_classes, **kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        if isinstance(error, ConfigError):
            raise
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "adjacency") or "no options"
        raise ConfigError(f"{{head_kwargs}}: the {head} head cannot be built with {given}: {error}") from None


def build_model(backbone: str, head: str, num_classes: int, pretrained: bool = False, *,
                image_size: int | None = None, backbone_kwargs: dict | None = None, uncertainty: bool = False,
                **head_kwargs) -> MLICModel:
    """A timm `backbone` with a multi-label `head` for `num_classes` classes.

    Args:
        backbone: a timm model name; CNNs and ViT-style token models both work (see `TimmBackbone`).
        head: one of `HEADS`; `head_kwargs` go to its class (`PoolHead`, `CSRA`, `MLDecoder`, `GraphReweight`).
        pretrained: timm's pretrained weights (a clear error when they cannot be reached).
        image_size: build fixed-size models (ViTs) for this input size.
        uncertainty: add SUMix's uncertainty layer (a linear map of the pooled features).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    trunk = TimmBackbone(backbone, pretrained=pretrained, image_size=image_size, **(backbone_kwargs or {}))
    layer = nn.Linear(trunk.num_features, num_classes) if uncertainty else None
    return MLICModel(trunk, build_head(head, trunk.num_features, num_classes, **head_kwargs), layer)

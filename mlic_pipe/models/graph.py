"""`GraphReweight`: a label-graph branch that re-weights the feature map's channels.

Labels co-occur (a fork with a knife, a keyboard with a mouse); ML-GCN and its successors learn
from that graph. Here the graph is built once from the training targets (`cooccurrence_adjacency`,
ML-GCN's thresholding and re-weighting), graph attention layers run over one embedding per label
(word vectors when given, else learnable), and the result becomes a sigmoid gate on the backbone's
channels before a base head. The graph does not depend on the image, so it runs once per forward
(not per sample), and at inference it is cached until a graph parameter changes.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlic_pipe.models.pooling import PoolHead

__all__ = ["GraphReweight", "cooccurrence_adjacency"]


def cooccurrence_adjacency(targets, threshold: float = 0.4, reweight: float = 0.2) -> torch.Tensor:
    """The (C, C) re-weighted label graph of ML-GCN (Chen et al., CVPR 2019) from (N, C) {0, 1} targets.

    1. Conditional co-occurrence ``P(j | i) = count(i and j) / count(i)`` (0 for a class never seen).
    2. Binarise: an edge i -> j where ``P(j | i) >= threshold`` (i != j); this drops rare, noisy pairs.
    3. Re-weight each row so a node keeps ``1 - reweight`` of itself and spreads ``reweight`` evenly
       over its neighbours; a node without neighbours keeps 1. Rows sum to 1 (no over-smoothing).
    """
    y = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    y = y.detach().cpu().to(torch.float64)
    if y.ndim != 2:
        raise ValueError(f"targets must be (N, C), got {tuple(y.shape)}")
    if not 0 <= reweight <= 1:
        raise ValueError(f"reweight must be in [0, 1], got {reweight}")
    counts = y.T @ y
    occurrences = counts.diagonal().clone()
    conditional = counts / occurrences.clamp_min(1)[:, None]
    edges = (conditional >= threshold) & (occurrences[:, None] > 0)
    edges.fill_diagonal_(False)
    degree = edges.sum(1, keepdim=True).to(torch.float64)
    adjacency = torch.where(edges, reweight / degree.clamp_min(1), torch.zeros_like(conditional))
    diagonal = torch.where(degree.squeeze(1) > 0, torch.full_like(occurrences, 1 - reweight), torch.ones_like(occurrences))
    return (adjacency + torch.diag(diagonal)).to(torch.float32)


class _GraphAttention(nn.Module):
    """One graph attention layer (Velickovic et al.) whose attention has the adjacency as prior.

    Scores ``e_ij = LeakyReLU(a_dst . W h_i + a_src . W h_j) + log A_ij``: only edges of the graph
    exist, and with uniform scores the attention equals the re-weighted adjacency itself.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.project = nn.Linear(in_dim, out_dim, bias=False)
        self.attend_src = nn.Parameter(torch.zeros(out_dim))
        self.attend_dst = nn.Parameter(torch.zeros(out_dim))

    def forward(self, nodes: torch.Tensor, log_adjacency: torch.Tensor) -> torch.Tensor:
        z = self.project(nodes)
        scores = F.leaky_relu((z @ self.attend_dst)[:, None] + (z @ self.attend_src)[None, :], 0.2)
        return torch.softmax(scores + log_adjacency, dim=1) @ z


class GraphReweight(nn.Module):
    """Label-graph channel re-weighting, then a base head: (B, D, h, w) -> (B, C) logits.

    Args:
        adjacency: (C, C) from `cooccurrence_adjacency` (the trainer builds it from the training targets).
        word_vectors: (C, E) fixed label embeddings (e.g. GloVe); None = learnable embeddings of `embed_dim`.
        hidden_dim: width of the first graph layer.
        head: the head applied to the re-weighted map (default: average pooling + linear).
    """

    def __init__(self, num_features: int, num_classes: int, adjacency, word_vectors=None, embed_dim: int = 300,
                 hidden_dim: int = 1024, head: nn.Module | None = None):
        super().__init__()
        adjacency = torch.as_tensor(np.asarray(adjacency) if not isinstance(adjacency, torch.Tensor) else adjacency,
                                    dtype=torch.float32)
        if adjacency.shape != (num_classes, num_classes):
            raise ValueError(f"adjacency must be ({num_classes}, {num_classes}), got {tuple(adjacency.shape)}")
        if (adjacency.diagonal() <= 0).any():
            raise ValueError("every label needs a self-loop (positive diagonal); build it with cooccurrence_adjacency")
        self.register_buffer("log_adjacency", torch.log(adjacency.clamp_min(0)), persistent=True)
        if word_vectors is not None:
            vectors = torch.as_tensor(np.asarray(word_vectors), dtype=torch.float32)
            if vectors.ndim != 2 or vectors.shape[0] != num_classes:
                raise ValueError(f"word_vectors must be ({num_classes}, E), got {tuple(vectors.shape)}")
            self.register_buffer("embeddings", vectors)
        else:
            self.embeddings = nn.Parameter(torch.randn(num_classes, embed_dim) * 0.02)
        in_dim = self.embeddings.shape[1]
        self.layers = nn.ModuleList([_GraphAttention(in_dim, hidden_dim), _GraphAttention(hidden_dim, num_features)])
        self.head = head if head is not None else PoolHead(num_features, num_classes)
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def _graph_version(self) -> tuple:
        """Identifies the graph's current weights: storage and in-place version of each graph tensor."""
        tensors = [self.embeddings, self.log_adjacency, *self.layers.parameters()]
        return tuple((t.data_ptr(), t._version) for t in tensors)

    def channel_gate(self) -> torch.Tensor:
        """(D,) sigmoid weights of the backbone's channels.

        At inference (eval mode, no grad) the result is cached until a graph parameter changes (an
        optimizer or EMA update in place bumps its version), so evaluation pays for the graph once.
        """
        cacheable = not self.training and not torch.is_grad_enabled()
        version = self._graph_version() if cacheable else None
        if cacheable and self._cache is not None and self._cache[0] == version:
            return self._cache[1]
        nodes = self.embeddings
        nodes = F.leaky_relu(self.layers[0](nodes, self.log_adjacency), 0.2)
        nodes = self.layers[1](nodes, self.log_adjacency)  # (C, D)
        gate = torch.sigmoid(nodes.mean(0))
        self._cache = (version, gate) if cacheable else None
        return gate

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        gate = self.channel_gate().to(features.dtype)
        return self.head(features * gate[None, :, None, None])

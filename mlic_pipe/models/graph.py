"""`GraphReweight`: a label-graph branch that re-weights the feature map's channels, as deep-object-reid.

Labels co-occur (a fork with a knife, a keyboard with a mouse). This is deep-object-reid's
``Image_GCNN`` (multilabel branch, torchreid/models/gcn.py): the label graph is built once from the
training targets (`cooccurrence_adjacency`, its ``gen_A``), propagated as ``D^-1/2 A^T D^-1/2``
(`propagation_matrix`, its ``gen_adj``), two graph layers (GCN, or GAT: ``layer="gat"``) with
LeakyReLU(0.2) run over one embedding per label (word vectors when given, else learnable), and the
sigmoid of the per-channel maximum over labels gates the backbone's channels before a base head.
The graph does not depend on the image, so it runs once per forward (not per sample), and at
inference it is cached until a graph parameter changes. (The package's earlier variant, graph
attention with the adjacency as a log prior and a mean gate, is gone: nothing measured favoured it.)
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlic_pipe.models.pooling import PoolHead

__all__ = ["GRAPH_LAYERS", "GraphAttentionLayer", "GraphConvolution", "GraphReweight", "cooccurrence_adjacency",
           "propagation_matrix"]

GRAPH_LAYERS = ("gcn", "gat")


def cooccurrence_adjacency(targets, threshold: float = 0.4, rho: float = 0.25) -> torch.Tensor:
    """deep-object-reid's ``gen_A`` from training targets: the (C, C) label graph.

    `targets`: (N, C) {0, 1}, or `SparseLabels` (a `LabelIndex.positives`), counted pair by pair without a
    dense table, so a set of millions of images costs O(labels) here.

    1. ``P(j | i) = count(i and j) / count(i)`` for i != j (0 for a class never seen), the matrix
       ML-GCN's adjacency file holds.
    2. Binarize: 1 where ``P(j | i) >= threshold``.
    3. Rescale each column to sum to `rho` (``A * rho / (column sum + 1e-6)``), then add the identity.
    """
    counts = _cooccurrence_counts(targets)
    occurrences = counts.diagonal().clone()
    counts.fill_diagonal_(0)
    binary = (counts / occurrences.clamp_min(1)[:, None] >= threshold).to(torch.float64)
    if rho != 0:
        binary = binary * rho / (binary.sum(0, keepdim=True) + 1e-6) + torch.eye(len(binary), dtype=torch.float64)
    return binary.to(torch.float32)


def _cooccurrence_counts(targets) -> torch.Tensor:
    """(C, C) float64: how many images hold both class i and class j (the diagonal: how many hold i)."""
    if hasattr(targets, "indptr"):  # SparseLabels: every pair of classes within each image's list
        if targets.complement:
            raise ValueError("co-occurrence needs the positives, not a complement set")
        c, lengths = targets.num_classes, np.diff(targets.indptr)
        entry_length = np.repeat(lengths, lengths)  # each listed entry pairs with every entry of its image
        first = np.repeat(targets.indices.astype(np.int64), entry_length)
        row_start = np.repeat(np.repeat(targets.indptr[:-1], lengths), entry_length)
        within = np.arange(len(first)) - np.repeat(np.cumsum(entry_length) - entry_length, entry_length)
        second = targets.indices[row_start + within].astype(np.int64)
        counts = np.bincount(first * c + second, minlength=c * c).reshape(c, c)
        return torch.from_numpy(counts.astype(np.float64))
    y = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    y = y.detach().cpu().to(torch.float64)
    if y.ndim != 2:
        raise ValueError(f"targets must be (N, C), got {tuple(y.shape)}")
    return y.T @ y


def propagation_matrix(adjacency: torch.Tensor) -> torch.Tensor:
    """deep-object-reid's ``gen_adj``: ``(A D)^T D = D A^T D`` with ``D = diag(row sums of A)^-1/2``."""
    adjacency = torch.as_tensor(adjacency, dtype=torch.float32)
    degree = torch.diag(adjacency.sum(1).pow(-0.5))
    return (adjacency @ degree).T @ degree


class GraphConvolution(nn.Module):
    """``adj @ (x @ W)`` (Kipf & Welling), W uniform in +-1/sqrt(out) as published, no bias."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(out_dim)
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim).uniform_(-bound, bound))

    def forward(self, nodes: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return adjacency @ (nodes @ self.weight)


class GraphAttentionLayer(nn.Module):
    """Graph attention (Velickovic et al.) over the graph's edges, ELU output, as published (``gan``).

    Attention dropout 0.1 in training, the published layer's default, which ``Image_GCNN`` keeps.
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.1, slope: float = 0.2):
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(in_dim, out_dim), gain=1.414))
        self.attend = nn.Parameter(nn.init.xavier_uniform_(torch.empty(2 * out_dim, 1), gain=1.414))
        self.dropout, self.slope, self.out_dim = dropout, slope, out_dim

    def forward(self, nodes: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        projected = nodes @ self.weight
        scores = projected @ self.attend[:self.out_dim] + (projected @ self.attend[self.out_dim:]).T
        scores = torch.where(adjacency > 0, F.leaky_relu(scores, self.slope), torch.full_like(scores, -9e15))
        attention = F.dropout(torch.softmax(scores, dim=1), self.dropout, training=self.training)
        return F.elu(attention @ projected)


class GraphReweight(nn.Module):
    """Label-graph channel re-weighting, then a base head: (B, D, h, w) -> (B, C) logits.

    Args:
        adjacency: (C, C) from `cooccurrence_adjacency` (the trainer builds it from the training targets).
        word_vectors: (C, E) fixed label embeddings (e.g. GloVe); None = learnable embeddings of `embed_dim`.
        hidden_dim: width of the first graph layer (published: the backbone's feature width).
        layer: "gcn" (graph convolution) or "gat" (graph attention).
        dropout: the GAT layers' attention dropout in training (published: 0.1); the GCN has none.
        head: the head applied to the re-weighted map (default: average pooling + linear).
    """

    def __init__(self, num_features: int, num_classes: int, adjacency, word_vectors=None, embed_dim: int = 300,
                 hidden_dim: int | None = None, layer: str = "gcn", dropout: float = 0.1,
                 head: nn.Module | None = None):
        super().__init__()
        adjacency = torch.as_tensor(np.asarray(adjacency) if not isinstance(adjacency, torch.Tensor) else adjacency,
                                    dtype=torch.float32)
        if adjacency.shape != (num_classes, num_classes):
            raise ValueError(f"adjacency must be ({num_classes}, {num_classes}), got {tuple(adjacency.shape)}")
        if layer not in GRAPH_LAYERS:
            raise ValueError(f"layer must be one of {GRAPH_LAYERS}, got {layer!r}")
        self.register_buffer("propagation", propagation_matrix(adjacency), persistent=True)
        if word_vectors is not None:
            vectors = torch.as_tensor(np.asarray(word_vectors), dtype=torch.float32)
            if vectors.ndim != 2 or vectors.shape[0] != num_classes:
                raise ValueError(f"word_vectors must be ({num_classes}, E), got {tuple(vectors.shape)}")
            self.register_buffer("embeddings", vectors)
        else:
            self.embeddings = nn.Parameter(torch.randn(num_classes, embed_dim) * 0.02)
        hidden = hidden_dim or num_features
        make = GraphConvolution if layer == "gcn" else (lambda i, o: GraphAttentionLayer(i, o, dropout))
        self.layers = nn.ModuleList([make(self.embeddings.shape[1], hidden), make(hidden, num_features)])
        self.head = head if head is not None else PoolHead(num_features, num_classes)
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def _graph_version(self) -> tuple:
        """Identifies the graph's current weights: storage and in-place version of each graph tensor."""
        tensors = [self.embeddings, self.propagation, *self.layers.parameters()]
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
        nodes = F.leaky_relu(self.layers[0](self.embeddings, self.propagation), 0.2)
        nodes = F.leaky_relu(self.layers[1](nodes, self.propagation), 0.2)  # (C, D)
        gate = torch.sigmoid(nodes.max(0).values)
        self._cache = (version, gate) if cacheable else None
        return gate

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        gate = self.channel_gate().to(features.dtype)
        return self.head(features * gate[None, :, None, None])

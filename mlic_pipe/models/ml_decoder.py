"""`MLDecoder`: the query-based classification head of Ridnik et al. (WACV 2023), on torch's own attention.

Class queries cross-attend to the backbone's spatial tokens; the decoder has no self-attention
(the paper drops it: it costs quadratic time in the queries and brought nothing). With many
classes, G = num_queries group queries each decode ceil(C / G) classes through their own small
fully-connected layer ("group fully-connected"), so the cost stays flat from 80 to thousands of
classes. The public implementation subclasses `nn.TransformerDecoderLayer` and breaks on torch 2;
this one composes `nn.MultiheadAttention`, `nn.LayerNorm` and `nn.Linear` only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLDecoder"]


class _CrossAttentionLayer(nn.Module):
    """Queries attend to the memory, then a feed-forward block; post-norm, residual, as in the paper."""

    def __init__(self, embed_dim: int, num_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_in, self.norm_attention, self.norm_out = (nn.LayerNorm(embed_dim) for _ in range(3))
        self.feedforward = nn.Sequential(nn.Linear(embed_dim, dim_feedforward), nn.ReLU(inplace=True),
                                         nn.Dropout(dropout), nn.Linear(dim_feedforward, embed_dim))
        self.dropout_in, self.dropout_attention, self.dropout_out = (nn.Dropout(dropout) for _ in range(3))

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        queries = self.norm_in(queries + self.dropout_in(queries))  # where self-attention was
        attended, _ = self.attention(queries, memory, memory, need_weights=False)
        queries = self.norm_attention(queries + self.dropout_attention(attended))
        return self.norm_out(queries + self.dropout_out(self.feedforward(queries)))


class MLDecoder(nn.Module):
    """ML-Decoder over a (B, D, h, w) feature map -> (B, C) logits.

    Args:
        num_queries: G group queries; default min(C, 100) as in the paper. Class c is decoded by
            query ``c // ceil(C / G)`` (`query_of_class`).
        embed_dim, num_heads, num_layers, dim_feedforward, dropout: the decoder's sizes (paper: 768, 8, 1, 2048, 0.1).
        learn_queries: train the query embeddings; the public code keeps them fixed (random), which is the default.
        cosine: output cosines between each decoded query and its class weights, plus a learnable
            per-class bias, with LeakyReLU(0.2) after the input projection: deep-object-reid's
            ML-Decoder for `AAMLoss`.
    """

    def __init__(self, num_features: int, num_classes: int, num_queries: int | None = None, embed_dim: int = 768,
                 num_heads: int = 8, num_layers: int = 1, dim_feedforward: int = 2048, dropout: float = 0.1,
                 learn_queries: bool = False, cosine: bool = False):
        super().__init__()
        num_queries = min(num_classes, 100) if num_queries is None else int(num_queries)
        if not 1 <= num_queries <= num_classes:
            raise ValueError(f"num_queries must be in 1..num_classes ({num_classes}), got {num_queries}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.num_classes, self.num_queries, self.cosine = num_classes, num_queries, bool(cosine)
        self.classes_per_query = math.ceil(num_classes / num_queries)
        self.input_projection = nn.Linear(num_features, embed_dim)
        self.queries = nn.Parameter(torch.randn(num_queries, embed_dim), requires_grad=learn_queries)
        self.layers = nn.ModuleList(_CrossAttentionLayer(embed_dim, num_heads, dim_feedforward, dropout)
                                    for _ in range(num_layers))
        self.group_weight = nn.Parameter(torch.empty(num_queries, embed_dim, self.classes_per_query))
        self.group_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.xavier_normal_(self.group_weight)

    def query_of_class(self, c: int) -> int:
        return c // self.classes_per_query

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        memory = self.input_projection(features.flatten(2).transpose(1, 2))  # (B, hw, E)
        memory = F.leaky_relu(memory, 0.2) if self.cosine else F.relu(memory)
        queries = self.queries.to(memory.dtype).unsqueeze(0).expand(memory.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, memory)
        weight = self.group_weight
        if self.cosine:
            queries, weight = F.normalize(queries, dim=2), F.normalize(weight, dim=1)
        logits = torch.einsum("bqe,qek->bqk", queries, weight.to(queries.dtype)).flatten(1)[:, :self.num_classes]
        return logits + self.group_bias

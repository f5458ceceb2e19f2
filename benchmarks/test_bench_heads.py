"""Heads: what CSRA, ML-Decoder and graph re-weighting cost over global average pooling.

The seed papers sell these heads as cheap. Each contender runs forward + backward of the head
alone on the same (B, 2048, 14, 14) feature map (a ResNet-101's at S=448), C=80 classes:

- ``avg`` (the baseline): global average pooling + linear.
- ``csra``: 4 heads (T = 1, 2, 4, inf), lambda 0.1.
- ``mldecoder``: 80 queries, embed 768, 8 heads, one decoder layer, group FC.
- ``graph``: label-graph channel re-weighting (graph attention over 80 learnable label
  embeddings, run once per forward) before average pooling + linear.

Run: pytest benchmarks/test_bench_heads.py --benchmark-only
"""
import numpy as np
import pytest
import torch

from mlic_pipe.models import build_head, cooccurrence_adjacency

from benchmarks.baselines import NUM_CLASSES
from benchmarks.common import devices, preset, record, synchronizer

HEADS = {"avg": {}, "csra": {"num_heads": 4, "lam": 0.1}, "mldecoder": {}, "graph": {}}


def _cases():
    return [(b, d, s, dev) for b, d, s in preset()["heads"] for dev in devices()]


@pytest.mark.parametrize("name", list(HEADS))
@pytest.mark.parametrize("batch, dim, side, device", _cases())
def test_head_forward_backward(benchmark, name, batch, dim, side, device):
    benchmark.group = f"heads B={batch} D={dim} {side}x{side} C={NUM_CLASSES} {device}"
    torch.manual_seed(0)
    kwargs = dict(HEADS[name])
    if name == "graph":
        targets = (np.random.default_rng(0).random((1000, NUM_CLASSES)) < 0.05).astype(np.uint8)
        kwargs["adjacency"] = cooccurrence_adjacency(targets)
    if name == "mldecoder" and dim < 256:  # the tiny preset: a decoder to match its tiny feature map
        kwargs.update(embed_dim=32, num_heads=4, dim_feedforward=64)
    head = build_head(name, dim, NUM_CLASSES, **kwargs).to(device)
    features = torch.randn(batch, dim, side, side, device=device, requires_grad=True)
    sync = synchronizer(device)

    def step():
        head(features).sum().backward()
        sync()
    step()
    benchmark.pedantic(step, rounds=preset()["rounds"] * 3, warmup_rounds=1, iterations=1)
    record(benchmark, baseline=name == "avg", images=batch, device=device, batch=batch, feature_map=[dim, side, side],
           classes=NUM_CLASSES, contender=name, parameters=sum(p.numel() for p in head.parameters()))

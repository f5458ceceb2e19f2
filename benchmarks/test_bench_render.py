"""Render: our renderer vs the published SpliceMix op sequence, same uint8 batch, same plan.

The published method (SpliceMix's public code) normalizes the whole batch to float, then per grid
group gathers the cell sources, zeroes dropped ones, downsamples with F.interpolate, tiles the
cells with a reshape and appends with torch.cat. That sequence is written here from the paper's
description; it is the baseline every render figure is a ratio to.

Run: pytest benchmarks/test_bench_render.py --benchmark-only
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlic_pipe.mix import IMAGENET_MEAN, IMAGENET_STD, SpliceMix, render

BATCH, SIZE = 32, 448
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def published_op_sequence(images: torch.Tensor, plan) -> torch.Tensor:
    """Normalize, then per group: gather + drop + F.interpolate + tile (+ resize back) + cat."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return published_splice((images.permute(0, 3, 1, 2).float() / 255 - mean) / std, plan)


def published_splice(batch: torch.Tensor, plan) -> torch.Tensor:
    """The published mixing step on an already normalized float NCHW batch (as a DataLoader gives it)."""
    size = batch.shape[-1]
    outputs = [batch]
    mixed = plan.grid[plan.num_regular:]
    rows, cols = (int(v) for v in mixed[0])
    cells = plan.cells[plan.num_regular:, : rows * cols].to(batch.device).long()
    sources = batch[cells.clamp_min(0).flatten()] * (cells >= 0).flatten().view(-1, 1, 1, 1)
    small = F.interpolate(sources, (size // rows, size // cols), mode="bilinear", align_corners=True)
    count, h, w = len(cells), size // rows, size // cols
    tiled = small.view(count, rows, cols, 3, h, w).permute(0, 3, 1, 4, 2, 5).reshape(count, 3, rows * h, cols * w)
    if tiled.shape[-2:] != (size, size):  # uneven grid (448 / 3): the public code resizes the tiling back
        tiled = F.interpolate(tiled, (size, size), mode="bilinear", align_corners=True)
    outputs.append(tiled)
    return torch.cat(outputs)


@pytest.fixture(params=["1x2", "2x2", "2x3"])
def case(request):
    plan = SpliceMix([request.param], transpose_prob=0.0).plan(BATCH, SIZE, np.random.default_rng(0))
    images = torch.randint(0, 256, (BATCH, SIZE, SIZE, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return request.param, images, plan


def _record(benchmark, grid, device, plan):
    if benchmark.stats is None:  # --benchmark-disable: the code ran once, nothing was timed
        return
    stats = benchmark.stats.stats
    benchmark.extra_info.update(grid=grid, device=device, batch=BATCH, image_size=SIZE, outputs=plan.num_outputs,
                                images_per_s=round(plan.num_outputs / stats.mean, 1))


@pytest.mark.parametrize("device", DEVICES)
def test_published_op_sequence(benchmark, case, device):
    grid, images, plan = case
    benchmark.group = f"render {grid} B={BATCH} S={SIZE} {device}"
    images = images.to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = benchmark(lambda: (published_op_sequence(images, plan), sync())[0])
    if all(SIZE % int(v) == 0 for v in plan.grid[-1]):  # where both partition S the same way, same numbers
        torch.testing.assert_close(out, render(images, plan, backend="reference"), atol=1e-5, rtol=0)
    _record(benchmark, grid, device, plan)


@pytest.mark.parametrize("device", DEVICES)
def test_mlic_pipe_render(benchmark, case, device):
    grid, images, plan = case
    benchmark.group = f"render {grid} B={BATCH} S={SIZE} {device}"
    images = images.to(device)
    buffer = torch.empty((plan.num_outputs, 3, SIZE, SIZE), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    benchmark(lambda: (render(images, plan, out=buffer), sync()))
    _record(benchmark, grid, device, plan)

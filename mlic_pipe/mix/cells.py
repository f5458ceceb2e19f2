"""SpliceMix cells in feature space: the same exact partition as the pixels, cut from a feature map.

SpliceMix-CL compares what the head predicts for each cell of a spliced image with what it
predicted for the cell's source. The cell geometry belongs to the plan (`cell_edges`), so it lives
here, beside it; the model (which runs the cells in its forward, for DDP) and the loss both use it.
"""
from __future__ import annotations

from typing import Callable

import torch

from mlic_pipe.mix.plan import MixPlan, cell_edges

__all__ = ["splice_cell_logits"]


def splice_cell_logits(head: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor, plan: MixPlan, *, with_positions: bool = False):
    """Run each kept cell of each spliced output's feature map through `head`.

    The feature map of output n (h x w) is cut with the same exact partition as its pixels; cell k
    keeps its source input ``plan.cells[n, k]``. Cells whose source has no regular output (a
    dropped cell, or an input that the fixed-batch variant did not keep) are skipped. Cells of
    equal size are batched, so the head runs once per distinct cell size (at most a handful).

    Returns:
        cell_logits (K, C), and sources (K,) int64: the regular output whose prediction each cell
        should match (equal to the input row, since regular outputs come first and in order).
        With `with_positions`, also (K, 2) int64 (output row, cell index) of each cell.
    """
    if features.ndim != 4 or features.shape[0] != plan.num_outputs:
        raise ValueError(f"features must be (N_out={plan.num_outputs}, D, h, w), got {tuple(features.shape)}")
    height, width = features.shape[-2:]
    grid, cells = plan.grid.cpu(), plan.cells.cpu().long()
    spliced = torch.nonzero(grid.prod(1) > 1).flatten()
    spliced = spliced[spliced >= plan.num_regular]
    by_size: dict[tuple[int, int], tuple[list, list]] = {}
    for rows, cols in torch.unique(grid[spliced], dim=0).tolist():
        if rows > height or cols > width:
            raise ValueError(f"a {rows}x{cols} grid does not fit a {height}x{width} feature map: use a larger "
                             f"image size, a backbone with less downsampling, or smaller grids")
        outputs = spliced[(grid[spliced] == torch.tensor([rows, cols])).all(1)]
        y_edges, x_edges = cell_edges(rows, height), cell_edges(cols, width)
        for k in range(rows * cols):
            source = cells[outputs, k]
            keep = (source >= 0) & (source < plan.num_regular)
            if not keep.any():
                continue
            y0, y1 = y_edges[k // cols], y_edges[k // cols + 1]
            x0, x1 = x_edges[k % cols], x_edges[k % cols + 1]
            crops, sources, positions = by_size.setdefault((y1 - y0, x1 - x0), ([], [], []))
            crops.append(features[outputs[keep].to(features.device), :, y0:y1, x0:x1])
            sources.append(source[keep])
            positions.append(torch.stack([outputs[keep], torch.full_like(outputs[keep], k)], 1))
    if not by_size:
        empty = (features.new_zeros((0, 0)), torch.zeros(0, dtype=torch.long))
        return (*empty, torch.zeros((0, 2), dtype=torch.long)) if with_positions else empty
    logits = torch.cat([head(torch.cat(crops)) for crops, _, _ in by_size.values()])
    sources = torch.cat([torch.cat(source) for _, source, _ in by_size.values()])
    if with_positions:
        return logits, sources, torch.cat([torch.cat(where) for _, _, where in by_size.values()])
    return logits, sources

"""SpliceMix cells in feature space: the cells of a spliced image, cut from its feature map.

SpliceMix-CL compares what the head predicts for each cell of a spliced image with what it
predicted for the cell's source. The cell geometry belongs to the plan, so it lives here, beside
it; the model (which runs the cells in its forward, for DDP) and the loss both use it. Two forms:

- ``"published"`` (zuiran/SpliceMix, models/SpliceMix_CL.py): the map is resized (bilinear, aligned
  corners) to the next smaller multiple of the grid when the grid does not divide it, then split
  evenly; every cell is returned, a dropped one (or one whose source has no regular output) with
  source -1, so the loss can count it as the published mean does.
- ``"exact"``: the exact partition the pixels use (`cell_edges`), kept cells only.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mlic_pipe.mix.plan import MixPlan, cell_edges

__all__ = ["CELL_FORMS", "DROPPED_LOGIT", "splice_cell_logits"]

CELL_FORMS = ("published", "exact")
DROPPED_LOGIT = -1e3  # the published code's fill for a dropped cell, on the cell and on its teacher


def _published_cells(head, features: torch.Tensor, plan: MixPlan, spliced: torch.Tensor, grid, cells):
    """Every cell of every spliced output, resized-and-evenly-split as published; dropped ones filled."""
    height, width = features.shape[-2:]
    logits, sources = [], []
    for rows, cols in torch.unique(grid[spliced], dim=0).tolist():
        outputs = spliced[(grid[spliced] == torch.tensor([rows, cols])).all(1)]
        maps = features[outputs.to(features.device, non_blocking=True)]
        if height % rows or width % cols:
            maps = F.interpolate(maps, (height // rows * rows, width // cols * cols), mode="bilinear",
                                 align_corners=True)
        n, depth, h, w = maps.shape
        pieces = maps.view(n, depth, rows, h // rows, cols, w // cols).permute(0, 2, 4, 1, 3, 5)
        pieces = pieces.reshape(n * rows * cols, depth, h // rows, w // cols)  # row-major cells, as `cells`
        source = cells[outputs, :rows * cols].reshape(-1)
        teachable = (source >= 0) & (source < plan.num_regular)
        group = head(pieces)
        logits.append(group.masked_fill(~teachable.to(group.device, non_blocking=True)[:, None], DROPPED_LOGIT))
        sources.append(torch.where(teachable, source, torch.full_like(source, -1)))
    return torch.cat(logits), torch.cat(sources)


def splice_cell_logits(head: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor, plan: MixPlan, *,
                       form: str = "published", with_positions: bool = False):
    """Run the cells of each spliced output's feature map through `head` (one call per cell shape).

    Args:
        form: "published" (resize to a multiple of the grid, even split, every cell returned; dropped
            ones, and those whose source has no regular output, with logits `DROPPED_LOGIT` and
            source -1) or "exact" (the pixels' exact partition, kept cells only).
        with_positions: ("exact" only) also return each cell's (output row, cell index).

    Returns:
        cell_logits (K, C), and sources (K,) int64: the regular output whose prediction each cell
        should match (equal to the input row, since regular outputs come first and in order).
    """
    if form not in CELL_FORMS:
        raise ValueError(f"form must be one of {CELL_FORMS}, got {form!r}")
    if features.ndim != 4 or features.shape[0] != plan.num_outputs:
        raise ValueError(f"features must be (N_out={plan.num_outputs}, D, h, w), got {tuple(features.shape)}")
    height, width = features.shape[-2:]
    grid, cells = plan.grid.cpu(), plan.cells.cpu().long()
    spliced = torch.nonzero(grid.prod(1) > 1).flatten()
    spliced = spliced[spliced >= plan.num_regular]
    for rows, cols in torch.unique(grid[spliced], dim=0).tolist():
        if rows > height or cols > width:
            raise ValueError(f"a {rows}x{cols} grid does not fit a {height}x{width} feature map: use a larger "
                             f"image size, a backbone with less downsampling, or smaller grids")
    if form == "published" and len(spliced):
        return _published_cells(head, features, plan, spliced, grid, cells)
    return _exact_cells(head, features, plan, spliced, grid, cells, with_positions)


def _exact_cells(head, features: torch.Tensor, plan: MixPlan, spliced: torch.Tensor, grid, cells,
                 with_positions: bool):
    """The kept cells, cut with the pixels' exact partition; equal sizes batched into one head call."""
    height, width = features.shape[-2:]
    by_size: dict[tuple[int, int], tuple[list, list, list]] = {}
    for rows, cols in torch.unique(grid[spliced], dim=0).tolist():
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
            crops.append(features[outputs[keep].to(features.device, non_blocking=True), :, y0:y1, x0:x1])
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

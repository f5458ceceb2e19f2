"""`render_reference`: the torch reference renderer, i.e. the specification of what a plan renders to.

A spliced cell *is* ``F.interpolate`` of its source (bilinear with the given corner convention,
no antialiasing; or ``area``, i.e. adaptive average pooling) to the cell's exact extent, and the
reference computes it so: one batched call per grid shape and cell position. Normalization is
``(x / 255 - mean) / std`` per channel; blending is ``w * primary + (1 - w) * partner`` for
every mask mode. The Triton kernel (``mlic_pipe.kernels``) reproduces these numbers pixel by
pixel; its docstring lists the rounding details of ``F.interpolate`` it has to match.

Everything is vectorized over the batch: loops run over cell positions of a grid shape and over
erase boxes, never over samples (but for ResizeMix's resize and erase noise, per output that has them).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from mlic_pipe.mix.noise import erase_noise
from mlic_pipe.mix.plan import (ERASE_COLOUR, ERASE_KIND, ERASE_NOISE, ERASE_NONE, ERASE_SEED, ERASE_V0,
                                ERASE_X1, ERASE_Y0, MASK_BOX, MASK_CONSTANT, MASK_DENSE, MASK_NONE,
                                MASK_RESIZED, MASK_RESIZED_NEAREST, MixPlan, cell_edges)
from mlic_pipe.mix.settings import IMAGENET_MEAN, IMAGENET_STD, RenderSettings, check_render_call, image_size_of

__all__ = ["normalize", "render_reference"]

def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """float32 NCHW ``(x - mean) / std`` with x = uint8 / 255 (NHWC input) or the float input itself (NCHW).

    Args:
        out: a float32 (N, 3, S, S) destination to write into (saves an allocation and a copy).
    """
    image_size_of(images)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).reshape(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).reshape(1, 3, 1, 1)
    x = images.permute(0, 3, 1, 2) if images.dtype == torch.uint8 else images
    dst = torch.empty(x.shape, dtype=torch.float32, device=images.device) if out is None else out
    dst.copy_(x)
    if images.dtype == torch.uint8:
        dst.div_(255)
    return dst.sub_(mean_t).div_(std_t)


def _splice(source: torch.Tensor, cells: torch.Tensor, grid: torch.Tensor, resample: str,
            align_corners: bool) -> torch.Tensor:
    """(Ns, 3, S, S) spliced images from the normalized (N, 3, S, S) inputs.

    One batched ``F.interpolate`` per grid shape and cell position: every output with that grid
    has the same cell extent there, so the loop runs over cell positions (at most R * C per grid
    shape), never over samples. ``F.interpolate`` *is* the specification of a cell.
    """
    size = source.shape[-1]
    result = torch.zeros((len(cells), 3, size, size), dtype=torch.float32, device=source.device)
    shapes = grid.cpu()
    for rows, cols in {tuple(shape) for shape in shapes.tolist()}:
        members = torch.nonzero((shapes[:, 0] == rows) & (shapes[:, 1] == cols)).flatten().to(source.device)
        y_edges, x_edges = cell_edges(rows, size), cell_edges(cols, size)
        for r in range(rows):
            for c in range(cols):
                sources = cells[members, r * cols + c].long()
                kept = sources >= 0  # dropped cells stay zero
                if not bool(kept.any()):
                    continue
                height, width = y_edges[r + 1] - y_edges[r], x_edges[c + 1] - x_edges[c]
                kwargs = {"align_corners": align_corners} if resample == "bilinear" else {}
                small = F.interpolate(source[sources[kept]], (height, width), mode=resample, **kwargs)
                result[members[kept], :, y_edges[r]:y_edges[r + 1], x_edges[c]:x_edges[c + 1]] = small
    return result


def _inside(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, S, S) bool: which pixels lie in each of the N boxes y0, x0, y1, x1 (end-exclusive)."""
    pos = torch.arange(size, device=boxes.device)
    y0, x0, y1, x1 = boxes.long().unbind(1)
    return ((pos >= y0[:, None]) & (pos < y1[:, None]))[:, :, None] & \
        ((pos >= x0[:, None]) & (pos < x1[:, None]))[:, None, :]


def _mask_mix(primary: torch.Tensor, source: torch.Tensor, plan: MixPlan, masked: torch.Tensor, size: int,
              align_corners: bool) -> torch.Tensor:
    """The masked outputs: ``w * primary + (1 - w) * partner`` with each mode's weight map (see `MixPlan`)."""
    mode = plan.mask_mode[masked].long()[:, None, None]
    inside = _inside(plan.box[masked], size)
    zero = torch.zeros((), device=source.device)
    weight = torch.ones((len(masked), size, size), device=source.device)
    weight = torch.where(((mode == MASK_BOX) | (mode == MASK_RESIZED) | (mode == MASK_RESIZED_NEAREST)) & inside, zero,
                         weight)
    weight = torch.where(mode == MASK_CONSTANT, plan.lam[masked][:, None, None].float(), weight)
    if plan.masks is not None:
        dense = plan.masks[plan.mask_index[masked].long().clamp_min(0)].float()
        weight = torch.where(mode == MASK_DENSE, dense, weight)
    partner = source[plan.partner[masked].long()]
    resized = (mode.flatten() == MASK_RESIZED) | (mode.flatten() == MASK_RESIZED_NEAREST)
    for k in torch.nonzero(resized).flatten().tolist():  # ResizeMix: the whole partner, resized into the box
        top, left, bottom, right = plan.box[masked[k]].tolist()
        resample = dict(mode="bilinear", align_corners=align_corners) if int(mode.flatten()[k]) == MASK_RESIZED \
            else dict(mode="nearest")
        partner[k, :, top:bottom, left:right] = F.interpolate(partner[k:k + 1].clone(), size=(bottom - top, right - left),
                                                             **resample)[0]
    weight = weight[:, None]
    return weight * primary + (1.0 - weight) * partner


def _erase(result: torch.Tensor, erase: torch.Tensor, mean, std) -> None:
    """Paint the erase boxes over the finished outputs, box by box in order (a later box covers an earlier one)."""
    size = result.shape[-1]
    mean_t = torch.tensor(mean, dtype=torch.float32, device=result.device)
    std_t = torch.tensor(std, dtype=torch.float32, device=result.device)
    for e in range(erase.shape[1]):
        box = erase[:, e].long()
        kind = box[:, ERASE_KIND]
        values = erase[:, e, ERASE_V0:ERASE_V0 + 3].contiguous().view(torch.float32)
        fill = torch.where((kind == ERASE_COLOUR)[:, None], (values / 255.0 - mean_t) / std_t, values)
        inside = _inside(box[:, ERASE_Y0:ERASE_X1 + 1], size) & (kind != ERASE_NONE)[:, None, None]
        result.copy_(torch.where(inside[:, None], fill[:, :, None, None], result))
        for n in torch.nonzero(kind == ERASE_NOISE).flatten().tolist():  # noise: per box, as the spec computes it
            noise = erase_noise(int(box[n, ERASE_SEED]), size, device=result.device)
            result[n] = torch.where(inside[n], noise, result[n])


def render_reference(images: torch.Tensor, plan: MixPlan, settings: RenderSettings | None = None, *,
                     out: torch.Tensor | None = None, **options) -> torch.Tensor:
    """The torch reference renderer: same arguments and numbers as `mlic_pipe.mix.render`, on any device."""
    settings = RenderSettings.resolve(settings, **options)
    size, shape = check_render_call(images, plan, settings, out)
    mean, std = settings.mean, settings.std
    host_plan = plan if plan.device.type == "cpu" else None
    plan = plan.to(images.device)
    count, num_inputs = plan.num_outputs, len(images)
    # write in place when the caller's buffer is float32; otherwise render in float32 and cast once
    result = out if out is not None and out.dtype == torch.float32 else torch.empty(shape, device=images.device)

    cells_per_output = plan.grid[:, 0] * plan.grid[:, 1]
    single = cells_per_output == 1
    # The usual layout (SpliceMix, appended mask mixes): outputs 0..N-1 are the inputs in order.
    # Then normalize straight into them and let the mixed outputs read from there.
    in_order = host_plan is not None and count >= num_inputs and bool(
        (host_plan.cells[:num_inputs, 0] == torch.arange(num_inputs, dtype=torch.int32)).all()
        and (host_plan.grid[:num_inputs] == 1).all())
    if in_order:
        source = normalize(images, mean, std, out=result[:num_inputs])
        single[:num_inputs] = False
    else:
        source = normalize(images, mean, std)
    rows = torch.nonzero(single).flatten()
    if len(rows):
        first = plan.cells[rows, 0].long()
        result[rows] = source[first.clamp_min(0)].masked_fill_((first < 0)[:, None, None, None], 0.0)
    spliced = torch.nonzero(cells_per_output > 1).flatten()
    if len(spliced):
        result[spliced] = _splice(source, plan.cells[spliced], plan.grid[spliced], settings.resample,
                                  settings.align_corners)

    masked = torch.nonzero(plan.mask_mode != MASK_NONE).flatten()
    if len(masked):
        result[masked] = _mask_mix(result[masked], source, plan, masked, size, settings.align_corners)
    if plan.erase is not None and plan.erase.shape[1]:
        _erase(result, plan.erase, mean, std)

    if result is out:
        return out
    result = result.to(settings.out_dtype)
    if settings.channels_last:
        result = result.contiguous(memory_format=torch.channels_last)
    if out is not None:
        return out.copy_(result)
    return result

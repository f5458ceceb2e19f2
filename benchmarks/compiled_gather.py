"""The road not taken for the CPU render: torch.compile (inductor's C++/OpenMP code) of a gather formulation.

Issue "The CPU render at memory speed" asked for the compiled CPU render to be chosen by measuring
the candidates side by side; this is the torch.compile candidate, timed against numba's
(`mlic_pipe.mix.cpu_render`) in ``test_bench_cpu_compilers.py``. Every output pixel is written as
a function of its (output, row, column) index: its grid cell from the plan, the cell's source
image, PyTorch's bilinear taps (align_corners=True, as F.interpolate computes them), four gathers
from the uint8 batch, normalization. Inductor fuses that into one loop with indirect loads, so it
is the same one-pass algorithm, written as tensor algebra. It covers the splice part of a plan
(grids, dropped cells: SpliceMix); the mask modes would add terms of the same kind.

Costs measured on this project's CPU: a C++ compiler at run time (inductor calls one), a first
call that compiles for tens of seconds per shape, and the run time in the benchmark.
"""
from __future__ import annotations

import torch

from mlic_pipe.mix.plan import MixPlan

__all__ = ["gather_splice", "splice_inputs"]


def _axis(pos: torch.Tensor, parts: torch.Tensor, size: int):
    """Per output and coordinate: its cell along the axis and its bilinear taps (align_corners=True)."""
    cell = ((pos + 1) * parts - 1) // size
    start = cell * size // parts
    extent = (cell + 1) * size // parts - start
    scale = torch.where(extent > 1, (size - 1) / (extent - 1).clamp_min(1).to(torch.float32),
                        torch.zeros((), dtype=torch.float32))
    source = scale * (pos - start).to(torch.float32)
    low = source.floor().to(torch.int64).clamp(max=size - 1)
    return cell, low, (low + 1).clamp(max=size - 1), (source - low.to(torch.float32)).clamp(0, 1)


def gather_splice(images: torch.Tensor, grid: torch.Tensor, cells: torch.Tensor, scale: torch.Tensor,
                  shift: torch.Tensor) -> torch.Tensor:
    """(N_out, 3, S, S) float32: every output of a grid-only plan, from uint8 (N, S, S, 3) `images`."""
    count, size = grid.shape[0], images.shape[1]
    pos = torch.arange(size, device=images.device)
    rows, cols = grid[:, :1], grid[:, 1:]
    cell_y, low_y, up_y, frac_y = _axis(pos, rows, size)
    cell_x, low_x, up_x, frac_x = _axis(pos, cols, size)
    slot = cell_y[:, :, None] * cols[:, :, None] + cell_x[:, None, :]
    image = torch.gather(cells, 1, slot.reshape(count, -1)).reshape(count, size, size)
    flat = images.reshape(-1)
    first = image.clamp_min(0) * size

    def tap(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        at = ((first + row[:, :, None]) * size + col[:, None, :]) * 3
        return torch.stack([flat[at + c] for c in range(3)], 1).to(torch.float32)

    wy, wx = frac_y[:, None, :, None], frac_x[:, None, None, :]
    value = (1 - wy) * ((1 - wx) * tap(low_y, low_x) + wx * tap(low_y, up_x)) + \
        wy * ((1 - wx) * tap(up_y, low_x) + wx * tap(up_y, up_x))
    value = value * scale.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1)
    return torch.where((image >= 0)[:, None], value, torch.zeros((), dtype=torch.float32))


def splice_inputs(plan: MixPlan, mean, std) -> tuple[torch.Tensor, ...]:
    """The tensors `gather_splice` takes for `plan` (grids and cells as int64, per-channel scale and shift)."""
    if bool((plan.mask_mode != 0).any()):
        raise ValueError("gather_splice renders grid-only plans (SpliceMix); this plan has mask mixes")
    scale = torch.tensor([1 / (255 * s) for s in std], dtype=torch.float32)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32)
    return plan.grid.long(), plan.cells.long(), scale, shift

"""`MixPlan`: every random decision of one mixed batch, as a few small tensors.

Augmentation is split in two, as torchvision v2 and kornia do: a *plan* drawn on the host from a
seeded generator (cheap, reproducible, one small host-to-device copy) and a *render* that executes
it on the device in one pass. The same plan drives the Triton kernel, the torch reference
renderer, the label mixing and the SpliceMix-CL loss, so they can never disagree.

Output n is built as follows. Its R x C grid (``grid[n]``) partitions the S x S image exactly:
cell row r spans ``[floor(r*S/R), floor((r+1)*S/R))``, likewise columns. Cell k (row-major) shows
input image ``cells[n, k]`` resized to the cell, or zeros (the normalized mean) where it is -1.
Then, if ``mask_mode[n] != 0``, the result is blended with input image ``partner[n]``:
``w * primary + (1 - w) * partner`` with w = 0 inside ``box[n]`` (mode 1), w = ``masks[mask_index[n]]``
(mode 2) or w = ``lam[n]`` (mode 3). Mode 4 (ResizeMix) shows, inside ``box[n]``, the *whole* partner
resized to the box (bilinear, the render's ``align_corners``), and the primary outside it. A regular
output is a 1 x 1 grid with no partner.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

__all__ = [
    "COL_CELLS", "COL_COLS", "COL_LAM", "COL_MASK_INDEX", "COL_MODE", "COL_PARTNER", "COL_ROWS", "COL_X0", "COL_X1",
    "COL_Y0", "COL_Y1", "MASK_BOX", "MASK_CONSTANT", "MASK_DENSE", "MASK_MODES", "MASK_NONE", "MASK_RESIZED",
    "MASK_RESIZED_NEAREST", "MixPlan", "RESIZED_MODES", "cell_edges",
    "pack_plan",
]

# How a mask mix weighs its primary source (``plan.mask_mode``; the kernel takes them as constexprs).
MASK_NONE, MASK_BOX, MASK_DENSE, MASK_CONSTANT, MASK_RESIZED, MASK_RESIZED_NEAREST = 0, 1, 2, 3, 4, 5
MASK_MODES = {MASK_NONE: "none", MASK_BOX: "box", MASK_DENSE: "dense mask", MASK_CONSTANT: "constant",
              MASK_RESIZED: "resized partner in a box (bilinear)",
              MASK_RESIZED_NEAREST: "resized partner in a box (nearest, F.interpolate's)"}
RESIZED_MODES = (MASK_RESIZED, MASK_RESIZED_NEAREST)

# The columns of the packed plan table (`pack_plan`), one int32 row per output; the cells start at COL_CELLS.
COL_ROWS, COL_COLS, COL_PARTNER, COL_MODE, COL_Y0, COL_X0, COL_Y1, COL_X1, COL_MASK_INDEX, COL_LAM, COL_CELLS = range(11)


def cell_edges(parts: int, size: int) -> list[int]:
    """The exact partition of `size` into `parts` cells: cell i spans ``[edges[i], edges[i + 1])``.

    ``edges[i] = floor(i * size / parts)``. Pixels and feature maps are cut the same way, so the
    renderer and the SpliceMix-CL loss agree on which part of an image a cell is.
    """
    return [i * size // parts for i in range(parts + 1)]


@dataclass
class MixPlan:
    """All decisions of one mixed batch; outputs are ``num_regular`` regular images first, then mixed ones.

    Attributes:
        num_regular: how many leading outputs are unmixed copies of an input.
        cells: (N_out, K) int32, source input row per grid cell (row-major), -1 = dropped or unused slot.
        grid: (N_out, 2) int32, rows and columns of each output's grid; (1, 1) when not spliced.
        partner: (N_out,) int32, the second source of a mask mix, -1 = none.
        mask_mode: (N_out,) int8, 0 none, 1 box, 2 dense mask, 3 constant (MixUp), 4 resized partner in a box.
        box: (N_out, 4) int32, y0, x0, y1, x1 (end-exclusive) of the partner region (modes 1 and 4).
        mask_index: (N_out,) int32, row of `masks` (mode 2), -1 otherwise.
        masks: (Km, S, S) float16 in [0, 1], weight of the primary source (mode 2), or None.
        lam: (N_out,) float32, realized fraction of the primary source (1 for unmasked outputs).
        indices: (N_in,) dataset rows of the input images the plan refers to, set by the loader; else None.
            For SpliceMix and appended mask mixes the regular outputs are these inputs in order; for
            in-place mask mixes (num_regular = 0) they are the primary sources.
    """

    num_regular: int
    cells: torch.Tensor
    grid: torch.Tensor
    partner: torch.Tensor
    mask_mode: torch.Tensor
    box: torch.Tensor
    mask_index: torch.Tensor
    masks: torch.Tensor | None
    lam: torch.Tensor
    indices: torch.Tensor | None = None
    # device -> (field versions, the fields, packed table, plan on the device): the last upload there
    _uploads: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num_outputs(self) -> int:
        return int(self.cells.shape[0])

    @property
    def num_mixed(self) -> int:
        return self.num_outputs - self.num_regular

    @property
    def device(self) -> torch.device:
        return self.cells.device

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "MixPlan":
        """The same plan with every tensor on `device` (one copy per tensor; see `on_device` for the hot path)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device, non_blocking=non_blocking)
        return MixPlan(**moved)

    def on_device(self, device: torch.device | str) -> "MixPlan":
        """This plan on `device` as views of its packed table: one non-blocking upload, made once per device.

        The render, the label mixing, the ignore mask and the SUMix loss of a batch all read the same
        upload, so a training step makes one host-to-device copy of its plan and never waits for the
        device. `masks` (made on the device by FMix) and `indices` (host rows) are kept as they are.
        """
        return self._upload(torch.device(device))[1]

    def _upload(self, device: torch.device) -> tuple[torch.Tensor, "MixPlan"]:
        tensors = (self.cells, self.grid, self.partner, self.mask_mode, self.box, self.mask_index, self.lam)
        # a field reassigned or changed in place since the upload makes a new one (tensors count their writes)
        versions = tuple(t._version for t in tensors)
        cached = self._uploads.get(str(device))
        if cached is None or cached[0] != versions or any(a is not b for a, b in zip(cached[1], tensors)):
            table = _pack(self, device)
            if all(t.device == device for t in tensors):
                on_device = self
            else:
                on_device = MixPlan(num_regular=self.num_regular, cells=table[:, COL_CELLS:],
                                    grid=table[:, COL_ROWS:COL_COLS + 1], partner=table[:, COL_PARTNER],
                                    mask_mode=table[:, COL_MODE].to(torch.int8), box=table[:, COL_Y0:COL_X1 + 1],
                                    mask_index=table[:, COL_MASK_INDEX], masks=self.masks,
                                    lam=table[:, COL_LAM].view(torch.float32), indices=self.indices)
            cached = self._uploads[str(device)] = (versions, tensors, table, on_device)
        return cached[2], cached[3]

    @classmethod
    def identity(cls, batch_size: int) -> "MixPlan":
        """The plan that returns the batch unmixed."""
        return cls.build(num_regular=batch_size, cells=np.arange(batch_size).reshape(-1, 1),
                         grid=np.ones((batch_size, 2)))

    @classmethod
    def build(cls, *, num_regular: int, cells, grid, partner=None, mask_mode=None, box=None, mask_index=None,
              masks: torch.Tensor | None = None, lam=None) -> "MixPlan":
        """Assemble a plan from numpy arrays (or tensors), filling the defaults of unmasked outputs."""
        n = len(cells)

        def tensor(value, default, dtype):
            value = default if value is None else value
            return torch.as_tensor(np.asarray(value), dtype=dtype).contiguous()

        return cls(
            num_regular=int(num_regular),
            cells=tensor(cells, None, torch.int32).reshape(n, -1 if n else max(1, np.shape(cells)[-1])),
            grid=tensor(grid, None, torch.int32).reshape(n, 2),
            partner=tensor(partner, np.full(n, -1), torch.int32),
            mask_mode=tensor(mask_mode, np.zeros(n), torch.int8),
            box=tensor(box, np.zeros((n, 4)), torch.int32).reshape(n, 4),
            mask_index=tensor(mask_index, np.full(n, -1), torch.int32),
            masks=masks,
            lam=tensor(lam, np.ones(n), torch.float32),
        )

    def validate(self, num_inputs: int, image_size: int) -> None:
        """Raise ValueError if the plan cannot be rendered from `num_inputs` images of size `image_size`.

        Runs on the host copy of the plan (the loader calls it before the one host-to-device copy),
        so a bad plan is an error message, never an out-of-bounds read in a kernel.
        """
        n = self.num_outputs
        if self.cells.ndim != 2 or self.grid.shape != (n, 2):
            raise ValueError(f"plan tensors disagree: cells {tuple(self.cells.shape)}, grid {tuple(self.grid.shape)}")
        if not 0 <= self.num_regular <= n:
            raise ValueError(f"num_regular={self.num_regular} is outside 0..{n}")
        cells, grid = self.cells.cpu(), self.grid.cpu()
        if (grid < 1).any() or (grid > image_size).any():
            raise ValueError(f"grid sizes must be within 1..{image_size} (the image size)")
        if (grid.prod(1) > cells.shape[1]).any():
            raise ValueError("a grid has more cells than the plan's cells tensor has columns")
        for name, value in (("cells", cells), ("partner", self.partner.cpu())):
            if ((value < -1) | (value >= num_inputs)).any():
                raise ValueError(f"{name} refers to input rows outside 0..{num_inputs - 1}")
        modes = self.mask_mode.cpu()
        if not bool(torch.isin(modes, torch.tensor(list(MASK_MODES), dtype=modes.dtype)).all()):
            raise ValueError(f"mask_mode must be one of {MASK_MODES}")
        if ((modes != MASK_NONE) & (self.partner.cpu() < 0)).any():
            raise ValueError("a masked output needs a partner")
        resized = np.isin(modes.numpy(), RESIZED_MODES)
        box = self.box.cpu().numpy()[resized]
        if len(box) and ((box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1])).any():
            raise ValueError("a resized-partner output needs a non-empty box")
        dense = modes == MASK_DENSE
        if dense.any():
            if self.masks is None or self.masks.shape[-2:] != (image_size, image_size):
                raise ValueError(f"dense-mask outputs need masks of shape (Km, {image_size}, {image_size})")
            index = self.mask_index.cpu()[dense]
            if ((index < 0) | (index >= self.masks.shape[0])).any():
                raise ValueError("mask_index refers to rows outside masks")

    def with_indices(self, indices: torch.Tensor) -> "MixPlan":
        """A copy with the dataset rows of the input images set."""
        return replace(self, indices=indices)


def pack_plan(plan: MixPlan, device: torch.device | str | None = None) -> torch.Tensor:
    """The plan as one (N_out, COL_CELLS + K) int32 table on `device`: the kernel's only per-batch input.

    One row per output, columns ``COL_ROWS`` .. ``COL_MASK_INDEX``, ``COL_LAM`` (float32 bits), then
    the K cells. Built where the plan lives (the host, normally) and copied in one non-blocking
    transfer, once per device (`MixPlan.on_device` reads the same table); a `lam` already on the
    device (FMix) is written there, without a sync.
    """
    return plan._upload(torch.device(device) if device is not None else plan.device)[0]


def _pack(plan: MixPlan, device: torch.device) -> torch.Tensor:
    host = plan.cells.device
    lam = plan.lam.to(torch.float32)
    lam_here = lam.device == host
    columns = {
        COL_ROWS: plan.grid[:, 0], COL_COLS: plan.grid[:, 1], COL_PARTNER: plan.partner, COL_MODE: plan.mask_mode,
        COL_Y0: plan.box[:, 0], COL_X0: plan.box[:, 1], COL_Y1: plan.box[:, 2], COL_X1: plan.box[:, 3],
        COL_MASK_INDEX: plan.mask_index,
        COL_LAM: lam.contiguous().view(torch.int32) if lam_here else torch.zeros_like(plan.partner),
    }
    head = torch.stack([columns[k].int() for k in range(COL_CELLS)], 1)
    table = torch.cat([head, plan.cells.int()], 1)
    table = table.to(device, non_blocking=True) if table.device != device else table.contiguous()
    if not lam_here:
        table[:, COL_LAM].copy_(lam.to(device, non_blocking=True).contiguous().view(torch.int32))
    return table

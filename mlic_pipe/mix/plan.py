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

Last, ``erase[n]`` (optional) lists boxes painted over the finished output, in order (Cutout,
random erasing): each box's pixels become a constant in normalized space (`ERASE_VALUE`), a
uint8 colour normalized as the image is (`ERASE_COLOUR`), or per-pixel standard normal noise drawn
by a counter-based hash of (seed, channel, y, x) (`ERASE_NOISE`, `mlic_pipe.mix.noise`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

__all__ = [
    "COL_CELLS", "COL_COLS", "COL_LAM", "COL_MASK_INDEX", "COL_MODE", "COL_PARTNER", "COL_ROWS", "COL_X0", "COL_X1",
    "COL_Y0", "COL_Y1", "MASK_BOX", "MASK_CONSTANT", "MASK_DENSE", "MASK_MODES", "MASK_NONE", "MASK_RESIZED",
    "MASK_RESIZED_NEAREST", "MixPlan", "RESIZED_MODES", "cell_edges",
    "pack_plan", "ERASE_COLUMNS", "ERASE_KINDS", "ERASE_NONE", "ERASE_VALUE", "ERASE_COLOUR", "ERASE_NOISE",
    "ERASE_Y0", "ERASE_X0", "ERASE_Y1", "ERASE_X1", "ERASE_KIND", "ERASE_V0", "ERASE_SEED",
]

# How a mask mix weighs its primary source (``plan.mask_mode``; the kernel takes them as constexprs).
MASK_NONE, MASK_BOX, MASK_DENSE, MASK_CONSTANT, MASK_RESIZED, MASK_RESIZED_NEAREST = 0, 1, 2, 3, 4, 5
MASK_MODES = {MASK_NONE: "none", MASK_BOX: "box", MASK_DENSE: "dense mask", MASK_CONSTANT: "constant",
              MASK_RESIZED: "resized partner in a box (bilinear)",
              MASK_RESIZED_NEAREST: "resized partner in a box (nearest, F.interpolate's)"}
RESIZED_MODES = (MASK_RESIZED, MASK_RESIZED_NEAREST)

# The columns of the packed plan table (`pack_plan`), one int32 row per output; the cells start at COL_CELLS.
COL_ROWS, COL_COLS, COL_PARTNER, COL_MODE, COL_Y0, COL_X0, COL_Y1, COL_X1, COL_MASK_INDEX, COL_LAM, COL_CELLS = range(11)
_NUMPY_DTYPES = {torch.int32: np.int32, torch.int8: np.int8, torch.float32: np.float32}  # `MixPlan.build`'s


# One erase box: 9 int32 columns (the values as float32 bits); the table's erase columns follow the cells.
ERASE_Y0, ERASE_X0, ERASE_Y1, ERASE_X1, ERASE_KIND, ERASE_V0, ERASE_SEED = 0, 1, 2, 3, 4, 5, 8
ERASE_COLUMNS = 9
ERASE_NONE, ERASE_VALUE, ERASE_COLOUR, ERASE_NOISE = 0, 1, 2, 3
ERASE_KINDS = {ERASE_NONE: "none", ERASE_VALUE: "constant (normalized space)",
               ERASE_COLOUR: "uint8 colour (normalized as the image)", ERASE_NOISE: "per-pixel N(0, 1) noise"}


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
        erase: (N_out, E, ERASE_COLUMNS) int32 erase boxes painted last, or None: y0, x0, y1, x1 (end-exclusive),
            kind (`ERASE_KINDS`), three per-channel values (float32 bits: normalized values, or a 0-255
            colour), the noise seed. Built with `with_erase`.
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
    erase: torch.Tensor | None = None
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
        tensors = (self.cells, self.grid, self.partner, self.mask_mode, self.box, self.mask_index, self.lam) + \
            ((self.erase,) if self.erase is not None else ())
        # a field reassigned or changed in place since the upload makes a new one (tensors count their writes)
        versions = tuple(t._version for t in tensors)
        cached = self._uploads.get(str(device))
        if cached is None or cached[0] != versions or any(a is not b for a, b in zip(cached[1], tensors)):
            table = _pack(self, device)
            if all(t.device == device for t in tensors):
                on_device = self
            else:
                cells_end = COL_CELLS + self.cells.shape[1]
                erase = None if self.erase is None else table[:, cells_end:].view(self.erase.shape)
                on_device = MixPlan(num_regular=self.num_regular, cells=table[:, COL_CELLS:cells_end], erase=erase,
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

        def tensor(value, default, dtype):  # numpy's conversion, then a view: cheaper than torch.as_tensor's
            value = default if value is None else value
            return torch.from_numpy(np.ascontiguousarray(value, dtype=_NUMPY_DTYPES[dtype]))

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
        so a bad plan is an error message, never an out-of-bounds read in a kernel. The checks run on
        numpy views of the tensors: a dozen small torch ops cost ~0.6 ms a batch when the render has just
        streamed the batch through the caches, the same checks in numpy a fraction of that.
        """
        n = self.num_outputs
        if self.cells.ndim != 2 or self.grid.shape != (n, 2):
            raise ValueError(f"plan tensors disagree: cells {tuple(self.cells.shape)}, grid {tuple(self.grid.shape)}")
        if not 0 <= self.num_regular <= n:
            raise ValueError(f"num_regular={self.num_regular} is outside 0..{n}")
        cells, grid, partner = _host(self.cells), _host(self.grid), _host(self.partner)
        if (grid < 1).any() or (grid > image_size).any():
            raise ValueError(f"grid sizes must be within 1..{image_size} (the image size)")
        if (grid.prod(1) > cells.shape[1]).any():
            raise ValueError("a grid has more cells than the plan's cells tensor has columns")
        for name, value in (("cells", cells), ("partner", partner)):
            if ((value < -1) | (value >= num_inputs)).any():
                raise ValueError(f"{name} refers to input rows outside 0..{num_inputs - 1}")
        modes = _host(self.mask_mode)
        if not _among(modes, MASK_MODES).all():
            raise ValueError(f"mask_mode must be one of {MASK_MODES}")
        if ((modes != MASK_NONE) & (partner < 0)).any():
            raise ValueError("a masked output needs a partner")
        box = _host(self.box)[_among(modes, RESIZED_MODES)]
        if len(box) and ((box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1])).any():
            raise ValueError("a resized-partner output needs a non-empty box")
        if self.erase is not None:
            _check_erase(self.erase, n, image_size)
        dense = modes == MASK_DENSE
        if dense.any():
            if self.masks is None or self.masks.shape[-2:] != (image_size, image_size):
                raise ValueError(f"dense-mask outputs need masks of shape (Km, {image_size}, {image_size})")
            index = _host(self.mask_index)[dense]
            if ((index < 0) | (index >= self.masks.shape[0])).any():
                raise ValueError("mask_index refers to rows outside masks")

    def with_erase(self, boxes, kinds, values=None, seeds=None) -> "MixPlan":
        """A copy with erase boxes: `boxes` (N_out, E, 4) y0, x0, y1, x1; `kinds` (N_out, E) `ERASE_KINDS`;
        `values` (N_out, E, 3) per-channel values (normalized, or 0-255 colours); `seeds` (N_out, E) noise seeds."""
        boxes = np.asarray(boxes, dtype=np.int64)
        n, count = boxes.shape[:2]
        values = np.zeros((n, count, 3), np.float32) if values is None else \
            np.ascontiguousarray(values, np.float32)  # viewed as int32 bits below
        seeds = np.zeros((n, count), np.int64) if seeds is None else np.asarray(seeds, np.int64)
        table = np.concatenate([boxes.astype(np.int32), np.asarray(kinds, np.int32)[..., None],
                                values.reshape(n, count, 3).view(np.int32), seeds.astype(np.int32)[..., None]], -1)
        return replace(self, erase=torch.from_numpy(np.ascontiguousarray(table)))

    def with_indices(self, indices: torch.Tensor) -> "MixPlan":
        """A copy with the dataset rows of the input images set."""
        return replace(self, indices=indices)


def _host(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of a plan tensor (a copy only where it lives on a device)."""
    if tensor.device.type == "cpu" and not tensor.requires_grad:
        return tensor.numpy()  # one call instead of three: `validate` runs cache-cold on every CPU batch
    return tensor.detach().cpu().numpy()


def _among(values: np.ndarray, allowed) -> np.ndarray:
    """``np.isin(values, allowed)`` for a few small integer codes, as comparisons (np.isin sorts: ~10x the cost)."""
    found = np.zeros(values.shape, bool)
    for code in allowed:
        found |= values == code
    return found


def _check_erase(erase: torch.Tensor, count: int, image_size: int) -> None:
    if erase.ndim != 3 or erase.shape[0] != count or erase.shape[2] != ERASE_COLUMNS or erase.dtype != torch.int32:
        raise ValueError(f"erase must be int32 (N_out={count}, E, {ERASE_COLUMNS}), got {erase.dtype} "
                         f"{tuple(erase.shape)}")
    table = _host(erase)
    kinds = table[..., ERASE_KIND]
    if not _among(kinds, ERASE_KINDS).all():
        raise ValueError(f"erase kinds must be among {ERASE_KINDS}")
    used = table[kinds != ERASE_NONE]
    y0, x0, y1, x1 = used[:, ERASE_Y0], used[:, ERASE_X0], used[:, ERASE_Y1], used[:, ERASE_X1]
    if ((y0 < 0) | (x0 < 0) | (y1 > image_size) | (x1 > image_size) | (y1 < y0) | (x1 < x0)).any():
        raise ValueError(f"erase boxes must lie within 0..{image_size} with y0 <= y1 and x0 <= x1")
    if (used[:, ERASE_SEED] < 0).any():
        raise ValueError("erase seeds must be non-negative")


def pack_plan(plan: MixPlan, device: torch.device | str | None = None) -> torch.Tensor:
    """The plan as one (N_out, COL_CELLS + K) int32 table on `device`: the kernel's only per-batch input.

    One row per output, columns ``COL_ROWS`` .. ``COL_MASK_INDEX``, ``COL_LAM`` (float32 bits), then
    the K cells. Built where the plan lives (the host, normally) and copied in one non-blocking
    transfer, once per device (`MixPlan.on_device` reads the same table); a `lam` already on the
    device (FMix) is written there, without a sync.
    """
    return plan._upload(torch.device(device) if device is not None else plan.device)[0]


def _pack_on_host(plan: MixPlan, lam: torch.Tensor) -> np.ndarray:
    """`_pack`'s table of a plan on the host, written column by column in numpy.

    Why: the loader packs a CPU batch's plan right after the render has streamed the previous batch
    through the caches, where a dozen small torch ops (conversions, a stack, a cat) cost tens of
    microseconds each; numpy's column writes cost a few.
    """
    cells = plan.cells.numpy()
    erase = None if plan.erase is None else plan.erase.numpy().reshape(len(plan.erase), -1)
    table = np.empty((len(cells), COL_CELLS + cells.shape[1] + (0 if erase is None else erase.shape[1])), np.int32)
    grid, box = plan.grid.numpy(), plan.box.numpy()
    table[:, COL_ROWS], table[:, COL_COLS] = grid[:, 0], grid[:, 1]
    table[:, COL_PARTNER], table[:, COL_MODE] = plan.partner.numpy(), plan.mask_mode.numpy()
    table[:, COL_Y0:COL_X1 + 1] = box
    table[:, COL_MASK_INDEX] = plan.mask_index.numpy()
    table[:, COL_LAM] = np.ascontiguousarray(lam.numpy()).view(np.int32)
    table[:, COL_CELLS:COL_CELLS + cells.shape[1]] = cells
    if erase is not None:
        table[:, COL_CELLS + cells.shape[1]:] = erase
    return table


def _pack(plan: MixPlan, device: torch.device, numpy_on_host: bool = True) -> torch.Tensor:
    """`pack_plan`'s table: numpy's column writes for a plan on the host (`_pack_on_host`), torch's ops otherwise."""
    host = plan.cells.device
    lam = plan.lam.to(torch.float32)
    lam_here = lam.device == host
    if host.type == "cpu" and lam_here and numpy_on_host:
        table = torch.from_numpy(_pack_on_host(plan, lam))
        return table.to(device, non_blocking=True) if device.type != "cpu" else table
    columns = {
        COL_ROWS: plan.grid[:, 0], COL_COLS: plan.grid[:, 1], COL_PARTNER: plan.partner, COL_MODE: plan.mask_mode,
        COL_Y0: plan.box[:, 0], COL_X0: plan.box[:, 1], COL_Y1: plan.box[:, 2], COL_X1: plan.box[:, 3],
        COL_MASK_INDEX: plan.mask_index,
        COL_LAM: lam.contiguous().view(torch.int32) if lam_here else torch.zeros_like(plan.partner),
    }
    head = torch.stack([columns[k].int() for k in range(COL_CELLS)], 1)
    erase = [] if plan.erase is None else [plan.erase.int().reshape(len(plan.erase), -1)]
    table = torch.cat([head, plan.cells.int(), *erase], 1)
    table = table.to(device, non_blocking=True) if table.device != device else table.contiguous()
    if not lam_here:
        table[:, COL_LAM].copy_(lam.to(device, non_blocking=True).contiguous().view(torch.int32))
    return table

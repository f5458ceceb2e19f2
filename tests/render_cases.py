"""Batches and plans the renderer tests share: the Triton kernel's and the compiled CPU renderer's."""
import numpy as np
import torch

from mlic_pipe.mix import CutMix, FMix, MixPlan, MixUp, ResizeMix, SpliceMix
from mlic_pipe.mix.plan import ERASE_COLOUR, MASK_DENSE, MASK_NONE, RESIZED_MODES

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=0.0),
             # one rounding of a result that is within 1e-6 of the reference: at most one ulp apart
             torch.float16: dict(atol=1e-5, rtol=2.0**-10),
             torch.bfloat16: dict(atol=1e-5, rtol=2.0**-7)}


def random_images(n, size, seed, device):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=generator).to(device)


def poisoned(shape, dtype, device, channels_last=False):
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.full(shape, float("nan"), dtype=dtype, device=device).contiguous(memory_format=layout)


def fuzz_plan(num_inputs, size, seed, max_grid=3, modes=4, erase=0):
    """Random plans beyond what the mixers make: any grid, dropped cells, and mask modes 0 .. modes - 1 on any
    output (4: box, dense, constant; 6: also ResizeMix's bilinear and nearest), boxes touching the borders
    (and empty, except for ResizeMix, which needs one), soft dense masks, MixUp weights; and `erase` erase boxes per
    output of every kind (none, a normalized constant, a 0-255 colour, noise), overlapping, touching the borders."""
    rng = np.random.default_rng(seed)
    count = num_inputs + int(rng.integers(1, 5))
    grid = np.ones((count, 2), dtype=np.int64)
    grid[num_inputs:] = rng.integers(1, max_grid + 1, size=(count - num_inputs, 2))
    cells = np.full((count, max_grid * max_grid), -1)
    cells[:num_inputs, 0] = np.arange(num_inputs)
    for n in range(num_inputs, count):
        k = grid[n].prod()
        cells[n, :k] = rng.integers(0, num_inputs, size=k)
        cells[n, :k][rng.random(k) < 0.3] = -1
    mode = rng.integers(0, modes, size=count)
    mode[: num_inputs // 2] = MASK_NONE
    partner = np.where(mode != MASK_NONE, rng.integers(0, num_inputs, size=count), -1)
    edges = [0, 1, size // 3, size - 1, size]
    ys, xs = (np.sort(rng.choice(edges, size=(count, 2)), axis=1) for _ in range(2))
    box = np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], 1)  # y0, x0, y1, x1; may be empty
    resized = np.isin(mode, RESIZED_MODES)
    box[resized, 2:] = np.maximum(box[resized, 2:], box[resized, :2] + 1)  # ResizeMix: at least one pixel
    masks = torch.from_numpy(rng.random((count, size, size))).to(torch.float16)
    masks[0] = 1.0
    lam = rng.random(count).astype(np.float32)
    plan = MixPlan.build(num_regular=num_inputs // 2, cells=cells, grid=grid, partner=partner, mask_mode=mode,
                         box=box, mask_index=np.where(mode == MASK_DENSE, np.arange(count), -1), masks=masks,
                         lam=np.where(mode == MASK_NONE, 1.0, lam))
    return plan if not erase else plan.with_erase(*erase_boxes(rng, count, size, erase))


def erase_boxes(rng, count, size, per_output):
    """Random erase boxes (y0 <= y1 and x0 <= x1 within the image, some empty) of every kind, with their values."""
    ys, xs = (np.sort(rng.integers(0, size + 1, size=(count, per_output, 2)), axis=-1) for _ in range(2))
    boxes = np.stack([ys[..., 0], xs[..., 0], ys[..., 1], xs[..., 1]], -1)  # y0, x0, y1, x1
    kinds = rng.integers(0, 4, size=(count, per_output))
    values = np.where((kinds == ERASE_COLOUR)[..., None], rng.integers(0, 256, size=(count, per_output, 3)),
                      rng.normal(size=(count, per_output, 3)))
    return boxes, kinds, values, rng.integers(0, 2**31 - 1, size=(count, per_output))


MIXERS = {
    "splicemix": SpliceMix(),
    "splicemix-custom": SpliceMix(["1x2", "3x3-4", "2x3-5"], counts=[2, 1, 1]),
    "splicemix-fixed": SpliceMix(["2x2-1"], fixed_batch=True),
    "cutmix": CutMix(),
    "cutmix-append": CutMix(append=True, mix_ratio=0.5),
    "fmix-soft": FMix(max_soft=0.2, append=True),
    "mixup": MixUp(),
    "resizemix": ResizeMix(),
    "resizemix-bilinear": ResizeMix(resample="bilinear", append=True),
}

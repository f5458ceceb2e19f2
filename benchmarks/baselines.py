"""The contenders the benchmark groups share: what a user would otherwise run, and the copy floor.

One definition each, imported by the render, kernel, loader, step and heads benchmarks. Every render
contender starts from the same uint8 NHWC batch on the device, normalizes it the same way (one
`normalize` into one float32 buffer, as ``transforms.Normalize`` does once per image in the authors'
loaders) and ends with a normalized NCHW batch of the same dtype. Each runs two ways where its API
allows (`ALLOCATIONS`): "fresh" allocates its outputs on every call, as the peer's docs show it;
"reused" writes into buffers kept across calls (``out=`` for us and for the published sequence's
``torch.cat``; timm's ``Mixup`` mixes in place, so a reused normalize buffer is its output).
torchvision v2 and kornia return new tensors, so they have no reused form.

- `published_op_sequence` / `published_splice`: SpliceMix's public op sequence, written here from
  the paper: normalize the batch, then per grid group gather the cell sources, zero dropped ones,
  F.interpolate, tile with a reshape (and resize uneven tilings back), torch.cat.
- `render_contender`: every render contender by name and allocation.
- `bytes_moved` and `copy_floor`: the bytes a render must move (the uint8 input read once plus the
  output written once) and a copy of that many bytes, the physical floor every GB/s and "fraction
  of copy bandwidth" figure is measured against (``device-copy``, GPU groups).
- `output_copy`: a copy of a tensor of the render's output shape and dtype (``output-copy``, every
  device): what writing the result costs at all, the CPU floor each render figure is read against
  (the report's ``x copy`` column).
"""
import pytest
import torch
import torch.nn.functional as F

from mlic_pipe.mix import RenderSettings, normalize, render

__all__ = ["ALLOCATIONS", "NUM_CLASSES", "bytes_moved", "copy_floor", "output_copy", "published_op_sequence",
           "published_splice", "render_contender"]

NUM_CLASSES = 80  # COCO's; the class count of every synthetic target in the benchmarks
ALLOCATIONS = ("fresh", "reused")
FRESH_ONLY = ("tv2", "kornia")  # their mixers return new tensors: no reused form


def bytes_moved(images: torch.Tensor, outputs: int, dtype: torch.dtype) -> int:
    """What a render must move at least: its input read once plus `outputs` images of `dtype` written once."""
    size = images.shape[1] if images.dtype == torch.uint8 else images.shape[-1]
    return images.numel() * images.element_size() + outputs * 3 * size * size * torch.finfo(dtype).bits // 8


def _kept_copy(src: torch.Tensor):
    """A callable copying `src` into a buffer kept across calls. Both are filled once: an untouched CPU
    allocation maps one zero page, which reads faster than memory and would flatter the floor."""
    dst = torch.zeros_like(src)
    return lambda: dst.copy_(src)


def copy_floor(nbytes: int, device: str):
    """A callable copying `nbytes` on `device` (half read, half written): the bandwidth a render is held to."""
    return _kept_copy(torch.ones(nbytes // 2, dtype=torch.uint8, device=device))


def output_copy(outputs: int, size: int, dtype: torch.dtype, device: str):
    """A callable copying one (outputs, 3, size, size) tensor of `dtype` into another, both kept across calls."""
    return _kept_copy(torch.ones((outputs, 3, size, size), dtype=dtype, device=device))


def published_op_sequence(images: torch.Tensor, plan, out: torch.Tensor | None = None,
                          normalized: torch.Tensor | None = None) -> torch.Tensor:
    """Normalize once (into `normalized` if given), then per group: gather + drop + F.interpolate + tile + cat."""
    return published_splice(normalize(images, out=normalized), plan, out=out)


def published_splice(batch: torch.Tensor, plan, out: torch.Tensor | None = None) -> torch.Tensor:
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
    return torch.cat(outputs, out=out) if out is not None else torch.cat(outputs)


def _cast(dtype: torch.dtype, shape, device, reused: bool):
    """The last step of a peer: its float32 result in `dtype` (into a kept buffer when reused)."""
    if dtype == torch.float32:
        return lambda x: x
    if not reused:
        return lambda x: x.to(dtype)
    buffer = torch.empty(shape, dtype=dtype, device=device)
    return lambda x: buffer.copy_(x)


def render_contender(name: str, allocation: str, images: torch.Tensor, plan, dtype: torch.dtype, device: str):
    """A zero-argument callable doing the contender's whole job once, and the number of images it makes."""
    batch, size = images.shape[0], images.shape[1]
    reused = allocation == "reused"
    if reused and name.startswith(FRESH_ONLY):
        pytest.skip(f"{name} returns new tensors: it has no reused-output form")
    if name == "device-copy":
        if device != "cuda":
            pytest.skip("the copy floor is a GPU figure")
        return copy_floor(bytes_moved(images, plan.num_outputs, dtype), device), plan.num_outputs
    if name == "output-copy":
        return output_copy(plan.num_outputs, size, dtype, device), plan.num_outputs
    if name.startswith("mlic-pipe"):
        settings = RenderSettings(out_dtype=dtype)
        out = settings.empty(plan.num_outputs, size, device) if reused else None
        backend = "reference" if name.endswith("-reference") else "auto"
        return (lambda: render(images, plan, settings, out=out, backend=backend)), plan.num_outputs
    shape = (batch, 3, size, size)
    normalized = torch.empty(shape, dtype=torch.float32, device=device) if reused else None
    if name == "published":
        out = torch.empty((plan.num_outputs, *shape[1:]), dtype=torch.float32, device=device) if reused else None
        cast = _cast(dtype, out.shape if reused else None, device, reused)
        return (lambda: cast(published_op_sequence(images, plan, out=out, normalized=normalized))), plan.num_outputs
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    kind = name.split("-")[1]
    cast = _cast(dtype, shape, device, reused)
    if name.startswith("timm"):
        from timm.data import Mixup

        mixer = Mixup(mixup_alpha=1.0 if kind == "mixup" else 0.0, cutmix_alpha=1.0 if kind == "cutmix" else 0.0,
                      mode="batch", num_classes=NUM_CLASSES, label_smoothing=0.0)
        return (lambda: cast(mixer(normalize(images, out=normalized), labels)[0])), batch
    if name.startswith("tv2"):
        from torchvision.transforms import v2

        mixer = v2.CutMix(num_classes=NUM_CLASSES) if kind == "cutmix" else v2.MixUp(num_classes=NUM_CLASSES)
        return (lambda: cast(mixer(normalize(images), labels)[0])), batch
    kornia = pytest.importorskip("kornia", reason="kornia is not installed (pip install -e '.[bench]')")
    mixer = (kornia.augmentation.RandomCutMixV2(data_keys=["input", "class"], use_correct_lambda=True) if kind == "cutmix"
             else kornia.augmentation.RandomMixUpV2(data_keys=["input", "class"]))
    return (lambda: cast(mixer(normalize(images), labels)[0])), batch

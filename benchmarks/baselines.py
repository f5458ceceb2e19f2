"""The contenders the benchmark groups share: what a user would otherwise run, and the copy floor.

One definition each, imported by the render, kernel, loader, step and heads benchmarks:

- `published_op_sequence` / `published_splice`: SpliceMix's public op sequence, written here from
  the paper: normalize the batch, then per grid group gather the cell sources, zero dropped ones,
  F.interpolate, tile with a reshape (and resize uneven tilings back), torch.cat.
- `render_contender`: every render contender by name (mlic-pipe, published, timm, torchvision v2,
  kornia, the device copy).
- `bytes_moved` and `copy_floor`: the bytes a render must move (the uint8 input read once plus the
  output written once) and a device copy of that many bytes, the physical floor every GB/s and
  "fraction of copy bandwidth" figure is measured against.
"""
import pytest
import torch
import torch.nn.functional as F

from mlic_pipe.mix import IMAGENET_MEAN, IMAGENET_STD, RenderSettings, normalize, render

__all__ = ["NUM_CLASSES", "bytes_moved", "copy_floor", "published_op_sequence", "published_splice",
           "render_contender"]

NUM_CLASSES = 80  # COCO's; the class count of every synthetic target in the benchmarks


def bytes_moved(images: torch.Tensor, outputs: int, dtype: torch.dtype) -> int:
    """What a render must move at least: its input read once plus `outputs` images of `dtype` written once."""
    size = images.shape[1] if images.dtype == torch.uint8 else images.shape[-1]
    return images.numel() * images.element_size() + outputs * 3 * size * size * torch.finfo(dtype).bits // 8


def copy_floor(nbytes: int, device: str):
    """A callable copying `nbytes` on `device` (half read, half written): the bandwidth a render is held to."""
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


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



def render_contender(name, images, plan, dtype, device):
    """A zero-argument callable doing the contender's whole job once, and the number of images it makes."""
    batch, size = images.shape[0], images.shape[1]
    if name == "published":
        return (lambda: published_op_sequence(images, plan).to(dtype)), plan.num_outputs
    if name == "mlic-pipe":
        settings = RenderSettings(out_dtype=dtype)
        out = settings.empty(plan.num_outputs, size, device)
        return (lambda: render(images, plan, settings, out=out)), plan.num_outputs
    if name == "device-copy":
        if device != "cuda":
            pytest.skip("the copy floor is a GPU figure")
        return copy_floor(bytes_moved(images, plan.num_outputs, dtype), device), plan.num_outputs
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    kind = name.split("-")[1]
    if name.startswith("timm"):
        from timm.data import Mixup

        mixer = Mixup(mixup_alpha=1.0 if kind == "mixup" else 0.0, cutmix_alpha=1.0 if kind == "cutmix" else 0.0,
                      mode="batch", num_classes=NUM_CLASSES, label_smoothing=0.0)
        return (lambda: mixer(normalize(images), labels)[0].to(dtype)), batch
    if name.startswith("tv2"):
        from torchvision.transforms import v2

        mixer = v2.CutMix(num_classes=NUM_CLASSES) if kind == "cutmix" else v2.MixUp(num_classes=NUM_CLASSES)
        return (lambda: mixer(normalize(images), labels)[0].to(dtype)), batch
    kornia = pytest.importorskip("kornia", reason="kornia is not installed (optional contender)")
    mixer = (kornia.augmentation.RandomCutMixV2(data_keys=["input", "class"]) if kind == "cutmix"
             else kornia.augmentation.RandomMixUpV2(data_keys=["input", "class"]))
    return (lambda: mixer(normalize(images), labels)[0].to(dtype)), batch

"""Render: making the mixed, normalized batch from the decoded uint8 one, against what a user has.

Group per (B, S, output dtype, device); every contender starts from the same uint8 NHWC batch on
the device and ends with a normalized float batch in that dtype:

- ``published`` (the baseline): SpliceMix's public op sequence, written here from the paper:
  normalize the batch, then per grid group gather the cell sources, zero dropped ones,
  F.interpolate, tile with a reshape (and resize uneven tilings back), torch.cat.
- ``mlic-pipe``: `mlic_pipe.mix.render` with a SpliceMix plan (the Triton kernel on CUDA, the
  torch reference on the CPU), into a reused buffer.
- ``timm-cutmix`` / ``timm-mixup``: normalize + timm ``Mixup`` (batch mode).
- ``tv2-cutmix`` / ``tv2-mixup``: normalize + torchvision.transforms.v2 ``CutMix`` / ``MixUp``.
- ``kornia-cutmix`` / ``kornia-mixup``: kornia's ``RandomCutMixV2`` / ``RandomMixUpV2``, when kornia
  is installed (it is not a dependency; skipped otherwise).
- ``device-copy`` (GPU only): a copy of the bytes mlic-pipe reads and writes: the physical floor.

The single-label mixers get dummy class labels (they cannot take multi-hot targets) and produce B
images, SpliceMix B + B/4; images/s counts outputs. GB/s counts the uint8 input read plus the
output written.

Run: pytest benchmarks/test_bench_render.py --benchmark-only [--full]
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlic_pipe.mix import IMAGENET_MEAN, IMAGENET_STD, SpliceMix, normalize, render

from benchmarks.common import devices, preset, record, synchronizer

CONTENDERS = ["published", "mlic-pipe", "timm-cutmix", "timm-mixup", "tv2-cutmix", "tv2-mixup", "kornia-cutmix",
              "kornia-mixup", "device-copy"]
NUM_CLASSES = 80


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
        out = torch.empty((plan.num_outputs, 3, size, size), dtype=dtype, device=device)
        return (lambda: render(images, plan, out_dtype=dtype, out=out)), plan.num_outputs
    if name == "device-copy":
        if device != "cuda":
            pytest.skip("the copy floor is a GPU figure")
        moved = images.numel() + plan.num_outputs * 3 * size * size * torch.finfo(dtype).bits // 8
        src = torch.empty(moved // 2, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        return (lambda: dst.copy_(src)), plan.num_outputs
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


def _cases():
    settings = preset()
    return [(b, s, d, dev) for b, s in settings["render"] for d in settings["dtypes"] for dev in devices()]


@pytest.mark.parametrize("name", CONTENDERS)
@pytest.mark.parametrize("batch, size, dtype, device", _cases(),
                         ids=lambda v: str(v).replace("torch.", "") if not isinstance(v, int) else str(v))
def test_render(benchmark, name, batch, size, dtype, device):
    benchmark.group = f"render B={batch} S={size} {str(dtype).replace('torch.', '')} {device}"
    plan = SpliceMix().plan(batch, size, np.random.default_rng(0))
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).to(device)
    run, outputs = render_contender(name, images, plan, dtype, device)
    sync = synchronizer(device)
    run(), sync()  # warm-up: kernel compile / autotune, allocator
    benchmark.pedantic(lambda: (run(), sync()), rounds=preset()["rounds"] * 3, warmup_rounds=1, iterations=1)
    nbytes = images.numel() + outputs * 3 * size * size * torch.finfo(dtype).bits // 8
    record(benchmark, baseline=name == "published", images=outputs, device=device, nbytes=nbytes, batch=batch,
           image_size=size, dtype=dtype, outputs=outputs, contender=name)


def test_published_sequence_equals_mlic_pipe_where_both_partition_alike():
    """The baseline is a faithful rendering of the same plan (else its timing would mean nothing)."""
    size = 48  # divisible by 1, 2 and 3: both partition every grid the same way
    plan = SpliceMix().plan(8, size, np.random.default_rng(1))
    images = torch.randint(0, 256, (8, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(published_op_sequence(images, plan), render(images, plan, backend="reference"),
                               atol=1e-5, rtol=0)

"""Render: making the mixed, normalized batch from the decoded uint8 one, against what a user has.

Group per (B, S, output dtype, device); every contender starts from the same uint8 NHWC batch on
the device and ends with a normalized float batch in that dtype:

- ``published`` (the baseline): SpliceMix's public op sequence (`benchmarks.baselines`).
- ``mlic-pipe``: `mlic_pipe.mix.render` with a SpliceMix plan (the Triton kernel on CUDA, the
  torch reference on the CPU), into a reused buffer.
- ``timm-cutmix`` / ``timm-mixup``: normalize + timm ``Mixup`` (batch mode).
- ``tv2-cutmix`` / ``tv2-mixup``: normalize + torchvision.transforms.v2 ``CutMix`` / ``MixUp``.
- ``kornia-cutmix`` / ``kornia-mixup``: kornia's ``RandomCutMixV2`` / ``RandomMixUpV2``, when kornia
  is installed (it is not a dependency; skipped otherwise).
- ``device-copy`` (GPU only): `baselines.copy_floor` of the bytes mlic-pipe must move: the physical floor.

The single-label mixers get dummy class labels (they cannot take multi-hot targets) and produce B
images, SpliceMix B + B/4; images/s counts outputs. GB/s counts the uint8 input read plus the
output written.

Run: pytest benchmarks/test_bench_render.py --benchmark-only [--full]
"""
import numpy as np
import pytest
import torch

from mlic_pipe.mix import SpliceMix, render

from benchmarks.baselines import bytes_moved, published_op_sequence, render_contender
from benchmarks.common import devices, preset, record, synchronizer

CONTENDERS = ["published", "mlic-pipe", "timm-cutmix", "timm-mixup", "tv2-cutmix", "tv2-mixup", "kornia-cutmix",
              "kornia-mixup", "device-copy"]

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
    nbytes = bytes_moved(images, outputs, dtype)
    record(benchmark, baseline=name == "published", images=outputs, device=device, nbytes=nbytes, batch=batch,
           image_size=size, dtype=dtype, outputs=outputs, contender=name)


def test_published_sequence_equals_mlic_pipe_where_both_partition_alike():
    """The baseline is a faithful rendering of the same plan (else its timing would mean nothing)."""
    size = 48  # divisible by 1, 2 and 3: both partition every grid the same way
    plan = SpliceMix().plan(8, size, np.random.default_rng(1))
    images = torch.randint(0, 256, (8, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(published_op_sequence(images, plan), render(images, plan, backend="reference"),
                               atol=1e-5, rtol=0)

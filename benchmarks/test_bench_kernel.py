"""GPU render: the fused Triton kernel vs a device copy of the same bytes and the alternatives a user has.

Every contender does the same job on the same uint8 NHWC batch already on the GPU: produce the
normalized, mixed float16 NCHW batch. Contenders, in one run per case:

- ``copy``: `baselines.copy_floor` of the bytes the kernel must move: the physical reference. Its
  GB/s is the "copy bandwidth" the kernel is a fraction of.
- ``published``, ``timm-cutmix``, ``tv2-cutmix``: `baselines.render_contender` (the same jobs as
  test_bench_render.py), cast to float16; the timm and torchvision ones make B outputs, not B+M.
- ``reference``: mlic-pipe's torch reference renderer on the GPU.
- ``kernel``: ``mlic_pipe.kernels.render`` from the host plan (includes packing it and its copy).

Bytes moved = `baselines.bytes_moved`: the uint8 input read once + the float16 output written once. extra_info records images/s, GB/s, the ratio to ``published`` and,
for ``kernel``, the fraction of ``copy`` bandwidth. Targets (issue 4): >= 70% of copy bandwidth,
>= 10x published, >= 3x the fastest other contender.

Run on a GPU: pytest benchmarks/test_bench_kernel.py --benchmark-only --benchmark-json out.json
Skipped without CUDA (the kernel's numbers are tested in tests/test_kernel.py).
"""
import numpy as np
import pytest
import torch

from mlic_pipe.mix import SpliceMix, render, render_reference

from benchmarks.baselines import bytes_moved, copy_floor, render_contender
from benchmarks.common import measured, preset_name, record

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU render benchmarks need CUDA")

# (B, S); SpliceMix default: M = B // 4 mixed outputs
CASES = [(8, 48)] if preset_name() == "tiny" else [(64, 448), (256, 224)]
CONTENDERS = ["copy", "published", "reference", "timm-cutmix", "tv2-cutmix", "kernel"]
DEVICE = "cuda"


def _contender(name, images, plan, size):
    """A zero-argument callable doing the contender's whole job once (caller syncs)."""
    count = plan.num_outputs
    if name == "kernel":
        out = torch.empty((count, 3, size, size), dtype=torch.float16, device=DEVICE)
        return lambda: render(images, plan, out_dtype=torch.float16, out=out, backend="triton")
    if name == "reference":
        return lambda: render_reference(images, plan, out_dtype=torch.float16)
    if name == "copy":
        return copy_floor(bytes_moved(images, count, torch.float16), DEVICE)
    return render_contender(name, images, plan, torch.float16, DEVICE)[0]


@pytest.mark.parametrize("batch, size, name", [(b, s, n) for b, s in CASES for n in CONTENDERS],
                         ids=[f"B{b}-S{s}-{n}" for b, s in CASES for n in CONTENDERS])
def test_gpu_render(benchmark, batch, size, name):
    benchmark.group = f"gpu render B={batch} S={size} uint8->fp16"
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator).to(DEVICE)
    plan = SpliceMix().plan(batch, size, np.random.default_rng(0))
    run = _contender(name, images, plan, size)
    run()  # compile / autotune outside the timing
    torch.cuda.synchronize()
    if name == "kernel":  # the figure is only worth something if the numbers are right
        torch.testing.assert_close(run().float(), render_reference(images, plan), atol=1e-5, rtol=2.0**-10)
    benchmark.pedantic(lambda: (run(), torch.cuda.synchronize()), rounds=30, warmup_rounds=3, iterations=1)

    outputs = plan.num_outputs if name not in ("timm-cutmix", "tv2-cutmix") else batch
    moved = bytes_moved(images, plan.num_outputs, torch.float16)
    record(benchmark, baseline=name == "published", images=outputs, device=DEVICE,
           nbytes=moved if name in ("kernel", "copy") else None, batch=batch, image_size=size, outputs=outputs,
           dtype="uint8->float16", contender=name)
    if benchmark.stats is None or name != "kernel":  # --benchmark-disable: ran once untimed
        return
    mean, group = benchmark.stats.stats.mean, benchmark.group
    copy = measured(group, "copy")
    if copy is not None:
        benchmark.extra_info["fraction_of_copy"] = round(copy / mean, 3)
    others = [m for m in (measured(group, n) for n in ("reference", "timm-cutmix", "tv2-cutmix")) if m is not None]
    if others:
        benchmark.extra_info["speedup_vs_fastest_other"] = round(min(others) / mean, 2)

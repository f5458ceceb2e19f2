"""GPU render: the fused Triton kernel vs a device copy of the same bytes and the alternatives a user has.

Every contender does the same job on the same uint8 NHWC batch already on the GPU: produce the
normalized, mixed batch in the output dtype (float32 or bfloat16). Contenders, in one run per case
(B 64 / 128, S 224 / 448):

- ``copy``: `baselines.copy_floor` of the bytes the kernel must move: the physical reference. Its
  GB/s is the "copy bandwidth" the kernel is a fraction of.
- ``published`` (the baseline), ``timm-cutmix``, ``tv2-cutmix``, ``kornia-cutmix`` (when kornia is
  installed): `baselines.render_contender`, the same jobs as test_bench_render.py; the timm,
  torchvision and kornia ones make B outputs, not B + B/4.
- ``reference``: mlic-pipe's torch reference renderer on the GPU.
- ``kernel``: ``mlic_pipe.kernels.render`` from the host plan (includes packing it and its copy),
  autotuned (the first call, outside the timing).

Bytes moved = `baselines.bytes_moved`: the uint8 input read once + the output written once.
extra_info records outputs/s, GB/s, the ratio to ``published`` run the same way (fresh or reused
outputs) and, for ``kernel``, the fraction of ``copy`` bandwidth (reused outputs, as the copy's) and
the speed-up per output image over the fastest other contender of the same allocation. Targets (the GPU issue):
>= 85% of copy bandwidth at B=64, S=448, bf16 (70% the floor), >= 20x published, >= 5x the fastest peer.

Run on a GPU: pytest benchmarks/test_bench_kernel.py --benchmark-only --benchmark-json out.json.
Without one it runs only in Triton's interpreter (``TRITON_INTERPRET=1``, as the GPU session's dry
run and the test suite's ``--tiny`` pass do): a rehearsal of the code, not a measurement.
"""
import numpy as np
import pytest
import torch

from mlic_pipe.kernels import INTERPRETED
from mlic_pipe.mix import SpliceMix, render, render_reference

from benchmarks.baselines import bytes_moved, copy_floor, render_contender
from benchmarks.common import measured, preset_name, record, synchronizer

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(DEVICE == "cpu" and not INTERPRETED,
                                reason="the kernel benchmark needs CUDA (or TRITON_INTERPRET=1 for a rehearsal)")

# (B, S); SpliceMix default: M = B // 4 mixed outputs
CASES = [(8, 48)] if preset_name() == "tiny" else [(64, 448), (128, 448), (64, 224), (128, 224)]
DTYPES = [torch.float32, torch.bfloat16]
# (contender, allocation): each both ways where its API allows (see `benchmarks.baselines`)
CONTENDERS = [("copy", "reused"), ("published", "fresh"), ("published", "reused"), ("reference", "fresh"),
              ("timm-cutmix", "fresh"), ("timm-cutmix", "reused"), ("tv2-cutmix", "fresh"), ("kornia-cutmix", "fresh"),
              ("kernel", "fresh"), ("kernel", "reused")]
PEERS = ("reference", "timm-cutmix", "tv2-cutmix", "kornia-cutmix")


def _contender(name, allocation, images, plan, size, dtype):
    """A zero-argument callable doing the contender's whole job once (caller syncs), and its output count."""
    if name == "kernel":
        out = torch.empty((plan.num_outputs, 3, size, size), dtype=dtype, device=DEVICE) if allocation == "reused" \
            else None
        return (lambda: render(images, plan, out_dtype=dtype, out=out, backend="triton")), plan.num_outputs
    if name == "reference":
        return (lambda: render_reference(images, plan, out_dtype=dtype)), plan.num_outputs
    if name == "copy":
        return copy_floor(bytes_moved(images, plan.num_outputs, dtype), DEVICE), plan.num_outputs
    return render_contender(name, allocation, images, plan, dtype, DEVICE)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@pytest.mark.parametrize("batch, size, dtype, name, allocation",
                         [(b, s, d, n, a) for b, s in CASES for d in DTYPES for n, a in CONTENDERS],
                         ids=[f"B{b}-S{s}-{_dtype_name(d)}-{n}-{a}" for b, s in CASES for d in DTYPES for n, a in CONTENDERS])
def test_gpu_render(benchmark, batch, size, dtype, name, allocation):
    benchmark.group = f"gpu render B={batch} S={size} uint8->{_dtype_name(dtype)} {DEVICE}"
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator).to(DEVICE)
    plan = SpliceMix().plan(batch, size, np.random.default_rng(0))
    run, outputs = _contender(name, allocation, images, plan, size, dtype)
    sync = synchronizer(DEVICE)
    run(), sync()  # compile / autotune outside the timing
    if name == "kernel":  # the figure is only worth something if the numbers are right
        tolerance = dict(atol=1e-5, rtol=0.0) if dtype == torch.float32 else dict(atol=1e-5, rtol=2.0**-7)
        torch.testing.assert_close(run().float(), render_reference(images, plan), **tolerance)
    rounds = 2 if preset_name() == "tiny" else 30
    benchmark.pedantic(lambda: (run(), sync()), rounds=rounds, warmup_rounds=1, iterations=1)

    moved = bytes_moved(images, plan.num_outputs, dtype)
    record(benchmark, baseline=name == "published", images=batch, outputs=outputs, allocation=allocation,
           device=DEVICE, nbytes=moved if name in ("kernel", "copy") else None, batch=batch, image_size=size,
           dtype=f"uint8->{_dtype_name(dtype)}", contender=name)
    if benchmark.stats is None or name != "kernel":  # --benchmark-disable: ran once untimed
        return
    group, median = benchmark.group, measured(benchmark.group, "kernel", allocation)
    copy = measured(group, "copy", "reused")
    if copy is not None and allocation == "reused":  # the copy writes into a kept buffer too
        benchmark.extra_info["fraction_of_copy"] = round(copy / median, 3)
    made = {"reference": outputs}  # the single-label peers make B images, the kernel and the reference B + B/4
    per_output = [m / made.get(n, batch) for n in PEERS if (m := measured(group, n, allocation)) is not None]
    if per_output:
        benchmark.extra_info["speedup_vs_fastest_other"] = round(min(per_output) / (median / outputs), 2)

"""The CPU render's compiler, chosen by measurement: numba (what `render` runs) vs torch.compile of a gather.

One group per (B, S) on the CPU, SpliceMix's default plan (grids with dropped cells), fresh outputs
for every contender (torch.compile's graph allocates its own), float32: the torch reference
renderer (baseline: what the CPU ran before), the compiled numba renderer (`render_cpu`, ``mlic-pipe-numba``) and
torch.compile (inductor, C++/OpenMP) of `benchmarks.compiled_gather.gather_splice`, the same
one-pass algorithm written as tensor algebra. ``first_call_s`` in the notes is what the first call
cost in this process: compiling (or, for numba, loading its disk cache). torch.compile needs a C++
compiler at run time; without one the group skips it.

Run: pytest benchmarks/test_bench_cpu_compilers.py --benchmark-only
"""
import shutil
import time

import numpy as np
import pytest
import torch

from mlic_pipe.mix import SpliceMix, render_reference
from mlic_pipe.mix.cpu_render import AVAILABLE, render_cpu
from mlic_pipe.mix.settings import IMAGENET_MEAN, IMAGENET_STD

from benchmarks.common import preset, record
from benchmarks.compiled_gather import gather_splice, splice_inputs

CONTENDERS = ("reference", "mlic-pipe-numba", "torch-compile")
_compiled = {}


def _inputs(batch: int, size: int):
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return images, SpliceMix().plan(batch, size, np.random.default_rng(0))


def _contender(name: str, images: torch.Tensor, plan):
    if name == "reference":
        return lambda: render_reference(images, plan)
    if name == "mlic-pipe-numba":
        if not AVAILABLE:
            pytest.skip("numba is not installed")
        return lambda: render_cpu(images, plan)
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile's C++ backend needs a C++ compiler at run time")
    compiled = _compiled.setdefault("gather", torch.compile(gather_splice, dynamic=False))
    args = splice_inputs(plan, IMAGENET_MEAN, IMAGENET_STD)
    return lambda: compiled(images, *args)


@pytest.mark.parametrize("name", CONTENDERS)
@pytest.mark.parametrize("batch, size", [(b, s) for b, s in preset()["render"]])
def test_cpu_render_compilers(benchmark, batch, size, name):
    benchmark.group = f"cpu render compilers splicemix-default B={batch} S={size} float32 cpu"
    images, plan = _inputs(batch, size)
    run = _contender(name, images, plan)
    started = time.perf_counter()
    run()  # the first call: compile (or load the cache)
    first_call = time.perf_counter() - started
    benchmark.pedantic(run, rounds=preset()["render_rounds"], warmup_rounds=1, iterations=1)
    record(benchmark, contender=name, baseline=name == "reference", images=batch, outputs=plan.num_outputs,
           allocation="fresh", device="cpu", batch=batch, image_size=size, dtype=torch.float32, plan="splicemix-default")
    benchmark.extra_info["first_call_s"] = round(first_call, 2)


def test_the_gather_formulation_renders_what_the_reference_does():
    """Both compiled contenders do the reference's work (else the timing would mean nothing)."""
    images, plan = _inputs(8, 40)
    expected = render_reference(images, plan)
    got = gather_splice(images, *splice_inputs(plan, IMAGENET_MEAN, IMAGENET_STD))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)

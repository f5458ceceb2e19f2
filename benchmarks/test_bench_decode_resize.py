"""The CPU decode's resize: DALI's antialiased resize vs the compiled PIL resize, in the loader's own DALI graph.

Contenders (one group per size, CPU only: the GPU keeps DALI's resize): ``dali-resize`` (the baseline: the
loader's CPU graph, decode of a random window + DALI's antialiased resize + flip, uint8 out;
``DecodeSettings(resize="dali")``) and ``pil-resize`` (the same graph with PIL's bilinear resize compiled into
DALI's threads, the default; `mlic_pipe.loading.pil_resize`). Same files, windows, flips, threads
(`cpu_budget`) and output; only the resize differs. A round is one epoch of the demo data (12 batches of 32),
the pipeline build included, as the loader builds one per epoch; rounds alternate between the contenders.

Run: pytest benchmarks/test_bench_decode_resize.py --benchmark-only
"""
import functools

import numpy as np
import pytest

from mlic_pipe.loader import as_torch
from mlic_pipe.pipeline import DecodeSettings, ScheduledBatches, build_pipeline

from benchmarks.common import demo_images, preset, record
from benchmarks.test_bench_loader import cpu_budget

RESIZES = {"dali-resize": "dali", "pil-resize": "auto"}


@functools.cache
def _epoch(contender: str, size: int):
    index, batch = demo_images(), preset()["loader_batch"]
    settings = DecodeSettings(image_size=size, num_threads=cpu_budget(), resize=RESIZES[contender])
    steps = len(index.files) // batch
    order = np.random.default_rng(0).permutation(len(index.files))[: steps * batch]  # one order for both

    def run():
        pipe = build_pipeline([index.files[i] for i in order], order.tolist(), batch, settings, device_id=None,
                              seed=0)
        batches = ScheduledBatches(pipe, steps)  # as the loader takes them: no run past the last batch
        for _ in range(steps):
            images, _ = batches()
            as_torch(images)
    run()  # warm-up: the compiled resize loads here
    return run, steps * batch


@pytest.mark.parametrize("contender", list(RESIZES))
@pytest.mark.parametrize("round_", range(preset()["loader_rounds"]))
@pytest.mark.parametrize("size", preset()["loader"])
def test_decode_resize_epoch(benchmark, size, round_, contender):
    batch = preset()["loader_batch"]
    benchmark.group = f"decode resize demo B={batch} S={size} cpu"
    run, images = _epoch(contender, size)
    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
    record(benchmark, baseline=contender == "dali-resize", images=images, device="cpu", batch=batch, image_size=size,
           contender=contender, cpu_budget=f"{cpu_budget()} DALI threads")

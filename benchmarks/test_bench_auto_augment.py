"""Auto-augment: what each policy adds to the DALI stage, per decoded image, beside the same graph without it.

Contenders (one group per size and device): ``dali-crop`` (the baseline: the loader's DALI graph, decode +
random crop + resize + flip, uint8 out) and the same graph with ``rand-m9-n2-mstd0.5``, ``rand-m9-mstd0.5-inc1``,
``trivial``, ``auto`` and ``mldecoder`` (CutoutPIL + the randaugment package's RandAugment, as PIL computes them)
after the flip (`mlic_pipe.loading.auto_augment`). A round is one epoch of the demo
data, the pipeline build included (the loader builds one per epoch; conditionals make it longer), so
``ratio`` reads as what the stage costs a run. There is no competitor here: this is the stage's own cost, which
`mlic-pipe profile --auto-augment` reports too.

Run: pytest benchmarks/test_bench_auto_augment.py --benchmark-only
"""
import functools

import numpy as np
import pytest

from mlic_pipe.loader import as_torch
from mlic_pipe.loading.auto_augment import parse_auto_augment
from mlic_pipe.pipeline import DecodeSettings, build_pipeline

from benchmarks.common import demo_images, devices, preset, record, synchronizer
from benchmarks.test_bench_loader import cpu_budget

POLICIES = ["dali-crop", "rand-m9-n2-mstd0.5", "rand-m9-mstd0.5-inc1", "trivial", "auto", "mldecoder"]


@functools.cache
def _epoch(policy: str, device: str, size: int):
    index, batch = demo_images(), preset()["loader_batch"]
    settings = DecodeSettings(image_size=size, num_threads=cpu_budget(),
                              auto_augment=None if policy == "dali-crop" else parse_auto_augment(policy))
    steps = len(index.files) // batch
    sync = synchronizer(device)

    def run():
        order = np.random.default_rng().permutation(len(index.files))[: steps * batch]
        pipe = build_pipeline([index.files[i] for i in order], order.tolist(), batch, settings,
                              device_id=None if device == "cpu" else 0, seed=0)
        for _ in range(steps):
            images, _ = pipe.run()
            as_torch(images)
        sync()
    run()  # warm-up
    return run, steps * batch


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("size", preset()["loader"][:1])
@pytest.mark.parametrize("device", devices())
def test_auto_augment_epoch(benchmark, device, size, policy):
    batch = preset()["loader_batch"]
    benchmark.group = f"auto-augment demo B={batch} S={size} {device}"
    run, images = _epoch(policy, device, size)
    benchmark.pedantic(run, rounds=preset()["rounds"], warmup_rounds=0, iterations=1)
    record(benchmark, baseline=policy == "dali-crop", images=images, device=device, batch=batch, image_size=size,
           contender=policy, cpu_budget=f"{cpu_budget()} DALI threads")

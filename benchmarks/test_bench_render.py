"""Render: making the mixed, normalized batch from the decoded uint8 one, against what a user has.

One group per (plan, B, S, output dtype, device). Every contender starts from the same uint8 NHWC
batch on the device, normalizes it once the same way (`mlic_pipe.mix.normalize`, or our fused
render) and ends with a normalized NCHW batch in that dtype; each runs with fresh outputs and,
where its API allows, with reused ones (`benchmarks.baselines`), and a ratio is only taken between
runs of the same allocation. Plans:

- SpliceMix (``splicemix-<grid>``): the paper's default mode (``default``: 1x2 / 2x2 / 2x3 drawn per
  batch, cells dropped with p = 0.3), and each grid alone, without drops and with them (``1x2-1``,
  ``2x2-2``, ``2x3-3``; 2x3 has uneven cells at S = 224 and 448). Contenders: ``published`` (the
  baseline: SpliceMix's public op sequence) and ``mlic-pipe`` (`render`: the Triton kernel on CUDA,
  the compiled one-pass renderer on the CPU); both make B + B/4 outputs. On the CPU the default
  grid, CutMix and MixUp also time ``mlic-pipe-reference`` (the torch reference renderer, what the
  CPU ran before the compiled renderer): the before/after in one run.
- CutMix and MixUp: ``timm-<mix>`` (the baseline: timm ``Mixup`` in batch mode), ``tv2-<mix>``
  (torchvision.transforms.v2), ``kornia-<mix>`` (``RandomCutMixV2`` / ``RandomMixUpV2``; the
  ``bench`` extra installs kornia), ``mlic-pipe`` in place (B outputs, like the peers) and
  ``mlic-pipe-appended`` (B + B/4: the B sources kept, B/4 mixed ones appended).
- FMix: ``mlic-pipe`` and ``mlic-pipe-appended`` only: no peer renders FMix masks, so no ratio.
- ``device-copy`` (GPU only): `baselines.copy_floor` of the bytes mlic-pipe must move.
- ``output-copy`` (every device): `baselines.output_copy`, a copy of a tensor of the output's shape and
  dtype, the floor the report's ``x copy`` column reads every contender against.

The single-label peers get dummy class labels (they cannot take multi-hot targets). Throughput
counts outputs; ``ratio_per_output`` (the headline) divides by outputs, ``ratio_per_batch`` does
not. The statistic is the median of each contender's rounds (consecutive, after a warm-up call).
GB/s counts the uint8 input read plus the output written.

Run: pytest benchmarks/test_bench_render.py --benchmark-only [--full]
"""
import numpy as np
import pytest
import torch

from mlic_pipe.mix import CutMix, FMix, MixUp, SpliceMix, render

from benchmarks.baselines import ALLOCATIONS, bytes_moved, published_op_sequence, render_contender
from benchmarks.common import devices, preset, record, synchronizer

SPLICE_GRIDS = ["default", "1x2", "1x2-1", "2x2", "2x2-2", "2x3", "2x3-3"]
MASK_MIXES = {"cutmix": CutMix, "mixup": MixUp, "fmix": FMix}
PEERS = ("timm", "tv2", "kornia")
BEFORE_AFTER = ("splicemix-default", "cutmix", "mixup")  # groups that also time the torch reference (CPU only)


def plan_for(scenario: str, batch: int, size: int):
    """The MixPlan of a scenario ("splicemix-2x3-3", "cutmix", "fmix-appended"), seeded."""
    rng = np.random.default_rng(0)
    if scenario.startswith("splicemix-"):
        grid = scenario.removeprefix("splicemix-")
        return SpliceMix().plan(batch, size, rng) if grid == "default" else SpliceMix([grid]).plan(batch, size, rng)
    mix, _, layout = scenario.partition("-")
    return MASK_MIXES[mix](1.0, append=layout == "appended").plan(batch, size, rng)


def _contenders(scenario_group: str) -> list[tuple[str, str, bool]]:
    """(contender, plan scenario, is the baseline) of one group."""
    if scenario_group.startswith("splicemix-"):
        return [("published", scenario_group, True), ("mlic-pipe", scenario_group, False),
                ("device-copy", scenario_group, False), ("output-copy", scenario_group, False)] + \
            ([("mlic-pipe-reference", scenario_group, False)] if scenario_group in BEFORE_AFTER else [])
    peers = [] if scenario_group == "fmix" else [(f"{p}-{scenario_group}", scenario_group, p == "timm") for p in PEERS]
    return peers + [("mlic-pipe", scenario_group, False), ("mlic-pipe-appended", f"{scenario_group}-appended", False),
                    ("output-copy", scenario_group, False)] + \
        ([("mlic-pipe-reference", scenario_group, False)] if scenario_group in BEFORE_AFTER else [])


def _cases():
    settings = preset()
    groups = [f"splicemix-{grid}" for grid in SPLICE_GRIDS] + list(MASK_MIXES)
    return [(group, name, scenario, baseline, allocation, b, s, d, dev)
            for b, s in settings["render"] for d in settings["dtypes"] for dev in devices() for group in groups
            for name, scenario, baseline in _contenders(group) for allocation in ALLOCATIONS
            if not (allocation == "reused" and name.startswith(("tv2", "kornia")))
            and not (name == "device-copy" and (dev != "cuda" or allocation == "fresh"))
            and not (name == "output-copy" and allocation == "fresh")
            and not (name == "mlic-pipe-reference" and dev != "cpu")]


def _id(case):
    group, name, _, _, allocation, b, s, d, dev = case
    return f"{group}-{name}-{allocation}-B{b}-S{s}-{str(d).replace('torch.', '')}-{dev}"


@pytest.mark.parametrize("case", _cases(), ids=_id)
def test_render(benchmark, case):
    group, name, scenario, baseline, allocation, batch, size, dtype, device = case
    benchmark.group = f"render {group} B={batch} S={size} {str(dtype).replace('torch.', '')} {device}"
    plan = plan_for(scenario, batch, size)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).to(device)
    run, outputs = render_contender(name, allocation, images, plan, dtype, device)
    sync = synchronizer(device)
    run(), sync()  # warm-up: kernel compile / autotune, allocator
    benchmark.pedantic(lambda: (run(), sync()), rounds=preset()["render_rounds"], warmup_rounds=1, iterations=1)
    record(benchmark, baseline=baseline, images=batch, outputs=outputs, allocation=allocation, device=device,
           nbytes=bytes_moved(images, outputs, dtype), batch=batch, image_size=size, dtype=dtype, plan=scenario,
           contender=name)


def test_published_sequence_equals_mlic_pipe_where_both_partition_alike():
    """The baseline is a faithful rendering of the same plan (else its timing would mean nothing)."""
    size = 48  # divisible by 1, 2 and 3: both partition every grid the same way
    for grid in SPLICE_GRIDS:
        plan = plan_for(f"splicemix-{grid}", 8, size)
        images = torch.randint(0, 256, (8, size, size, 3), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(1))
        expected = render(images, plan, backend="reference")
        torch.testing.assert_close(published_op_sequence(images, plan), expected, atol=1e-5, rtol=0)
        out, normalized = torch.empty_like(expected), torch.empty((8, 3, size, size))
        torch.testing.assert_close(published_op_sequence(images, plan, out=out, normalized=normalized), expected,
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["cutmix", "mixup"])
def test_every_peer_returns_a_normalized_batch_of_b_images_in_the_dtype(kind):
    """The peers do the job they are timed on: B outputs, normalized, mixed, in the output dtype."""
    size, batch = 32, 8
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    plain = render(images, plan_for("splicemix-1x2", batch, size), backend="reference")[:batch]
    for peer in PEERS:
        for allocation in ALLOCATIONS:
            if allocation == "reused" and peer != "timm":
                continue
            if peer == "kornia":
                pytest.importorskip("kornia")
            run, outputs = render_contender(f"{peer}-{kind}", allocation, images, plan_for(kind, batch, size),
                                            torch.bfloat16, "cpu")
            result = run()
            assert outputs == batch and result.shape == (batch, 3, size, size) and result.dtype == torch.bfloat16
            assert not torch.equal(result.float(), plain.to(torch.bfloat16).float())  # mixed, not a copy
            assert abs(float(result.float().mean()) - float(plain.mean())) < 0.1  # and normalized like ours

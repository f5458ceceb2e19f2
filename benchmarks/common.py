"""What every benchmark shares: the size presets and one way to record extra_info and ratios.

Three presets, chosen on the command line (benchmarks/conftest.py):

- ``--tiny``: the smallest shapes that exercise every code path. CI runs the whole suite once this
  way under ``--benchmark-disable`` (tests/test_benchmarks_run.py), so the benchmarks never rot.
- quick (the default): the shapes users train at, few rounds; the CPU suite stays under 10 minutes.
- ``--full``: more batch sizes, image sizes and dtypes, and the larger models.

Each benchmark belongs to a *group* of contenders timed on the same inputs in the same run; one of
them is the group's baseline (what a user would otherwise pick). `record` stores the common
extra_info (outputs/s, GB/s where bytes are countable, device name, shapes, dtype, allocation) and,
once both are known, the contender's speed-up over the baseline run with the same allocation, per
output image (``ratio_per_output`` = ``ratio_to_baseline``) and per batch (``ratio_per_batch``); the
statistic is the median over the contender's rounds (`STATISTIC`), with their spread.
"""
from __future__ import annotations

import statistics

import numpy as np
import torch

__all__ = ["PRESETS", "STATISTIC", "demo_images", "device_name", "devices", "measured", "preset", "record",
           "synchronizer"]

PRESETS = {
    "tiny": dict(render=[(8, 48)], dtypes=[torch.float32, torch.bfloat16], masks=[(8, 32)], loader=[32], loader_batch=8,
                 loader_images=16, step_models=["resnet18"], step=(8, 32), heads=[(2, 64, 4)], rounds=1,
                 render_rounds=1, loader_rounds=1),
    "quick": dict(render=[(32, 224), (32, 448)], dtypes=[torch.float32], masks=[(32, 224), (32, 448)],
                  loader=[224, 448], loader_batch=32, loader_images=None, step_models=["resnet50"], step=(8, 224),
                  heads=[(32, 2048, 14)], rounds=3, render_rounds=5, loader_rounds=10),
    "full": dict(render=[(32, 224), (32, 448), (128, 224), (64, 448)], dtypes=[torch.float32, torch.bfloat16],
                 masks=[(32, 224), (32, 448), (128, 448)], loader=[224, 448], loader_batch=32, loader_images=None,
                 step_models=["resnet50", "resnet101"], step=(32, 448), heads=[(32, 2048, 14), (64, 2048, 14)],
                 rounds=5, render_rounds=9, loader_rounds=15),
}
_selected = {"name": "quick"}
_rounds: dict[tuple[str, str, str], list[float]] = {}  # (group, contender, allocation) -> round seconds, this session
_outputs: dict[tuple[str, str, str], int] = {}
_baseline_of: dict[str, str] = {}  # group -> its baseline contender
_infos: dict[tuple[str, str, str], list[dict]] = {}  # the extra_info dicts recorded for a key, to fill in ratios

STATISTIC = "median"  # of every round of a contender in this session (interleaved rounds where a group has them)
def preset() -> dict:
    return PRESETS[_selected["name"]]


def demo_images():
    """The demo training set, cut to the preset's ``loader_images`` (the loader benchmarks' data)."""
    from mlic_pipe.datasets import load

    index = load("demo")
    limit = preset()["loader_images"]
    return index if limit is None else index.subset(np.arange(len(index)) < limit)


def preset_name() -> str:
    return _selected["name"]


def select(name: str) -> None:
    _selected["name"] = name


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def synchronizer(device: str):
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def measured(group: str, contender: str, allocation: str = "n/a") -> float | None:
    """Median seconds of `contender` in `group` over its rounds so far in this session, else None."""
    times = _rounds.get((group, contender, allocation))
    return statistics.median(times) if times else None


def record(benchmark, *, contender: str, baseline: bool, images: int, device: str, outputs: int | None = None,
           allocation: str = "n/a", nbytes: int | None = None, **shape) -> None:
    """Fill `benchmark.extra_info` after a timed run; a no-op under --benchmark-disable (nothing was timed).

    Args:
        images: images read per call (a batch); outputs: images made per call (default `images`:
            SpliceMix makes B + B/4 from B). Throughput and ``ratio_per_output`` count outputs.
        allocation: "fresh" (the output is allocated by each call), "reused" (written into a buffer
            kept across calls) or "n/a". Ratios are only taken against the baseline run the same way.

    Every round of a contender in this session counts (a group whose rounds are interleaved records
    one round per test), so the figures are the median over all of them, with their spread; the
    latest entry of each contender carries the final values.
    """
    if benchmark.stats is None:
        return
    stats = benchmark.stats.stats
    group, outputs = benchmark.group, outputs or images
    key = (group, contender, allocation)
    _rounds.setdefault(key, []).extend(getattr(stats, "sorted_data", None) or [stats.median])
    _outputs[key] = outputs
    info = benchmark.extra_info
    info.update(contender=contender, device=device_name(device), baseline=baseline, allocation=allocation,
                images_per_batch=images, outputs=outputs, statistic=STATISTIC,
                **{k: (str(v).replace("torch.", "") if isinstance(v, torch.dtype) else v) for k, v in shape.items()})
    if nbytes is not None:
        info["bytes"] = int(nbytes)
    _infos.setdefault(key, []).append(info)
    if baseline:
        _baseline_of[group] = contender
    for other in [k for k in _infos if k[0] == group]:  # this round may complete others' ratios too
        _fill(other)


def _fill(key: tuple[str, str, str]) -> None:
    group, contender, allocation = key
    times = _rounds[key]
    median = statistics.median(times)
    base_key = (group, _baseline_of.get(group), allocation)
    for info in _infos[key][-1:]:
        info.update(median_s=median, rounds=len(times), spread_s=[min(times), max(times)],
                    images_per_s=round(_outputs[key] / median, 1))
        if "bytes" in info:
            info["GB_per_s"] = round(info["bytes"] / median / 1e9, 2)
        if base_key in _rounds:
            base = statistics.median(_rounds[base_key])
            info["ratio_per_batch"] = round(base / median, 3)
            info["ratio_per_output"] = round((base / _outputs[base_key]) / (median / _outputs[key]), 3)
            info["ratio_to_baseline"] = info["ratio_per_output"]

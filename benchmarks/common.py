"""What every benchmark shares: the size presets and one way to record extra_info and ratios.

Three presets, chosen on the command line (benchmarks/conftest.py):

- ``--tiny``: the smallest shapes that exercise every code path. CI runs the whole suite once this
  way under ``--benchmark-disable`` (tests/test_benchmarks_run.py), so the benchmarks never rot.
- quick (the default): the shapes users train at, few rounds; the CPU suite stays under 10 minutes.
- ``--full``: more batch sizes, image sizes and dtypes, and the larger models.

Each benchmark belongs to a *group* of contenders timed on the same inputs in the same run; one of
them is the group's baseline (what a user would otherwise pick). `record` stores the common
extra_info (images/s, GB/s where bytes are countable, device name, shapes, dtype) and, once both are
known, the contender's speed-up over the baseline (``ratio_to_baseline`` = baseline time / its time).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["PRESETS", "demo_images", "device_name", "devices", "measured", "preset", "record", "synchronizer"]

PRESETS = {
    "tiny": dict(render=[(8, 48)], dtypes=[torch.float32, torch.bfloat16], masks=[(8, 32)], loader=[32], loader_batch=8,
                 loader_images=16, step_models=["resnet18"], step=(8, 32), heads=[(2, 64, 4)], rounds=1),
    "quick": dict(render=[(32, 224), (32, 448)], dtypes=[torch.float32], masks=[(32, 224), (32, 448)],
                  loader=[224, 448], loader_batch=32, loader_images=None, step_models=["resnet50"], step=(8, 224),
                  heads=[(32, 2048, 14)], rounds=3),
    "full": dict(render=[(32, 224), (32, 448), (128, 224), (64, 448)], dtypes=[torch.float32, torch.bfloat16],
                 masks=[(32, 224), (32, 448), (128, 448)], loader=[224, 448], loader_batch=32, loader_images=None,
                 step_models=["resnet50", "resnet101"], step=(32, 448), heads=[(32, 2048, 14), (64, 2048, 14)],
                 rounds=5),
}
_selected = {"name": "quick"}
_means: dict[tuple[str, str], float] = {}  # (group, contender) -> mean seconds, this session
_baselines: dict[str, float] = {}
_pending: dict[str, list] = {}


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


def measured(group: str, contender: str) -> float | None:
    """Mean seconds of `contender` in `group` if it was recorded earlier in this session, else None."""
    return _means.get((group, contender))


def record(benchmark, *, contender: str, baseline: bool, images: int, device: str, nbytes: int | None = None,
           **shape) -> None:
    """Fill `benchmark.extra_info` after a timed run; a no-op under --benchmark-disable (nothing was timed)."""
    if benchmark.stats is None:
        return
    mean = benchmark.stats.stats.mean
    _means[(benchmark.group, contender)] = mean
    info = benchmark.extra_info
    info.update(contender=contender, device=device_name(device), images_per_s=round(images / mean, 1),
                baseline=baseline,
                **{k: (str(v).replace("torch.", "") if isinstance(v, torch.dtype) else v) for k, v in shape.items()})
    if nbytes is not None:
        info["GB_per_s"] = round(nbytes / mean / 1e9, 2)
        info["bytes"] = int(nbytes)
    group = benchmark.group
    if baseline:
        _baselines[group] = mean
        info["ratio_to_baseline"] = 1.0
        for waiting_info, waiting_mean in _pending.pop(group, []):
            waiting_info["ratio_to_baseline"] = round(mean / waiting_mean, 2)
    elif group in _baselines:
        info["ratio_to_baseline"] = round(_baselines[group] / mean, 2)
    else:  # the baseline runs later in this session: filled in then
        _pending.setdefault(group, []).append((info, mean))

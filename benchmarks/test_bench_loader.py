"""Loader: one epoch of the demo data through MLICLoader vs the alternatives, same images, B=32, S=224 and 448.

Contenders (group per size and device), each given the same CPU budget (`cpu_budget`: DALI threads
= DataLoader worker processes = min(CPU count, 8); stated in extra_info):

- ``torch-dataloader`` (the baseline): what a performance-minded user writes around the papers'
  pipeline: ``torch.utils.data.DataLoader`` with persistent workers (and pinned memory on a GPU),
  each worker decoding with PIL in JPEG draft mode (DCT-domain downscaling, when the crop allows),
  RandomResizedCrop (scale 0.7-1.0) + flip on the PIL image, and sending uint8 (PILToTensor); the
  consumer moves the batch to the device, normalizes it once into a kept buffer, and applies the
  published SpliceMix op sequence into a kept output buffer, with the mixed targets.
- ``dali-bare``: the same DALI pipeline as ours with no mixing and no normalization (uint8 out): the
  ceiling (``overhead_vs_dali_bare`` on mlic-pipe's figure).
- ``dali-normalized``: the same DALI pipeline ending in ``fn.crop_mirror_normalize`` to float32 CHW with
  ImageNet's mean and std, as DALI's training examples end theirs: the same output dtype, layout and
  normalization as mlic-pipe's, in DALI's threads, without the mixing; so ``overhead_vs_dali_normalized``
  on mlic-pipe's figure is what mixing costs over DALI doing the same work otherwise.
- ``mlic-pipe``: MLICLoader with SpliceMix (DALI decode + crop + resize + flip, the render into its
  kept buffers, the mixed targets).

A round is a whole epoch (12 batches of 32: 384 images read; 480 outputs with SpliceMix's B/4 mixed
images, 384 for dali-bare), the loader's per-epoch pipeline build included (MLICLoader builds one
per epoch; the DataLoader's workers persist, as its docs advise). Rounds are interleaved: round r
of every contender runs before round r + 1 of any (one test per round and contender, in that
order), at least 10 in the quick preset, each contender warmed up by one untimed epoch; the figures
are the median over the rounds, with their spread. ``ratio_per_output`` counts outputs,
``ratio_per_batch`` epochs.

Run: pytest benchmarks/test_bench_loader.py --benchmark-only
"""
import functools
import math
import os

import numpy as np
import pytest
import torch

from mlic_pipe.loader import MLICLoader, as_torch
from mlic_pipe.mix import SpliceMix, mix_targets, normalize
from mlic_pipe.pipeline import DecodeSettings, ScheduledBatches, build_pipeline

from benchmarks.common import demo_images, devices, measured, preset, record, synchronizer
from benchmarks.baselines import published_splice

CONTENDERS = ["torch-dataloader", "dali-bare", "dali-normalized", "mlic-pipe"]
_RUNNERS: dict = {}  # (name, device, size) -> (run one epoch, images read, outputs made): built and warmed once


def cpu_budget() -> int:
    """DALI threads = DataLoader workers: the same CPU budget for both."""
    return min(os.cpu_count() or 1, 8)


class PILDataset(torch.utils.data.Dataset):
    """PIL decode in JPEG draft mode, torchvision's PIL transforms, uint8 out: the fast form of the usual dataset."""

    def __init__(self, index, size):
        from torchvision import transforms

        self.files, self.targets, self.size = index.files, torch.from_numpy(index.targets).float(), size
        self.transform = transforms.Compose([transforms.RandomResizedCrop(size, scale=(0.7, 1.0)),
                                             transforms.RandomHorizontalFlip(), transforms.PILToTensor()])

    def __len__(self):
        return len(self.files)

    def __getitem__(self, row):
        from PIL import Image

        with Image.open(self.files[row]) as image:
            # the smallest crop (area 0.7, aspect 4/3) keeps ~0.72 of the short side: decode at >= S / 0.72
            side = math.ceil(self.size / 0.72)
            image.draft("RGB", (side, side))
            return self.transform(image.convert("RGB")), self.targets[row]


def _mlic_pipe(index, device, batch, size):
    loader = MLICLoader(index, batch, image_size=size, mix="splicemix", device=device, num_threads=cpu_budget())

    def run():
        for images, targets in loader:
            pass
    steps = len(loader)
    return run, steps * batch, steps * (batch + batch // 4)


def _dali(index, device, batch, size, finish=None):
    """The loader's DALI pipeline (`build_pipeline`) for one epoch, batches taken as the loader takes them."""
    device_id = None if device == "cpu" else 0
    settings = DecodeSettings(image_size=size, num_threads=cpu_budget())
    steps = len(index.files) // batch

    def run():
        order = np.random.default_rng().permutation(len(index.files))[: steps * batch]
        pipe = build_pipeline([index.files[i] for i in order], order.tolist(), batch, settings,
                              device_id=device_id, seed=0, finish=finish)
        batches = ScheduledBatches(pipe, steps)  # no run past the last batch
        for _ in range(steps):
            images, _ = batches()
            as_torch(images)
        synchronizer(device)()
    return run, steps * batch, steps * batch


def _dali_normalized(index, device, batch, size):
    """`_dali` ending in crop_mirror_normalize to float32 CHW with the render's mean and std (in [0, 255] units)."""
    from nvidia.dali import fn, types

    from mlic_pipe.mix import RenderSettings

    render = RenderSettings()
    mean, std = [255 * m for m in render.mean], [255 * s for s in render.std]
    return _dali(index, device, batch, size, finish=lambda images: fn.crop_mirror_normalize(
        images, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std))


def _torch_dataloader(index, device, batch, size):
    loader = torch.utils.data.DataLoader(PILDataset(index, size), batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=cpu_budget(), persistent_workers=True,
                                         pin_memory=device == "cuda")
    mixer, rng = SpliceMix(), np.random.default_rng(0)
    normalized = torch.empty((batch, 3, size, size), device=device)
    out = torch.empty((batch + batch // 4, 3, size, size), device=device)

    def run():
        for images, targets in loader:
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            plan = mixer.plan(len(images), size, rng)
            published_splice(normalize(images.permute(0, 2, 3, 1), out=normalized), plan, out=out)
            mix_targets(targets, plan)
        synchronizer(device)()
    steps = len(loader)
    return run, steps * batch, steps * (batch + batch // 4)


def _runner(name, device, size):
    key = (name, device, size)
    if key not in _RUNNERS:
        build = {"mlic-pipe": _mlic_pipe, "dali-bare": _dali, "dali-normalized": _dali_normalized,
                 "torch-dataloader": _torch_dataloader}[name]
        run, images, outputs = build(_demo(), device, preset()["loader_batch"], size)
        run()  # warm-up: workers, pipeline, kernels
        _RUNNERS[key] = (run, images, outputs)
    return _RUNNERS[key]


@functools.cache
def _demo():
    return demo_images()


@pytest.mark.parametrize("name", CONTENDERS)
@pytest.mark.parametrize("round_", range(preset()["loader_rounds"]))
@pytest.mark.parametrize("size", preset()["loader"])
@pytest.mark.parametrize("device", devices())
def test_loader_epoch(benchmark, device, size, round_, name):
    batch = preset()["loader_batch"]
    benchmark.group = f"loader epoch demo B={batch} S={size} {device}"
    run, images, outputs = _runner(name, device, size)
    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
    record(benchmark, baseline=name == "torch-dataloader", images=images, outputs=outputs, device=device,
           batch=batch, image_size=size, images_per_epoch=images, round=round_, contender=name,
           cpu_budget=f"{cpu_budget()} DALI threads = {cpu_budget()} DataLoader workers")
    if benchmark.stats is not None and name == "mlic-pipe":
        for peer in ("dali-bare", "dali-normalized"):
            if measured(benchmark.group, peer) is not None:
                overhead = measured(benchmark.group, "mlic-pipe") / measured(benchmark.group, peer) - 1
                benchmark.extra_info[f"overhead_vs_{peer.replace('-', '_')}"] = round(overhead, 3)


@pytest.mark.parametrize("name", ["steady-batch", "rebuild"])
@pytest.mark.parametrize("size", preset()["loader"][:1])
@pytest.mark.parametrize("device", devices())
def test_pipeline_rebuild(benchmark, device, size, name):
    """What a new epoch's DALI pipeline costs (the loader builds one per epoch, and after a skip).

    ``rebuild`` = build the pipeline for an epoch's rows + its first batch; ``steady-batch`` (the
    baseline) = one batch of a running pipeline. extra_info ``rebuild_in_batches`` = their ratio.
    """
    from mlic_pipe.devices import dali_device_id, resolve_device
    from mlic_pipe.loading.order import RankRows
    from mlic_pipe.loading.stream import DecodeStream

    batch = preset()["loader_batch"]
    benchmark.group = f"pipeline rebuild demo B={batch} S={size} {device}"
    demo_index = _demo()
    settings = DecodeSettings(image_size=size, num_threads=cpu_budget())
    rows = np.arange(len(demo_index.files), dtype=np.int64)
    share = RankRows(rows, np.zeros(len(rows), dtype=bool))
    stream = DecodeStream(demo_index, batch, settings, dali_device_id(resolve_device(device)), 0, 0)
    sync = synchronizer(device)
    steps = len(rows) // batch
    state = {"left": 0}

    def fresh():  # untimed: a running pipeline with batches left (steady), or nothing built (rebuild)
        if name == "rebuild" or state["left"] == 0:
            stream.start(share, 0)
            stream.next() if name == "steady-batch" else None
            state["left"] = steps - 1

    def steady():
        stream.next()
        sync()
        state["left"] -= 1

    def rebuild():
        stream.start(share, 0)
        stream.next()
        sync()

    fresh(), (steady if name == "steady-batch" else rebuild)()  # warm-up
    benchmark.pedantic(steady if name == "steady-batch" else rebuild, setup=fresh,
                       rounds=preset()["rounds"] * 3, warmup_rounds=0, iterations=1)
    record(benchmark, baseline=name == "steady-batch", images=batch, device=device, batch=batch, image_size=size,
           contender=name)
    steady = measured(benchmark.group, "steady-batch")
    if benchmark.stats is not None and name == "rebuild" and steady is not None:
        rebuild = measured(benchmark.group, "rebuild")
        benchmark.extra_info["rebuild_in_batches"] = round(rebuild / steady, 2)
        benchmark.extra_info["rebuild_ms"] = round(1000 * rebuild, 1)

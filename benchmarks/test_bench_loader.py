"""Loader: one epoch of the demo data through MLICLoader vs the alternatives, same images, B=32, S=224 and 448.

Contenders (group per device):

- ``mlic-pipe``: MLICLoader with SpliceMix (DALI decode + crop + resize + flip, then the render:
  the torch reference on the CPU, the Triton kernel on a GPU) and the mixed targets.
- ``dali-bare``: the same DALI pipeline with no mixing, no normalization (uint8 out): the
  ceiling, and on a GPU the measure of mixing's overhead.
- ``torch-dataloader``: ``torch.utils.data.DataLoader`` with PIL decode + RandomResizedCrop
  (scale 0.7-1.0) + flip + ToTensor + Normalize in worker processes (2 on the CPU, 16 with a
  GPU), then the published SpliceMix op sequence on the batch: what the papers' code does.

Each round is a whole epoch (12 batches of 32: 384 images), pipeline start-up included; the
DataLoader keeps its workers between rounds (``persistent_workers``), which favours it.
extra_info: images/s (images read), ``ratio_to_baseline`` (speed-up over ``torch-dataloader``)
and, for mlic-pipe, ``overhead_vs_dali_bare``.

Run: pytest benchmarks/test_bench_loader.py --benchmark-only
"""
import numpy as np
import pytest
import torch

from mlic_pipe.loader import MLICLoader, as_torch
from mlic_pipe.mix import IMAGENET_MEAN, IMAGENET_STD, SpliceMix, mix_targets
from mlic_pipe.pipeline import DecodeSettings, build_pipeline

from benchmarks.common import demo_images, devices, measured, preset, record, synchronizer
from benchmarks.baselines import published_splice

CONTENDERS = ["torch-dataloader", "dali-bare", "mlic-pipe"]


class PILDataset(torch.utils.data.Dataset):
    """The usual PyTorch dataset of the published code: PIL decode and torchvision transforms, per sample."""

    def __init__(self, index, size):
        from torchvision import transforms

        self.files, self.targets = index.files, torch.from_numpy(index.targets).float()
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(size, scale=(0.7, 1.0)), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self):
        return len(self.files)

    def __getitem__(self, row):
        from PIL import Image

        with Image.open(self.files[row]) as image:
            return self.transform(image.convert("RGB")), self.targets[row]


def _epoch_runner(name, index, device, batch, size):
    """A zero-argument callable that runs one epoch and returns the number of images read."""
    threads = 2 if device == "cpu" else 8
    if name == "mlic-pipe":
        loader = MLICLoader(index, batch, image_size=size, mix="splicemix", device=device, num_threads=threads)

        def run():
            count = 0
            for images, targets in loader:
                count += batch
            return count
        return run
    if name == "dali-bare":
        device_id = None if device == "cpu" else 0
        settings = DecodeSettings(image_size=size, num_threads=threads)
        steps = len(index.files) // batch

        def run():
            order = np.random.default_rng().permutation(len(index.files))[: steps * batch]
            pipe = build_pipeline([index.files[i] for i in order], order.tolist(), batch, settings,
                                  device_id=device_id, seed=0)
            for _ in range(steps):
                images, _ = pipe.run()
                as_torch(images)
            if device == "cuda":
                torch.cuda.synchronize()
            return steps * batch
        return run
    workers = 2 if device == "cpu" else 16
    loader = torch.utils.data.DataLoader(PILDataset(index, size), batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=True,
                                         pin_memory=device == "cuda")
    mixer, rng = SpliceMix(), np.random.default_rng(0)

    def run():
        count = 0
        for images, targets in loader:
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            plan = mixer.plan(len(images), size, rng)
            published_splice(images, plan)
            mix_targets(targets, plan)
            count += len(images)
        if device == "cuda":
            torch.cuda.synchronize()
        return count
    return run


@pytest.fixture(scope="module")
def demo_index():
    return demo_images()


@pytest.mark.parametrize("name", CONTENDERS)
@pytest.mark.parametrize("size", preset()["loader"])
@pytest.mark.parametrize("device", devices())
def test_loader_epoch(benchmark, demo_index, device, size, name):
    batch = preset()["loader_batch"]
    benchmark.group = f"loader epoch demo B={batch} S={size} {device}"
    run = _epoch_runner(name, demo_index, device, batch, size)
    images = run()  # warm-up: workers, pipeline, kernels
    benchmark.pedantic(run, rounds=preset()["rounds"], warmup_rounds=0, iterations=1)
    record(benchmark, baseline=name == "torch-dataloader", images=images, device=device, batch=batch, image_size=size,
           images_per_epoch=images, contender=name)
    bare = measured(benchmark.group, "dali-bare")
    if benchmark.stats is not None and name == "mlic-pipe" and bare is not None:
        benchmark.extra_info["overhead_vs_dali_bare"] = round(benchmark.stats.stats.mean / bare - 1, 3)


@pytest.mark.parametrize("name", ["steady-batch", "rebuild"])
@pytest.mark.parametrize("size", preset()["loader"][:1])
@pytest.mark.parametrize("device", devices())
def test_pipeline_rebuild(benchmark, demo_index, device, size, name):
    """What a new epoch's DALI pipeline costs (the loader builds one per epoch, and after a skip).

    ``rebuild`` = build the pipeline for an epoch's rows + its first batch; ``steady-batch`` (the
    baseline) = one batch of a running pipeline. extra_info ``rebuild_in_batches`` = their ratio.
    """
    from mlic_pipe.devices import dali_device_id, resolve_device
    from mlic_pipe.loading.order import RankRows
    from mlic_pipe.loading.stream import DecodeStream

    batch = preset()["loader_batch"]
    benchmark.group = f"pipeline rebuild demo B={batch} S={size} {device}"
    threads = 2 if device == "cpu" else 8
    settings = DecodeSettings(image_size=size, num_threads=threads)
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
    steady_mean = measured(benchmark.group, "steady-batch")
    if benchmark.stats is not None and name == "rebuild" and steady_mean is not None:
        benchmark.extra_info["rebuild_in_batches"] = round(benchmark.stats.stats.mean / steady_mean, 2)
        benchmark.extra_info["rebuild_ms"] = round(1000 * benchmark.stats.stats.mean, 1)

"""`mlic-pipe profile`: what one training step costs, stage by stage, and augmentation's share of it.

Runs `MLICLoader` for a number of steps with a stage hook that times each stage (the loader's
named stages, also visible as `torch.profiler.record_function` ranges). Each stage ends with a
device sync, so on a GPU the stages do not overlap as they would in training: the split is exact,
the end-to-end rate is a slight underestimate. With a model, each step also runs its forward and
backward pass and an SGD step on the batch, so "augmentation's share of a step" is a measured
number rather than a claim.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.loader import STAGES, MLICLoader

__all__ = ["ProfileReport", "model_train_step", "profile_pipeline"]

STAGE_NAMES = {"dali": "read + decode + crop (DALI)", "plan": "plan (host)", "render": "render",
               "targets": "targets", "model": "model forward + backward"}


@dataclass
class ProfileReport:
    """Timings of a profile run; `format()` gives the table, `to_json()` the numbers."""

    data: str
    images: int
    classes: int
    device: str
    mix: str
    batch_size: int
    outputs_per_step: float
    image_size: int
    dtype: str
    steps: int
    warmup: int
    seconds: float
    model: str | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)
    renderer: str = ""
    render_first_call_s: float | None = None  # the compiled CPU renderer's first call: compile or cache load
    resize: str = ""  # the decode's resize (`_resize`)
    plan_kernels: str = ""  # the compiled CPU plan functions the mixer ran, and their first calls (`_plan_kernels`)
    auto_augment: str = ""
    auto_augment_ms: tuple[float, float] | None = None  # bare DALI ms per batch (with the policy, without it)

    @property
    def images_per_s(self) -> float:
        return self.steps * self.batch_size / self.seconds

    @property
    def augmentation_ms(self) -> float:
        return sum(self.stage_ms.get(stage, 0.0) for stage in ("plan", "render", "targets"))

    @property
    def step_ms(self) -> float:
        return sum(self.stage_ms.values())

    def format(self) -> str:
        mixed = self.outputs_per_step - self.batch_size
        lines = [f"mlic-pipe profile: {self.data} ({self.images} images, {self.classes} classes)",
                 f"  {self.mix}, B={self.batch_size} (+{mixed:g} mixed), S={self.image_size}, {self.dtype}, "
                 f"device {self.device}; {self.steps} steps timed after {self.warmup} warm-up",
                 "",
                 f"  {'stage':<30}{'ms/step':>10}{'share':>9}"]
        for stage, ms in self.stage_ms.items():
            name = STAGE_NAMES[stage] + (f" ({self.model})" if stage == "model" else "")
            lines.append(f"  {name:<30}{ms:>10.1f}{100 * ms / self.step_ms:>8.1f}%")
        lines.append(f"  {'total':<30}{self.step_ms:>10.1f}{100.0:>8.1f}%")
        lines += ["  (DALI reads and decodes ahead in its own threads: its row is the time a step waited for it;",
                  "   on a CPU they run at a lower priority, so the render goes first and the decode fills the rest)"
                  if self.device == "cpu" else "   the decode runs on the GPU beside the render)",
                  ""]
        if self.renderer:
            first = "" if self.render_first_call_s is None else \
                f"; its first call took {self.render_first_call_s:.1f} s (compiling once per machine, else loading it)"
            lines.append(f"  renderer: {self.renderer}{first}")
        if self.resize:
            lines.append(f"  resize: {self.resize}")
        if self.plan_kernels:
            lines.append(f"  plan: {self.plan_kernels}")
        if self.auto_augment_ms is not None:
            with_it, without = self.auto_augment_ms
            lines.append(f"  auto-augment {self.auto_augment}: +{with_it - without:.1f} ms per batch of DALI work "
                         f"(bare DALI, timed apart: {with_it:.1f} ms with it, {without:.1f} ms without); it runs in "
                         "DALI's threads, inside the first row")
        lines += [
                  f"  end to end: {self.images_per_s:.1f} images/s read "
                  f"({self.images_per_s * self.outputs_per_step / self.batch_size:.1f} outputs/s)",
                  f"  augmentation (plan + render + targets): {self.augmentation_ms:.1f} ms/step = "
                  f"{100 * self.augmentation_ms / self.step_ms:.1f}% of a "
                  + ("training step" if self.model else "data step (add --model resnet50 to include the model)")]
        return "\n".join(lines)

    def to_json(self) -> str:
        numbers = asdict(self)
        numbers.update(images_per_s=self.images_per_s, augmentation_ms=self.augmentation_ms, step_ms=self.step_ms)
        return json.dumps(numbers, indent=2)


def model_train_step(name: str, num_classes: int, device: torch.device, dtype: torch.dtype = torch.float32):
    """A function running forward + backward + SGD step of a randomly initialised timm model.

    The model half of `mlic-pipe profile --model` and of the step-share benchmark: BCE on the
    batch's targets; autocast in the images' `dtype` when it is a half type, else bf16 autocast on
    CUDA and float32 on the CPU (the weights stay float32, as under AMP).
    """
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=num_classes).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    half = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    autocast = torch.autocast(device.type, dtype=half, enabled=device.type == "cuda" or dtype != torch.float32)

    def step(images: torch.Tensor, targets: torch.Tensor) -> None:
        with autocast:
            loss = loss_fn(model(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def _timed_steps(stream, steps: int, train_step, sync, progress: bool) -> tuple[float, list[int], list[float]]:
    """Run `steps` steps of `stream` (and the model); wall seconds, outputs per step, model seconds per step."""
    from tqdm import tqdm

    model_seconds, outputs = [], []
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc="profiling", unit="step", disable=not progress):
        images, targets = next(stream)
        outputs.append(len(images))
        if train_step:
            begin = time.perf_counter()
            train_step(images, targets)
            sync()
            model_seconds.append(time.perf_counter() - begin)
    return time.perf_counter() - start, outputs, model_seconds


def profile_pipeline(index: LabelIndex, *, data: str = "demo", batch_size: int = 32, image_size: int = 448,
                     mix="splicemix", device="auto", steps: int = 20, warmup: int = 2, model: str | None = None,
                     dtype: torch.dtype = torch.float32, num_threads: int | None = None, seed: int = 0,
                     on_error: str = "raise", progress: bool = True, auto_augment: str | None = None,
                     render_threads: int | None = None) -> ProfileReport:
    """Time `steps` training steps (after `warmup` untimed ones) of the loader, optionally with a model.

    The loader cycles over epochs until enough steps ran, so small datasets work with any `steps`. With
    `auto_augment`, its cost is also timed apart, as bare DALI batches with and without it (`_stage_cost`).
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    loader = MLICLoader(index, batch_size, image_size=image_size, mix=mix, device=device, dtype=dtype,
                        num_threads=num_threads, seed=seed, on_error=on_error, auto_augment=auto_augment,
                        render_threads=render_threads)
    if len(loader) == 0:
        raise ValueError(f"the dataset has {len(index)} images, fewer than one batch of {batch_size}")
    train_step = model_train_step(model, index.num_classes, loader.device, dtype) if model else None
    sync = torch.cuda.synchronize if loader.device.type == "cuda" else (lambda: None)

    def batches():
        while True:
            yield from loader

    stream = batches()
    for _ in range(warmup):  # pipeline build, kernel autotuning, allocator warm-up
        images, targets = next(stream)
        if train_step:
            train_step(images, targets)
    sync()
    timings: dict[str, list[float]] = {stage: [] for stage in STAGES}

    def stage_done(stage: str, start: float) -> None:  # each stage ends with a device sync here
        sync()
        timings[stage].append(time.perf_counter() - start)
    loader.stage_hook = stage_done
    seconds, outputs, model_seconds = _timed_steps(stream, steps, train_step, sync, progress)
    loader.stage_hook = None
    stage_ms = {stage: 1000 * float(np.mean(timings[stage])) for stage in STAGES}
    if train_step:
        stage_ms["model"] = 1000 * float(np.mean(model_seconds))
    mixer = loader.mixer
    renderer, first_call = _renderer(loader)
    resize = _resize(loader.device, loader.settings)
    policy = loader.settings.auto_augment
    policy_ms = None if policy is None else _stage_cost(index, loader, steps)
    return ProfileReport(data=data, images=len(index), classes=index.num_classes, device=str(loader.device),
                         mix=repr(mixer) if mixer is not None else "no mixing", batch_size=batch_size,
                         outputs_per_step=float(np.mean(outputs)), image_size=image_size,
                         dtype=str(dtype).replace("torch.", ""), steps=steps, warmup=warmup, seconds=seconds,
                         model=model, stage_ms=stage_ms, renderer=renderer, render_first_call_s=first_call,
                         resize=resize, plan_kernels=_plan_kernels(mixer),
                         auto_augment=str(policy or ""), auto_augment_ms=policy_ms)


def _stage_cost(index: LabelIndex, loader: MLICLoader, steps: int) -> tuple[float, float]:
    """Bare DALI ms per batch over the same files, with the loader's auto-augment and without it.

    Each pipeline runs alone (one after the other: DALI decodes ahead in its threads, so interleaved runs would
    time the other pipeline's prefetching), a warm-up batch first, then the mean of `steps` (at least 8).
    """
    from dataclasses import replace

    from mlic_pipe.devices import dali_device_id
    from mlic_pipe.pipeline import build_pipeline

    steps = max(steps, 8)
    count = min(len(index), loader.batch_size * (steps + 1))
    rows = list(range(count))
    read_encoded = getattr(index, "read_encoded", None)  # images held as bytes (shards, Arrow tables, tar members)
    files = None if read_encoded else [index.files[r] for r in rows]
    sync = torch.cuda.synchronize if loader.device.type == "cuda" else (lambda: None)
    per_batch = []
    for settings in (loader.settings, replace(loader.settings, auto_augment=None)):
        pipe = build_pipeline(files, rows, loader.batch_size, settings, device_id=dali_device_id(loader.device),
                              seed=loader.seed, read_encoded=read_encoded)
        pipe.run()  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(steps):  # past the files, the reader wraps around: still whole batches
            pipe.run()
        sync()
        per_batch.append(1000 * (time.perf_counter() - start) / steps)
        del pipe
    return per_batch[0], per_batch[1]


def _renderer(loader: MLICLoader) -> tuple[str, float | None]:
    """Which renderer `render` used for `loader`, on how many threads, and what the compiled CPU renderer's first
    call cost."""
    from mlic_pipe.mix import cpu_render
    from mlic_pipe.mix.dispatch import kernels

    device = loader.device
    if device.type == "cuda":
        return ("the fused Triton kernel" if kernels is not None else "the torch reference (triton missing)"), None
    if not cpu_render.AVAILABLE:
        return "the torch reference (numba missing: pip install numba for the compiled renderer)", None
    first = max(cpu_render.compile_seconds().values(), default=None)
    threads = loader.render_threads
    return (f"the compiled one-pass CPU renderer (numba), on {threads} thread{'s' if threads > 1 else ''} "
            "(torch's thread count, or --render-threads)"), first


def _plan_kernels(mixer) -> str:
    """The compiled CPU plan functions `mixer` (or a schedule's mixers) runs, and their first calls in this process."""
    from mlic_pipe.mix import FMix, SaliencyMix, cpu_saliency, normals, rank_ramp

    mixers = getattr(mixer, "mixers", [mixer])
    used = [(name, sum(seconds.values())) for kind, name, seconds in (
        (FMix, "FMix's normals and ranks", {**normals.compile_seconds(), **rank_ramp.compile_seconds()}),
        (SaliencyMix, "SaliencyMix's saliency maps", cpu_saliency.compile_seconds()))
        if seconds and any(isinstance(m, kind) for m in mixers)]
    return "; ".join(f"{name} compiled (numba), first call {first:.1f} s (compiling once per machine, else loading it)"
                     for name, first in used)


def _resize(device: torch.device, settings) -> str:
    """Which resize the decode ran (`DecodeSettings` `settings`), and what compiling the CPU one cost this process."""
    if not settings.resizes_with_pil(device.type == "cuda"):
        return "DALI's" + (" (no antialiasing)" if not settings.antialias else "")
    from mlic_pipe.loading import pil_resize

    if pil_resize.available() is not None:
        return f"DALI's (the compiled PIL resize cannot be built: {pil_resize.available()})"
    seconds = sum(pil_resize.compile_seconds().values())
    return (f"PIL's bilinear, bit for bit, compiled into DALI's threads (numba); {seconds:.1f} s to compile or "
            "load it")

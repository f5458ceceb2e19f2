"""DALI pipeline definitions: read, decode + crop, resize, flip; the output stays uint8 NHWC.

Normalization, mixing and the cast happen later in one render pass, so DALI's job ends at the
smallest tensor that still holds the image: uint8 (B, S, S, 3).

The file reader is given the files of *one rank's share of one epoch, already in order*, with the
dataset row of each file as its label. The loader decides that order from (seed, epoch)
(`mlic_pipe.loading.order`). The crop and flip of each sample are drawn on the host from (seed,
epoch, row) and fed to the pipeline (an external source), so a sample decodes to the same pixels
whichever rank reads it and however the pipeline was rebuilt or resumed. That is what makes an
epoch replayable on a fresh process (``set_epoch``), resumable mid-epoch and sharding exact;
DALI's own shuffle is a buffer shuffle whose order depends on the pipeline's history, its sharding
does not re-partition the data between epochs, and its random crop depends on the pipeline's
history, so none is used.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types
from nvidia.dali import Pipeline, pipeline_def

from mlic_pipe.errors import ConfigError
from mlic_pipe.loading.auto_augment import AutoAugment, apply_auto_augment
from mlic_pipe.loading.crops import CropSettings, multiscale_windows
from mlic_pipe.loading.diagnose import what_is_wrong
from mlic_pipe.loading.graph_draws import table_lookup, uniform_index
from mlic_pipe.loading.order import sample_uniforms
from mlic_pipe.loading.thread_priority import build_at_lower_priority

__all__ = ["DRAWS", "DecodeSettings", "ScheduledBatches", "build_decode", "build_pipeline", "crop_window",
           "decode_augment", "prefetch_depth", "probe_decode", "probe_encoded"]


@dataclass(frozen=True)
class DecodeSettings:
    """How images are decoded and augmented before the render.

    Attributes:
        image_size: S, the side of the square output.
        train: flips (and, by default, the random crop) for training; a plain resize for evaluation.
        crop: the crop mode and its arguments (`mlic_pipe.loading.crops`); None: "random" when training,
            "squash" (the whole image resized) otherwise.
        flip_prob: probability of a horizontal flip (training only).
        auto_augment: RandAugment / TrivialAugment / AutoAugment after the flip (`mlic_pipe.loading.auto_augment`),
            training only.
        num_threads: DALI CPU worker threads.
        prefetch: DALI prefetch queue depth (batches decoded ahead).
        hw_decoder_load: share of JPEGs sent to the GPU's hardware decoder (A100/H100), GPU only.
        decode_nice: how many nice levels below the caller DALI's threads run in a CPU pipeline, so the render
            and the model the step waits on get the cores first and the decode every cycle they leave
            (`mlic_pipe.loading.thread_priority`; Linux); 0 keeps the caller's priority.
        antialias: antialiased downscaling in the resize: on the CPU PIL's bilinear resize, bit for bit
            (`mlic_pipe.loading.pil_resize`, as the papers' loaders resize), on the GPU DALI's; False: DALI's
            plain bilinear resize on either.
        resize: "auto" (as `antialias` says) or "dali": DALI's antialiased resize on the CPU too (the GPU's
            pixels, at about half the CPU speed; the benchmarks' baseline).
    """

    image_size: int = 448
    train: bool = True
    crop: CropSettings | None = None
    auto_augment: AutoAugment | None = None
    flip_prob: float = 0.5
    num_threads: int = 2
    prefetch: int = 2
    hw_decoder_load: float = 0.65
    antialias: bool = True
    resize: str = "auto"
    decode_nice: int = 10

    @property
    def cropping(self) -> CropSettings:
        """The crop in effect (`crop`, or the default for `train`)."""
        return self.crop if self.crop is not None else CropSettings(mode="random" if self.train else "squash")

    @property
    def policy(self) -> AutoAugment | None:
        """The auto-augment in effect: `auto_augment` when training, else None."""
        return self.auto_augment if self.train else None

    def resizes_with_pil(self, gpu: bool) -> bool:
        """Whether the graph resizes with the compiled PIL resize (`mlic_pipe.loading.pil_resize`): on the CPU,
        antialiased, `resize` "auto" (where it cannot be built, DALI's resize stands in, with a warning)."""
        return self.antialias and self.resize == "auto" and not gpu

    @property
    def needs_draws(self) -> bool:
        """Whether samples take per-sample uniforms (a random window, or a flip)."""
        return self.cropping.needs_draws or (self.train and self.flip_prob > 0)

    def validate(self) -> None:
        self.cropping.validate()
        if not 0 <= self.flip_prob <= 1:
            raise ConfigError(f"{{flip_prob}} must be within [0, 1], got {self.flip_prob}")
        if self.num_threads < 1:
            raise ConfigError(f"{{num_threads}} must be at least 1, got {self.num_threads}")
        if self.prefetch < 1:
            raise ConfigError(f"{{prefetch}} must be at least 1, got {self.prefetch}")
        if not 0 <= self.hw_decoder_load <= 1:
            raise ConfigError(f"{{hw_decoder_load}} must be within [0, 1], got {self.hw_decoder_load}")
        if self.resize not in ("auto", "dali"):
            raise ConfigError(f"{{resize}} must be 'auto' or 'dali', got {self.resize!r}")
        if not 0 <= self.decode_nice <= 19:
            raise ConfigError(f"{{decode_nice}} must be within [0, 19], got {self.decode_nice}")


DRAWS = 5  # per-sample uniforms: crop area (multiscale: the window), crop aspect, crop x, crop y, flip


AUTO_AUGMENT_STREAM = 0x41554741  # keeps a row's auto-augment draws apart from its crop draws


class _Draws:
    """The external source of per-sample draws: batch i holds the draws of rows[i*B:(i+1)*B].

    Each row's draws come from (seed, epoch, row) (`sample_uniforms`), never from the pipeline's
    history, so a rebuilt or resumed pipeline crops and flips every sample as the first one did.
    """

    def __init__(self, rows: list[int], batch_size: int, seed: int, epoch: int, count: int = DRAWS):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.batch_size, self.seed, self.epoch, self.count = batch_size, seed, epoch, count

    def __call__(self, info) -> np.ndarray:
        return sample_uniforms(self.seed, self.epoch, _batch_rows(self.rows, info.iteration, self.batch_size),
                               self.count)


def _batch_rows(rows: np.ndarray, iteration: int, batch_size: int) -> np.ndarray:
    """The rows of batch `iteration`, padded to `batch_size` as DALI's file reader pads (the last row repeated).

    A pipeline run past the end (``Pipeline.run`` prefetches; the loader's `ScheduledBatches` does not) gets
    whole batches of the last row there; the loader cuts the padding off.
    """
    batch = rows[iteration * batch_size:(iteration + 1) * batch_size]
    return np.concatenate([batch, np.repeat(rows[-1:], batch_size - len(batch))])


def _random_window(width, height, draws, crop: CropSettings):
    """Anchor and shape (x, y order, pixels) of a random-area, random-aspect crop, computed in the pipeline.

    The crop covers ``area ~ U(scale)`` of the image at ``log aspect ~ U(log ratio)``, clamped to the
    image, at a uniform position: one draw per sample, no rejection loop.
    """
    low, high = crop.scale
    log_low, log_high = (math.log(r) for r in crop.ratio)
    area = height * width * (low + draws[0] * (high - low))
    aspect = dmath.exp(log_low + draws[1] * (log_high - log_low))
    crop_w = dmath.min(dmath.sqrt(area * aspect), width)
    crop_h = dmath.min(dmath.sqrt(area / aspect), height)
    anchor = fn.stack(draws[2] * (width - crop_w), draws[3] * (height - crop_h))
    return anchor, fn.stack(crop_w, crop_h)


def _multiscale_window(width, height, draws, crop: CropSettings, image_size: int):
    """The MultiScaleCrop window that ``draws[0]`` picks from `multiscale_windows`' table, in pixels."""
    table = multiscale_windows(image_size, crop.multiscale_base(image_size), crop.scales, crop.max_distort)
    pick = uniform_index(draws[0], len(table))
    x0, y0, w, h = (table_lookup(pick, table[:, k]) for k in range(4))
    return fn.stack(x0 * width, y0 * height), fn.stack(w * width, h * height)


def _center_window(width, height, crop: CropSettings, image_size: int):
    """timm's evaluation crop as a window: a square of `center_side` of the shorter side, centred."""
    side = dmath.min(width, height) * crop.center_side(image_size)
    return fn.stack((width - side) * 0.5, (height - side) * 0.5), fn.stack(side, side)


def crop_window(encoded, draws, settings: DecodeSettings):
    """Anchor and shape (x, y order, pixels) of the sample's window, or None for the whole image (squash)."""
    crop = settings.cropping
    if crop.mode == "squash":
        return None
    shape = fn.peek_image_shape(encoded, dtype=types.FLOAT)
    height, width = shape[0], shape[1]
    if crop.mode == "random":
        return _random_window(width, height, draws, crop)
    if crop.mode == "multiscale":
        return _multiscale_window(width, height, draws, crop, settings.image_size)
    return _center_window(width, height, crop, settings.image_size)


def decode_augment(encoded, uniforms, settings: DecodeSettings, gpu: bool, policy_uniforms=None):
    """Decode `encoded` to uint8 S x S RGB: the crop's window (`crop_window`), resized, flipped when training.

    `uniforms` (`DRAWS` per sample) is None when nothing is random (`settings.needs_draws`); `policy_uniforms`
    (`auto_augment.draws` per sample) decide the auto-augment ops. Shared by the file and the shard pipelines.
    """
    decoder = "mixed" if gpu else "cpu"
    gpu_args = {"hw_decoder_load": settings.hw_decoder_load} if gpu else {}
    size = settings.image_size
    window = crop_window(encoded, uniforms, settings)
    if window is None:
        images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB, **gpu_args)
    else:
        images = fn.decoders.image_slice(encoded, *window, device=decoder, output_type=types.RGB,
                                         normalized_anchor=False, normalized_shape=False, axis_names="WH", **gpu_args)
    images = _resize(images, settings, gpu)
    if settings.train and settings.flip_prob > 0:
        images = fn.flip(images, horizontal=fn.cast(uniforms[4] < settings.flip_prob, dtype=types.INT32))
    if settings.policy is not None:
        images = apply_auto_augment(images, policy_uniforms, settings.policy, size)
    return images


def build_decode(pipe: Pipeline, settings: DecodeSettings, gpu: bool) -> None:
    """Build `pipe`, a graph of `decode_augment`: on the CPU, its threads below the caller's priority.

    What the graph's compiled CPU operators need (the resize, the randaugment package's policy) is imported and
    compiled first: importing numba and DALI's numba plugin starts threads of their own, which a build would
    otherwise take for DALI's (`mlic_pipe.loading.thread_priority`).
    """
    if settings.resizes_with_pil(gpu):
        from mlic_pipe.loading import pil_resize

        pil_resize.available()  # cached: only a process's first call does work
    if not gpu and settings.policy is not None and settings.policy.kind == "pypi":
        from mlic_pipe.loading import pil_randaugment

        pil_randaugment.available()
    build_at_lower_priority(pipe, 0 if gpu else settings.decode_nice)


def _resize(images, settings: DecodeSettings, gpu: bool):
    """The window to S x S: on the CPU PIL's bilinear resize (`pil_resize`: the papers' resize, about twice as
    fast as DALI's there); on the GPU, without antialiasing, or with `resize` "dali", DALI's."""
    if settings.resizes_with_pil(gpu):
        from mlic_pipe.loading.pil_resize import pil_resize

        resized = pil_resize(images, settings.image_size)
        if resized is not None:
            return resized
    size = settings.image_size
    return fn.resize(images, resize_x=size, resize_y=size, antialias=settings.antialias)


class _Encoded:
    """The external source of encoded images by row (`EncodedIndex.read_encoded`): batch i holds rows[i*B:(i+1)*B]."""

    def __init__(self, rows: list[int], batch_size: int, read_encoded):
        self.rows, self.batch_size, self.read_encoded = np.asarray(rows, dtype=np.int64), batch_size, read_encoded

    def __call__(self, info):
        rows = _batch_rows(self.rows, info.iteration, self.batch_size)
        return self.read_encoded(rows), [np.array([row], dtype=np.int32) for row in rows]


def _decode_graph(files, rows, settings: DecodeSettings, gpu: bool, draws: _Draws | None,
                  policy_draws: _Draws | None, encoded_source: _Encoded | None, finish):
    if encoded_source is None:
        encoded, labels = fn.readers.file(files=files, labels=rows, random_shuffle=False, pad_last_batch=True,
                                          name="reader")
    else:
        encoded, labels = fn.external_source(source=encoded_source, num_outputs=2, batch=True, batch_info=True,
                                             dtype=[types.UINT8, types.INT32], ndim=[1, 1])
    uniforms = None if draws is None else fn.external_source(source=draws, batch=True, batch_info=True,
                                                             dtype=types.FLOAT, ndim=1)
    policy_uniforms = None if policy_draws is None else fn.external_source(
        source=policy_draws, batch=True, batch_info=True, dtype=types.FLOAT, ndim=1)
    images = decode_augment(encoded, uniforms, settings, gpu, policy_uniforms)
    return (images if finish is None else finish(images)), labels


def build_pipeline(files: list[str] | None, rows: list[int], batch_size: int, settings: DecodeSettings, *,
                   device_id: int | None, seed: int, epoch: int = 0, read_encoded=None, finish=None) -> Pipeline:
    """A built pipeline reading `files` in the given order; outputs (uint8 NHWC images, int32 rows).

    Args:
        files: the paths, in delivery order (one rank's share of one epoch, or its rest); None with
            `read_encoded`, a function from rows to their encoded images (uint8 arrays), fed to DALI from
            the host (images held in Arrow tables or tar members rather than one file each).
        rows: the dataset row of each file (the reader's label output).
        device_id: CUDA device for the 'mixed' decoder and GPU resize, or None for the CPU pipeline.
        seed, epoch: with each row, fix that sample's crop and flip (training).
        finish: DALI ops applied to the uint8 NHWC images node at the graph's end (the loader passes none; the
            loader benchmark's DALI peer normalizes there, so it is this very pipeline plus its normalization).

    The reader pads the last batch by repeating its final sample; the loader cuts it back. Take the batches
    through `ScheduledBatches` (``pipe.run()`` decodes one batch past the end).
    """
    settings.validate()
    draws = _Draws(rows, batch_size, seed, epoch) if settings.needs_draws else None
    policy = settings.policy
    policy_draws = None if policy is None else _Draws(rows, batch_size, seed ^ AUTO_AUGMENT_STREAM, epoch, policy.draws)
    graph = pipeline_def(_decode_graph, enable_conditionals=policy is not None)  # auto-augment selects ops by sample
    encoded_source = None if read_encoded is None else _Encoded(rows, batch_size, read_encoded)
    pipe = graph(files, rows, settings, device_id is not None, draws, policy_draws, encoded_source, finish,
                 batch_size=batch_size, num_threads=settings.num_threads, device_id=device_id, seed=seed & 0x7FFFFFFF,
                 prefetch_queue_depth=prefetch_depth(settings, -(-len(rows) // batch_size)))
    build_decode(pipe, settings, device_id is not None)
    return pipe


def prefetch_depth(settings: DecodeSettings, batches: int) -> int:
    """The prefetch queue depth of a pipeline that will give `batches` batches: ``settings.prefetch``, capped there.

    DALI's first scheduled run fills the whole queue, so a deeper queue decodes batches past the last
    (`ScheduledBatches` relies on the cap).
    """
    return max(1, min(settings.prefetch, batches))


class ScheduledBatches:
    """The first `count` batches of a built pipeline, one per call, none decoded past the last.

    Why: ``Pipeline.run`` schedules one more run on every call (its prefetch), so the call that returns an
    epoch's last batch starts decoding another that nobody takes: a batch of decode work per epoch (per
    rebuild), on cores the last render needs, and the pipeline's shutdown waits for it. Here runs are
    scheduled (``schedule_run``; DALI's first one fills the prefetch queue, so build the pipeline with
    `prefetch_depth`) only while batches are left, and ``outputs`` collects them in order.
    """

    def __init__(self, pipe: Pipeline, count: int):
        self.pipe, self.count = pipe, count
        self._scheduled = self._returned = 0

    def __call__(self) -> tuple:
        if self._returned >= self.count:
            raise IndexError(f"all {self.count} batches of this pipeline were taken; build a new one")
        if self._scheduled == 0:
            self.pipe.schedule_run()
            self._scheduled = self.pipe.prefetch_queue_depth
        elif self._scheduled < self.count:
            self.pipe.schedule_run()
            self._scheduled += 1
        self._returned += 1
        return self.pipe.outputs()


@pipeline_def(enable_conditionals=False)
def _probe_pipeline(data: bytes):
    encoded = fn.external_source(source=lambda: [np.frombuffer(data, dtype=np.uint8)], batch=True)
    return fn.decoders.image(encoded, device="cpu", output_type=types.RGB)


def probe_encoded(data: bytes) -> str | None:
    """Why DALI's CPU decoder cannot decode the encoded image `data`, or None if it can."""
    if not data:
        return "the file is empty (zero bytes)"
    try:
        pipe = _probe_pipeline(data, batch_size=1, num_threads=1, device_id=None, seed=0)
        pipe.build()
        pipe.run()
    except RuntimeError:
        return f"cannot be decoded: {what_is_wrong(data)}"
    return None


def probe_decode(path: str) -> str | None:
    """Why DALI's CPU decoder cannot decode the file at `path`, or None if it can.

    Used after a batch fails, to find which of its files is at fault (DALI's message names none).
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return probe_encoded(data)


def dali_reason(error: BaseException) -> str:
    """The informative line of a DALI error (its messages start with a banner and carry ANSI colours)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Critical error", "Current pipeline object", "Error in thread"))]
    for line in lines:
        if "[ERROR]" in line or "decode" in line.lower() or "unsupported" in line.lower():
            return re.sub(r"^\[ERROR\]\s*", "", line)[:200]
    return (lines[0] if lines else "unknown DALI error")[:200]

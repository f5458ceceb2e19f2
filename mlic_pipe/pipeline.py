"""DALI pipeline definitions: read, decode + crop, resize, flip; the output stays uint8 NHWC.

Normalization, mixing and the cast happen later in one render pass, so DALI's job ends at the
smallest tensor that still holds the image: uint8 (B, S, S, 3).

The file reader is given the files of *one rank's shard of one epoch, already in order*, with the
dataset row of each file as its label. The loader decides that order from (seed, epoch) and
builds a pipeline per epoch seeded from (seed, epoch, rank). That is what makes an epoch
replayable on a fresh process (``set_epoch``) and sharding exact; DALI's own shuffle is a
buffer shuffle whose order depends on the pipeline's history, and its sharding does not
re-partition the data between epochs, so neither is used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import nvidia.dali.fn as fn
import nvidia.dali.types as types
from nvidia.dali import Pipeline, pipeline_def

__all__ = ["DecodeSettings", "build_pipeline", "probe_decode"]


@dataclass(frozen=True)
class DecodeSettings:
    """How images are decoded and augmented before the render.

    Attributes:
        image_size: S, the side of the square output.
        train: random crop + flip (training) or a plain resize (evaluation).
        random_area: crop area as a fraction of the image (CSRA's recipe: 0.7-1.0).
        random_aspect_ratio: crop aspect range (the usual 3/4-4/3).
        flip_prob: probability of a horizontal flip.
        num_threads: DALI CPU worker threads.
        prefetch: DALI prefetch queue depth (batches decoded ahead).
        hw_decoder_load: share of JPEGs sent to the GPU's hardware decoder (A100/H100), GPU only.
        antialias: antialiased downscaling in the resize (DALI's default; the papers' loaders use PIL's).
    """

    image_size: int = 448
    train: bool = True
    random_area: tuple[float, float] = (0.7, 1.0)
    random_aspect_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    num_threads: int = 2
    prefetch: int = 2
    hw_decoder_load: float = 0.65
    antialias: bool = True

    def validate(self) -> None:
        low, high = self.random_area
        if not 0 < low <= high <= 1:
            raise ValueError(f"random_area must satisfy 0 < low <= high <= 1, got {self.random_area}")
        low, high = self.random_aspect_ratio
        if not 0 < low <= high:
            raise ValueError(f"random_aspect_ratio must satisfy 0 < low <= high, got {self.random_aspect_ratio}")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must be within [0, 1], got {self.flip_prob}")
        if self.num_threads < 1 or self.prefetch < 1:
            raise ValueError(f"num_threads and prefetch must be at least 1, got {self.num_threads}, {self.prefetch}")
        if not 0 <= self.hw_decoder_load <= 1:
            raise ValueError(f"hw_decoder_load must be within [0, 1], got {self.hw_decoder_load}")


@pipeline_def(enable_conditionals=False)
def _decode_pipeline(files, rows, settings: DecodeSettings, gpu: bool):
    encoded, labels = fn.readers.file(files=files, labels=rows, random_shuffle=False, pad_last_batch=True,
                                      name="reader")
    decoder = "mixed" if gpu else "cpu"
    gpu_args = {"hw_decoder_load": settings.hw_decoder_load} if gpu else {}
    if settings.train:
        images = fn.decoders.image_random_crop(
            encoded, device=decoder, output_type=types.RGB, random_area=list(settings.random_area),
            random_aspect_ratio=list(settings.random_aspect_ratio), num_attempts=10, **gpu_args)
    else:
        images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB, **gpu_args)
    size = settings.image_size
    images = fn.resize(images, resize_x=size, resize_y=size, antialias=settings.antialias)
    if settings.train and settings.flip_prob > 0:
        images = fn.flip(images, horizontal=fn.random.coin_flip(probability=settings.flip_prob))
    return images, labels


def build_pipeline(files: list[str], rows: list[int], batch_size: int, settings: DecodeSettings, *,
                   device_id: int | None, seed: int) -> Pipeline:
    """A built pipeline reading `files` in the given order; outputs (uint8 NHWC images, int32 rows).

    Args:
        files: the paths, in delivery order (one rank's shard of one epoch).
        rows: the dataset row of each file (the reader's label output).
        device_id: CUDA device for the 'mixed' decoder and GPU resize, or None for the CPU pipeline.
        seed: DALI's seed for the crop and flip draws of this epoch.

    The reader pads the last batch by repeating its final sample; the loader cuts it back.
    """
    settings.validate()
    pipe = _decode_pipeline(files, rows, settings, device_id is not None, batch_size=batch_size,
                            num_threads=settings.num_threads, device_id=device_id, seed=seed,
                            prefetch_queue_depth=settings.prefetch)
    pipe.build()
    return pipe


@pipeline_def(enable_conditionals=False)
def _probe_pipeline(path):
    encoded, _ = fn.readers.file(files=[path])
    return fn.decoders.image(encoded, device="cpu", output_type=types.RGB)


def probe_decode(path: str) -> str | None:
    """Why DALI's CPU decoder cannot decode `path`, or None if it can.

    Used after a batch fails, to find which of its files is at fault (DALI's message names none).
    """
    try:
        with open(path, "rb") as handle:
            if not handle.read(1):
                return "the file is empty (zero bytes)"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    try:
        pipe = _probe_pipeline(path, batch_size=1, num_threads=1, device_id=None, seed=0)
        pipe.build()
        pipe.run()
    except RuntimeError as error:
        return f"cannot be decoded ({dali_reason(error)})"
    return None


def dali_reason(error: BaseException) -> str:
    """The informative line of a DALI error (its messages start with a banner and carry ANSI colours)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Critical error", "Current pipeline object", "Error in thread"))]
    for line in lines:
        if "[ERROR]" in line or "decode" in line.lower() or "unsupported" in line.lower():
            return re.sub(r"^\[ERROR\]\s*", "", line)[:200]
    return (lines[0] if lines else "unknown DALI error")[:200]

"""`MLICLoader`: DALI -> zero-copy -> render -> (images, targets), a drop-in for a PyTorch DataLoader.

One training step: the DALI pipeline hands over a uint8 NHWC batch; `as_torch` wraps DALI's
buffer as a torch tensor through DLPack (no copy; on the GPU the DLPack exchange orders torch's
stream after DALI's); the mixer draws a plan on the host; `render` (the Triton kernel on CUDA,
the torch reference on the CPU) writes the normalized, mixed batch into one of two reused output
buffers; the multi-hot targets are gathered by dataset row from a table on the device and mixed
with the same plan.

Order and randomness. Epoch e's order is a permutation drawn from (seed, e), the same on every
rank; rank r takes every world_size-th sample of it (``order[r::world_size]``). With
``drop_last=False`` every sample is delivered exactly once per epoch across ranks, nothing is
padded or repeated: ranks differ by at most one sample, and the last batch of a rank may be
smaller (when N leaves fewer samples than ranks in the last round, some ranks take one step
fewer; training uses ``drop_last=True``, which gives every rank the same number of full batches).
Crops, flips and mixing plans come from (seed, e, rank), so ``set_epoch(e)`` on a fresh loader
replays epoch e exactly, and ranks draw different plans.

Buffers: a batch's images live in a reused buffer and stay valid until two batches later;
``.clone()`` them to keep them longer.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.distributed import rank_and_world_size
from mlic_pipe.errors import ON_ERROR, MLICDataError
from mlic_pipe.mix import IMAGENET_MEAN, IMAGENET_STD, MixPlan, RenderSettings, create_mixer, mix_targets, render
from mlic_pipe.pipeline import DecodeSettings, build_pipeline, dali_reason, probe_decode

__all__ = ["MLICLoader", "as_torch"]

STAGES = ("dali", "plan", "render", "targets")


def as_torch(batch) -> torch.Tensor:
    """A DALI output batch as a torch tensor sharing DALI's memory (DLPack; CPU or GPU).

    The batch must be dense (all samples the same shape, as after the resize). On the GPU the
    DLPack exchange makes torch's current stream wait for DALI's work on the buffer.
    """
    if not batch.is_dense_tensor():
        raise RuntimeError("DALI returned samples of different shapes; the resize to S x S should prevent this")
    return torch.from_dlpack(batch.as_tensor())


def _resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA device is available; use device='cpu' or 'auto'")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device}")
    return device


class MLICLoader:
    """Batches of ``(images, targets)`` (or ``(images, targets, plan)``) for a PyTorch training loop.

    Args:
        index: the dataset (`mlic_pipe.datasets.load` and friends).
        batch_size: images read per step, B. A mixer may append M mixed images (SpliceMix: B // 4).
        image_size: S, the side of the square images.
        train: random crop + flip and shuffling (True) or a plain resize in order (False).
        mix: a mixer instance, "splicemix", "cutmix", "fmix", "mixup", or None.
        device: "auto" (CUDA when present), "cpu" or "cuda[:N]": where decoding (GPU: DALI 'mixed'),
            rendering and the returned tensors live.
        num_threads: DALI CPU threads (default: the CPU count, at most 8).
        seed: with the epoch and rank, fixes the order, crops, flips and plans.
        shuffle, drop_last: default to `train`.
        dtype: float32, float16 or bfloat16 images. channels_last: that memory format.
        mean, std: normalization in the [0, 1] scale (ImageNet's by default).
        return_plan: also yield the `MixPlan`, with ``plan.indices`` = dataset rows of the B inputs.
        rank, world_size: default to torch.distributed's when it is initialized, else 0 and 1.
        on_error: "raise" (an undecodable image raises `MLICDataError` naming it) or "skip"
            (it is excluded, counted in `skipped`, reported with a warning, and iteration goes on).
        prefetch, hw_decoder_load, random_area, random_aspect_ratio, flip_prob: DALI settings
            (see `mlic_pipe.pipeline.DecodeSettings`).
        resample, align_corners: how spliced cells are downsampled (see `mlic_pipe.mix.render`).
        label_rule: how mask mixes combine labels ("union" or "area"; see `mix_targets`).
    """

    def __init__(self, index: LabelIndex, batch_size: int, *, image_size: int = 448, train: bool = True,
                 mix=None, device="auto", num_threads: int | None = None, seed: int = 0,
                 shuffle: bool | None = None, drop_last: bool | None = None, dtype: torch.dtype = torch.float32,
                 channels_last: bool = False, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, return_plan: bool = False, rank: int | None = None,
                 world_size: int | None = None, on_error: str = "raise", prefetch: int = 2,
                 hw_decoder_load: float = 0.65, random_area: tuple[float, float] = (0.7, 1.0),
                 random_aspect_ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_prob: float = 0.5,
                 resample: str = "bilinear", align_corners: bool = True, label_rule: str = "union"):
        if len(index.files) == 0:
            raise MLICDataError(None, "the dataset index has no images",
                                "check the annotation file and the image directory it points to")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(image_size) != image_size or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.index = index
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.train = bool(train)
        self.mixer = create_mixer(mix)
        self.device = _resolve_device(device)
        self.seed = int(seed)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.render_settings = RenderSettings(mean=mean, std=std, out_dtype=dtype, resample=resample,
                                              align_corners=align_corners, channels_last=channels_last)
        self.return_plan = bool(return_plan)
        self.rank, self.world_size = rank_and_world_size(rank, world_size)
        self.on_error = on_error
        self.label_rule = label_rule
        threads = num_threads if num_threads is not None else min(os.cpu_count() or 1, 8)
        self.settings = DecodeSettings(image_size=self.image_size, train=self.train, random_area=tuple(random_area),
                                       random_aspect_ratio=tuple(random_aspect_ratio), flip_prob=flip_prob,
                                       num_threads=int(threads), prefetch=int(prefetch),
                                       hw_decoder_load=hw_decoder_load)
        self.settings.validate()
        self.epoch = 0
        self.skipped: dict[str, str] = {}  # path -> why it was skipped (on_error="skip")
        self.profile = False  # when True, each stage is timed (with a device sync) into `timings`
        self.timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self._targets = torch.as_tensor(np.asarray(index.targets), dtype=torch.float32).to(self.device)
        self._buffers: list[torch.Tensor] = []
        self._next_buffer = 0
        self._consumed = None  # CUDA event after the render that read DALI's buffer
        self._check_mixer()

    # ----------------------------------------------------------------------------------------- setup

    def _check_mixer(self) -> None:
        """Fail now, not at step 1, if the mixer cannot work with this batch and image size."""
        if self.mixer is None:
            return
        plan = self.mixer.plan(self.batch_size, self.image_size, np.random.default_rng(self.seed), device="cpu")
        plan.validate(self.batch_size, self.image_size)

    # ----------------------------------------------------------------------------------------- order

    def _shard_size(self, total: int) -> int:
        if self.drop_last:
            per_rank = total // self.world_size
            return per_rank - per_rank % self.batch_size
        return len(range(self.rank, total, self.world_size))

    def __len__(self) -> int:
        """Batches this rank delivers per epoch (fewer if images are skipped during the epoch)."""
        total = len(self.index.files) - len(self._skipped_rows())
        size = self._shard_size(total)
        return size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch` (as DistributedSampler.set_epoch); iterating advances it."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def _skipped_rows(self) -> np.ndarray:
        if not self.skipped:
            return np.zeros(0, dtype=np.int64)
        bad = set(self.skipped)
        return np.array([i for i, path in enumerate(self.index.files) if path in bad], dtype=np.int64)

    def epoch_rows(self, epoch: int) -> np.ndarray:
        """The dataset rows this rank reads in `epoch`, in order (skipped images excluded)."""
        rows = np.setdiff1d(np.arange(len(self.index.files)), self._skipped_rows())
        if self.shuffle:  # the same permutation on every rank: seeded by (seed, epoch) only
            rows = rows[np.random.default_rng([self.seed, epoch]).permutation(len(rows))]
        return rows[self.rank::self.world_size][: self._shard_size(len(rows))]

    def _seed(self, epoch: int, *extra: int) -> int:
        return int(np.random.SeedSequence([self.seed, epoch, self.rank, *extra]).generate_state(1)[0] & 0x7FFFFFFF)

    # ------------------------------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        rows = self.epoch_rows(epoch)
        plan_rng = np.random.default_rng([self.seed, epoch, self.rank, 1])
        device_id = None if self.device.type == "cpu" else (self.device.index or 0)
        position, restarts = 0, 0
        pipe = self._pipeline(rows, position, epoch, restarts, device_id)
        while position < len(rows):
            count = min(self.batch_size, len(rows) - position)
            if self._consumed is not None:  # DALI may reuse the buffer the last render read
                self._consumed.synchronize()
            start = time.perf_counter()
            try:
                decoded, labels = pipe.run()
            except RuntimeError as error:
                rows = self._handle_failure(error, rows, position)
                restarts += 1
                pipe = None  # release the failed pipeline's threads and buffers before building the next
                pipe = self._pipeline(rows, position, epoch, restarts, device_id)
                continue
            images = as_torch(decoded)[:count]
            batch_rows = as_torch(labels).reshape(-1)[:count].to(torch.int64)
            self._lap("dali", start, images)
            yield self._assemble(images, batch_rows, plan_rng)
            position += count
        self.epoch = epoch + 1

    def _pipeline(self, rows: np.ndarray, position: int, epoch: int, restarts: int, device_id):
        remaining = rows[position:]
        if len(remaining) == 0:
            return None
        files = [self.index.files[i] for i in remaining]
        return build_pipeline(files, remaining.tolist(), self.batch_size, self.settings, device_id=device_id,
                              seed=self._seed(epoch, 2, restarts))

    def _handle_failure(self, error: RuntimeError, rows: np.ndarray, position: int) -> np.ndarray:
        """Find the undecodable files behind a DALI failure; raise, or drop them from `rows` and go on.

        DALI reads and decodes `prefetch` batches ahead, so the failure may come from any batch in
        flight, not only the one requested: every file of those batches is probed on its own.
        """
        batch = rows[position:position + self.batch_size * (self.settings.prefetch + 1)]
        bad = {}
        for row in batch:
            path = self.index.files[row]
            reason = probe_decode(path)
            if reason is not None:
                bad[int(row)] = reason
        if not bad:
            first = self.index.files[batch[0]]
            raise MLICDataError(first, f"DALI failed on the batches starting with this file ({len(batch)} files): "
                                       f"{dali_reason(error)}",
                                "each file decodes on its own; run `mlic-pipe check` on the dataset") from error
        if self.on_error == "raise":
            row, reason = next(iter(bad.items()))
            raise MLICDataError(self.index.files[row], reason,
                                "remove or replace the file, or pass {on_error:skip} to skip bad images") from error
        for row, reason in bad.items():
            path = self.index.files[row]
            self.skipped[path] = reason
            warnings.warn(f"mlic-pipe skipped {path}: {reason} ({len(self.skipped)} image(s) skipped so far; "
                          "see loader.skipped)", stacklevel=3)
        keep = np.ones(len(rows), dtype=bool)
        keep[position:position + len(batch)] = ~np.isin(batch, list(bad))  # the rest are read again
        return rows[keep]

    def _lap(self, stage: str, start: float, tensor: torch.Tensor | None = None) -> None:
        if not self.profile:
            return
        if tensor is not None and tensor.is_cuda:
            torch.cuda.synchronize(tensor.device)
        self.timings[stage].append(time.perf_counter() - start)

    def _buffer(self, count: int) -> torch.Tensor:
        """One of two reused output buffers, cut to `count` images."""
        if not self._buffers or self._buffers[0].shape[0] < count:
            self._buffers = [self.render_settings.empty(count, self.image_size, self.device) for _ in range(2)]
        buffer = self._buffers[self._next_buffer]
        self._next_buffer = 1 - self._next_buffer
        return buffer[:count]

    def _assemble(self, images: torch.Tensor, rows: torch.Tensor, plan_rng: np.random.Generator):
        count = len(images)
        start = time.perf_counter()
        if self.mixer is not None and count >= self.mixer.min_batch_size:
            plan = self.mixer.plan(count, self.image_size, plan_rng, device=self.device)
        else:  # no mixer, or a last partial batch too small for the mixer's grids: delivered unmixed
            plan = MixPlan.identity(count)
        plan = plan.with_indices(rows)
        self._lap("plan", start)

        start = time.perf_counter()
        out = self._buffer(plan.num_outputs)
        result = render(images, plan, settings=self.render_settings, out=out)
        if result.is_cuda:
            self._consumed = torch.cuda.Event()
            self._consumed.record()
        self._lap("render", start, result)

        start = time.perf_counter()
        targets = mix_targets(self._targets[rows.to(self.device, non_blocking=True)], plan, rule=self.label_rule)
        self._lap("targets", start, targets)
        return (result, targets, plan) if self.return_plan else (result, targets)

"""`ShardStream`: one rank's batches of a shard dataset (`ShardIndex`) through DALI's WebDataset reader.

How an epoch is cut (one rule, whatever the number of tars T and ranks W):

- the tars are put in a (seed, epoch) order (`shard_order`), the same on every rank;
- DALI splits the samples of that sequence into W contiguous spans of equal size (within one
  sample: rank r reads samples floor(N r / W) to floor(N (r + 1) / W)). A rank reads whole tars,
  except at most the two at the ends of its span, which it shares with its neighbours; with fewer
  tars than ranks, several ranks read different parts of the same tar;
- within its span, a rank's samples pass through DALI's shuffle buffer (`SHUFFLE_BUFFER` samples),
  seeded by (seed, epoch, rank); crops and flips come from DALI's generator, seeded alike;
- every rank yields `shard_steps` batches: ``drop_last`` cuts every rank to floor(N / W) samples in
  whole batches, otherwise every rank delivers ceil(N / W) samples and the ones past its own span
  are DALI's wrap-around repeats, marked padded.

An undecodable sample: DALI's error names no sample, so the batches in flight are read again
without decoding (`_find_bad`, a reader-only pipeline with the same seed) and each image is probed.
The stream then restarts from the checkpoint taken before the failing batch with the bad rows'
bytes replaced by a tiny valid image in the pipeline, and `ShardReader` puts a repeat of a usable
sample of the batch in their place, marked padded (the source protocol's one rule: batches keep their
size, epochs their number of batches; `mlic_pipe.loading.source`). DALI checkpointing
(`checkpoint`) is what makes this restart, and a mid-epoch resume, cost no decoding.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.types as types
import torch
from nvidia.dali import pipeline_def

from mlic_pipe.errors import MLICDataError
from mlic_pipe.loading.stream import UndecodableFiles, as_torch
from mlic_pipe.pipeline import (AUTO_AUGMENT_STREAM, DRAWS, DecodeSettings, ScheduledBatches, build_decode, dali_reason,
                                decode_augment, prefetch_depth, probe_encoded)
from mlic_pipe.shards.format import IMAGE_EXTENSIONS
from mlic_pipe.shards.index import ShardIndex

__all__ = ["SHUFFLE_BUFFER", "ShardBatch", "ShardStream", "rank_span", "shard_order", "shard_steps", "shard_total",
           "stream_rows", "stream_seeds"]

SHUFFLE_BUFFER = 1024  # DALI's default initial_fill: samples held for the within-span shuffle
_IMAGE_EXT = ";".join(IMAGE_EXTENSIONS)


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The tars' order in epoch `epoch`: a (seed, epoch) permutation, or as written."""
    order = np.arange(num_shards)
    return np.random.default_rng([seed, epoch, 7]).permutation(order) if shuffle else order


def rank_span(num_samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """The samples of the epoch's tar sequence rank `rank` reads (DALI's shard_id / num_shards split)."""
    return num_samples * rank // world_size, num_samples * (rank + 1) // world_size


def shard_total(num_samples: int, world_size: int, batch_size: int, drop_last: bool) -> int:
    """Samples each rank delivers in an epoch (before dropping undecodable ones)."""
    if drop_last:
        return num_samples // world_size // batch_size * batch_size
    return -(-num_samples // world_size)


def shard_steps(num_samples: int, world_size: int, batch_size: int, drop_last: bool) -> int:
    """Batches each rank yields in an epoch: the same on every rank."""
    return -(-shard_total(num_samples, world_size, batch_size, drop_last) // batch_size)


@dataclass
class ShardBatch:
    """One decoded batch: uint8 images (DALI's buffer), and host copies of rows and packed labels."""

    images: torch.Tensor
    rows: torch.Tensor  # (n,) int64
    labels: torch.Tensor  # (n, label_bytes) uint8 packed
    ignore: torch.Tensor | None


def _placeholder() -> np.ndarray:
    """A tiny valid JPEG: what the pipeline decodes in place of a sample known to be undecodable."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def _read(index: ShardIndex, order, rank, world_size, shuffle, seed, rows_only=False):
    """DALI's WebDataset reader over the tars in `order`: (image bytes, packed labels, row[, ignore]), or (row,).

    Which members are read does not change the order: the shuffle buffer moves samples, not members.
    """
    exts = [_IMAGE_EXT, "lbl", "row"] + (["ign"] if index.has_ignore else [])
    dtypes = [types.UINT8, types.UINT8, types.INT64] + ([types.UINT8] if index.has_ignore else [])
    if rows_only:
        exts, dtypes = ["row"], [types.INT64]
    return fn.readers.webdataset(
        paths=[index.shards[i].path for i in order], index_paths=[index.shards[i].index_path for i in order],
        ext=exts, dtypes=dtypes, shard_id=rank, num_shards=world_size, random_shuffle=shuffle,
        initial_fill=SHUFFLE_BUFFER, stick_to_shard=True, pad_last_batch=False,
        missing_component_behavior="error", seed=seed, name="reader")


def _replace_known_bad(encoded, rows, bad_feed):
    """`encoded`, with the bytes of every row listed by `bad_feed` replaced by `_placeholder()`."""
    placeholder = _placeholder()
    bad = fn.external_source(source=bad_feed, batch=True, dtype=types.INT64, ndim=1)
    hit = fn.reductions.max(fn.cast(rows == bad, dtype=types.INT32))
    length = encoded.shape(dtype=types.INT32)[0]
    joined = fn.cat(encoded, fn.constant(idata=placeholder.tolist(), shape=[len(placeholder)], dtype=types.UINT8))
    return fn.slice(joined, fn.stack(hit * length), fn.stack(length + hit * (len(placeholder) - length)),
                    axes=[0], normalized_anchor=False, normalized_shape=False)


def _shard_graph(index: ShardIndex, order, rank, world_size, shuffle, seeds, settings: DecodeSettings,
                 gpu: bool, bad_feed):
    encoded, labels, rows, *ignore = _read(index, order, rank, world_size, shuffle, seeds[0])
    encoded = _replace_known_bad(encoded, rows, bad_feed)
    uniforms = fn.random.uniform(range=[0.0, 1.0], shape=[DRAWS], seed=seeds[1]) if settings.needs_draws else None
    policy = settings.policy
    policy_uniforms = None if policy is None else fn.random.uniform(range=[0.0, 1.0], shape=[policy.draws],
                                                                    seed=seeds[1] ^ AUTO_AUGMENT_STREAM)
    return (decode_augment(encoded, uniforms, settings, gpu, policy_uniforms), labels, rows, *ignore)


def _shard_pipeline(index, order, rank, world_size, shuffle, seeds, settings: DecodeSettings, *args, **kwargs):
    """The shard graph as a DALI pipeline (with conditionals when auto-augment selects ops per sample)."""
    graph = pipeline_def(_shard_graph, enable_conditionals=settings.policy is not None, enable_checkpointing=True)
    return graph(index, order, rank, world_size, shuffle, seeds, settings, *args, **kwargs)


@pipeline_def(enable_conditionals=False)
def _raw_pipeline(index: ShardIndex, order, rank, world_size, shuffle, seeds):
    encoded, _, rows, *_ = _read(index, order, rank, world_size, shuffle, seeds[0])
    return encoded, rows


@pipeline_def(enable_conditionals=False)
def _rows_pipeline(index: ShardIndex, order, rank, world_size, shuffle, seeds):
    return _read(index, order, rank, world_size, shuffle, seeds[0], rows_only=True)


def stream_seeds(seed: int, epoch: int, rank: int) -> list[int]:
    """The reader's and the draws' seeds of rank `rank`'s stream in `epoch`."""
    return [int(s) & 0x7FFFFFFF for s in np.random.SeedSequence([seed, epoch, rank]).generate_state(2)]


def stream_rows(index: ShardIndex, seed: int, epoch: int, shuffle: bool, rank: int, world_size: int,
                batch_size: int, drop_last: bool) -> np.ndarray:
    """The rows rank `rank`'s stream delivers in `epoch`, in order (`shard_total` of them), read without decoding.

    Only the 8-byte ``.row`` members are read, so recovering a stream's order costs a pass over the index, not the
    images: what an elastic resume needs to know which samples a rank had delivered.
    """
    total = shard_total(len(index), world_size, batch_size, drop_last)
    pipe = _rows_pipeline(index, shard_order(len(index.shards), seed, epoch, shuffle), rank, world_size, shuffle,
                          stream_seeds(seed, epoch, rank), batch_size=batch_size, num_threads=1, device_id=None,
                          prefetch_queue_depth=1)
    pipe.build()
    rows = []
    for _ in range(-(-total // batch_size)):
        (batch,) = pipe.run()
        rows.append(np.asarray(batch.as_tensor()).reshape(-1))
    return np.concatenate(rows)[:total].astype(np.int64) if rows else np.zeros(0, dtype=np.int64)


class ShardStream:
    """Batches of rank `rank`'s span of epoch `epoch` (see the module docstring).

    Args:
        index: the shards. batch_size: B. settings: decode settings. device_id: CUDA device or None (CPU).
        seed, epoch, shuffle, rank, world_size: fix the tar order, the span and every random draw.
        steps: the batches of the epoch (`shard_steps`): DALI decodes none past them (`ScheduledBatches`).
    """

    def __init__(self, index: ShardIndex, batch_size: int, settings: DecodeSettings, device_id: int | None,
                 seed: int, epoch: int, shuffle: bool, rank: int, world_size: int, steps: int):
        self.index, self.batch_size, self.settings, self.device_id = index, batch_size, settings, device_id
        self.steps = steps
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.order = shard_order(len(index.shards), seed, epoch, shuffle)
        self.seeds = stream_seeds(seed, epoch, rank)
        self._pipe = self._batches = None
        self._bad = np.full(1, -1, dtype=np.int64)
        self.position = 0  # batches read since the epoch began
        self._checkpoint: bytes | None = None  # DALI's state after batch `position`

    def _feed(self):
        return [self._bad] * self.batch_size

    def start(self, bad_rows, position: int = 0, checkpoint: bytes | None = None) -> None:
        """A pipeline at batch `position` (restored from `checkpoint`, taken there), replacing `bad_rows`."""
        self._pipe = self._batches = None
        self._bad = np.asarray(sorted(bad_rows) or [-1], dtype=np.int64)
        self.position, self._checkpoint = position, checkpoint
        left = max(self.steps - position, 0)
        with warnings.catch_warnings():  # the bad-row feed is constant for the pipeline's life: nothing to restore
            warnings.filterwarnings("ignore", message="Checkpointing enabled in a pipeline with external source")
            self._pipe = _shard_pipeline(
                self.index, self.order, self.rank, self.world_size, self.shuffle, self.seeds, self.settings,
                self.device_id is not None, self._feed, batch_size=self.batch_size,
                num_threads=self.settings.num_threads, device_id=self.device_id, seed=self.seeds[1],
                prefetch_queue_depth=prefetch_depth(self.settings, left), checkpoint=checkpoint)
            build_decode(self._pipe, self.settings, self.device_id is not None)
        self._batches = ScheduledBatches(self._pipe, left)

    def checkpoint(self) -> bytes | None:
        """DALI's state after the last batch returned (None at the epoch's start)."""
        return self._checkpoint

    def next(self) -> ShardBatch:
        """The next batch of B samples (the loader cuts the epoch's last one); UndecodableFiles on a bad image."""
        try:
            outputs = self._batches()
        except RuntimeError as error:
            raise UndecodableFiles(self._find_bad(error)) from error
        self.position += 1
        self._checkpoint = self._pipe.checkpoint()
        images, labels, rows, *ignore = outputs
        return ShardBatch(as_torch(images), as_torch(rows).reshape(-1).clone(), as_torch(labels).clone(),
                          as_torch(ignore[0]).clone() if ignore else None)

    def restart(self, bad_rows) -> None:
        """Continue from the last batch returned, now replacing `bad_rows` too."""
        self.start(bad_rows, self.position, self._checkpoint)

    def _find_bad(self, error: RuntimeError) -> dict[int, str]:
        """Re-read the batches in flight without decoding and probe each image; MLICDataError when all decode."""
        pipe = _raw_pipeline(self.index, self.order, self.rank, self.world_size, self.shuffle, self.seeds,
                             batch_size=self.batch_size, num_threads=1, device_id=None, prefetch_queue_depth=1)
        pipe.build()
        known, bad, first = set(self._bad.tolist()), {}, None
        for batch in range(self.position + self.settings.prefetch + 1):
            try:
                encoded, rows = pipe.run()
            except RuntimeError as failure:  # the tars themselves (remote, or changed since the load)
                raise MLICDataError(f"rank {self.rank}'s shards ({self.index.shards[self.order[0]].path}, ...)",
                                    f"DALI cannot read them: {dali_reason(failure)}",
                                    "rerun `mlic-pipe shard --verify`") from error
            if batch < self.position:
                continue
            for sample in range(len(rows)):
                row = int(np.asarray(rows[sample])[0])
                first = first if first is not None else row
                if row not in known and row not in bad:
                    reason = probe_encoded(np.asarray(encoded[sample]).tobytes())
                    if reason is not None:
                        bad[row] = reason
        if not bad:
            raise MLICDataError(self.index.name(first), "DALI failed on the batch starting with this sample: "
                                f"{dali_reason(error)}", "each image decodes on its own; run `mlic-pipe check` "
                                "on the shard directory") from error
        return bad

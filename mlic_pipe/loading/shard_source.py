"""`ShardSource`: a shard set (`ShardIndex`) read through DALI's WebDataset reader, resumable on any world size.

An epoch is a `ShardStream` per rank (how it is cut: `mlic_pipe.loading.shard_stream`); the labels
travel with the samples as packed bits, unpacked on the device, so no (N, C) table is built.

Resume. On the world size it was saved on, each rank's stream restarts from DALI's checkpoint in its
state (no decoding of what was delivered). On another world size the streams cannot continue (a DALI
reader state belongs to its rank's span), so the rest of the epoch is worked out and read by row:
each old rank's stream order is recovered without decoding (`stream_rows` reads only the ``.row``
members), the positions it had not delivered are its rest, and the rests are dealt to the new ranks
as a file list's are (`reshard`: exactly the samples not yet delivered, each once, padding marked).
The new ranks read that rest by row from the tars (`ShardIndex.read_encoded`, each image at its
offset) with each batch's labels read from the ``.lbl`` members; the next epoch is a stream again.
"""
from __future__ import annotations

import base64

import numpy as np
import torch

from mlic_pipe.errors import LoaderStateError, MLICDataError
from mlic_pipe.loading.order import RankRows, without_bad
from mlic_pipe.loading.resume import LoaderState
from mlic_pipe.loading.row_source import RowSource
from mlic_pipe.loading.shard_stream import ShardStream, rank_span, shard_steps, shard_total, stream_rows
from mlic_pipe.loading.source import Read, SourceConfig
from mlic_pipe.pipeline import dali_reason
from mlic_pipe.shards.format import unpack_labels

__all__ = ["ShardReader", "ShardSource"]


class ShardReader:
    """One epoch of a rank's stream: batches cut to the epoch's length, known-bad samples replaced by repeats."""

    def __init__(self, source: "ShardSource", epoch: int, start: int, checkpoint: bytes | None,
                 agreed: dict[int, str], found: dict[int, str]):
        c, n = source.config, len(source.index)
        self.config, self.start, self.delivered, self.agreed = c, start, start, agreed
        self.steps = shard_steps(n, c.world_size, c.batch_size, c.drop_last)
        self.total = shard_total(n, c.world_size, c.batch_size, c.drop_last)
        first, stop = rank_span(n, c.rank, c.world_size)
        self.own = stop - first  # positions past this rank's span are DALI's wrap-around repeats
        self.bad = {**agreed, **found}
        self.stream = ShardStream(source.index, c.batch_size, c.settings, c.device_id, c.seed, epoch, c.shuffle,
                                  c.rank, c.world_size, self.steps)
        try:
            self.stream.start(self.bad, start, checkpoint)
        except RuntimeError as error:
            if checkpoint is None:
                raise
            raise LoaderStateError("checkpoint", f"DALI cannot restore its reader state from it "
                                   f"({dali_reason(error)}): the state was edited or damaged") from None
        self.name = source.name

    def done(self) -> bool:
        return self.delivered >= self.steps

    def next(self) -> Read:
        read = self.stream.next()
        start = self.delivered * self.config.batch_size
        count = min(self.config.batch_size, self.total - start)
        padded = torch.arange(start, start + count) >= self.own
        images, rows, labels = read.images[:count], read.rows[:count], read.labels[:count]
        ignore = None if read.ignore is None else read.ignore[:count]
        bad = np.isin(rows.numpy(), list(self.bad))
        if bad.any():  # the source protocol's rule: a repeat of a usable sample of the batch takes the place
            if bad.all():
                raise MLICDataError(self.name(int(rows[0])), f"every image of batch {self.delivered} is "
                                    "undecodable", "run `mlic-pipe check` on the shard directory")
            where = torch.from_numpy(np.where(bad, np.flatnonzero(~bad)[0], np.arange(count)))
            images = images[where.to(images.device, non_blocking=True)]
            rows, labels, padded = rows[where], labels[where], padded | torch.from_numpy(bad)
            ignore = None if ignore is None else ignore[where]
        self.delivered += 1
        return Read(images, rows, padded, labels, ignore)

    def skip(self, bad: dict[int, str]) -> None:
        self.bad = {**self.agreed, **bad}
        self.stream.restart(self.bad)

    def checkpoint(self) -> bytes | None:
        return self.stream.checkpoint()


class _ShardRest(RowSource):
    """The rest of an epoch resumed on another world size: shard samples read by row, labels from the tars."""

    def targets(self, read: Read, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = read.rows.tolist()
        targets = torch.from_numpy(self.index.labels_for(rows)).to(device, non_blocking=True).float()
        ignore = self.index.ignore_for(rows)
        return targets, None if ignore is None else torch.from_numpy(ignore).to(device, non_blocking=True)


class ShardSource:
    """A `ShardIndex` through DALI's WebDataset reader (see the module docstring)."""

    def __init__(self, index, config: SourceConfig, kind: str = "shards"):
        self.index, self.config, self.kind = index, config, kind
        self._checkpoint: tuple[int, int, bytes | None] | None = None  # (epoch, batches, DALI state) to restart at
        self._reader: ShardReader | None = None
        self._rest: _ShardRest | None = None  # an epoch resumed on another world size, read by row

    def __len__(self) -> int:
        return len(self.index)

    def name(self, row: int) -> str:
        return self.index.name(row)

    def _rest_of(self, epoch: int) -> _ShardRest | None:
        return self._rest if self._rest is not None and self._rest.resuming(epoch) else None

    def steps(self, epoch: int, agreed: dict[int, str]) -> int:
        rest = self._rest_of(epoch)
        if rest is not None:
            return rest.steps(epoch, agreed)
        c = self.config
        return shard_steps(len(self.index), c.world_size, c.batch_size, c.drop_last)

    def epoch_rows(self, epoch: int, agreed: dict[int, str]) -> np.ndarray:
        raise TypeError("a shard dataset's order inside a rank is DALI's shuffle buffer, known only as it is "
                        "read: use batch.rows")

    def set_epoch(self, epoch: int) -> int:
        if self._rest_of(epoch) is None:
            self._rest = None  # a resume applies to its own epoch only
        if self._checkpoint is not None and self._checkpoint[0] != epoch:
            self._checkpoint = None
        if self._rest is not None:
            return self._rest.set_epoch(epoch)
        return self._checkpoint[1] if self._checkpoint else 0

    def open(self, epoch: int, agreed: dict[int, str], found: dict[int, str]):
        rest = self._rest_of(epoch)
        if rest is not None:
            return rest.open(epoch, agreed, found)
        start, checkpoint = self._checkpoint[1:] if self._checkpoint and self._checkpoint[0] == epoch else (0, None)
        self._reader = ShardReader(self, epoch, start, checkpoint, agreed, found)
        return self._reader

    def finish(self) -> None:
        self._checkpoint, self._reader, self._rest = None, None, None

    def targets(self, read: Read, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        if read.labels is None:
            return self._rest.targets(read, device)
        classes = self.index.num_classes
        targets = unpack_labels(read.labels.to(device, non_blocking=True), classes).float()
        ignore = None if read.ignore is None else unpack_labels(read.ignore.to(device, non_blocking=True),
                                                                  classes).bool()
        return targets, ignore

    def save(self, delivered: int) -> dict:
        if self._rest is not None:
            return self._rest.save(delivered)
        checkpoint = None
        if delivered:
            if self._reader is not None:
                checkpoint = self._reader.checkpoint()
            elif self._checkpoint is not None:
                checkpoint = self._checkpoint[2]
        return dict(rows=None, padded=None, offset=0,
                    checkpoint=None if checkpoint is None else base64.b64encode(checkpoint).decode("ascii"))

    def resume(self, states: list[LoaderState], agreed: dict[int, str]) -> dict[int, str]:
        first, c = states[0], self.config
        self._rest, self._checkpoint = None, None
        own = next((s for s in states if s.rank == c.rank), None) if first.world_size == c.world_size else None
        if own is not None and own.rows is None:  # the same ranks, mid-stream: DALI restarts at its checkpoint
            checkpoint = None if own.checkpoint is None else base64.b64decode(own.checkpoint)
            self._checkpoint = (first.epoch, own.batches, checkpoint)
            return own.found_rows(self.index)
        if self.index.remote:
            raise LoaderStateError("world_size", f"shards on remote storage resume on the world size they were "
                                   f"saved on ({first.world_size}), not {c.world_size}: the rest of the epoch is "
                                   "read by row, from local tars", f"resume on {first.world_size} ranks, or use a "
                                   "local copy of the shards")
        self._rest = _ShardRest(self.index, c, self.kind)  # an explicit share: resumed as a file list's
        return self._rest.resume(states, agreed, rest_of=self._stream_rest)

    def _stream_rest(self, state: LoaderState, bad: dict[int, str]) -> RankRows:
        """What old rank `state.rank` had not delivered of its epoch, the undecodable rows replaced by repeats."""
        if state.rows is not None:
            return state.rest(self.index)
        rows = stream_rows(self.index, state.seed, state.epoch, state.shuffle, state.rank, state.world_size,
                           state.batch_size, state.drop_last)
        first, stop = rank_span(len(self.index), state.rank, state.world_size)
        start = state.batches * state.batch_size
        positions = np.arange(start, len(rows))
        rest = RankRows(rows[start:], positions >= stop - first)
        return without_bad(rest, bad, f"rank {state.rank}'s shards") if len(rest) and bad else rest

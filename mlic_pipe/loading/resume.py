"""`LoaderState`: where a loader stands mid-epoch, as a small versioned JSON-able dict, and how to resume.

A rank's share of an epoch is a pure function of (seed, epoch, the rows left out at the epoch's
start, world size, rank, batch size, drop_last, shuffle), so the state need not list rows: it names
the epoch, the batches delivered, the skipped files, and the files this rank found bad during the
epoch (which changed its share). Only a share that itself came from a resume on another world size
is stored explicitly (`rows`, `padded`, `offset`).

Resuming on the same world size continues each rank's share where it stopped. On another world
size, the rests of every old rank's share (from the list of all their states) are interleaved back
into their global order and dealt round-robin to the new ranks, padded by wrapping around to equal
counts: exactly the samples not yet delivered, each once, plus marked padding.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.loading.order import RankRows, epoch_share, interleave, shard, without_bad

__all__ = ["STATE_VERSION", "LoaderState", "reshard"]

STATE_VERSION = 1


@dataclass
class LoaderState:
    """The resumable state of one rank's `MLICLoader` (see the module docstring)."""

    seed: int
    epoch: int
    batches: int  # batches of `epoch` delivered
    rank: int
    world_size: int
    batch_size: int
    drop_last: bool
    shuffle: bool
    num_rows: int
    skipped: list = field(default_factory=list)  # [row, path, reason]: left out of `epoch` on every rank
    found: list = field(default_factory=list)  # [row, path, reason]: found bad by this rank during `epoch`
    rows: list | None = None  # this rank's share, when it came from a resume on another world size
    padded: list | None = None
    offset: int = 0  # batches of the epoch delivered before that share began
    checkpoint: str | None = None  # shard datasets: DALI's reader state after `batches` (base64)
    version: int = STATE_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> "LoaderState":
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not an MLICLoader state of version {STATE_VERSION}: "
                             f"{state.get('version') if isinstance(state, dict) else type(state).__name__}")
        return cls(**state)

    def _rows_of(self, entries: list, index: LabelIndex) -> dict[int, str]:
        for row, path, _ in entries:
            if row >= len(index) or index.name(row) != path:
                raise ValueError(f"the state names {path} as row {row}, but the dataset differs there: resume "
                                 "with the dataset the state was saved with")
        return {int(row): reason for row, _, reason in entries}

    def skipped_rows(self, index: LabelIndex) -> dict[int, str]:
        return self._rows_of(self.skipped, index)

    def found_rows(self, index: LabelIndex) -> dict[int, str]:
        return self._rows_of(self.found, index)

    def initial_share(self) -> RankRows:
        """This rank's share of the epoch before the files it found bad were taken out."""
        if self.rows is not None:
            return RankRows(np.asarray(self.rows, dtype=np.int64), np.asarray(self.padded, dtype=bool))
        return epoch_share(self.num_rows, [row for row, _, _ in self.skipped], self.seed, self.epoch, self.shuffle,
                           self.rank, self.world_size, self.batch_size, self.drop_last)

    def rest(self, index: LabelIndex) -> RankRows:
        """The rows of this rank's share not yet delivered."""
        share = without_bad(self.initial_share(), self.found_rows(index), "resume")
        return share.tail((self.batches - self.offset) * self.batch_size)

    @staticmethod
    def check_all(states: list["LoaderState"], loader) -> "LoaderState":
        """The first state, after checking the states belong together and fit `loader`."""
        first = states[0]
        same = ("seed", "epoch", "batches", "world_size", "batch_size", "drop_last", "shuffle", "num_rows", "offset")
        if any(getattr(s, k) != getattr(first, k) for s in states for k in same):
            raise ValueError("the states disagree on the epoch, batch or settings: pass the states saved together")
        if len(states) > 1 and sorted(s.rank for s in states) != list(range(first.world_size)):
            raise ValueError(f"pass the states of all {first.world_size} ranks, one each")
        if len(states) == 1 and first.world_size != loader.world_size:
            raise ValueError(f"this state is one of {first.world_size} ranks'; to resume on {loader.world_size} "
                             f"ranks pass the list of all {first.world_size} states")
        if len(states) == 1 and first.rank != loader.rank:
            raise ValueError(f"this state was saved by rank {first.rank}; this loader is rank {loader.rank}")
        mine = (loader.seed, loader.batch_size, loader.drop_last, loader.shuffle, len(loader.index))
        if mine != (first.seed, first.batch_size, first.drop_last, first.shuffle, first.num_rows):
            raise ValueError("the state was saved with another seed, batch size, drop_last, shuffle or dataset "
                             f"(saved: seed {first.seed}, batch {first.batch_size}, drop_last {first.drop_last}, "
                             f"shuffle {first.shuffle}, {first.num_rows} rows)")
        return first


def reshard(states: list[LoaderState], index: LabelIndex, rank: int, world_size: int) -> RankRows:
    """Rank `rank`'s part of what the saved ranks had left, dealt over `world_size` ranks in equal counts."""
    rest = interleave([state.rest(index) for state in sorted(states, key=lambda s: s.rank)])
    return shard(rest.rows, rank, world_size, states[0].batch_size, drop_last=False, padded=rest.padded)

"""Epoch order and sharding: which dataset rows each rank reads in an epoch, the same count on every rank.

Epoch e's order is a permutation of the usable rows drawn from (seed, e) alone, so every rank
computes the same one; rank r takes every world_size-th row of it. Every rank must yield the same
number of batches (a rank with one step more waits forever in DDP's next collective), so:

- ``drop_last=True``: each rank takes ``N // world_size`` rows, cut to whole batches;
- ``drop_last=False``: the order is padded by wrapping around to a multiple of world_size, as
  `torch.utils.data.DistributedSampler` does, and the repeated rows are marked ``padded`` so that
  evaluation counts every sample once;
- a file found undecodable mid-epoch is removed from the rest of the rank's rows and the list is
  topped up to its length by cycling through its usable rows from the start (marked padded), so a
  skip never shortens one rank's epoch. The skip is agreed across ranks at the epoch's end and the
  row leaves every later epoch's order: from then on each usable row is delivered once per epoch.

Per-sample randomness (crop and flip) comes from (seed, epoch, row) through `sample_uniforms`, so a
sample looks the same whichever rank reads it, after a resume, or after a pipeline rebuild.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlic_pipe.errors import MLICDataError

__all__ = ["RankRows", "epoch_order", "epoch_share", "interleave", "shard", "sample_uniforms", "without_bad"]


@dataclass(frozen=True)
class RankRows:
    """One rank's rows of one epoch, in delivery order, and which of them are repeats (padding)."""

    rows: np.ndarray  # (n,) int64 dataset rows
    padded: np.ndarray  # (n,) bool: delivered a second time this epoch

    def __len__(self) -> int:
        return len(self.rows)

    def tail(self, start: int) -> "RankRows":
        return RankRows(self.rows[start:], self.padded[start:])


def epoch_order(num_rows: int, excluded, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The usable rows (all but `excluded`) in epoch `epoch`'s order: a (seed, epoch) permutation, or as is."""
    rows = np.setdiff1d(np.arange(num_rows, dtype=np.int64), np.asarray(sorted(excluded), dtype=np.int64))
    if shuffle:
        rows = rows[np.random.default_rng([seed, epoch]).permutation(len(rows))]
    return rows


def _wrap(rows: np.ndarray, length: int) -> np.ndarray:
    """`rows` cycled to `length` entries (DistributedSampler's padding)."""
    return np.resize(rows, length) if len(rows) else rows


def shard(order: np.ndarray, rank: int, world_size: int, batch_size: int, drop_last: bool,
          padded: np.ndarray | None = None) -> RankRows:
    """Rank `rank`'s rows of `order`: equal in count on every rank (see the module docstring).

    `padded` marks rows of `order` that are repeats already (a resumed epoch's rest); they stay marked.
    """
    total = len(order)
    padded = np.zeros(total, dtype=bool) if padded is None else np.asarray(padded, dtype=bool)
    if drop_last:
        per_rank = (total // world_size) // batch_size * batch_size
        return RankRows(order[rank::world_size][:per_rank], padded[rank::world_size][:per_rank])
    padded_total = math.ceil(total / world_size) * world_size
    rows = _wrap(order, padded_total)
    padded = np.concatenate([padded, np.ones(padded_total - total, dtype=bool)])
    return RankRows(rows[rank::world_size], padded[rank::world_size])


def epoch_share(num_rows: int, excluded, seed: int, epoch: int, shuffle: bool, rank: int, world_size: int,
                batch_size: int, drop_last: bool) -> RankRows:
    """Rank `rank`'s share of epoch `epoch` (before any skip found in it): `epoch_order`, then `shard`."""
    return shard(epoch_order(num_rows, excluded, seed, epoch, shuffle), rank, world_size, batch_size, drop_last)


def without_bad(rank_rows: RankRows, bad, where: str) -> RankRows:
    """`rank_rows` without the `bad` rows, topped up to its length by cycling its usable rows (padded)."""
    keep = ~np.isin(rank_rows.rows, np.asarray(sorted(bad), dtype=np.int64))
    rows, padded = rank_rows.rows[keep], rank_rows.padded[keep]
    missing = len(rank_rows) - len(rows)
    if missing and len(rows) == 0:
        raise MLICDataError(where, f"every image of this rank's {len(rank_rows)} rows is undecodable",
                            "run `mlic-pipe check` on the dataset")
    if missing:
        rows = np.concatenate([rows, _wrap(rows, missing)])
        padded = np.concatenate([padded, np.ones(missing, dtype=bool)])
    return RankRows(rows, padded)


def interleave(parts: list[RankRows]) -> RankRows:
    """The rows of several ranks' remainders in the global order they came from (position-major).

    `shard` of the result over the same number of ranks gives each rank its part back, so resuming
    on the same world size continues every rank exactly where it stopped.
    """
    length = max((len(part) for part in parts), default=0)
    rows, padded = [], []
    for position in range(length):
        for part in parts:
            if position < len(part):
                rows.append(part.rows[position])
                padded.append(part.padded[position])
    return RankRows(np.asarray(rows, dtype=np.int64), np.asarray(padded, dtype=bool))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijective scramble of uint64 values."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_uniforms(seed: int, epoch: int, rows: np.ndarray, count: int) -> np.ndarray:
    """(len(rows), count) float32 uniforms in [0, 1), a pure function of (seed, epoch, row, column).

    Vectorized (a counter-based hash, no generator per sample), so the host prepares a batch's
    crop and flip draws in microseconds.
    """
    with np.errstate(over="ignore"):
        key = _mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + np.uint64(epoch))
        counters = np.asarray(rows, dtype=np.uint64)[:, None] * np.uint64(count) + np.arange(count, dtype=np.uint64)
        bits = _mix64(_mix64(counters + key) ^ key)
    return ((bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)).astype(np.float32)

"""The source protocol: what `MLICLoader` needs from a kind of dataset, one implementation per kind.

The loader owns what every source shares: the epoch counter, the batches delivered, the skips agreed
across ranks, the mixing step and the state's common fields. A `Source` owns how its kind is read:

- ``steps(epoch, agreed)``: the batches this rank yields in `epoch` (the same on every rank);
- ``open(epoch, agreed, found)``: an `EpochReader` standing at the epoch's resume point, whose ``next()``
  hands over `Read`s (uint8 images in DALI's buffer, dataset rows, padded flags, and the packed labels
  when they travel with the samples) until ``done()``, and whose ``skip(bad)`` continues after a batch
  that `UndecodableFiles` stopped;
- ``targets(read, device)``: the (n, C) float targets and the ignore mask of a read, on the device;
- ``save(delivered)`` / ``resume(states, agreed)``: its own fields of a `LoaderState`, and a mid-epoch
  start from the states of any world size;
- ``epoch_rows(epoch)`` where the order is known before reading, ``finish()`` at an epoch's end.

Implementations (`mlic_pipe.loading.sources.SOURCES`, picked by `source_for` from the index's
``source_kind``): "files" (a `LabelIndex`: DALI's file reader over one rank's share in an order drawn
on the host), "hf" and "webdataset" (an `EncodedIndex`: the same order, the encoded bytes fed to DALI
from the host), "shards" (our `ShardIndex`: DALI's WebDataset reader over spans of tars). Adding a
kind is a class and an entry in `SOURCES`; the loader does not change.

One rule for undecodable samples, on every source: a sample found undecodable is left out of the
epoch's rest and its place is taken by a repeat of a usable sample, marked ``padded``. Every batch
keeps its B samples (mixers whose grids need B, a static shape for compiled models and BatchNorm),
every rank its number of batches (DDP's collectives), and an evaluation that counts the rows not
padded still sees every usable sample once. The skip is agreed across ranks at the epoch's end and the
row leaves every later epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from mlic_pipe.pipeline import DecodeSettings

__all__ = ["EpochReader", "Read", "Source", "SourceConfig"]


@dataclass(frozen=True)
class SourceConfig:
    """The loader's settings a source reads by: batch size, decoding, the draws' seed, order and ranks."""

    batch_size: int
    settings: DecodeSettings
    device_id: int | None  # CUDA device for DALI's 'mixed' decoder, None for the CPU pipeline
    seed: int
    shuffle: bool
    drop_last: bool
    rank: int
    world_size: int


@dataclass
class Read:
    """One decoded batch as a source hands it over."""

    images: torch.Tensor  # (n, S, S, 3) uint8, DALI's buffer
    rows: torch.Tensor  # (n,) int64 dataset rows, on the host
    padded: torch.Tensor  # (n,) bool: a repeat (padding, or in place of a skipped sample)
    labels: torch.Tensor | None = None  # (n, ceil(C / 8)) packed bits, when labels travel with the samples
    ignore: torch.Tensor | None = None


class EpochReader(Protocol):
    start: int  # the batch of the epoch the reader stands at (0, or where a resume begins)

    def done(self) -> bool:
        """Whether the epoch's batches have all been handed over."""

    def next(self) -> Read:
        """The next batch; `UndecodableFiles` when a sample cannot be decoded."""

    def skip(self, bad: dict[int, str]) -> None:
        """Continue after `UndecodableFiles`: `bad` holds every row this rank found undecodable this epoch."""


class Source(Protocol):
    kind: str  # saved in loader states: a state resumes only on its own kind

    def __len__(self) -> int: ...

    def name(self, row: int) -> str: ...

    def steps(self, epoch: int, agreed: dict[int, str]) -> int: ...

    def open(self, epoch: int, agreed: dict[int, str], found: dict[int, str]) -> EpochReader: ...

    def targets(self, read: Read, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def epoch_rows(self, epoch: int, agreed: dict[int, str]): ...

    def set_epoch(self, epoch: int) -> int:
        """Forget a resume of another epoch; the batch `epoch` starts at."""

    def finish(self) -> None:
        """The epoch ended: a resume is used up."""

    def save(self, delivered: int) -> dict:
        """This source's fields of the state (rows, padded, offset, checkpoint)."""

    def resume(self, states: list, agreed: dict[int, str]) -> dict[int, str]:
        """Start mid-epoch from `states` (this rank's, or every rank's); returns the rows this rank found bad.

        `agreed` (the skipped rows) gains every old rank's finds when the world size changed.
        """

"""`RowSource`: datasets read by row in an order drawn on the host (files, Hugging Face datasets, foreign tars).

Each epoch's order, each rank's share and every resume are pure functions of (seed, epoch, skips,
world size) (`mlic_pipe.loading.order`, `mlic_pipe.loading.resume`), so a row decodes to the same
pixels anywhere and an epoch resumes on any world size. What differs by kind is only how DALI gets
the encoded images: "files" through DALI's own file reader, "hf" and "webdataset" from the host by row
(`EncodedIndex.read_encoded`, one read per image: Arrow bytes, or a tar member at its offset).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mlic_pipe.datasets.labels import SparseLabels
from mlic_pipe.loading.order import RankRows, epoch_share, without_bad
from mlic_pipe.loading.resume import LoaderState, reshard
from mlic_pipe.loading.source import Read, SourceConfig
from mlic_pipe.loading.stream import DecodeStream

__all__ = ["RowReader", "RowSource"]


@dataclass(frozen=True)
class Resume:
    """The share an epoch resumes from: rows before this epoch's skips, and where delivery stands."""

    epoch: int
    initial: RankRows
    offset: int  # batches of the epoch delivered before `initial` begins
    start: int  # the epoch's next batch
    explicit: bool  # `initial` came from another world size, so a state must list it


class RowReader:
    """One epoch of a rank's rows through a `DecodeStream`, rebuilt without the rows found undecodable."""

    def __init__(self, source: "RowSource", share: Resume, found: dict[int, str]):
        self.source, self.initial, self.start = source, share.initial, share.start
        self.share = without_bad(share.initial, found, "MLICLoader") if found else share.initial
        self.position = (share.start - share.offset) * source.config.batch_size
        config = source.config
        self.stream = DecodeStream(source.index, config.batch_size, config.settings, config.device_id, config.seed,
                                   share.epoch, source.read_encoded)
        self.stream.start(self.share, self.position)

    def done(self) -> bool:
        return self.position >= len(self.share)

    def next(self) -> Read:
        images, rows = self.stream.next()
        padded = torch.from_numpy(self.share.padded[self.position:self.position + len(rows)])
        self.position += len(rows)
        return Read(images, rows, padded)

    def skip(self, bad: dict[int, str]) -> None:
        self.share = without_bad(self.initial, bad, self.source.name(next(iter(bad))))
        self.stream.start(self.share, self.position)


class RowSource:
    """A `LabelIndex` (or `EncodedIndex`) read by row; the targets gathered by row from a table on the device."""

    def __init__(self, index, config: SourceConfig, kind: str = "files"):
        self.index, self.config, self.kind = index, config, kind
        self.read_encoded = getattr(index, "read_encoded", None)
        self._resume: Resume | None = None

    def __len__(self) -> int:
        return len(self.index)

    def name(self, row: int) -> str:
        return self.index.name(row)

    def resuming(self, epoch: int) -> bool:
        """Whether `epoch` starts from a saved state (`resume`) rather than from its beginning."""
        return self._resume is not None and self._resume.epoch == epoch

    def share(self, epoch: int, agreed: dict[int, str]) -> Resume:
        """This rank's rows of `epoch` before any skip found in it, and where delivery starts."""
        if self.resuming(epoch):
            return self._resume
        c = self.config
        share = epoch_share(len(self.index), agreed, c.seed, epoch, c.shuffle, c.rank, c.world_size, c.batch_size,
                            c.drop_last)
        return Resume(epoch, share, 0, 0, False)

    def epoch_rows(self, epoch: int, agreed: dict[int, str]) -> np.ndarray:
        return self.share(epoch, agreed).initial.rows

    def steps(self, epoch: int, agreed: dict[int, str]) -> int:
        share = self.share(epoch, agreed)
        return share.offset + -(-len(share.initial) // self.config.batch_size)

    def set_epoch(self, epoch: int) -> int:
        if not self.resuming(epoch):
            self._resume = None  # a resume applies to its own epoch only
        return self._resume.start if self._resume else 0

    def open(self, epoch: int, agreed: dict[int, str], found: dict[int, str]) -> RowReader:
        return RowReader(self, self.share(epoch, agreed), found)

    def finish(self) -> None:
        self._resume = None

    def targets(self, read: Read, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = read.rows.numpy()
        index = self.index
        ignore = None if index.ignored is None else rows_on_device(index.ignored, rows, device, torch.bool)
        return rows_on_device(index.positives, rows, device, torch.float32), ignore

    def save(self, delivered: int) -> dict:
        explicit = self._resume is not None and self._resume.explicit
        return dict(rows=self._resume.initial.rows.tolist() if explicit else None,
                    padded=self._resume.initial.padded.tolist() if explicit else None,
                    offset=self._resume.offset if self._resume is not None else 0, checkpoint=None)

    def resume(self, states: list[LoaderState], agreed: dict[int, str], rest_of=None) -> dict[int, str]:
        """Start mid-epoch from `states`; see `Source.resume`.

        `rest_of(state, bad)`: what an old rank had not delivered, with the `bad` rows replaced (default: its share
        as the state describes it, `LoaderState.rest`; a shard stream's is worked out from the tars instead).
        """
        first, c = states[0], self.config
        if first.world_size == c.world_size:  # the same ranks: each continues its own share exactly
            own = next(s for s in states if s.rank == c.rank)
            self._resume = Resume(first.epoch, own.initial_share(), own.offset, own.batches, own.rows is not None)
            return own.found_rows(self.index)
        for old in states:  # every new rank read every old rank's finds: they are agreed now, on all ranks alike
            agreed.update(old.found_rows(self.index))
        rest_of = rest_of or (lambda state, bad: state.rest(self.index))
        rests = [rest_of(state, agreed) for state in sorted(states, key=lambda s: s.rank)]
        share = reshard(rests, c.rank, c.world_size, c.batch_size)
        self._resume = Resume(first.epoch, share, first.batches, first.batches, True)
        return {}


def rows_on_device(labels: SparseLabels, rows: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The dense (len(rows), C) rows of `labels`, built on `device` from the batch's listed entries alone.

    Only the (position, class) pairs cross to the device (a few per image, not C), and no (N, C) table
    exists anywhere: what lets Open Images' 9,605 classes load at the speed of COCO's 80. On the CPU the rows
    are built in numpy (`SparseLabels.dense`) and handed over as they are: the torch ops cost ~0.4 ms a batch
    run cache-cold after a render.
    """
    if device.type == "cpu":
        return torch.from_numpy(labels.dense(rows, dtype=torch.empty((), dtype=dtype).numpy().dtype))
    return _rows_from_pairs(labels, rows, device, dtype)


def _rows_from_pairs(labels: SparseLabels, rows: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`rows_on_device` off the CPU: the batch's (position, class) pairs cross, the table is filled there."""
    position, cols = labels.pairs(rows)
    pairs = torch.from_numpy(np.stack([position, cols])).to(device, non_blocking=True)
    table = torch.full((len(rows), labels.num_classes), labels.complement, dtype=dtype, device=device)
    table[pairs[0], pairs[1]] = not labels.complement
    return table

"""`DecodeStream`: decoded uint8 batches of a rank's rows through DALI, rebuilt around undecodable files.

DALI names no file when a batch fails to decode, and it reads `prefetch` batches ahead, so on a
failure every file of the batches in flight is probed on its own (`probe_decode`): the stream then
raises `UndecodableFiles` with each bad row and why, and the loader decides (raise, or skip and
restart the stream at the same position on the rows that remain).
"""
from __future__ import annotations

import numpy as np
import torch

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.errors import MLICDataError
from mlic_pipe.loading.order import RankRows
from mlic_pipe.pipeline import (DecodeSettings, ScheduledBatches, build_pipeline, dali_reason, probe_decode,
                               probe_encoded)

__all__ = ["DecodeStream", "UndecodableFiles", "as_torch"]


class UndecodableFiles(Exception):
    """Rows whose files DALI cannot decode; `bad` maps each row to the reason."""

    def __init__(self, bad: dict[int, str]):
        super().__init__(f"{len(bad)} undecodable file(s)")
        self.bad = bad


def as_torch(batch) -> torch.Tensor:
    """A DALI output batch as a torch tensor sharing DALI's memory (DLPack; CPU or GPU).

    The batch must be dense (all samples the same shape, as after the resize). On the GPU the
    DLPack exchange makes torch's current stream wait for DALI's work on the buffer.
    """
    if not batch.is_dense_tensor():
        raise RuntimeError("DALI returned samples of different shapes; the resize to S x S should prevent this")
    return torch.from_dlpack(batch.as_tensor())


class DecodeStream:
    """Batches of `rows[position:]`, decoded with each sample's crop and flip from (seed, epoch, row).

    Args:
        index: the dataset (files by row).
        batch_size: B; the last batch may be smaller.
        settings: decode settings (`DecodeSettings`).
        device_id: CUDA device for DALI's 'mixed' decoder, or None for the CPU pipeline.
        seed, epoch: fix the per-sample randomness.
        read_encoded: rows -> their encoded images, when the images are not one file each (`EncodedIndex`).
    """

    def __init__(self, index: LabelIndex, batch_size: int, settings: DecodeSettings, device_id: int | None,
                 seed: int, epoch: int, read_encoded=None):
        self.index, self.batch_size, self.settings, self.read_encoded = index, batch_size, settings, read_encoded
        self.device_id, self.seed, self.epoch = device_id, seed, epoch
        self._pipe = self._batches = None
        self._rows = np.zeros(0, dtype=np.int64)
        self._position = 0

    def start(self, rank_rows: RankRows, position: int) -> None:
        """Read `rank_rows` from `position` on (a new pipeline; the previous one is released first)."""
        self._pipe = self._batches = None
        self._rows, self._position = rank_rows.rows, position
        remaining = self._rows[position:]
        if len(remaining):
            files = None if self.read_encoded else [self.index.files[i] for i in remaining]
            self._pipe = build_pipeline(files, remaining.tolist(), self.batch_size, self.settings,
                                        device_id=self.device_id, seed=self.seed, epoch=self.epoch,
                                        read_encoded=self.read_encoded)
            self._batches = ScheduledBatches(self._pipe, -(-len(remaining) // self.batch_size))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: uint8 (n, S, S, 3) images (DALI's buffer) and their (n,) int64 dataset rows."""
        count = min(self.batch_size, len(self._rows) - self._position)
        try:
            decoded, labels = self._batches()
        except RuntimeError as error:
            raise UndecodableFiles(self._find_bad(error)) from error
        self._position += count
        return as_torch(decoded)[:count], as_torch(labels).reshape(-1)[:count].to(torch.int64)

    def _find_bad(self, error: RuntimeError) -> dict[int, str]:
        """Probe every file of the batches DALI had in flight; MLICDataError when each decodes alone."""
        in_flight = self._rows[self._position:self._position + self.batch_size * (self.settings.prefetch + 1)]
        bad = {}
        for row in dict.fromkeys(in_flight.tolist()):
            if self.read_encoded is None:
                reason = probe_decode(self.index.files[row])
            else:
                reason = probe_encoded(self.read_encoded([row])[0].tobytes())
            if reason is not None:
                bad[int(row)] = reason
        if not bad:
            first = self.index.name(int(in_flight[0]))
            raise MLICDataError(first, f"DALI failed on the batches starting with this file ({len(in_flight)} files): "
                                       f"{dali_reason(error)}",
                                "each file decodes on its own; run `mlic-pipe check` on the dataset") from error
        return bad

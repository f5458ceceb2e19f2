"""`EncodedIndex`: a `LabelIndex` whose images are encoded bytes held in something other than one file each.

A Hugging Face dataset keeps its images in Arrow tables, a WebDataset tar keeps them as members:
the loader reads them by row (`read_encoded`) and hands the bytes to DALI, which decodes them as it
decodes files (`mlic_pipe.loading.row_source`). Everything else (order, skips, resume on any world
size) is a file list's. ``files`` holds what names each row in messages and loader states.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mlic_pipe.datasets.index import LabelIndex

__all__ = ["EncodedIndex"]


class EncodedIndex(LabelIndex):
    """`LabelIndex` plus `fetch`: dataset rows -> their encoded images (uint8 arrays), and the source kind."""

    def __init__(self, files, targets, ignore, classes, fetch: Callable[[np.ndarray], list[np.ndarray]],
                 source_kind: str = "hf", class_ids=None):
        super().__init__(files, targets, ignore, classes, class_ids)
        self.fetch = fetch
        self.source_kind = source_kind  # "hf" or "webdataset": saved in loader states (`mlic_pipe.loading.source`)

    def read_encoded(self, rows) -> list[np.ndarray]:
        """The encoded images of `rows`, in order."""
        return self.fetch(np.asarray(rows, dtype=np.int64))

    def subset(self, keep) -> "EncodedIndex":
        keep = np.asarray(keep, dtype=bool)
        positions, fetch = np.flatnonzero(keep), self.fetch
        return EncodedIndex(files=[f for f, k in zip(self.files, keep) if k], targets=self.positives.take(keep),
                            ignore=None if self.ignored is None else self.ignored.take(keep), classes=self.classes,
                            fetch=lambda rows: fetch(positions[rows]), source_kind=self.source_kind,
                            class_ids=self.class_ids)

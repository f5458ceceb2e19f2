"""`LabelIndex`: the one in-memory form every annotation format is read into."""
from __future__ import annotations

import os
import warnings
from collections import defaultdict
from typing import Literal, Sequence

import numpy as np

from mlic_pipe.datasets.labels import DENSE_LIMIT, SparseLabels
from mlic_pipe.errors import MLICDataError

__all__ = ["LabelIndex", "MISSING_FILES", "MissingPolicy", "check_present", "short_digest"]

MissingPolicy = Literal["raise", "drop", "keep"]
MISSING_FILES = ("raise", "drop")  # the policies offered to users; "keep" is `mlic-pipe check`'s own


class LabelIndex:
    """Image files and their multi-label annotations, held sparse.

    Attributes:
        files: absolute image paths, one per row.
        classes: the C column names, in column order.
        class_ids: the formats' own ids of the classes where they differ from the names (Open Images' MIDs,
            one per column), else None.
        positives: `SparseLabels`, the positive (row, class) entries.
        ignored: `SparseLabels` of the entries whose label is unknown (VOC's 'difficult', Open Images'
            unverified classes), excluded from the loss and the metrics; None when the format has no such notion.
        notes: what the parse left out and why (e.g. label rows of classes that are not columns); the cache
            keeps them, so a cached restart reports them too.

    Memory is O(labels): a batch's dense rows come from `labels_for` / `ignore_for`. The dense (N, C)
    `targets` and `ignore` remain for small sets (tests, notebooks) and refuse past `DENSE_LIMIT`.
    Readers pass `targets` / `ignore` either as (N, C) tables or as `SparseLabels`.
    """

    def __init__(self, files: Sequence[str], targets, ignore, classes: Sequence[str],
                 class_ids: Sequence[str] | None = None, notes: Sequence[str] = ()):
        self.files, self.classes = list(files), list(classes)
        self.notes = list(notes)
        self.class_ids = None if class_ids is None else list(class_ids)
        n, c = len(self.files), len(self.classes)
        self.positives = _as_sparse(targets, n, c, "targets")
        self.ignored = None if ignore is None else _as_sparse(ignore, n, c, "ignore")
        if self.class_ids is not None and len(self.class_ids) != c:
            raise ValueError(f"{len(self.class_ids)} class ids for {c} classes")

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_ignore(self) -> bool:
        return self.ignored is not None

    def labels_for(self, rows) -> np.ndarray:
        """(len(rows), C) uint8 in {0, 1}: the positives of `rows`."""
        return self.positives.dense(rows)

    def ignore_for(self, rows) -> np.ndarray | None:
        """(len(rows), C) bool, True where the label of `rows` is unknown; None without an ignore set."""
        return None if self.ignored is None else self.ignored.dense(rows, dtype=bool)

    @property
    def targets(self) -> np.ndarray:
        """The whole (N, C) uint8 table; refused past `DENSE_LIMIT` entries (use `labels_for`)."""
        self._refuse_large("targets")
        return self.positives.dense()

    @property
    def ignore(self) -> np.ndarray | None:
        """The whole (N, C) bool ignore table, or None; refused past `DENSE_LIMIT` entries (use `ignore_for`)."""
        if self.ignored is None:
            return None
        self._refuse_large("ignore")
        return self.ignored.dense(dtype=bool)

    @targets.setter
    def targets(self, table) -> None:
        self.positives = _as_sparse(table, len(self), self.num_classes, "targets")

    @ignore.setter
    def ignore(self, table) -> None:
        self.ignored = None if table is None else _as_sparse(table, len(self), self.num_classes, "ignore")

    def _refuse_large(self, what: str) -> None:
        entries = len(self) * self.num_classes
        if entries > DENSE_LIMIT:
            raise MemoryError(f"{what} of {len(self)} images x {self.num_classes} classes would be a dense table of "
                              f"{entries / 2**30:.1f} Gi entries (the limit is {DENSE_LIMIT / 2**30:.2f} Gi); read "
                              f"rows with labels_for(rows) / ignore_for(rows), or counts from index.positives")

    def name(self, row: int) -> str:
        """What names row `row` in messages and loader states: its file."""
        return self.files[row]

    def fingerprint(self) -> str:
        """A short digest of what the dataset is: its size, classes and the names of up to 4096 evenly spaced files.

        A loader state carries it, so a state is never resumed on another dataset of the same size. File
        names only (not folders), so a dataset moved to another disk still resumes; computed once.
        """
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            rows = np.unique(np.linspace(0, max(len(self) - 1, 0), num=min(len(self), 4096)).astype(np.int64))
            parts = [str(len(self)), *self.classes, *(os.path.basename(self.files[row]) for row in rows)]
            cached = self.__dict__["_fingerprint"] = short_digest(parts)
        return cached

    def subset(self, keep: np.ndarray | Sequence[bool]) -> "LabelIndex":
        """The rows where `keep` is True (a boolean mask over rows), in the same order."""
        keep = np.asarray(keep, dtype=bool)
        return LabelIndex(files=[f for f, k in zip(self.files, keep) if k], targets=self.positives.take(keep),
                          ignore=None if self.ignored is None else self.ignored.take(keep),
                          classes=self.classes, class_ids=self.class_ids)


def _as_sparse(labels, num_rows: int, num_classes: int, what: str) -> SparseLabels:
    """A reader's labels, given as an (N, C) table or as `SparseLabels`, checked against (N, C)."""
    sparse = labels if isinstance(labels, SparseLabels) else SparseLabels.from_dense(np.asarray(labels))
    if sparse.shape != (num_rows, num_classes):
        raise ValueError(f"{what} has shape {sparse.shape}, expected ({num_rows}, {num_classes}) "
                         "= (len(files), len(classes))")
    return sparse


def short_digest(parts) -> str:
    """16 hex digits of BLAKE2b over `parts` joined by newlines: the datasets' fingerprints."""
    import hashlib

    return hashlib.blake2b("\n".join(parts).encode("utf-8"), digest_size=8).hexdigest()


def check_present(files: Sequence[str], source: str | os.PathLike, missing: MissingPolicy) -> np.ndarray:
    """Which of `files` exist on disk; raise or warn about the others.

    Lists each directory once instead of stat-ing every file, so checking COCO's 118k images
    costs tens of milliseconds rather than seconds.

    Args:
        files: absolute paths.
        source: the annotation file the paths came from, named in the error.
        missing: "raise" to fail on any missing file, "drop" to return a mask that drops them
            (with a warning that counts them), "keep" to keep them silently (for `mlic-pipe check`,
            which lists them with the other unusable files).

    Returns:
        (N,) bool mask of the rows to keep: True where the file exists (everywhere with "keep").
    """
    if missing not in ("raise", "drop", "keep"):
        raise ValueError(f"missing must be 'raise', 'drop' or 'keep', got {missing!r}")
    if missing == "keep":
        return np.ones(len(files), dtype=bool)
    by_dir: dict[str, list[int]] = defaultdict(list)
    for row, path in enumerate(files):
        by_dir[os.path.dirname(path)].append(row)
    present = np.zeros(len(files), dtype=bool)
    for directory, rows in by_dir.items():
        try:
            listing = set(os.listdir(directory))
        except OSError:
            continue
        for row in rows:
            present[row] = os.path.basename(files[row]) in listing
    num_missing = int((~present).sum())
    if num_missing:
        first = [files[i] for i in np.flatnonzero(~present)[:5]]
        what = f"{num_missing} of {len(files)} image files are missing on disk, e.g. " + ", ".join(first)
        if missing == "raise":
            raise MLICDataError(source, what, "check the image directory, or pass {missing:drop} "
                                "to train on the images that are there")
        if num_missing == len(files):  # dropping every image leaves nothing to train on: not a warning
            folders = sorted(by_dir)
            raise MLICDataError(source, f"none of its {len(files)} image files exist (looked in {folders[0]}"
                                f"{f' and {len(folders) - 1} other folders' if len(folders) > 1 else ''}), "
                                f"e.g. {first[0]}", "point {image_dir:} at the folder that holds the images")
        warnings.warn(f"{os.fspath(source)}: dropping {what}", stacklevel=3)
    return present

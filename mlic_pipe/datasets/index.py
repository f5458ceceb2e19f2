"""`LabelIndex`: the one in-memory form every annotation format is read into."""
from __future__ import annotations

import os
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from mlic_pipe.errors import MLICDataError

__all__ = ["LabelIndex", "MISSING_FILES", "MissingPolicy", "check_present", "short_digest"]

MissingPolicy = Literal["raise", "drop", "keep"]
MISSING_FILES = ("raise", "drop")  # the policies offered to users; "keep" is `mlic-pipe check`'s own


@dataclass
class LabelIndex:
    """Image files and their multi-hot labels.

    Attributes:
        files: absolute image paths, one per row.
        targets: (N, C) uint8 in {0, 1}.
        ignore: (N, C) bool, True where a label is unknown (VOC 'difficult'); such entries are
            excluded from metrics. None when the format has no such notion.
        classes: the C column names, in column order.
    """

    files: list[str]
    targets: np.ndarray
    ignore: np.ndarray | None
    classes: list[str]

    def __post_init__(self) -> None:
        self.targets = np.ascontiguousarray(self.targets, dtype=np.uint8)
        n, c = len(self.files), len(self.classes)
        if self.targets.shape != (n, c):
            raise ValueError(f"targets has shape {self.targets.shape}, expected ({n}, {c}) "
                             "= (len(files), len(classes))")
        if self.ignore is not None:
            self.ignore = np.ascontiguousarray(self.ignore, dtype=bool)
            if self.ignore.shape != (n, c):
                raise ValueError(f"ignore has shape {self.ignore.shape}, expected ({n}, {c})")

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

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
        return LabelIndex(
            files=[f for f, k in zip(self.files, keep) if k],
            targets=self.targets[keep],
            ignore=None if self.ignore is None else self.ignore[keep],
            classes=list(self.classes),
        )


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

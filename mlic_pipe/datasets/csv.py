"""A plain CSV of ``path,labels`` -> `LabelIndex`, for any dataset without a standard layout.

The file has a header row naming the two columns ``path`` and ``labels``; labels are class names
separated by ``|`` (an empty field means no label). Paths are relative to `image_dir`, else to
the CSV's own directory. The class list is the sorted set of names in the file unless given.
"""
from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from mlic_pipe.datasets.index import LabelIndex, MissingPolicy, check_present
from mlic_pipe.errors import MLICDataError

__all__ = ["load_csv"]


def _rows(path: str) -> list[tuple[str, list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"path", "labels"} <= {f.strip() for f in reader.fieldnames}:
                raise MLICDataError(path, f"header is {reader.fieldnames}, expected 'path,labels'",
                                    "the first row must name the columns path and labels")
            rows = []
            for number, record in enumerate(reader, 2):
                record = {(k or "").strip(): v for k, v in record.items()}
                file, labels = (record.get("path") or "").strip(), (record.get("labels") or "").strip()
                if not file:
                    raise MLICDataError(path, f"line {number} has no path")
                rows.append((file, [name.strip() for name in labels.split("|") if name.strip()]))
    except FileNotFoundError:
        raise MLICDataError(path, "CSV file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise MLICDataError(path, f"cannot be read as CSV ({error})") from None
    return rows


def load_csv(path: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
             classes: Sequence[str] | None = None, missing: MissingPolicy = "raise") -> LabelIndex:
    """Read a ``path,labels`` CSV into a `LabelIndex`.

    Args:
        path: the CSV file.
        image_dir: what relative paths are relative to; the CSV's directory by default.
        classes: the column order; a label not in it is an error. Default: sorted names found.
        missing: "raise" if an image is missing on disk, "drop" to drop it with a warning.
    """
    path = os.path.abspath(path)
    rows = _rows(path)
    if not rows:
        raise MLICDataError(path, "lists no images", "the dataset is empty")
    if classes is None:
        classes = sorted({name for _, names in rows for name in names})
        if not classes:
            raise MLICDataError(path, "no row has a label", "a multi-label dataset needs at least one class")
    classes = list(classes)
    column = {name: i for i, name in enumerate(classes)}
    if len(column) != len(classes):
        raise ValueError(f"classes has duplicates: {classes}")
    base = os.path.abspath(image_dir) if image_dir is not None else os.path.dirname(path)
    targets = np.zeros((len(rows), len(classes)), dtype=np.uint8)
    for row, (_, names) in enumerate(rows):
        unknown = [name for name in names if name not in column]
        if unknown:
            raise MLICDataError(path, f"line {row + 2} has labels {unknown} not in the given classes",
                                "add them to classes, or fix the row")
        targets[row, [column[name] for name in names]] = 1
    files = [os.path.normpath(os.path.join(base, file)) for file, _ in rows]
    index = LabelIndex(files=files, targets=targets, ignore=None, classes=classes)
    present = check_present(index.files, path, missing)
    return index if present.all() else index.subset(present)

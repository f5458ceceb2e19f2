"""CSV label files -> `LabelIndex`: our ``path,labels`` and ASL's ``nus_wid_data.csv`` alike.

Columns are found by the header's names (path: ``path``, ``filepath``, ``file``, ``filename``,
``image``; labels: ``labels``, ``label``, ``tags``; split: ``split``, ``split_name``, ``subset``), or
by position (path, labels[, split]) when the first row is data or names other columns. A labels
field is either class names separated by ``|`` (empty: no label) or a Python list literal as ASL
writes it (``"['clouds', 'sky']"``), read with `ast.literal_eval` (literals only, never code). A
field that is neither (a bracket or quote inside a name) is an error naming the line, never a class.
With a split column, `split` keeps its rows (default "train"). Paths are relative to `image_dir`,
else to the CSV's folder. The classes are the sorted names found (for NUS-WIDE, the order of
``Concepts81.txt``) unless given.
"""
from __future__ import annotations

import ast
import csv
import logging
import os
from typing import Sequence

from mlic_pipe.datasets.index import LabelIndex, MissingPolicy, check_present
from mlic_pipe.datasets.labels import SparseLabels
from mlic_pipe.datasets.listfile import read_classes
from mlic_pipe.errors import MLICDataError

__all__ = ["load_csv"]

log = logging.getLogger(__name__)

_COLUMNS = {"path": ("path", "filepath", "file", "filename", "image", "image_path"),
            "labels": ("labels", "label", "tags"), "split": ("split", "split_name", "subset")}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def _columns(first: list[str]) -> tuple[dict[str, int], bool]:
    """Which column holds path, labels and split, and whether the first row is a header."""
    names = [name.strip().lower() for name in first]
    found = {role: next((i for i, name in enumerate(names) if name in aliases), None)
             for role, aliases in _COLUMNS.items()}
    if found["path"] is not None and found["labels"] is not None:
        return {role: i for role, i in found.items() if i is not None}, True
    by_position = {"path": 0, "labels": 1, **({"split": 2} if len(first) > 2 else {})}
    return by_position, not first[0].strip().lower().endswith(_IMAGE_SUFFIXES)


def _label_names(field: str, path: str, line: int) -> list[str]:
    """The class names of one labels field: ``a|b`` or a list literal ``['a', 'b']``."""
    text = field.strip()
    if text.startswith(("[", "(")):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise MLICDataError(path, f"line {line}: labels {text[:60]!r} look like a list but do not parse as one",
                                "write them as ['a', 'b'] or a|b") from None
        if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
            raise MLICDataError(path, f"line {line}: labels {text[:60]!r} are not a list of class names")
        names = [name.strip() for name in value]
    else:
        names = [name.strip() for name in text.split("|")]
    for name in names:
        if any(mark in name for mark in "[]'\""):
            raise MLICDataError(path, f"line {line}: label {name!r} holds brackets or quotes: a malformed list, "
                                "not a class name", "write labels as a|b or as a list literal ['a', 'b']")
    return [name for name in names if name]


def _rows(path: str) -> tuple[list[tuple[int, str, list[str], str | None]], bool]:
    """(line, path, label names, split or None) per data row, and whether the file has a split column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            records = list(csv.reader(handle))
    except FileNotFoundError:
        raise MLICDataError(path, "CSV file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise MLICDataError(path, f"cannot be read as CSV ({error})") from None
    records = [(number, record) for number, record in enumerate(records, 1) if any(f.strip() for f in record)]
    if not records:
        raise MLICDataError(path, "is empty", "the dataset is empty")
    columns, has_header = _columns(records[0][1])
    if len(records[0][1]) < 2:
        raise MLICDataError(path, f"line {records[0][0]} has one column; expected path and labels (and a split)",
                            "write a header such as path,labels or filepath,label,split_name")
    rows = []
    for number, record in records[1:] if has_header else records:
        if len(record) <= max(columns.values()):
            raise MLICDataError(path, f"line {number} has {len(record)} fields, expected {max(columns.values()) + 1}")
        file = record[columns["path"]].strip()
        if not file:
            raise MLICDataError(path, f"line {number} has no path")
        split = record[columns["split"]].strip() if "split" in columns else None
        rows.append((number, file, _label_names(record[columns["labels"]], path, number), split))
    return rows, "split" in columns


def _pick_split(rows, path: str, split: str | None):
    splits = sorted({row[3] for row in rows})
    wanted = split or "train"
    kept = [row for row in rows if row[3] == wanted]
    if not kept:
        raise MLICDataError(path, f"has no rows of split {wanted!r} (its splits: {', '.join(splits)})",
                            f"pass {{split:{splits[0] if splits else ''}}}")
    if split is None:
        log.info("%s: read the %r split (%d of %d rows); pass split= for another", path, wanted, len(kept), len(rows))
    return kept


def load_csv(path: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
             classes: Sequence[str] | str | os.PathLike | None = None, split: str | None = None,
             missing: MissingPolicy = "raise") -> LabelIndex:
    """Read a label CSV (see the module docstring) into a `LabelIndex`.

    Args:
        path: the CSV file.
        image_dir: what relative paths are relative to; the CSV's directory by default.
        classes: the column order (a list, or a file with one name a line); a label not in it is an
            error. Default: sorted names found
            (in the whole file, so train and val splits get the same columns).
        split: with a split column, the rows to keep ("train" by default); ignored without one.
        missing: "raise" if an image is missing on disk, "drop" to drop it with a warning.
    """
    path = os.path.abspath(path)
    rows, has_split = _rows(path)
    if not rows:
        raise MLICDataError(path, "lists no images", "the dataset is empty")
    if classes is None:
        classes = sorted({name for _, _, names, _ in rows for name in names})
        if not classes:
            raise MLICDataError(path, "no row has a label", "a multi-label dataset needs at least one class")
    else:
        classes = read_classes(classes, path)  # a list, or a file with one name a line (--classes FILE)
    if has_split:
        rows = _pick_split(rows, path, split)
    column = {name: i for i, name in enumerate(classes)}
    base = os.path.abspath(image_dir) if image_dir is not None else os.path.dirname(path)
    for number, _, names, _ in rows:
        unknown = [name for name in names if name not in column]
        if unknown:
            raise MLICDataError(path, f"line {number} has labels {unknown} not in the given classes",
                                "add them to classes, or fix the row")
    targets = SparseLabels.from_lists([[column[name] for name in names] for _, _, names, _ in rows], len(classes))
    files = [os.path.normpath(os.path.join(base, file)) for _, file, _, _ in rows]
    index = LabelIndex(files=files, targets=targets, ignore=None, classes=classes)
    present = check_present(index.files, path, missing)
    return index if present.all() else index.subset(present)

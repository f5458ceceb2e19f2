"""List files -> `LabelIndex`: ``<path> <0/1 for each class>`` per line, as hashing papers ship NUS-WIDE.

HashNet and its successors distribute splits such as ``train.txt`` / ``database.txt`` whose lines are
an image path (often ``./data/nuswide_81/images/...``, relative to the project's root) followed by
one 0/1 per class, whitespace separated, with no header; the class names come separately. So
`load_list` takes the classes (a list, or a file with one name a line) and the folder the paths
are relative to (`image_dir`, default the list's folder). A line's values are its trailing 0/1
fields, so a path with spaces survives; a line whose count differs from the classes' is an error
naming it.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from mlic_pipe.datasets.index import LabelIndex, MissingPolicy, check_present
from mlic_pipe.errors import MLICDataError

__all__ = ["load_list", "read_classes"]


def read_classes(classes: Sequence[str] | str | os.PathLike | None, source: str) -> list[str]:
    """Class names given as a list, or as a file with one name a line; MLICDataError if absent or unusable."""
    if classes is None:
        raise MLICDataError(source, "a list file does not name its classes", "pass {classes:} (a file with one "
                            "class name a line, in the order of the list's columns)")
    if isinstance(classes, (str, os.PathLike)):
        try:
            with open(classes, encoding="utf-8") as handle:
                names = [line.strip() for line in handle if line.strip()]
        except OSError as error:
            raise MLICDataError(os.fspath(classes), f"cannot be read as a class list ({error.strerror or error})",
                                "pass {classes:} as a file with one class name a line") from None
        source = os.fspath(classes)
    else:
        names = [str(name) for name in classes]
    if not names:
        raise MLICDataError(source, "names no class", "a multi-label dataset needs at least one class")
    if len(set(names)) != len(names):
        raise MLICDataError(source, "names a class twice")
    return names


def load_list(path: str | os.PathLike, classes: Sequence[str] | str | os.PathLike | None = None, *,
              image_dir: str | os.PathLike | None = None, missing: MissingPolicy = "raise") -> LabelIndex:
    """Read a ``<path> <0/1 x C>`` list file into a `LabelIndex` (see the module docstring)."""
    path = os.path.abspath(path)
    names = read_classes(classes, path)
    base = os.path.abspath(image_dir) if image_dir is not None else os.path.dirname(path)
    files, rows = [], []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                fields = line.split()
                if not fields:
                    continue
                count = next((k for k, value in enumerate(reversed(fields)) if value not in ("0", "1")), len(fields))
                if count == len(fields):
                    raise MLICDataError(path, f"line {number} has no path, only 0/1 values")
                if count != len(names):
                    raise MLICDataError(path, f"line {number} has {count} values after its path "
                                        f"({' '.join(fields[:-count or None])!r}), but {len(names)} classes are given",
                                        "pass the class list of this file")
                values = fields[-len(names):]
                relative = " ".join(fields[:-len(names)])
                relative = relative[2:] if relative.startswith("./") else relative
                files.append(os.path.normpath(os.path.join(base, relative)))
                rows.append([value == "1" for value in values])
    except FileNotFoundError:
        raise MLICDataError(path, "list file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MLICDataError(path, f"cannot be read ({error})") from None
    if not files:
        raise MLICDataError(path, "lists no images", "the dataset is empty")
    index = LabelIndex(files=files, targets=np.asarray(rows, dtype=np.uint8), ignore=None, classes=names)
    present = check_present(index.files, path, missing)
    return index if present.all() else index.subset(present)

"""Hugging Face `datasets`: `load_hf` (a `datasets.Dataset` in memory) and `load_hf_disk` (a ``save_to_disk`` folder).

The images stay encoded in the dataset's Arrow table (an ``Image`` column holds ``{"bytes", "path"}``;
a row with no bytes is read from its path): the loader fetches a batch's bytes by row and DALI decodes
them, so PIL never runs on the hot path. The labels are read once, column-wise through Arrow, into the
index's sparse labels. Label columns understood:

- ``Sequence(ClassLabel)`` (``List(ClassLabel)``): class indices; the ClassLabel names the classes;
- ``ClassLabel``: one class per image (a single-label set read as multi-label);
- a list of class names, or of class indices, with ``classes=``;
- a list of C multi-hot numbers per row (positive where >= 0.5), with ``classes=`` (C names).

`datasets` is an optional dependency (``pip install datasets``), imported only here.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from mlic_pipe.datasets.encoded import EncodedIndex
from mlic_pipe.datasets.labels import SparseLabels
from mlic_pipe.errors import MLICDataError

__all__ = ["is_hf_disk", "load_hf", "load_hf_disk"]


def _datasets():
    try:
        import datasets
    except ImportError:
        raise MLICDataError(None, "reading a Hugging Face dataset needs the `datasets` package",
                            "pip install datasets") from None
    return datasets


def is_hf_disk(path: str) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return os.path.isdir(path) and (os.path.isfile(os.path.join(path, "dataset_dict.json")) or (
        os.path.isfile(os.path.join(path, "state.json")) and os.path.isfile(os.path.join(path, "dataset_info.json"))))


def load_hf_disk(path: str | os.PathLike, split: str | None = None, **kw) -> EncodedIndex:
    """The dataset saved at `path` (``save_to_disk``); a `DatasetDict` needs `split` (default "train")."""
    datasets, path = _datasets(), os.fspath(path)
    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        split = split or "train"
        if split not in loaded:
            raise MLICDataError(path, f"has no split {split!r} (it has {', '.join(loaded)})", "pass {split:}")
        loaded = loaded[split]
    return load_hf(loaded, name=os.path.basename(os.path.abspath(path)), **kw)


def load_hf(dataset, image_column: str = "image", label_column: str = "labels", classes: Sequence[str] | None = None,
            *, name: str | None = None) -> EncodedIndex:
    """A `datasets.Dataset` as an `EncodedIndex` (see the module docstring for the label columns understood).

    Args:
        dataset: the dataset (selections and shuffles are honoured: row i is ``dataset[i]``).
        image_column: an ``Image`` column.
        label_column: the multi-label column.
        classes: the class names, required unless the column's ClassLabel names them (then, if given, a
            reordering of those names).
        name: what rows are called in messages (``name[row]``); the dataset's builder name by default.
    """
    datasets = _datasets()
    if isinstance(classes, (str, os.PathLike)):  # a file with one name a line, as the CLI's --classes
        from mlic_pipe.datasets.listfile import read_classes

        classes = read_classes(classes, name or "dataset")
    name = name or getattr(dataset.info, "dataset_name", None) or "dataset"
    for column in (image_column, label_column):
        if column not in dataset.column_names:
            raise MLICDataError(name, f"has no column {column!r} (it has {', '.join(dataset.column_names)})",
                                "pass {image_column:} and {label_column:}")
    if not isinstance(dataset.features[image_column], datasets.Image):
        raise MLICDataError(name, f"column {image_column!r} is {dataset.features[image_column]}, not an Image "
                            "column", "cast it: dataset.cast_column(name, datasets.Image())")
    raw = dataset.cast_column(image_column, datasets.Image(decode=False)).select_columns([image_column])
    arrow = raw.with_format("arrow")
    paths = [path for chunk in arrow[image_column].chunks for path in chunk.field("path").to_pylist()]
    files = [path if path else f"{name}[{row}]" for row, path in enumerate(paths)]
    class_names, targets = _labels(dataset, label_column, classes, name, datasets)

    def fetch(rows: np.ndarray) -> list[np.ndarray]:
        table = arrow[rows.tolist()][image_column].combine_chunks()
        blobs, where = table.field("bytes"), table.field("path")
        return [np.frombuffer(blob.as_buffer(), dtype=np.uint8) if blob.is_valid else _read_path(where[k].as_py())
                for k, blob in enumerate(blobs)]
    return EncodedIndex(files=files, targets=targets, ignore=None, classes=class_names, fetch=fetch,
                        source_kind="hf")


def _read_path(path: str | None) -> np.ndarray:
    """An Image row held as a path: its bytes (empty when unreadable, which the loader's decode check names)."""
    try:
        with open(path, "rb") as handle:
            return np.frombuffer(handle.read(), dtype=np.uint8)
    except (OSError, TypeError):
        return np.zeros(0, dtype=np.uint8)


def _labels(dataset, column: str, classes, name: str, datasets) -> tuple[list[str], SparseLabels]:
    """The class names and the labels of `column` (CSR), read column-wise through Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    feature, n = dataset.features[column], len(dataset)
    values = dataset.with_format("arrow")[column].combine_chunks()  # that column only, not the images
    if isinstance(feature, datasets.ClassLabel):  # single-label
        names, parents, items = feature.names, np.arange(n), values.to_numpy(zero_copy_only=False)
    else:
        inner = getattr(feature, "feature", None)
        if inner is None or not pa.types.is_list(values.type) and not pa.types.is_large_list(values.type):
            raise MLICDataError(name, f"label column {column!r} is {feature}, not a list of labels",
                                "pass {label_column:} naming a Sequence(ClassLabel) or list column")
        parents = pc.list_parent_indices(values).to_numpy()
        items = pc.list_flatten(values).to_numpy(zero_copy_only=False)
        names = inner.names if isinstance(inner, datasets.ClassLabel) else None
        if names is None and classes is None:
            raise MLICDataError(name, f"label column {column!r} holds {inner}, which names no classes",
                                "pass {classes:} (the class names, in column order)")
        if names is None and items.dtype.kind == "f":  # multi-hot numbers: C per row
            lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != len(classes))
            if len(bad):
                raise MLICDataError(f"{name}[{bad[0]}]", f"has {lengths[bad[0]]} multi-hot values, but "
                                    f"{len(classes)} classes were given", "pass the classes of the columns")
            return list(classes), SparseLabels.from_dense(items.reshape(n, len(classes)) >= 0.5)
    if names is not None:  # indices into the ClassLabel's names; `classes` may reorder them
        items = np.asarray(names, dtype=object)[items.astype(np.int64)] if classes is not None else items
    out = list(classes) if classes is not None else list(names)
    if items.dtype.kind in "iu":
        columns = items.astype(np.int64)
        bad = np.flatnonzero((columns < 0) | (columns >= len(out)))
        if len(bad):
            raise MLICDataError(f"{name}[{parents[bad[0]]}]", f"has class index {columns[bad[0]]}, outside the "
                                f"{len(out)} classes", "pass the full class list as {classes:}")
    else:
        lookup = {c: k for k, c in enumerate(out)}
        unknown = [k for k, item in enumerate(items) if item not in lookup]
        if unknown:
            raise MLICDataError(f"{name}[{parents[unknown[0]]}]", f"has class {items[unknown[0]]!r}, not one of the "
                                f"{len(out)} classes", "add it to {classes:}")
        columns = np.fromiter((lookup[item] for item in items), dtype=np.int64, count=len(items))
    return out, SparseLabels.from_pairs(parents, columns, n, len(out))

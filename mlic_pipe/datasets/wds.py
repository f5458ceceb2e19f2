"""Other people's WebDataset tars (the `webdataset` library's TarWriter, img2dataset, ...) -> `EncodedIndex`.

Such tars hold, per sample, consecutive members ``<key>.<ext>``: an image (jpg, png, webp, ...) and
the labels in some member, read as ``label_key`` says:

- ``"json:labels"`` (the default): the ``labels`` field of ``<key>.json``, a list of class names or
  indices (a dotted path reaches nested fields, ``"json:meta.tags"``; a single name or index works too);
- ``"cls"``, ``"txt"`` or any other extension: that member's text, names or indices separated by commas,
  semicolons or white space (``.cls`` holds one integer in the library's convention).

The class list comes from the user (``classes=``: names, or a file with one a line); indices count
into it. Each tar gets the index DALI's reader uses (``<tar>.idx`` beside it, or in the cache folder
when that folder is read-only), built from the headers when missing and rebuilt when it no longer
fits the tar (older than it, or pointing past its end). The same structure checks as our shards apply (a sample without an image or without
its label member, a truncated tar): a `MLICDataError` names the tar and the key. Images are read by
row at their offsets and decoded by DALI (`mlic_pipe.loading.row_source`), so epochs, skips and resume
behave as a file list's.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from typing import Sequence

import numpy as np

from mlic_pipe.datasets.encoded import EncodedIndex
from mlic_pipe.datasets.labels import SparseLabels
from mlic_pipe.datasets.listfile import read_classes
from mlic_pipe.errors import MLICDataError
from mlic_pipe.shards.format import IMAGE_EXTENSIONS, read_index, write_index
from mlic_pipe.shards.index import is_remote, scan_tar

__all__ = ["expand_urls", "load_webdataset", "parse_label_key"]


def expand_urls(spec: str | os.PathLike | Sequence[str]) -> list[str]:
    """The tars of `spec`: a folder (its ``*.tar``, sorted), a brace pattern (``data-{000..009}.tar``), a list."""
    if not isinstance(spec, (str, os.PathLike)):
        return [u for item in spec for u in expand_urls(item)]
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        return sorted(glob.glob(os.path.join(spec, "*.tar")))
    match = re.search(r"\{(\d+)\.\.(\d+)\}", spec)
    if match:
        low, high = match.group(1), match.group(2)
        return [u for k in range(int(low), int(high) + 1)
                for u in expand_urls(spec[:match.start()] + str(k).zfill(len(low)) + spec[match.end():])]
    return [spec]


def parse_label_key(label_key: str) -> tuple[str, list[str]]:
    """``"json:labels"`` -> ("json", ["labels"]); ``"cls"`` -> ("cls", [])."""
    ext, _, path = label_key.partition(":")
    if not ext:
        raise MLICDataError(None, f"label_key {label_key!r} names no member", "pass e.g. json:labels, cls or txt")
    if ext == "json" and not path:
        path = "labels"
    return ext, [part for part in path.split(".") if part]


def _tokens(value, where: str, label_key: str) -> list:
    """The labels in a json field's `value` (a list, or one name or index)."""
    if isinstance(value, list):
        return value
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    raise MLICDataError(where, f"{label_key} is {value!r}, not a list of class names or indices")


def _labels_of(data: bytes, ext: str, path: list[str], where: str, label_key: str) -> list:
    if ext == "json":
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MLICDataError(where, f"its .json is not JSON ({error})") from None
        for part in path:
            if not isinstance(value, dict) or part not in value:
                raise MLICDataError(where, f"its .json has no field {'.'.join(path)!r}",
                                    "pass {label_key:} naming the field that holds the labels (e.g. json:tags)")
            value = value[part]
        return _tokens(value, where, label_key)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MLICDataError(where, f"its .{ext} is not UTF-8 text") from None
    return [int(t) if re.fullmatch(r"-?\d+", t) else t for t in re.split(r"[,;\s]+", text.strip()) if t]


def _index_path(tar: str) -> str:
    """Where `tar`'s DALI index lives: beside it when that folder is writable, else in the cache folder."""
    beside = os.path.splitext(tar)[0] + ".idx"
    if os.path.isfile(beside) or os.access(os.path.dirname(os.path.abspath(tar)), os.W_OK):
        return beside
    from mlic_pipe.datasets.cache import cache_dir

    digest = hashlib.blake2b(os.path.abspath(tar).encode(), digest_size=8).hexdigest()
    folder = cache_dir() / "wds-index"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{os.path.basename(tar)}.{digest}.idx")


def _entries(tar: str) -> list:
    """The tar's samples as DALI index entries: from its index file if that fits the tar, else scanned (and saved).

    An index older than its tar, or pointing past its end, is stale: rebuilt from the headers.
    """
    index_path, size = _index_path(tar), os.path.getsize(tar)
    if os.path.isfile(index_path) and os.stat(index_path).st_mtime_ns >= os.stat(tar).st_mtime_ns:
        try:
            samples = read_index(index_path)
            if all(offset + length <= size for sample in samples for _, offset, length, _ in sample):
                return samples
        except ValueError:
            pass  # not an index (or another version): rebuilt below
    samples = scan_tar(tar)
    write_index(index_path, samples)
    return samples


def _samples(tar: str, ext: str, path: list[str], label_key: str, lookup: dict, names: list[str]):
    """Each sample of `tar`: its name, its image's (offset, size) and its label columns, checked."""
    if not os.path.isfile(tar):
        raise MLICDataError(tar, "no such tar")
    with open(tar, "rb") as handle:
        for sample in _entries(tar):
            key = sample[0][3].rsplit(".", 1)[0] if "." in sample[0][3] else sample[0][3]
            where = f"{tar}: {key}"
            parts = {e: (offset, length) for e, offset, length, _ in sample}
            image = next((e for e in parts if e.lower() in IMAGE_EXTENSIONS), None)
            if image is None:
                raise MLICDataError(tar, f"sample {key} has no image (components: {', '.join(parts)})")
            if ext not in parts:
                raise MLICDataError(tar, f"sample {key} has no .{ext}, which label_key {label_key!r} reads",
                                    "pass {label_key:} naming the member that holds the labels")
            handle.seek(parts[ext][0])
            columns = []
            for label in _labels_of(handle.read(parts[ext][1]), ext, path, where, label_key):
                column = lookup.get(label) if isinstance(label, str) else label
                if column is None or not 0 <= column < len(names):
                    raise MLICDataError(where, f"has label {label!r}, not one of the {len(names)} classes "
                                        f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})",
                                        "add it to {classes:}, or check that label indices count from 0")
                columns.append(column)
            yield where, parts[image], columns


def load_webdataset(spec: str | os.PathLike | Sequence[str], classes: Sequence[str] | str | os.PathLike | None,
                    *, label_key: str = "json:labels") -> EncodedIndex:
    """Tars written by other tools as an `EncodedIndex` (see the module docstring).

    Args:
        spec: a folder of ``*.tar``, a brace pattern, a tar, or a list of them (local files).
        classes: the class names (a list, or a file with one name a line); label indices count into it.
        label_key: which member holds the labels, and where in it (``json:labels``, ``json:meta.tags``, ``cls``).
    """
    tars = expand_urls(spec)
    source = os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else (tars[0] if tars else "(no tars)")
    if not tars:
        raise MLICDataError(source, "holds no .tar files", "point at a folder of WebDataset tars or list them")
    remote = [t for t in tars if is_remote(t)]
    if remote:
        raise MLICDataError(remote[0], "is not on local disk: other people's tars are read by row at their offsets",
                            "copy them locally, or convert them once with `mlic-pipe shard`")
    if classes is None:
        raise MLICDataError(source, "other people's WebDataset tars do not name their classes",
                            "pass {classes:} (the names, or a file with one name a line; indices count into it)")
    names = read_classes(classes, source)
    lookup = {name: k for k, name in enumerate(names)}
    ext, path = parse_label_key(label_key)
    files, locations, rows = [], [], []
    for number, tar in enumerate(tars):
        for where, image, columns in _samples(tar, ext, path, label_key, lookup, names):
            files.append(where)
            locations.append((number, *image))
            rows.append(columns)
    targets = SparseLabels.from_lists(rows, len(names))
    table = np.asarray(locations, dtype=np.int64).reshape(-1, 3)

    def fetch(wanted: np.ndarray) -> list[np.ndarray]:
        handles, out = {}, []
        try:
            for number, offset, length in table[wanted]:
                if number not in handles:
                    handles[number] = os.open(tars[number], os.O_RDONLY)
                out.append(np.frombuffer(os.pread(handles[number], int(length), int(offset)), dtype=np.uint8))
        finally:
            for handle in handles.values():
                os.close(handle)
        return out
    return EncodedIndex(files=files, targets=targets, ignore=None, classes=names, fetch=fetch,
                        source_kind="webdataset")

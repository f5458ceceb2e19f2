"""On-disk cache of parsed annotation files.

Parsing COCO train2014's 600k annotations takes seconds and NUS-WIDE's 81 label files more;
both are repeated at every start of a job. The parsed `LabelIndex` is saved as one file of raw
arrays (`.arrays`: a JSON header, then the bytes) under the user cache directory, keyed by the path, size and modification time of every
file it was read from, so any edit of an annotation file makes a fresh parse.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.datasets.labels import SparseLabels

__all__ = ["cache_dir", "cached_index"]

# Bump when a reader changes what it produces, so stale caches are not reused.
FORMAT_VERSION = 3  # 2: labels in CSR form (`SparseLabels`), class ids alongside; 3: one raw-array file, not .npz


def cache_dir() -> Path:
    """The user cache directory: $MLIC_PIPE_CACHE_DIR, else $XDG_CACHE_HOME/mlic-pipe, else ~/.cache/mlic-pipe."""
    explicit = os.environ.get("MLIC_PIPE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlic-pipe"


def _cache_key(kind: str, sources: Sequence[str | os.PathLike], params: dict) -> str:
    stamp = []
    for source in sources:
        stat = os.stat(source)
        stamp.append([os.path.abspath(source), stat.st_size, stat.st_mtime_ns])
    blob = json.dumps([FORMAT_VERSION, kind, stamp, params], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def _save(path: Path, index: LabelIndex) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "files": _text_bytes(index.files), "classes": _text_bytes(index.classes),
        "positives_indptr": index.positives.indptr, "positives_indices": index.positives.indices,
    }
    if index.ignored is not None:
        arrays.update(ignored_indptr=index.ignored.indptr, ignored_indices=index.ignored.indices,
                      ignored_complement=np.array([index.ignored.complement], dtype=np.uint8))
    if index.notes:
        arrays["notes"] = _text_bytes(index.notes)
    if index.class_ids is not None:
        arrays["class_ids"] = _text_bytes(index.class_ids)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            _write_arrays(handle, arrays)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    except BaseException:
        os.unlink(tmp)
        raise


def _text_bytes(lines: Sequence[str]) -> np.ndarray:
    return np.frombuffer("\n".join(lines).encode(), dtype=np.uint8)


# One file: 8 bytes of header length, a JSON header (name -> dtype, shape, offset), then each array's raw bytes at
# 64-byte aligned offsets. Read back with one read and zero-copy views: a 300k-image Open Images index restarts in
# ~25 ms where .npz's zip members and CRC checks took ~40 ms.
_ALIGN = 64


def _write_arrays(handle, arrays: dict[str, np.ndarray]) -> None:
    header, offset = {}, 0
    for name, array in arrays.items():
        header[name] = [array.dtype.str, list(array.shape), offset]
        offset += -(-array.nbytes // _ALIGN) * _ALIGN
    blob = json.dumps(header).encode()
    start = -(-(8 + len(blob)) // _ALIGN) * _ALIGN
    handle.write(np.uint64(len(blob)).tobytes() + blob + b"\0" * (start - 8 - len(blob)))
    for array in arrays.values():
        data = np.ascontiguousarray(array).tobytes()
        handle.write(data + b"\0" * (-len(data) % _ALIGN))


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as handle:
        buffer = bytearray(os.fstat(handle.fileno()).st_size)
        if handle.readinto(buffer) != len(buffer):
            raise OSError("short read")
    size = int(np.frombuffer(buffer, dtype=np.uint64, count=1)[0])
    header = json.loads(bytes(buffer[8:8 + size]))
    start = -(-(8 + size) // _ALIGN) * _ALIGN
    arrays = {}
    for name, (dtype, shape, offset) in header.items():
        count = int(np.prod(shape)) if shape else 1
        arrays[name] = np.frombuffer(buffer, dtype=dtype, count=count, offset=start + offset).reshape(shape)
    return arrays


def _lines(data: dict, name: str) -> list[str] | None:
    if name not in data:
        return None
    text = data[name].tobytes().decode()
    return text.split("\n") if text else []


def _load(path: Path) -> LabelIndex:
    data = _read_arrays(path)
    classes = _lines(data, "classes")
    ignored = None
    if "ignored_indptr" in data:
        ignored = SparseLabels(data["ignored_indptr"], data["ignored_indices"], len(classes),
                               bool(data["ignored_complement"][0]))
    return LabelIndex(files=_lines(data, "files"), classes=classes, class_ids=_lines(data, "class_ids"),
                      targets=SparseLabels(data["positives_indptr"], data["positives_indices"], len(classes)),
                      ignore=ignored, notes=_lines(data, "notes") or ())


def cached_index(kind: str, sources: Sequence[str | os.PathLike], params: dict,
                 parse: Callable[[], LabelIndex], *, use_cache: bool = True) -> LabelIndex:
    """Return `parse()`, from the cache when the source files are unchanged.

    Args:
        kind: the reader's name, part of the key.
        sources: every file the parse reads; their path, size and mtime form the key.
        params: the reader's arguments that change its result (JSON-serialisable).
        parse: builds the index when there is no valid cache entry.
        use_cache: False parses and neither reads nor writes the cache.
    """
    if not use_cache:
        return parse()
    path = cache_dir() / "index" / f"{kind}-{_cache_key(kind, sources, params)}.arrays"
    if path.exists():
        try:
            return _load(path)
        except Exception:  # a truncated or foreign file: parse again and overwrite it
            pass
    index = parse()
    try:
        _save(path, index)
    except OSError as error:
        warnings.warn(f"could not write the annotation cache {path} ({error}); "
                      "set MLIC_PIPE_CACHE_DIR to a writable directory to start faster", stacklevel=3)
    return index

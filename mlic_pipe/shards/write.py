"""`write_shards`: a dataset's images (original bytes) and packed labels into GNU tars, DALI index files and dataset.json.

Never destroys a good set: the input is checked whole first (every file present, non-empty and of
a format DALI decodes), the new set is written into a temporary sibling directory, and only when it
is whole does it take the place of `out_dir` (whose old set, if any, is removed after the swap). An
error or Ctrl-C removes the temporary directory, so no ``.partial`` file is left; a process killed
outright leaves the old set untouched and a hidden ``.NAME.partial-PID`` sibling to delete.
`out_dir` must be new, empty or a shard set: a directory holding anything else is refused.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.errors import ConfigError, MLICDataError
from mlic_pipe.shards.format import (FORMAT, FORMAT_VERSION, IMAGE_EXTENSIONS, LABEL_FORMAT, MANIFEST, IndexEntry,
                                     label_bytes, label_json, pack_labels, shard_names, write_index)
from mlic_pipe.shards.integrity import SmallMembers, digest, file_digest, write_sums

__all__ = ["DEFAULT_SHARD_BYTES", "ShardWriter", "parse_size", "sample_keys", "write_shards"]

DEFAULT_SHARD_BYTES = 256 * 2 ** 20  # a few hundred MB per tar: large sequential reads, still many shards


def parse_size(text: str | int) -> int:
    """Bytes from "256M", "1.5G", "4096" (binary units); ConfigError naming {shard_bytes} if it is not a size."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmMgGtT]?)i?[bB]?\s*", str(text))
    size = int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " ")) if match else 0
    if size < 1:
        raise ConfigError(f"{{shard_bytes}}: {text!r} is not a size of at least one byte; write e.g. 256M, 1G or 4096")
    return size


def sample_keys(files: list[str]) -> tuple[str, list[str]]:
    """The common root of `files` and each file's key: its path below the root without the extension.

    WebDataset splits a member name at the first dot of its base name and DALI's index splits at
    spaces, so dots in the base name and spaces become "_"; a key equal to the one before gets
    its row appended (adjacent equal keys would merge into one sample).
    """
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) if files else ""
    keys, previous = [], None
    for row, path in enumerate(files):
        relative = os.path.relpath(os.path.abspath(path), root)
        folder, base = os.path.split(relative)
        stem = base.rsplit(".", 1)[0] if "." in base else base
        key = os.path.join(folder, stem.replace(".", "_")).replace(os.sep, "/").replace(" ", "_")
        key = f"{key}_{row}" if key == previous else key
        keys.append(key)
        previous = key
    return root, keys


def _extension(path: str) -> str:
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    if ext not in IMAGE_EXTENSIONS:
        raise MLICDataError(path, f"has the extension {ext!r}, which DALI's decoders do not read",
                            f"convert it to one of {', '.join(IMAGE_EXTENSIONS)}")
    return ext


@dataclass
class ShardWriter:
    """One tar being written under a .partial name, with its index entries and checksums."""

    directory: str
    number: int
    first_row: int
    samples: list[IndexEntry] = field(default_factory=list)
    sums: list[tuple[str, int, str]] = field(default_factory=list)
    small: SmallMembers = field(default_factory=SmallMembers)
    tar: tarfile.TarFile | None = None

    @property
    def paths(self) -> tuple[str, str, str]:
        tar, index = shard_names(self.number)
        return tuple(os.path.join(self.directory, name) for name in (tar, index, index[:-4] + ".sums"))

    def open(self) -> None:
        self.tar = tarfile.open(self.paths[0] + ".partial", "w", format=tarfile.GNU_FORMAT)

    @property
    def size(self) -> int:
        return self.tar.offset if self.tar is not None else 0

    def add(self, key: str, components: list[tuple[str, bytes]]) -> None:
        entry = []
        for ext, data in components:
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            self.tar.addfile(info, io.BytesIO(data))
            entry.append((ext, self.tar.offset - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE, len(data),
                          info.name))
            self.sums.append((info.name, len(data), digest(data).hexdigest()))
            self.small.add(ext, data)
        self.samples.append(entry)

    def close(self) -> dict:
        """Finish the tar, its index and its sums, then move them to their final names."""
        tar_path, index_path, sums_path = self.paths
        self.tar.close()
        write_index(index_path + ".partial", self.samples)
        write_sums(sums_path + ".partial", self.sums)
        for path in (tar_path, index_path, sums_path):
            with open(path + ".partial", "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(path + ".partial", path)
        return {"tar": os.path.basename(tar_path), "index": os.path.basename(index_path),
                "sums": os.path.basename(sums_path), "samples": len(self.samples), "first_row": self.first_row,
                "bytes": os.path.getsize(tar_path), "index_digest": file_digest(index_path),
                "sums_digest": file_digest(sums_path), "small_digest": self.small.hexdigest()}


def _read_image(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise MLICDataError(path, f"cannot be read ({error.strerror or error})",
                            "check the image directory, or load the dataset with {missing:drop}") from None
    if not data:
        raise MLICDataError(path, "the file is empty (zero bytes)", "remove it from the annotations or replace it")
    return data


_SET_FILE = re.compile(r"(shard-\d{6}\.(tar|idx|sums)(\.partial)?|dataset\.json(\.partial)?)")


def _check_input(index: LabelIndex) -> None:
    """Every file present, non-empty and of a readable format, before anything is written."""
    if not hasattr(index, "files"):
        raise MLICDataError(getattr(index, "root", None), "is a shard set already; shard the dataset it was "
                            "written from", "to move a shard set, copy its directory")
    for path in index.files:
        _extension(path)
        try:
            size = os.stat(path).st_size
        except OSError as error:
            raise MLICDataError(path, f"cannot be read ({error.strerror or error})",
                                "check the image directory, or load the dataset with {missing:drop}") from None
        if size == 0:
            raise MLICDataError(path, "the file is empty (zero bytes)", "remove it from the annotations or replace it")


def _check_target(out_dir: str) -> None:
    """`out_dir` is new, empty or a shard set (so it holds none of the input's images, nor anything else)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise MLICDataError(out_dir, "is a file, not a directory", "name a new or empty directory for the shards")
    if os.path.isdir(out_dir):
        other = sorted(name for name in os.listdir(out_dir) if not _SET_FILE.fullmatch(name))
        if other:
            raise MLICDataError(out_dir, f"holds files that are not a shard set ({', '.join(other[:3])}"
                                f"{' ...' if len(other) > 3 else ''}); writing there would replace them",
                                "name a new or empty directory, or one holding only a shard set")


def _replace_dir(new: str, out_dir: str) -> None:
    """Move the whole set `new` to `out_dir`; an old set there is removed only after the swap."""
    if not os.path.exists(out_dir):
        os.replace(new, out_dir)
        return
    old = os.path.join(os.path.dirname(out_dir), f".{os.path.basename(out_dir)}.old-{os.getpid()}")
    os.replace(out_dir, old)
    os.replace(new, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def write_shards(index: LabelIndex, out_dir: str | os.PathLike, *, samples_per_shard: int | None = None,
                 shard_bytes: int | str | None = None, progress: bool = True) -> dict:
    """Write `index` as shards into `out_dir`; returns the manifest (also saved as dataset.json).

    Args:
        samples_per_shard: close a shard after this many samples; or
        shard_bytes: close a shard once its tar reaches this size (default 256 MiB; "256M" works).
    """
    if samples_per_shard is not None and shard_bytes is not None:
        raise ConfigError("pass {samples_per_shard} or {shard_bytes}, not both")
    if samples_per_shard is not None and samples_per_shard < 1:
        raise ConfigError(f"{{samples_per_shard}} must be at least 1, got {samples_per_shard}")
    limit = parse_size(shard_bytes) if shard_bytes is not None else DEFAULT_SHARD_BYTES
    out_dir = os.path.abspath(os.fspath(out_dir))
    _check_input(index)
    _check_target(out_dir)
    if not len(index):
        raise MLICDataError(out_dir, "the dataset has no samples to write")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    work = os.path.join(parent, f".{os.path.basename(out_dir)}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        manifest = _write_set(index, work, samples_per_shard, limit, progress)
        _replace_dir(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _write_set(index: LabelIndex, out_dir: str, samples_per_shard: int | None, limit: int, progress: bool) -> dict:
    root, keys = sample_keys(index.files)
    classes = list(index.classes)
    shards, writer = [], None
    for row in tqdm(range(len(index)), desc="writing shards", unit="img", disable=not progress):
        full = writer is not None and (len(writer.samples) >= samples_per_shard if samples_per_shard else
                                       writer.size >= limit)
        if full:
            shards.append(writer.close())
        if writer is None or full:
            writer = ShardWriter(out_dir, len(shards), row)
            writer.open()
        path = index.files[row]
        labels, ignore = index.labels_for([row]), index.ignore_for([row])  # one row at a time: O(labels) memory
        components = [(_extension(path), _read_image(path)), ("lbl", pack_labels(labels)[0].tobytes())]
        if ignore is not None:
            components.append(("ign", pack_labels(ignore)[0].tobytes()))
        components.append(("json", label_json(row, labels[0], None if ignore is None else ignore[0], classes)))
        components.append(("row", np.int64(row).astype("<i8").tobytes()))
        writer.add(keys[row], components)
    shards.append(writer.close())
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "classes": list(index.classes), "num_samples": len(index),
        "label_format": LABEL_FORMAT, "label_bytes": label_bytes(index.num_classes),
        "has_ignore": index.has_ignore, "json_labels": True, "image_root": root,
        "class_counts": index.positives.class_counts().tolist(), "shards": shards,
    }
    manifest_path = os.path.join(out_dir, MANIFEST)
    with open(manifest_path + ".partial", "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(manifest_path + ".partial", manifest_path)
    return manifest

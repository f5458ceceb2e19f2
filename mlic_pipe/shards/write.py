"""`write_shards`: a dataset's images (original bytes) and packed labels into GNU tars, DALI index files and dataset.json.

Crash safety: each tar and its index are written under a ``.partial`` name, flushed to disk and
renamed when whole; ``dataset.json`` goes first out of the directory and last into it. So a crash
leaves either the previous complete set or a directory without ``dataset.json``, which `load`
refuses; never a shard a reader would take for complete.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.errors import MLICDataError
from mlic_pipe.shards.format import (FORMAT, FORMAT_VERSION, IMAGE_EXTENSIONS, LABEL_FORMAT, MANIFEST, IndexEntry,
                                     label_bytes, pack_labels, shard_names, write_index)

__all__ = ["DEFAULT_SHARD_BYTES", "ShardWriter", "parse_size", "sample_keys", "write_shards"]

DEFAULT_SHARD_BYTES = 256 * 2 ** 20  # a few hundred MB per tar: large sequential reads, still many shards


def parse_size(text: str | int) -> int:
    """Bytes from "256M", "1.5G", "4096" (binary units)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)i?[bB]?\s*", str(text))
    if not match:
        raise ValueError(f"cannot read {text!r} as a size; write e.g. 256M, 1G or 4096")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " "))


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
    """One tar being written under a .partial name, with its index entries."""

    directory: str
    number: int
    first_row: int
    samples: list[IndexEntry] = field(default_factory=list)
    tar: tarfile.TarFile | None = None

    @property
    def paths(self) -> tuple[str, str]:
        return tuple(os.path.join(self.directory, name) for name in shard_names(self.number))

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
        self.samples.append(entry)

    def close(self) -> dict:
        """Finish the tar and its index, then move both to their final names."""
        tar_path, index_path = self.paths
        self.tar.close()
        write_index(index_path + ".partial", self.samples)
        for path in (tar_path, index_path):
            with open(path + ".partial", "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(path + ".partial", path)
        return {"tar": os.path.basename(tar_path), "index": os.path.basename(index_path),
                "samples": len(self.samples), "first_row": self.first_row, "bytes": os.path.getsize(tar_path)}


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


def write_shards(index: LabelIndex, out_dir: str | os.PathLike, *, samples_per_shard: int | None = None,
                 shard_bytes: int | str | None = None, progress: bool = True) -> dict:
    """Write `index` as shards into `out_dir`; returns the manifest (also saved as dataset.json).

    Args:
        samples_per_shard: close a shard after this many samples; or
        shard_bytes: close a shard once its tar reaches this size (default 256 MiB; "256M" works).
    """
    if samples_per_shard is not None and shard_bytes is not None:
        raise ValueError("pass samples_per_shard or shard_bytes, not both")
    if samples_per_shard is not None and samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
    limit = parse_size(shard_bytes) if shard_bytes is not None else DEFAULT_SHARD_BYTES
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # a crash from here on leaves no manifest naming a half-replaced set
    root, keys = sample_keys(index.files)
    labels = pack_labels(index.targets)
    ignore = None if index.ignore is None else pack_labels(index.ignore)
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
        components = [(_extension(path), _read_image(path)), ("lbl", labels[row].tobytes())]
        if ignore is not None:
            components.append(("ign", ignore[row].tobytes()))
        components.append(("row", np.int64(row).astype("<i8").tobytes()))
        writer.add(keys[row], components)
    if writer is not None:
        shards.append(writer.close())
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "classes": list(index.classes), "num_samples": len(index),
        "label_format": LABEL_FORMAT, "label_bytes": label_bytes(index.num_classes),
        "has_ignore": index.ignore is not None, "image_root": root,
        "class_counts": index.targets.sum(axis=0).astype(int).tolist(), "shards": shards,
    }
    with open(manifest_path + ".partial", "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(manifest_path + ".partial", manifest_path)
    return manifest

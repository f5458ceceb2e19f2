"""`ShardIndex`: a shard directory as a dataset (`load_shards`), checked before any reader touches it.

`MLICLoader` needs from it only the shard list, the sample counts and the classes: labels travel
inside the tars, so no (N, C) table is built. `targets` reads every ``.lbl`` (through the index
offsets) for the few consumers that need the whole table: `mlic-pipe check`, the graph head's
co-occurrence, `preview`.

Shards may live on local disk or behind any URL DALI's readers open (``s3://bucket/prefix``):
``dataset.json`` stays local and ``shard_root=`` points at the tars and their index files. The
structure check needs the files on local disk, so remote shards are trusted as `--verify` left them.
"""
from __future__ import annotations

import bisect
import os
import tarfile
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from mlic_pipe.datasets.index import short_digest
from mlic_pipe.datasets.labels import SparseLabels
from mlic_pipe.errors import MLICDataError
from mlic_pipe.shards.format import IMAGE_EXTENSIONS, MANIFEST, read_index, write_index
from mlic_pipe.shards.integrity import check_members, check_small_members, file_digest
from mlic_pipe.shards.manifest import read_manifest

__all__ = ["ShardFile", "ShardIndex", "is_remote", "load_shards", "scan_tar"]


def is_remote(path: str) -> bool:
    return "://" in path


@dataclass(frozen=True)
class ShardFile:
    """One tar: where it, its DALI index and its sums are, its sample count, its first row and its checksums."""

    path: str
    index_path: str
    samples: int
    first_row: int
    sums_path: str = ""
    size: int = 0
    digests: dict = field(default_factory=dict, compare=False, hash=False)  # index, sums, small (see integrity)


@dataclass
class ShardIndex:
    """A shard directory written by `mlic-pipe shard` (see `mlic_pipe.shards.format`)."""

    root: str
    shards: list[ShardFile]
    classes: list[str]
    has_ignore: bool
    label_bytes: int
    num_samples: int
    image_root: str = ""
    class_counts: list[int] = field(default_factory=list)
    json_labels: bool = False  # each sample also carries <key>.json (sets written since the format gained it)

    source_kind = "shards"  # read by `mlic_pipe.loading.shard_source.ShardSource`

    def __len__(self) -> int:
        return self.num_samples

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def remote(self) -> bool:
        return any(is_remote(shard.path) for shard in self.shards)

    def fingerprint(self) -> str:
        """A short digest of the shard set: classes, and each tar's name, samples, first row and labels' digest."""
        return short_digest([str(self.num_samples), *self.classes,
                             *(f"{os.path.basename(s.path)} {s.samples} {s.first_row} {s.digests.get('small')}"
                               for s in self.shards)])

    def shard_of(self, row: int) -> ShardFile:
        starts = [shard.first_row for shard in self.shards]
        return self.shards[bisect.bisect_right(starts, int(row)) - 1]

    def name(self, row: int) -> str:
        """Where sample `row` is: '<tar>: <key>' (the key is the image's path below `image_root`)."""
        shard = self.shard_of(row)
        if is_remote(shard.index_path):
            return f"{shard.path}: sample {row - shard.first_row}"
        key = self.entries(shard)[row - shard.first_row][0][3].rsplit(".", 1)[0]
        return f"{shard.path}: {key}"

    def entries(self, shard: ShardFile):
        """The DALI index entries of `shard` (read once, kept)."""
        cache = self.__dict__.setdefault("_entry_cache", {})
        if shard.index_path not in cache:
            cache[shard.index_path] = read_index(shard.index_path)
        return cache[shard.index_path]

    def check(self) -> None:
        """Every local shard whole, every sample complete, labels and rows as written; MLICDataError if not.

        Reads each tar's small members (see `mlic_pipe.shards.integrity`) and recounts the labels
        against dataset.json's class counts; the images are checked by `check_members` (``check``).
        """
        local = [shard for shard in self.shards if not is_remote(shard.path)]
        if not local:
            return
        _check_listed(self.root, self.shards)
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for shard in local:
            entries = _check_shard(shard, self.label_bytes, self.has_ignore, self.json_labels)
            self.__dict__.setdefault("_entry_cache", {})[shard.index_path] = entries
            counts += check_small_members(shard, entries, self.label_bytes, self.num_classes)
        if len(local) == len(self.shards) and counts.tolist() != list(self.class_counts):
            column = int(np.flatnonzero(counts != np.asarray(self.class_counts))[0])
            raise MLICDataError(os.path.join(self.root, MANIFEST), f"class {self.classes[column]!r} has "
                                f"{self.class_counts[column]} samples by dataset.json, {counts[column]} in the tars",
                                "rewrite the set with `mlic-pipe shard`; do not edit dataset.json")

    def check_members(self, progress: bool = False) -> None:
        """Read every member of every local tar back and compare it with its checksum (``mlic-pipe check``)."""
        from tqdm import tqdm

        for shard in tqdm(self.shards, desc="checking shard bytes", unit="tar", disable=not progress):
            if not is_remote(shard.path):
                check_members(shard, self.entries(shard), shard.sums_path, shard.digests["sums"])

    def read_components(self, rows, component: str):
        """The bytes of `component` of each of `rows`, in order; a tar stays open while consecutive rows are in it."""
        handle, path = None, None
        try:
            for row in rows:
                shard = self.shard_of(row)
                if shard.path != path:
                    if handle is not None:
                        handle.close()
                    handle, path = open(shard.path, "rb"), shard.path
                offset, size = self._component(shard, int(row) - shard.first_row, component)
                handle.seek(offset)
                yield handle.read(size)
        finally:
            if handle is not None:
                handle.close()

    def read_encoded(self, rows) -> list[np.ndarray]:
        """The encoded images of `rows` as uint8 arrays (an epoch resumed on another world size reads by row)."""
        return [np.frombuffer(data, dtype=np.uint8) for data in self.read_components(rows, "image")]

    def _component(self, shard: ShardFile, sample: int, component: str) -> tuple[int, int]:
        """Offset and size of `component` of the shard's `sample`-th sample."""
        for ext, offset, size, _ in self.entries(shard)[sample]:
            if ext == component or (component == "image" and ext in IMAGE_EXTENSIONS):
                return offset, size
        raise MLICDataError(shard.path, f"sample {sample} has no .{component}")

    def labels(self, rows, component: str = "lbl") -> np.ndarray:
        """(len(rows), C) uint8 labels (or, with component "ign", the ignore mask) of `rows`, read from the tars."""
        if self.remote:
            raise MLICDataError(self.root, "labels are read from the shards, which are not on local disk",
                                "use a local copy of the shards for `check`, `preview` or the graph head")
        rows = [int(row) for row in rows]
        packed = np.frombuffer(b"".join(self.read_components(rows, component)),
                               dtype=np.uint8).reshape(len(rows), self.label_bytes)
        return np.unpackbits(packed, axis=1, count=self.num_classes, bitorder="big")

    def labels_for(self, rows) -> np.ndarray:
        return self.labels(rows)

    def ignore_for(self, rows) -> np.ndarray | None:
        return self.labels(rows, "ign").astype(bool) if self.has_ignore else None

    @cached_property
    def positives(self) -> SparseLabels:
        """Every sample's positives (as `LabelIndex.positives`), read from each .lbl (a read per sample; the
        loader never needs it: labels travel with the samples)."""
        return self._sparse("lbl")

    @cached_property
    def ignored(self) -> SparseLabels | None:
        return self._sparse("ign") if self.has_ignore else None

    def _sparse(self, component: str) -> SparseLabels:
        chunk = 4096  # a few MB of dense rows at a time, whatever the size of the set
        parts = [SparseLabels.from_dense(self.labels(range(first, min(first + chunk, len(self))), component))
                 for first in range(0, len(self), chunk)]
        return SparseLabels.stack(parts) if parts else SparseLabels(np.zeros(1), [], self.num_classes)

    @property
    def targets(self) -> np.ndarray:
        """(N, C) uint8, read from every .lbl (for small sets and tests)."""
        return self.positives.dense()

    @property
    def ignore(self) -> np.ndarray | None:
        return None if self.ignored is None else self.ignored.dense(dtype=bool)


def scan_tar(path: str) -> list:
    """The samples of a tar as DALI index entries, read from its headers (for a tar without an index file)."""
    samples, last_key, file_size = [], None, os.path.getsize(path)
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                key = member.name[:len(member.name) - len(base)] + base.split(".", 1)[0]
                ext = base.split(".", 1)[1] if "." in base else ""
                if key != last_key:
                    samples.append([])
                    last_key = key
                samples[-1].append((ext, member.offset_data, member.size, member.name))
                if member.offset_data + member.size > file_size:
                    raise tarfile.ReadError(f"the data of {member.name} runs past the end of the file ({file_size} bytes)")
    except tarfile.TarError as error:
        at = f" at the sample {last_key}" if last_key else ""
        raise MLICDataError(path, f"is not a readable tar{at}: {error}",
                            "the shard is truncated or damaged: rewrite it with `mlic-pipe shard`") from None
    return samples


def _check_listed(root: str, shards: list[ShardFile]) -> None:
    """Every tar in the set's directory is one dataset.json lists (a dropped entry would drop its samples)."""
    listed = {os.path.basename(shard.path) for shard in shards}
    for folder in {os.path.dirname(shard.path) for shard in shards}:
        extra = sorted(name for name in os.listdir(folder) if name.endswith(".tar") and name not in listed)
        if extra:
            raise MLICDataError(os.path.join(root, MANIFEST), f"does not list {extra[0]}, which lies beside the "
                                "listed shards", "rewrite the set with `mlic-pipe shard`; do not edit dataset.json")


def _check_shard(shard: ShardFile, label_size: int, has_ignore: bool, json_labels: bool = False) -> list:
    """The shard's index entries, after checking the tar's size, the index's digest and each sample's members."""
    if not os.path.isfile(shard.path):
        raise MLICDataError(shard.path, "the shard is missing", "rewrite the shards with `mlic-pipe shard`")
    size = os.path.getsize(shard.path)
    rebuilt = not os.path.isfile(shard.index_path)
    if rebuilt:
        write_index(shard.index_path, scan_tar(shard.path))  # DALI needs it; one pass over the headers
    try:
        samples = read_index(shard.index_path)
    except ValueError as error:
        raise MLICDataError(shard.index_path, f"is not a DALI index file: {error}",
                            "delete it: it is rebuilt from the tar on the next load") from None
    if len(samples) != shard.samples:
        last = f" (the last: {samples[-1][0][3].rsplit('.', 1)[0]})" if samples else ""
        raise MLICDataError(shard.path, f"holds {len(samples)} samples{last} but dataset.json says {shard.samples}",
                            "the directory mixes two shard runs: rewrite it with `mlic-pipe shard`")
    needed = {"lbl": label_size, "row": 8, **({"ign": label_size} if has_ignore else {})}
    if json_labels:
        needed["json"] = None  # any length
    for entry in samples:
        key = entry[0][3].rsplit(".", 1)[0]
        parts = {ext: (offset, length) for ext, offset, length, _ in entry}
        if not any(ext in IMAGE_EXTENSIONS for ext in parts):
            raise MLICDataError(shard.path, f"sample {key} has no image (components: {', '.join(parts)})")
        for ext, length in needed.items():
            if ext not in parts:
                raise MLICDataError(shard.path, f"sample {key} has no .{ext}",
                                    "rewrite the shard with `mlic-pipe shard`")
            if length is not None and parts[ext][1] != length:
                raise MLICDataError(shard.path, f"sample {key}: .{ext} has {parts[ext][1]} bytes, expected {length}")
        end = max(offset + length for offset, length in parts.values())
        if end > size:
            raise MLICDataError(shard.path, f"is truncated: sample {key} ends at byte {end}, the file has {size}",
                                "rewrite the shard with `mlic-pipe shard`")
    if size != shard.size:
        raise MLICDataError(shard.path, f"has {size} bytes, dataset.json says {shard.size} (truncated or replaced)",
                            "rewrite the shards with `mlic-pipe shard`")
    if file_digest(shard.index_path) != shard.digests["index"]:
        if rebuilt:
            os.remove(shard.index_path)
            raise MLICDataError(shard.path, "its members are not those written (the index rebuilt from its headers "
                                "differs)", "rewrite the shards with `mlic-pipe shard`")
        raise MLICDataError(shard.index_path, "differs from the index written with the tar (edited or damaged)",
                            "delete it: it is rebuilt from the tar on the next load")
    return samples


def load_shards(path: str | os.PathLike, *, shard_root: str | None = None, check: bool = True) -> ShardIndex:
    """The shard directory at `path` (or its dataset.json), its tars under `shard_root` if given (s3:// ...)."""
    path = os.fspath(path)
    manifest_path = path if path.endswith(".json") else os.path.join(path, MANIFEST)
    manifest = read_manifest(manifest_path)
    base = shard_root.rstrip("/") if shard_root else os.path.dirname(os.path.abspath(manifest_path))
    join = (lambda name: f"{base}/{name}") if is_remote(base) else (lambda name: os.path.join(base, name))
    shards = [ShardFile(join(s["tar"]), join(s["index"]), s["samples"], s["first_row"], join(s["sums"]), s["bytes"],
                        {"index": s["index_digest"], "sums": s["sums_digest"], "small": s["small_digest"]})
              for s in manifest["shards"]]
    index = ShardIndex(root=os.path.dirname(os.path.abspath(manifest_path)), shards=shards,
                       classes=list(manifest["classes"]), has_ignore=manifest["has_ignore"],
                       label_bytes=manifest["label_bytes"], num_samples=manifest["num_samples"],
                       image_root=str(manifest.get("image_root", "")), class_counts=manifest["class_counts"],
                       json_labels=manifest.get("json_labels", False))
    if check:
        index.check()
    return index

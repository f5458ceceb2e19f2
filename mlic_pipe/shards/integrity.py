"""Checksums of a shard set: written with the tars, checked when a set is loaded and, in full, by `check`.

A flipped byte in a ``.lbl`` trains on wrong labels without a word, and one in a ``.row`` gives a
sample the identity of another (or of row 10^12), so nothing a tar holds is taken on trust:

- per tar, dataset.json keeps the tar's size, a digest of its DALI index file, and a digest of its
  *small members* (every sample's ``.lbl``, ``.ign`` and ``.row``, in order). `load` reads the small
  members through the index (a few bytes per sample) and compares: a damaged label, row or index
  entry is refused before training starts, naming the tar;
- per member, ``shard-NNNNNN.sums`` (one line each: member name, size, digest; its own digest in
  dataset.json) lets `mlic-pipe check DIR` read every byte back and name the tar, the key and the
  member at fault. Images are not checked at load: that is a read of the whole set.

The digest is BLAKE2b (16 bytes), which hashes at about 1 GB/s on one core.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from mlic_pipe.errors import MLICDataError

__all__ = ["DIGEST_BYTES", "SmallMembers", "check_members", "check_small_members", "digest", "file_digest", "read_sums",
           "write_sums"]

DIGEST_BYTES = 16
SMALL = ("lbl", "ign", "row")  # the members `load` checks, in the order they are hashed within a sample


def digest(data: bytes = b"") -> "hashlib.blake2b":
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES)


def file_digest(path: str) -> str:
    """The hex digest of the whole file at `path`, read in 4 MiB pieces."""
    hasher = digest()
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(4 << 20), b""):
            hasher.update(piece)
    return hasher.hexdigest()


class SmallMembers:
    """The running digest of one tar's small members, as the writer adds them and as `load` reads them."""

    def __init__(self):
        self.hasher = digest()

    def add(self, ext: str, data: bytes) -> None:
        if ext in SMALL:
            self.hasher.update(ext.encode("ascii") + len(data).to_bytes(4, "little") + data)

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()


def write_sums(path: str, members: list[tuple[str, int, str]]) -> None:
    """``shard-NNNNNN.sums``: one line per member: its name, size and hex digest."""
    with open(path, "w", encoding="utf-8") as handle:
        for name, size, hexdigest in members:
            handle.write(f"{name} {size} {hexdigest}\n")


def read_sums(path: str) -> dict[str, tuple[int, str]]:
    """Member name -> (size, hex digest); MLICDataError if the file is not one `write_sums` wrote."""
    sums = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if len(fields) != 3 or not fields[1].isdigit() or len(fields[2]) != 2 * DIGEST_BYTES:
                raise MLICDataError(path, f"line {number} is not 'member size digest'",
                                    "rewrite the shards with `mlic-pipe shard`")
            sums[fields[0]] = (int(fields[1]), fields[2])
    return sums


def check_small_members(shard, entries, label_size: int, num_classes: int) -> np.ndarray:
    """Read one tar's small members through `entries` (its index); returns the (C,) label counts of its samples.

    Refuses, naming the tar and the key: a row that is not the sample's place in the set (out of
    range, or another sample's), label bits set past the last class, and a digest that differs from
    the one written (``shard.digests["small"]``: any flipped byte, or an index entry pointing elsewhere).
    """
    with open(shard.path, "rb") as handle:
        running, labels = _read_small_members(shard, entries, handle)
    if running.hexdigest() != shard.digests["small"]:
        raise MLICDataError(shard.path, "the labels, ignore masks or rows differ from what was written (a changed "
                            "byte in a .lbl/.ign/.row, or an index file pointing elsewhere)",
                            "rewrite the shards with `mlic-pipe shard`; `mlic-pipe check DIR` names the sample")
    packed = np.frombuffer(b"".join(labels), dtype=np.uint8).reshape(len(labels), label_size)
    bits = np.unpackbits(packed, axis=1, bitorder="big")
    if bits[:, num_classes:].any():
        sample = int(np.flatnonzero(bits[:, num_classes:].any(axis=1))[0])
        raise MLICDataError(shard.path, f"sample {entries[sample][0][3].rsplit('.', 1)[0]} has labels past the "
                            f"last of the {num_classes} classes: dataset.json's class list does not fit the tars")
    return bits[:, :num_classes].sum(axis=0, dtype=np.int64)


def _read_small_members(shard, entries, handle) -> tuple[SmallMembers, list[bytes]]:
    """The running digest of a tar's small members and its samples' packed labels; each row checked in passing."""
    running, labels = SmallMembers(), []
    for number, entry in enumerate(entries):
        key = entry[0][3].rsplit(".", 1)[0]
        for ext, offset, size, _ in entry:
            if ext not in SMALL:
                continue
            handle.seek(offset)
            data = handle.read(size)
            running.add(ext, data)
            if ext == "lbl":
                labels.append(data)
            elif ext == "row":
                row = int.from_bytes(data, "little", signed=True)
                if row != shard.first_row + number:
                    raise MLICDataError(shard.path, f"sample {key} holds row {row}, but it is row "
                                        f"{shard.first_row + number} of the set (damaged .row)",
                                        "rewrite the shards with `mlic-pipe shard`")
    return running, labels


def check_members(shard, entries, sums_path: str, expected_sums: str) -> None:
    """Read every member of one tar through its index and compare it with ``.sums``; MLICDataError naming it."""
    if not os.path.isfile(sums_path):
        raise MLICDataError(sums_path, "is missing", "rewrite the shards with `mlic-pipe shard`")
    if file_digest(sums_path) != expected_sums:
        raise MLICDataError(sums_path, "differs from what was written", "rewrite the shards with `mlic-pipe shard`")
    sums = read_sums(sums_path)
    listed = {name for entry in entries for *_, name in entry}
    if listed != set(sums):
        extra = sorted(listed ^ set(sums))[0]
        raise MLICDataError(shard.path, f"its index and its .sums disagree on the member {extra}",
                            "rewrite the shards with `mlic-pipe shard`")
    with open(shard.path, "rb") as handle:
        for entry in entries:
            for ext, offset, size, name in entry:
                handle.seek(offset)
                data = handle.read(size)
                if (len(data), digest(data).hexdigest()) != sums[name]:
                    raise MLICDataError(shard.path, f"sample {name.rsplit('.', 1)[0]}: the .{ext} differs from "
                                        "what was written (changed bytes, or an index entry pointing elsewhere)",
                                        "rewrite the shards with `mlic-pipe shard`")

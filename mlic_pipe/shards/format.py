"""What a shard directory holds: the sample components, the packed labels, DALI's index files, dataset.json.

A shard is a GNU-format tar (one 512-byte header per member, long names included; DALI's WebDataset
reader also reads PAX and ustar tars, with or without an index file, as a test shows) holding, per
sample, consecutive members named ``<key>.<component>``:

- ``<key>.<ext>``: the original image bytes, never re-encoded (ext: jpg, jpeg, png, ...);
- ``<key>.lbl``: the multi-hot labels as packed bits (`pack_labels`): DALI's reader passes raw bytes,
  and ceil(C / 8) bytes per sample keep every label row the same length, so a batch of them is
  one dense uint8 tensor that the loader unpacks on the device;
- ``<key>.ign``: the ignore mask (VOC 'difficult'), packed alike, when the dataset has one;
- ``<key>.json``: the same labels for everyone else (`label_json`): ``{"row": r, "labels": [class
  indices], "classes": [their names], "ignore": [indices]}`` (``ignore`` only when the set has an
  ignore mask; ``"known": [indices]`` instead when most labels are unknown, see `ignore_record`), so ``webdataset.WebDataset`` and the readers built on it see the labels without
  our bit order; `mlic-pipe shard --verify` checks that it agrees with ``.lbl`` / ``.ign`` / ``.row``.
  Sets written before it (no ``json_labels`` in dataset.json) load as they are;
- ``<key>.row``: the sample's row (int64, little-endian): its identity in skips, resume and `Batch.rows`.

Next to each ``shard-NNNNNN.tar`` lies ``shard-NNNNNN.idx``, DALI's index (v1.2: a header line
``v1.2 <samples>``, then per sample ``<ext> <offset> <size> <member name>`` for each component),
which lets DALI seek instead of scanning the tar, and ``shard-NNNNNN.sums``, each member's checksum
(`mlic_pipe.shards.integrity`). ``dataset.json`` (`MANIFEST`, checked by `read_manifest`) names the
classes, the shards, their sample counts and checksums; it is written last, so a directory without
it is unfinished. Version 2 added the checksums; version 1 sets are refused with a request to rewrite.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

__all__ = [
    "FORMAT", "FORMAT_VERSION", "IMAGE_EXTENSIONS", "INDEX_VERSION", "LABEL_FORMAT", "MANIFEST", "label_bytes",
    "ignore_record", "label_json", "pack_labels", "read_index", "shard_names", "unpack_labels", "write_index",
]

FORMAT = "mlic-pipe-shards"
FORMAT_VERSION = 2  # 2: checksums (.sums, digests in dataset.json)
MANIFEST = "dataset.json"
LABEL_FORMAT = "multi-hot packed bits: numpy.packbits(bitorder='big'); class j is bit 7 - j % 8 of byte j // 8"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "jp2")  # what DALI's decoders read
INDEX_VERSION = "v1.2"

IndexEntry = list[tuple[str, int, int, str]]  # one sample: (component, data offset, size, member name) each


def shard_names(number: int) -> tuple[str, str]:
    """The tar and index file names of shard `number`."""
    return f"shard-{number:06d}.tar", f"shard-{number:06d}.idx"


def label_json(row: int, labels: np.ndarray, ignore: np.ndarray | None, classes: list[str]) -> bytes:
    """A sample's ``.json`` member: its row, its positive class indices and names, its ignored indices (if any)."""
    positive = np.flatnonzero(labels).tolist()
    record = {"row": int(row), "labels": positive, "classes": [classes[k] for k in positive]}
    if ignore is not None:
        record.update(ignore_record(np.flatnonzero(ignore).tolist(), len(classes)))
    return json.dumps(record, separators=(",", ":")).encode()


def ignore_record(ignored: list[int], num_classes: int) -> dict:
    """The .json's unknown labels: ``{"ignore": [indices]}``, or ``{"known": [indices]}`` (every other index is
    unknown) when most are unknown, as with Open Images' unverified classes: a few numbers, not 9,000 a sample."""
    if 2 * len(ignored) <= num_classes:
        return {"ignore": ignored}
    unknown = set(ignored)
    return {"known": [k for k in range(num_classes) if k not in unknown]}


def label_bytes(num_classes: int) -> int:
    """Bytes of one packed label row."""
    return -(-num_classes // 8)


def pack_labels(rows: np.ndarray) -> np.ndarray:
    """(N, C) {0, 1} -> (N, ceil(C / 8)) uint8 packed bits (`LABEL_FORMAT`)."""
    return np.packbits(np.asarray(rows, dtype=bool), axis=1, bitorder="big")


def unpack_labels(packed: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, ceil(C / 8)) uint8 packed bits -> (N, C) uint8 in {0, 1}, on `packed`'s device (one gather)."""
    classes = torch.arange(num_classes, device=packed.device)
    shifts = (7 - classes % 8).to(torch.uint8)
    return (packed[:, classes // 8] >> shifts) & 1


def write_index(path: str | os.PathLike, samples: list[IndexEntry]) -> None:
    """DALI's index file (v1.2) for a tar holding `samples`."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{INDEX_VERSION} {len(samples)}\n")
        for sample in samples:
            handle.write(" ".join(f"{ext} {offset} {size} {name}" for ext, offset, size, name in sample) + "\n")


def read_index(path: str | os.PathLike) -> list[IndexEntry]:
    """The samples of a DALI index file; ValueError if it is not one (v1.2, names without spaces)."""
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().split()
        if len(header) != 2 or header[0] != INDEX_VERSION or not header[1].isdigit():
            raise ValueError(f"not a DALI {INDEX_VERSION} index file (first line {' '.join(header)!r})")
        samples = []
        for number, line in enumerate(handle, start=2):
            fields = line.split()
            if not fields or len(fields) % 4:
                raise ValueError(f"line {number} does not list (ext offset size name) groups")
            samples.append([(fields[i], int(fields[i + 1]), int(fields[i + 2]), fields[i + 3])
                            for i in range(0, len(fields), 4)])
    if len(samples) != int(header[1]):
        raise ValueError(f"the header promises {header[1]} samples but {len(samples)} are listed")
    return samples

"""`verify_shards`: read every byte of a shard directory back and compare it with what was meant to be written.

Within the set, each sample's ``.json`` (the labels as others read them) must say what its ``.lbl``,
``.ign`` and ``.row`` say; against the dataset (`original`), the image bytes and packed labels must
be the dataset's.
"""
from __future__ import annotations

import hashlib
import json
import tarfile

import numpy as np
from tqdm import tqdm

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.errors import MLICDataError
from mlic_pipe.shards.format import IMAGE_EXTENSIONS, ignore_record, pack_labels
from mlic_pipe.shards.index import ShardIndex, load_shards

__all__ = ["verify_shards"]


def _digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.blake2b(handle.read(), digest_size=16).hexdigest()


def verify_shards(directory: str, original: LabelIndex | None = None, *, progress: bool = True) -> int:
    """Read every member of every shard; check offsets, rows and labels, and image bytes against `original`.

    Returns the number of samples read; raises MLICDataError naming the tar and the key at the first fault.
    """
    index = load_shards(directory)
    if original is not None and (len(original) != len(index) or list(original.classes) != index.classes):
        raise MLICDataError(directory, f"holds {len(index)} samples of {index.num_classes} classes; the dataset "
                            f"has {len(original)} of {original.num_classes}", "rerun `mlic-pipe shard`")
    with tqdm(total=len(index), desc="verifying shards", unit="img", disable=not progress) as bar:
        for shard in index.shards:
            _verify_shard(index, shard, original, bar)
    return len(index)


def _verify_shard(index: ShardIndex, shard, original, bar) -> None:
    entries = index.entries(shard)
    by_name = {name: (offset, size) for entry in entries for _, offset, size, name in entry}
    seen, sample = 0, {}
    with tarfile.open(shard.path, "r:") as tar:
        for member in tar:
            data = tar.extractfile(member).read()
            key, ext = member.name.rsplit(".", 1)
            if by_name.get(member.name) != (member.offset_data, len(data)) or len(data) != member.size:
                raise MLICDataError(shard.path, f"sample {key}: .{ext} is not where the index file says")
            sample[ext] = data
            if ext == "row":
                row = int(np.frombuffer(data, dtype="<i8")[0])
                if row != shard.first_row + seen:
                    raise MLICDataError(shard.path, f"sample {key} holds row {row}, expected {shard.first_row + seen}")
                if index.json_labels:
                    _check_json(shard.path, key, sample, row, index)
                seen, sample = seen + 1, {}
                bar.update(1)
            elif original is not None:
                _compare(shard.path, key, ext, data, original, shard.first_row + seen)
    if seen != shard.samples:
        raise MLICDataError(shard.path, f"holds {seen} samples, dataset.json says {shard.samples}")


def _check_json(path: str, key: str, sample: dict, row: int, index: ShardIndex) -> None:
    """The sample's .json says what its .lbl, .ign and .row say (bit order and class names included)."""
    if "json" not in sample:
        raise MLICDataError(path, f"sample {key} has no .json, which dataset.json promises", "rewrite the set")
    try:
        record = json.loads(sample["json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MLICDataError(path, f"sample {key}: .json is not JSON ({error})", "rewrite the set") from None
    expected = {"row": row, "labels": _bits(sample.get("lbl", b""), index.num_classes)}
    expected["classes"] = [index.classes[k] for k in expected["labels"]]
    if index.has_ignore:
        expected.update(ignore_record(_bits(sample.get("ign", b""), index.num_classes), index.num_classes))
    if record != expected:
        wrong = sorted(name for name in set(expected) | set(record) if record.get(name) != expected.get(name))
        raise MLICDataError(path, f"sample {key}: .json disagrees with .lbl/.ign/.row in {', '.join(wrong)}",
                            "rewrite the set with `mlic-pipe shard`")


def _bits(packed: bytes, num_classes: int) -> list[int]:
    return np.flatnonzero(np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:num_classes]).tolist()


def _compare(path, key, ext, data, original, row) -> None:
    if ext in IMAGE_EXTENSIONS:
        if hashlib.blake2b(data, digest_size=16).hexdigest() != _digest(original.files[row]):
            raise MLICDataError(path, f"sample {key}: the image bytes differ from {original.files[row]}")
    elif ext in ("lbl", "ign"):
        rows = original.labels_for([row]) if ext == "lbl" else original.ignore_for([row])
        expected = b"" if rows is None else pack_labels(rows)[0].tobytes()
        if data != expected:
            raise MLICDataError(path, f"sample {key}: the .{ext} differs from the dataset's row {row}")

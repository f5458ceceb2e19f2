"""`read_manifest`: a shard set's dataset.json, every field checked before anything is read by it.

The manifest decides which rows exist, which classes the bits mean and where each tar starts, so
an edited or damaged one would deliver rows twice, read half the set or shift every label by a
class. Each field is checked for its type and against the others (sample counts add up, shards
start where the previous one ended, one packed byte per 8 classes, one count per class); what the
tars themselves hold is checked against it by `ShardIndex.check`.
"""
from __future__ import annotations

import json
import os

from mlic_pipe.errors import MLICDataError
from mlic_pipe.shards.format import FORMAT, FORMAT_VERSION, label_bytes

__all__ = ["SHARD_FIELDS", "read_manifest"]

_TOP = {"format": str, "version": int, "classes": list, "num_samples": int, "label_bytes": int, "has_ignore": bool,
        "class_counts": list, "shards": list}
SHARD_FIELDS = {"tar": str, "index": str, "sums": str, "samples": int, "first_row": int, "bytes": int,
                "index_digest": str, "sums_digest": str, "small_digest": str}
_REWRITE = "rewrite the set with `mlic-pipe shard`; do not edit dataset.json"


def _kind_ok(value, kind) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def read_manifest(path: str) -> dict:
    """The manifest at `path`, checked; MLICDataError naming the file and the field at fault."""
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise MLICDataError(path, "is missing: the shard run did not finish",
                            "rerun `mlic-pipe shard` into this directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MLICDataError(path, f"is not valid JSON ({error})", _REWRITE) from None
    if not isinstance(manifest, dict):
        raise MLICDataError(path, f"holds a JSON {type(manifest).__name__}, not the object `mlic-pipe shard` writes",
                            _REWRITE)
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        old = " (version 1 sets have no checksums)" if manifest.get("version") == 1 else ""
        raise MLICDataError(path, f"is not a {FORMAT} v{FORMAT_VERSION} manifest (format {manifest.get('format')!r}, "
                            f"version {manifest.get('version')!r}){old}", "rewrite the set with `mlic-pipe shard`")
    _check_fields(path, manifest, _TOP, "")
    if not _kind_ok(manifest.get("json_labels", False), bool):  # optional: sets written before it lack it
        raise MLICDataError(path, f"field 'json_labels' is {manifest['json_labels']!r}, not a bool", _REWRITE)
    _check_classes(path, manifest)
    if not manifest["shards"]:
        raise MLICDataError(path, "field 'shards' is empty: the set has no tar", _REWRITE)
    next_row = 0
    for number, shard in enumerate(manifest["shards"]):
        where = f"shards[{number}]"
        if not isinstance(shard, dict):
            raise MLICDataError(path, f"field '{where}' is a {type(shard).__name__}, not an object", _REWRITE)
        _check_fields(path, shard, SHARD_FIELDS, f"{where}.")
        for name in ("tar", "index", "sums"):
            if os.path.basename(shard[name]) != shard[name] or shard[name] in ("", ".", ".."):
                raise MLICDataError(path, f"field '{where}.{name}' is {shard[name]!r}, not a file name", _REWRITE)
        if shard["samples"] < 1:
            raise MLICDataError(path, f"field '{where}.samples' is {shard['samples']}: a tar holds at least one",
                                _REWRITE)
        if shard["first_row"] != next_row:
            raise MLICDataError(path, f"field '{where}.first_row' is {shard['first_row']}, but the shards before it "
                                f"end at row {next_row} (a shard entry was removed or edited)", _REWRITE)
        next_row += shard["samples"]
    if next_row != manifest["num_samples"]:
        raise MLICDataError(path, f"field 'num_samples' is {manifest['num_samples']}, but the shards hold {next_row}",
                            _REWRITE)
    names = [shard["tar"] for shard in manifest["shards"]]
    if len(set(names)) != len(names):
        raise MLICDataError(path, "field 'shards' names a tar twice", _REWRITE)
    return manifest


def _check_fields(path: str, record: dict, kinds: dict, prefix: str) -> None:
    for name, kind in kinds.items():
        if name not in record:
            raise MLICDataError(path, f"field '{prefix}{name}' is missing", _REWRITE)
        if not _kind_ok(record[name], kind):
            raise MLICDataError(path, f"field '{prefix}{name}' is {record[name]!r} ({type(record[name]).__name__}), "
                                f"not {'an' if kind is int else 'a'} {kind.__name__}", _REWRITE)
        if kind is int and record[name] < 0:
            raise MLICDataError(path, f"field '{prefix}{name}' is {record[name]}, below 0", _REWRITE)


def _check_classes(path: str, manifest: dict) -> None:
    classes, counts = manifest["classes"], manifest["class_counts"]
    if not classes or not all(isinstance(name, str) and name for name in classes):
        raise MLICDataError(path, "field 'classes' is not a non-empty list of class names", _REWRITE)
    if len(set(classes)) != len(classes):
        raise MLICDataError(path, "field 'classes' names a class twice", _REWRITE)
    if manifest["label_bytes"] != label_bytes(len(classes)):
        raise MLICDataError(path, f"field 'label_bytes' is {manifest['label_bytes']}, but {len(classes)} classes pack "
                            f"into {label_bytes(len(classes))} bytes", _REWRITE)
    if len(counts) != len(classes) or not all(_kind_ok(c, int) and c >= 0 for c in counts):
        raise MLICDataError(path, f"field 'class_counts' does not hold one count per class ({len(counts)} entries, "
                            f"{len(classes)} classes)", _REWRITE)

"""Shard sets are never trusted: an edited dataset.json, a changed byte in a tar or index, a write over a good set.

References: the manifest and tars as `write_shards` left them, edited by hand here (json, byte offsets
read with `tarfile`), and the set's own files listed with `os.listdir`.
"""
from __future__ import annotations

import json
import os
import tarfile

import numpy as np
import pytest

from mlic_pipe.datasets import load
from mlic_pipe.errors import ConfigError, MLICDataError
from mlic_pipe.shards import load_shards, write_shards
from mlic_pipe.shards import write as shard_write
from test_shards import _index


@pytest.fixture
def shard_set(tmp_path):
    """12 samples of 10 classes (2 label bytes, 6 padding bits) in 3 tars of 4; returns (index, out dir)."""
    index, _ = _index(tmp_path, 12, 10)
    out = tmp_path / "out"
    write_shards(index, out, samples_per_shard=4, progress=False)
    return index, out


def _edit_manifest(out, change):
    path = out / "dataset.json"
    manifest = json.loads(path.read_text())
    manifest = change(manifest) or manifest
    path.write_text(json.dumps(manifest))


def _drop_class(m):
    m["classes"].pop()
    m["class_counts"].pop()


MANIFEST_ATTACKS = {
    "a list at the top level": (lambda m: [m], "holds a JSON list"),
    "no classes": (lambda m: m.pop("classes") and None, "field 'classes' is missing"),
    "no shards": (lambda m: m.update(shards=[]), "'shards' is empty"),
    "num_samples doubled": (lambda m: m.update(num_samples=24), "'num_samples' is 24, but the shards hold 12"),
    "num_samples halved": (lambda m: m.update(num_samples=6), "'num_samples' is 6"),
    "a shard's samples edited": (lambda m: m["shards"][1].update(samples=8), "shards\\[2\\].first_row' is 8"),
    "the middle shard dropped": (lambda m: m["shards"].pop(1) and None, "first_row' is 8, but the shards before it"),
    "the last shard dropped, counts fixed": (lambda m: m["shards"].pop() and m.update(num_samples=8),
                                             "does not list shard-000002.tar"),
    "a class fewer": (lambda m: m["classes"].pop() and None, "'class_counts' does not hold one count per class"),
    "a class and its count fewer": (_drop_class, "labels past the last of the 9 classes|class .* has"),
    "a count edited": (lambda m: m["class_counts"].__setitem__(0, m["class_counts"][0] + 1), "class 'class0' has"),
    "label_bytes wrong": (lambda m: m.update(label_bytes=1), "'label_bytes' is 1, but 10 classes pack into 2"),
    "a path for a tar": (lambda m: m["shards"][0].update(tar="../x.tar"), "'shards\\[0\\].tar' is '../x.tar'"),
    "samples as text": (lambda m: m["shards"][0].update(samples="4"), "'shards\\[0\\].samples' is '4' \\(str\\)"),
    "a negative row": (lambda m: m["shards"][0].update(first_row=-1), "first_row' is -1, below 0"),
    "version 1": (lambda m: m.update(version=1), "version 1 sets have no checksums"),
    "a digest removed": (lambda m: m["shards"][2].pop("small_digest") and None, "'shards\\[2\\].small_digest' is missing"),
}


@pytest.mark.parametrize("attack", list(MANIFEST_ATTACKS))
def test_every_edit_of_dataset_json_is_refused_naming_the_file_and_the_field(shard_set, attack):
    _, out = shard_set
    change, message = MANIFEST_ATTACKS[attack]
    _edit_manifest(out, change)
    with pytest.raises(MLICDataError, match=message) as caught:
        load(str(out))
    assert "dataset.json" in str(caught.value) or "shard-0000" in str(caught.value)


def _member(out, tar_name, member_name):
    """(offset, size) of a member's data in a tar, read from its header."""
    with tarfile.open(out / tar_name) as tar:
        info = tar.getmember(member_name)
        return info.offset_data, info.size


def _flip(path, offset, value=None):
    data = bytearray(path.read_bytes())
    data[offset] = value if value is not None else data[offset] ^ 0x01
    path.write_bytes(bytes(data))


def _write_row(out, tar_name, member, row):
    offset, _ = _member(out, tar_name, member)
    data = bytearray((out / tar_name).read_bytes())
    data[offset:offset + 8] = np.int64(row).astype("<i8").tobytes()
    (out / tar_name).write_bytes(bytes(data))


@pytest.mark.parametrize("member, match", [("sub.dir/005.lbl", "labels, ignore masks or rows differ"),
                                           ("sub.dir/006.row", "sample sub.dir/006 holds row")])
def test_a_flipped_byte_in_a_label_or_row_is_refused_at_load_naming_the_tar(shard_set, member, match):
    _, out = shard_set
    offset, _ = _member(out, "shard-000001.tar", member)
    _flip(out / "shard-000001.tar", offset)
    with pytest.raises(MLICDataError, match=rf"shard-000001\.tar.*{match}"):
        load_shards(out)


@pytest.mark.parametrize("row", [10 ** 12, -5, 2])
def test_rows_out_of_range_or_of_another_sample_are_refused(shard_set, row):
    _, out = shard_set
    _write_row(out, "shard-000001.tar", "sub.dir/005.row", row)
    with pytest.raises(MLICDataError, match=rf"shard-000001\.tar: sample sub\.dir/005 holds row {row}, but it is row 5"):
        load_shards(out)


def test_an_index_with_swapped_offsets_is_refused(shard_set):
    _, out = shard_set
    path = out / "shard-000000.idx"
    lines = path.read_text().splitlines()
    first, second = lines[1].split(), lines[2].split()
    first[1], second[1] = second[1], first[1]  # the two samples' images swap places
    path.write_text("\n".join([lines[0], " ".join(first), " ".join(second), *lines[3:]]) + "\n")
    with pytest.raises(MLICDataError, match=r"shard-000000\.idx: differs from the index written"):
        load_shards(out)
    path.unlink()  # rebuilt from the tar's own headers, it is right again
    assert len(load_shards(out)) == 12


def test_a_flipped_image_byte_loads_but_check_names_the_tar_and_the_key(shard_set, capsys):
    from mlic_pipe.cli import main

    _, out = shard_set
    offset, size = _member(out, "shard-000002.tar", "sub.dir/010.jpg")
    _flip(out / "shard-000002.tar", offset + size // 2)
    assert len(load_shards(out)) == 12  # load reads only the small members
    with pytest.raises(MLICDataError, match=r"shard-000002\.tar: sample sub\.dir/010: the \.jpg differs"):
        load_shards(out).check_members()
    assert main(["check", str(out), "-q"]) == 2
    assert "shard-000002.tar: sample sub.dir/010: the .jpg differs" in capsys.readouterr().err


def test_a_tar_of_another_size_is_refused(shard_set):
    _, out = shard_set
    with open(out / "shard-000001.tar", "ab") as handle:
        handle.write(b"\0" * 512)
    with pytest.raises(MLICDataError, match=r"shard-000001\.tar: has \d+ bytes, dataset.json says"):
        load_shards(out)


def _listing(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def test_sharding_a_shard_set_into_itself_is_refused_and_the_set_survives(shard_set, tmp_path):
    from mlic_pipe.cli import main

    _, out = shard_set
    before = _listing(out)
    assert main(["shard", str(out), str(out), "-q"]) == 2
    assert _listing(out) == before and len(load_shards(out)) == 12


def test_a_folder_holding_other_files_is_refused_before_anything_is_written(shard_set, tmp_path):
    index, _ = shard_set
    with pytest.raises(MLICDataError, match=r"img: holds files that are not a shard set \(other\.dir, sub\.dir\)"):
        write_shards(index, tmp_path / "img", progress=False)


def test_a_bad_input_is_found_before_the_old_set_is_touched(shard_set):
    index, out = shard_set
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    os.remove(index.files[7])
    with pytest.raises(MLICDataError, match=r"007\.jpg: cannot be read"):
        write_shards(index, out, samples_per_shard=2, progress=False)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert not [name for name in _listing(out.parent) if "partial" in name]


def test_a_crash_mid_write_leaves_the_old_set_whole_and_no_partial_file(shard_set, monkeypatch):
    index, out = shard_set
    before = _listing(out)
    real, calls = shard_write._read_image, []

    def failing(path):
        calls.append(path)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(shard_write, "_read_image", failing)
    with pytest.raises(KeyboardInterrupt):
        write_shards(index, out, samples_per_shard=2, progress=False)
    assert _listing(out) == before and len(load_shards(out)) == 12
    assert not [name for name in _listing(out.parent) if "partial" in name or ".old-" in name]
    monkeypatch.setattr(shard_write, "_read_image", real)
    write_shards(index, out, samples_per_shard=5, progress=False)  # a whole new set replaces the old one
    assert len(load_shards(out).shards) == 3 and "shard-000002.sums" in os.listdir(out)


@pytest.mark.parametrize("text", ["abc", "0", "1.2.3", "-4K"])
def test_a_shard_size_that_is_no_size_is_a_config_error_naming_the_flag(text):
    with pytest.raises(ConfigError, match="shard_bytes"):
        shard_write.parse_size(text)
    assert shard_write.parse_size("1.5K") == 1536 and shard_write.parse_size("4096") == 4096


def test_shard_loader_states_are_checked_too(shard_set, tmp_path):
    import base64

    from mlic_pipe.errors import LoaderStateError
    from mlic_pipe.loader import MLICLoader

    index, out = shard_set
    shards = load_shards(out)
    options = dict(image_size=16, device="cpu", num_threads=1, seed=1)
    loader = MLICLoader(shards, 4, **options)
    iterator = iter(loader)
    next(iterator)
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["source"] == "shards" and state["checkpoint"]
    attacks = [(dict(state, checkpoint=None), "checkpoint", "is missing: a shard state mid-epoch"),
               (dict(state, checkpoint="@@not base64@@"), "checkpoint", "is not base64 text"),
               (dict(state, source="files"), "source", "the state is of a files loader; this one reads shards")]
    for edited, field, reason in attacks:
        with pytest.raises(LoaderStateError) as caught:
            MLICLoader(shards, 4, **options).load_state_dict(edited)
        assert caught.value.field == field and reason in caught.value.reason
    file_state = MLICLoader(index, 4, **options).state_dict()  # a file-list loader's state, same dataset size
    with pytest.raises(LoaderStateError, match="source: the state is of a files loader"):
        MLICLoader(shards, 4, **options).load_state_dict(file_state)
    damaged = MLICLoader(shards, 4, **options)
    damaged.load_state_dict(dict(state, checkpoint=base64.b64encode(b"\x08\x01 not DALI's protobuf").decode()))
    with pytest.raises(LoaderStateError, match="checkpoint: DALI cannot restore its reader state"):
        next(iter(damaged))

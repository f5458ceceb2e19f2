"""Other people's WebDataset tars: written by the `webdataset` library's TarWriter and by hand (tarfile), read back.

References: the labels the writer was given, and the pixels of a file-list loader over the same image bytes on disk
(crops and flips come from (seed, epoch, row), so the two must agree bitwise).
"""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch

from mlic_pipe.cli import main
from mlic_pipe.datasets import LabelIndex, load, load_webdataset
from mlic_pipe.errors import MLICDataError
from mlic_pipe.loader import MLICLoader
from builders import CLASSES, OPTIONS, encoded_image as _encoded, multi_hot as _multi_hot, random_labels as _truth

wds = pytest.importorskip("webdataset")


def _write(folder, n=11, per_tar=4, member="json", bad_json=None):
    """`n` samples in tars of `per_tar` via webdataset.TarWriter (img2dataset's layout: jpg + json + txt caption)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = _truth(n, seed=2)
    for start in range(0, n, per_tar):
        with wds.TarWriter(str(folder / f"part-{start // per_tar:05d}.tar")) as sink:
            for k in range(start, min(start + per_tar, n)):
                sample = {"__key__": f"{k:09d}", "jpg": _encoded(k), "txt": f"caption {k}"}
                if member == "json":
                    sample["json"] = {"labels": [CLASSES[c] for c in labels[k]], "url": f"http://x/{k}"}
                elif member == "tags":
                    sample["json"] = {"meta": {"tags": labels[k]}}
                else:
                    sample["cls"] = ",".join(str(c) for c in labels[k])
                sink.write(sample)
    return labels


def _files(tmp_path, n) -> list[str]:
    paths = []
    for k in range(n):
        path = tmp_path / "files" / f"{k}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(_encoded(k))
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("member, label_key", [("json", "json:labels"), ("tags", "json:meta.tags"), ("cls", "cls")])
def test_tars_written_by_the_webdataset_library_load_with_their_labels(tmp_path, member, label_key):
    labels = _write(tmp_path / "tars", member=member)
    index = load(tmp_path / "tars", classes=CLASSES, label_key=label_key)
    assert index.source_kind == "webdataset" and len(index) == 11
    assert np.array_equal(index.targets, _multi_hot(labels))
    assert index.files[5].endswith("part-00001.tar: 000000005")
    assert [bytes(b) for b in index.read_encoded([10, 0])] == [_encoded(10), _encoded(0)]
    assert sorted(p.name for p in (tmp_path / "tars").glob("*.idx")) == ["part-00000.idx", "part-00001.idx",
                                                                         "part-00002.idx"]  # built when missing


def test_their_pixels_equal_a_file_list_loaders_and_a_brace_pattern_names_the_same_set(tmp_path):
    labels = _write(tmp_path / "tars")
    index = load(str(tmp_path / "tars" / "part-{00000..00002}.tar"), classes=CLASSES)
    reference = LabelIndex(files=_files(tmp_path, 11), targets=_multi_hot(labels), ignore=None, classes=CLASSES)
    got = list(MLICLoader(index, 4, mix="mixup", **OPTIONS))
    want = list(MLICLoader(reference, 4, mix="mixup", **OPTIONS))
    assert len(got) == len(want) == 2
    for a, b in zip(got, want):
        assert torch.equal(a.rows, b.rows) and torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)


def _hand_tar(path, members):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_structure_errors_name_the_tar_and_the_key(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    good = [("a/1.jpg", _encoded(1)), ("a/1.json", json.dumps({"labels": ["cat"]}).encode())]
    _hand_tar(folder / "x.tar", good + [("a/2.jpg", _encoded(2))])
    with pytest.raises(MLICDataError, match=r"x\.tar.*sample a/2 has no \.json"):
        load(folder, classes=CLASSES)
    _hand_tar(folder / "x.tar", good + [("a/3.json", b"{}"), ("a/4.png", _encoded(4, "PNG"))])
    with pytest.raises(MLICDataError, match=r"x\.tar.*sample a/3 has no image"):
        load(folder, classes=CLASSES)
    _hand_tar(folder / "x.tar", good + [("a/5.jpg", _encoded(5)), ("a/5.json", b'{"labels": ["zebra"]}')])
    with pytest.raises(MLICDataError, match=r"x\.tar: a/5.*label 'zebra', not one of the 4 classes"):
        load(folder, classes=CLASSES)
    _hand_tar(folder / "x.tar", good + [("a/6.jpg", _encoded(6)), ("a/6.json", b'{"tags": []}')])
    with pytest.raises(MLICDataError, match=r"x\.tar: a/6.*no field 'labels'.*label_key"):
        load(folder, classes=CLASSES)
    with pytest.raises(MLICDataError, match=r"do not name their classes"):
        load(folder)
    data = (folder / "x.tar").read_bytes()
    with tarfile.open(folder / "x.tar") as tar:
        cut = tar.getmember("a/6.jpg").offset_data + 10
    (folder / "x.idx").unlink()
    (folder / "x.tar").write_bytes(data[:cut])  # truncated inside an image
    with pytest.raises(MLICDataError, match=r"x\.tar.*not a readable tar"):
        load(folder, classes=CLASSES)


def test_a_stale_index_is_rebuilt_and_an_undecodable_image_is_skipped_and_named(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    members = []
    for k in range(6):
        members += [(f"{k}.jpg", b"garbage" if k == 3 else _encoded(k)), (f"{k}.cls", str(k % 4).encode())]
    _hand_tar(folder / "y.tar", members)
    (folder / "y.idx").write_text("v1.2 1\njpg 999999 5 0.jpg\n")  # points past the end: rebuilt
    index = load_webdataset(folder, CLASSES, label_key="cls")
    assert index.targets.argmax(1).tolist() == [0, 1, 2, 3, 0, 1]
    loader = MLICLoader(index, 3, on_error="skip", drop_last=False, **OPTIONS)
    with pytest.warns(UserWarning, match=r"skipped .*y\.tar: 3"):
        batches = list(loader)
    assert [len(b.rows) for b in batches] == [3, 3]
    assert sorted(r for b in batches for r in b.rows[~b.padded].tolist()) == [0, 1, 2, 4, 5]


def test_the_cli_reads_such_a_folder_with_classes_from_a_file(tmp_path, capsys):
    _write(tmp_path / "tars")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    assert main(["check", str(tmp_path / "tars"), "--classes", str(tmp_path / "classes.txt")]) == 0
    assert "11" in capsys.readouterr().out


@pytest.mark.slow  # ~8 s (two DALI pipelines with auto-augment, a profile run): CI runs it
def test_profile_times_such_tars_auto_augment_apart_reading_their_bytes(tmp_path, capsys):
    """`profile --auto-augment` times bare DALI over the set's own images: here members of tars, not files."""
    _write(tmp_path / "tars", n=24, per_tar=8)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    out = tmp_path / "profile.json"
    assert main(["profile", str(tmp_path / "tars"), "--classes", str(tmp_path / "classes.txt"), "--steps", "2",
                 "--warmup", "1", "--batch-size", "4", "--image-size", "32", "--mix", "none", "--auto-augment",
                 "trivial", "-q", "--json", str(out)]) == 0
    assert all(ms > 0 for ms in json.loads(out.read_text())["auto_augment_ms"])

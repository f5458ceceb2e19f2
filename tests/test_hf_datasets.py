"""Hugging Face datasets: labels against the hand-built lists, pixels against a file-list loader over the same images.

Every dataset is built here (no hub access). The reference for pixels is the file source: the same images written to
disk and read through `LabelIndex`, whose rows decode bitwise alike (crops and flips come from (seed, epoch, row)).
"""
from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
import torch

from mlic_pipe.datasets import LabelIndex, load, load_hf
from mlic_pipe.errors import MLICDataError
from mlic_pipe.loader import MLICLoader
from builders import CLASSES, OPTIONS, encoded_image as _encoded, multi_hot as _multi_hot, random_labels as _truth

datasets = pytest.importorskip("datasets")

def _dataset(tmp_path, n: int = 13, bad=(), as_path=()):
    """`n` images (PNG every fifth; rows in `as_path` held as paths on disk, rows in `bad` not images)."""
    labels, images = _truth(n), []
    for k in range(n):
        data = b"not an image at all" if k in bad else _encoded(k, "PNG" if k % 5 == 4 else "JPEG")
        if k in as_path:
            path = tmp_path / f"held-{k}.img"
            path.write_bytes(data)
            images.append({"bytes": None, "path": str(path)})
        else:
            images.append({"bytes": data, "path": None})
    features = datasets.Features({"image": datasets.Image(),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=CLASSES))})
    return datasets.Dataset.from_dict({"image": images, "labels": labels}, features=features), labels


def _as_files(tmp_path, dataset) -> LabelIndex:
    """The same images as files on disk, the same labels: the file source's reference."""
    files = []
    for k, record in enumerate(dataset.cast_column("image", datasets.Image(decode=False))["image"]):
        path = tmp_path / f"file-{k:03d}.bin"
        path.write_bytes(record["bytes"] if record["bytes"] is not None else open(record["path"], "rb").read())
        files.append(str(path))
    targets = np.zeros((len(dataset), len(CLASSES)), dtype=np.uint8)
    for k, labels in enumerate(dataset["labels"]):
        targets[k, labels] = 1
    return LabelIndex(files=files, targets=targets, ignore=None, classes=list(CLASSES))


@pytest.mark.parametrize("train", [True, False])
def test_an_hf_dataset_loads_as_a_file_list_of_the_same_images_does_bitwise(tmp_path, train):
    dataset, labels = _dataset(tmp_path, as_path={2, 9})
    index = load_hf(dataset)
    assert index.classes == CLASSES and np.array_equal(index.targets, _multi_hot(labels))
    assert index.files[2].endswith("held-2.img") and index.files[0] == "dataset[0]"
    got = list(MLICLoader(index, 4, train=train, mix="cutmix" if train else None, **OPTIONS))
    want = list(MLICLoader(_as_files(tmp_path, dataset), 4, train=train, mix="cutmix" if train else None, **OPTIONS))
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert torch.equal(a.rows, b.rows) and torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)


def test_label_columns_of_names_indices_and_multi_hot_floats_with_classes(tmp_path):
    image = datasets.Image()
    labels = _truth(6, seed=1)
    images = [{"bytes": _encoded(k), "path": None} for k in range(6)]
    names = datasets.Dataset.from_dict({"img": images, "tags": [[CLASSES[c] for c in row] for row in labels]},
                                       features=datasets.Features({"img": image, "tags": datasets.Sequence(
                                           datasets.Value("string"))}))
    index = load_hf(names, image_column="img", label_column="tags", classes=CLASSES)
    assert np.array_equal(index.targets, _multi_hot(labels))
    indices = datasets.Dataset.from_dict({"image": images, "labels": labels}, features=datasets.Features(
        {"image": image, "labels": datasets.Sequence(datasets.Value("int64"))}))
    assert np.array_equal(load_hf(indices, classes=CLASSES).targets, _multi_hot(labels))
    floats = datasets.Dataset.from_dict({"image": images, "labels": _multi_hot(labels).astype(np.float32).tolist()},
                                        features=datasets.Features({"image": image, "labels": datasets.Sequence(
                                            datasets.Value("float32"))}))
    assert np.array_equal(load_hf(floats, classes=CLASSES).targets, _multi_hot(labels))
    reordered = load_hf(_dataset(tmp_path, 6)[0], classes=CLASSES[::-1])  # a ClassLabel's names, in another order
    assert np.array_equal(reordered.targets, _multi_hot(_truth(6))[:, ::-1])
    with pytest.raises(MLICDataError, match=r"names no classes \(pass classes="):
        load_hf(names, image_column="img", label_column="tags")
    with pytest.raises(MLICDataError, match=r"dataset\[\d\].*class 'tree', not one of the 3 classes"):
        load_hf(names, image_column="img", label_column="tags", classes=CLASSES[:3])
    with pytest.raises(MLICDataError, match=r"has no column 'image' \(it has img, tags\)"):
        load_hf(names)
    with pytest.raises(MLICDataError, match=r"has 4 multi-hot values, but 3 classes"):
        load_hf(floats, classes=CLASSES[:3])


def test_save_to_disk_folders_load_by_path_splits_and_selections_honoured(tmp_path):
    dataset, labels = _dataset(tmp_path, 10)
    dataset.save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": dataset, "validation": dataset.select([7, 3, 5])}).save_to_disk(str(tmp_path / "two"))
    assert np.array_equal(load(tmp_path / "one").targets, _multi_hot(labels))
    validation = load(tmp_path / "two", split="validation", missing="raise")
    assert np.array_equal(validation.targets, _multi_hot([labels[7], labels[3], labels[5]]))
    assert [bytes(b) for b in validation.read_encoded([0, 2])] == [_encoded(7), _encoded(5)]
    with pytest.raises(MLICDataError, match=r"has no split 'test' \(it has train, validation\)"):
        load(tmp_path / "two", split="test")


def test_an_undecodable_row_is_named_skipped_replaced_by_a_marked_repeat_and_agreed(tmp_path):
    dataset, _ = _dataset(tmp_path, 13, bad={5})
    index = load_hf(dataset, name="tiny")
    with pytest.raises(MLICDataError, match=r"tiny\[5\].*cannot be decoded"):
        list(MLICLoader(index, 4, **OPTIONS))
    loader = MLICLoader(index, 4, on_error="skip", drop_last=False, **OPTIONS)
    for epoch in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batches = list(loader)
        # epoch 0: every batch keeps its size (a repeat in the bad row's place); then the row leaves the epoch
        assert [len(b.rows) for b in batches] == ([4, 4, 4, 1] if epoch == 0 else [4, 4, 4])
        real = [r for b in batches for r in b.rows[~b.padded].tolist()]
        assert sorted(real) == [r for r in range(13) if r != 5]
        assert len([w for w in caught if "skipped tiny[5]" in str(w.message)]) == (1 if epoch == 0 else 0)
    assert list(loader.skipped) == ["tiny[5]"]


def test_an_hf_epoch_saved_on_two_ranks_resumes_on_three_each_row_once(tmp_path):
    index = load_hf(_dataset(tmp_path, 23)[0])
    options = dict(OPTIONS, drop_last=False)
    first = [MLICLoader(index, 3, rank=r, world_size=2, **options) for r in range(2)]
    before = [[b.rows.clone() for b in itertools.islice(iter(loader), 2)] for loader in first]
    states = json.loads(json.dumps([loader.state_dict() for loader in first]))
    assert {state["source"] for state in states} == {"hf"}
    rest = []
    for rank in range(3):
        loader = MLICLoader(index, 3, rank=rank, world_size=3, **options)
        loader.load_state_dict(states)
        rest += [r for b in itertools.islice(iter(loader), len(loader) - 2) for r in b.rows[~b.padded].tolist()]
    assert sorted([r for part in before for rows in part for r in rows.tolist()] + rest) == list(range(23))

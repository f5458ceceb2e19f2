import os
import re

import numpy as np
import pytest

from builders import write_nuswide
from mlic_pipe.datasets import MLICDataError, load_nuswide

CONCEPTS = ["airport", "animal", "beach"]
PATHS = ["actor/0001_2124494179.jpg", "airport/0002_101.jpg", "beach/0003_77.jpg", "beach/0004_78.jpg"]
LABELS = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 0]], np.uint8)


def test_targets_classes_and_backslash_paths(tmp_path):
    write_nuswide(tmp_path, "Train", CONCEPTS, PATHS, LABELS)
    index = load_nuswide(tmp_path, "train")
    assert index.classes == CONCEPTS
    np.testing.assert_array_equal(index.targets, LABELS)
    assert index.files == [str(tmp_path / "images" / p) for p in PATHS]
    assert all(os.path.isfile(f) for f in index.files)


def test_drop_empty_and_test_split(tmp_path):
    write_nuswide(tmp_path, "Test", CONCEPTS, PATHS, LABELS)
    index = load_nuswide(tmp_path, "test", drop_empty=True)
    np.testing.assert_array_equal(index.targets, LABELS[:3])
    with pytest.raises(MLICDataError, match="TrainImagelist.txt"):
        load_nuswide(tmp_path, "train")


def test_missing_images_reported_with_count(tmp_path):
    write_nuswide(tmp_path, "Train", CONCEPTS, PATHS, LABELS)
    os.remove(tmp_path / "images" / "beach" / "0004_78.jpg")
    with pytest.raises(MLICDataError, match="1 of 4 image files are missing.*0004_78.jpg") as caught:
        load_nuswide(tmp_path, "train")
    assert "TrainImagelist.txt" in str(caught.value)
    with pytest.warns(UserWarning, match="dropping 1 of 4"):
        assert len(load_nuswide(tmp_path, "train", missing="drop")) == 3


def test_label_file_errors_name_the_file(tmp_path):
    write_nuswide(tmp_path, "Train", CONCEPTS, PATHS, LABELS)
    animal = tmp_path / "TrainTestLabels" / "Labels_animal_Train.txt"
    animal.write_text("1\n0\n1\n")
    with pytest.raises(MLICDataError, match="has 3 labels but TrainImagelist.txt lists 4") as caught:
        load_nuswide(tmp_path, "train")
    assert str(animal) in str(caught.value)
    animal.write_text("1\n0\n7\n0\n")
    with pytest.raises(MLICDataError, match="label 3 is '7'"):
        load_nuswide(tmp_path, "train")
    os.remove(animal)
    with pytest.raises(MLICDataError, match="Labels_animal_Train.txt"):
        load_nuswide(tmp_path, "train")


def test_unknown_split():
    with pytest.raises(ValueError, match="splits are"):
        load_nuswide("/nonexistent", "val")


# ---------------------------------------------------------------- the layouts NUS-WIDE is distributed in

OFFICIAL_CONCEPTS = ["animal", "clouds", "sky", "sun", "water"]
# image list lines as NUS's ImageList/TrainImagelist.txt writes them: Windows paths below Flickr\ (tag folders)
OFFICIAL_TRAIN = [r"actor\0001_2124494179.jpg", r"airport\0002_2220145493.jpg", r"beach\0003_2124497543.jpg",
                  r"sunset\0004_2124500014.jpg"]
OFFICIAL_TEST = [r"actor\0005_2124494245.jpg", r"beach\0006_2124498161.jpg"]
TRAIN_LABELS = np.array([[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 0, 1], [0, 0, 1, 1, 0]], np.uint8)
TEST_LABELS = np.array([[0, 0, 0, 0, 0], [1, 0, 0, 0, 1]], np.uint8)


def _crlf(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())


def build_official_release(root, absolute=False):
    """NUS-WIDE as NUS's archives extract: ConceptsList/, ImageList/, Groundtruth/{TrainTestLabels,AllLabels}/,
    Flickr/<tag>/..., every text file with Windows line endings."""
    from builders import write_image

    _crlf(root / "ConceptsList" / "Concepts81.txt", OFFICIAL_CONCEPTS)
    form = (lambda p: rf"C:\ImageData\Flickr\{p}") if absolute else (lambda p: p)  # noqa: E731
    _crlf(root / "ImageList" / "Imagelist.txt", [form(p) for p in OFFICIAL_TRAIN + OFFICIAL_TEST])
    for tag, paths, labels in (("Train", OFFICIAL_TRAIN, TRAIN_LABELS), ("Test", OFFICIAL_TEST, TEST_LABELS)):
        _crlf(root / "ImageList" / f"{tag}Imagelist.txt", [form(p) for p in paths])
        for column, concept in enumerate(OFFICIAL_CONCEPTS):
            _crlf(root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{tag}.txt", labels[:, column])
        for path in paths:
            write_image(str(root / "Flickr" / path.replace("\\", "/")))
    for column, concept in enumerate(OFFICIAL_CONCEPTS):
        _crlf(root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt",
              np.concatenate([TRAIN_LABELS, TEST_LABELS])[:, column])
    return root


@pytest.mark.parametrize("absolute", [False, True])
def test_the_official_release_as_extracted_loads_both_splits(tmp_path, absolute):
    from mlic_pipe.datasets import load

    root = build_official_release(tmp_path / "NUS-WIDE", absolute=absolute)
    for split, paths, labels in (("train", OFFICIAL_TRAIN, TRAIN_LABELS), ("test", OFFICIAL_TEST, TEST_LABELS)):
        index = load(str(root), split=split, use_cache=False)
        assert index.classes == OFFICIAL_CONCEPTS
        np.testing.assert_array_equal(index.targets, labels)
        assert index.files == [str(root / "Flickr" / p.replace("\\", "/")) for p in paths]


def test_images_dir_overrides_and_a_rearranged_root_with_flickr_folder(tmp_path):
    import shutil

    from mlic_pipe.datasets import load

    root = build_official_release(tmp_path / "nus")
    shutil.move(str(root / "Flickr"), str(tmp_path / "pictures"))
    with pytest.raises(MLICDataError, match="none of its 4 image files exist"):
        load(str(root), split="train", missing="drop", use_cache=False)
    index = load(str(root), split="train", image_dir=str(tmp_path / "pictures"), use_cache=False)
    assert index.files[0] == str(tmp_path / "pictures" / "actor" / "0001_2124494179.jpg")
    shutil.move(str(root / "ConceptsList" / "Concepts81.txt"), str(root / "Concepts81.txt"))  # moved to the root
    shutil.move(str(tmp_path / "pictures"), str(root / "images"))
    index = load(str(root), split="test", use_cache=False)
    np.testing.assert_array_equal(index.targets, TEST_LABELS)
    assert index.files[1] == str(root / "images" / "beach" / "0006_2124498161.jpg")


ASL_ROWS = [  # as ASL's nus_wid_data.csv: filepath,label,split_name; a Python list literal; flat images/
    ("images/0_2124494179_b039ddccb2_m.jpg", "['clouds', 'sky']", "train"),
    ("images/1_2220145493_7cbc2e5ee0_m.jpg", "['animal']", "train"),
    ("images/2_2124497543_4f5d47a1c2_m.jpg", "[]", "train"),
    ("images/3_2124500014_88e7a1d1b0_m.jpg", "['sky', 'sun', 'water']", "val"),
    ("images/4_2124494245_9c1e2a77d3_m.jpg", "['water']", "val"),
]


def _write_asl(root, header=True):
    import csv

    from builders import write_image

    with open(root / "nus_wid_data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(["filepath", "label", "split_name"])
        writer.writerows(ASL_ROWS)
    for path, _, _ in ASL_ROWS:
        write_image(str(root / path))
    return root / "nus_wid_data.csv"


@pytest.mark.parametrize("header", [True, False])
def test_asl_csv_reads_its_list_literals_sorted_classes_and_splits(tmp_path, header):
    import ast

    from mlic_pipe.datasets import load

    path = _write_asl(tmp_path, header)
    classes = sorted({name for _, labels, _ in ASL_ROWS for name in ast.literal_eval(labels)})
    for split in ("train", "val"):
        rows = [row for row in ASL_ROWS if row[2] == split]
        index = load(str(path), split=split)
        assert index.classes == classes == ["animal", "clouds", "sky", "sun", "water"]
        expected = np.array([[name in ast.literal_eval(labels) for name in classes] for _, labels, _ in rows])
        np.testing.assert_array_equal(index.targets, expected.astype(np.uint8))
        assert index.files == [str(tmp_path / p) for p, _, _ in rows]
    with pytest.raises(MLICDataError, match="no rows of split 'test' \\(its splits: train, val\\)"):
        load(str(path), split="test")


@pytest.mark.parametrize("field, message", [
    ("\"__import__('os').system('touch pwned')\"", "holds brackets or quotes"),
    ("\"['clouds', 'sky'\"", "look like a list but do not parse"),
    ("\"[1, 2]\"", "are not a list of class names"),
    ("\"['a'b']\"", "look like a list but do not parse"),
])
def test_a_malformed_labels_field_is_an_error_naming_the_line_never_a_class(tmp_path, field, message):
    from mlic_pipe.datasets import load_csv

    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text(f"path,labels\na.jpg,sky\na.jpg,{field}\n")
    with pytest.raises(MLICDataError, match=f"line 3: .*{message}"):
        load_csv(tmp_path / "labels.csv")
    assert not (tmp_path / "pwned").exists()


def test_a_list_file_with_a_class_file_and_an_image_root(tmp_path):
    from builders import write_image
    from mlic_pipe.datasets import load

    rows = [("./data/nuswide_81/images/a 1.jpg", [0, 1, 1]), ("./data/nuswide_81/images/b.jpg", [1, 0, 0])]
    for path, _ in rows:
        write_image(str(tmp_path / path[2:]))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text("".join(f"{p} {' '.join(map(str, v))}\n" for p, v in rows))
    (tmp_path / "lists" / "classes.txt").write_text("clouds\nsky\nwater\n")
    index = load(str(tmp_path / "lists" / "train.txt"), classes=str(tmp_path / "lists" / "classes.txt"),
                 image_dir=str(tmp_path))
    assert index.classes == ["clouds", "sky", "water"]
    np.testing.assert_array_equal(index.targets, np.array([v for _, v in rows], np.uint8))
    assert index.files == [str(tmp_path / p[2:]) for p, _ in rows]
    with pytest.raises(MLICDataError, match="line 1 has 3 values after its path .*, but 4 classes are given"):
        load(str(tmp_path / "lists" / "train.txt"), classes=["a", "b", "c", "d"], image_dir=str(tmp_path))
    with pytest.raises(MLICDataError, match="line 1 has 3 values after its path .*, but 2 classes are given"):
        load(str(tmp_path / "lists" / "train.txt"), classes=["a", "b"], image_dir=str(tmp_path))
    with pytest.raises(MLICDataError, match="does not name its classes.*classes"):
        load(str(tmp_path / "lists" / "train.txt"))


def test_check_and_shard_take_every_layout(tmp_path, capsys):
    from mlic_pipe.cli import main
    from mlic_pipe.shards import load_shards

    root = build_official_release(tmp_path / "NUS-WIDE")
    asl = _write_asl(tmp_path)
    (tmp_path / "list.txt").write_text("images/0_2124494179_b039ddccb2_m.jpg 0 1\n"
                                       "images/1_2220145493_7cbc2e5ee0_m.jpg 1 0\n")
    (tmp_path / "classes.txt").write_text("animal\nsky\n")
    sets = [([str(root), "--split", "test"], 2), ([str(asl), "--split", "val"], 2),
            ([str(tmp_path / "list.txt"), "--classes", str(tmp_path / "classes.txt")], 2)]
    for number, (data, count) in enumerate(sets):
        assert main(["check", *data, "-q"]) == 0
        assert re.search(rf"^images\s+{count}$", capsys.readouterr().out, re.M)
        out = tmp_path / f"shards{number}"
        assert main(["shard", *data, str(out), "-q", "--verify"]) == 0
        assert len(load_shards(out)) == count

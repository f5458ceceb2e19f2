import os

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

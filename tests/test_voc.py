import os

import numpy as np
import pytest

from builders import write_voc
from mlic_pipe.datasets import VOC_CLASSES, MLICDataError, load_voc

IDS = ["000005", "000007", "000009"]
FLAGS = {"aeroplane": [1, -1, 0], "cat": [-1, 1, 1], "person": [0, 0, 1], "tvmonitor": [1, -1, -1]}


def expected():
    targets = np.zeros((3, 20), np.uint8)
    ignore = np.zeros((3, 20), bool)
    # written out by hand from FLAGS: 1 -> target, 0 -> difficult (ignored, target 0)
    targets[0, VOC_CLASSES.index("aeroplane")] = 1
    ignore[2, VOC_CLASSES.index("aeroplane")] = True
    targets[1, VOC_CLASSES.index("cat")] = 1
    targets[2, VOC_CLASSES.index("cat")] = 1
    ignore[0, VOC_CLASSES.index("person")] = True
    ignore[1, VOC_CLASSES.index("person")] = True
    targets[2, VOC_CLASSES.index("person")] = 1
    targets[0, VOC_CLASSES.index("tvmonitor")] = 1
    return targets, ignore


def test_standard_class_order():
    assert VOC_CLASSES[:3] == ["aeroplane", "bicycle", "bird"] and VOC_CLASSES[-1] == "tvmonitor"
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES.index("person") == 14


@pytest.mark.parametrize("point_at_year_dir", [False, True])
def test_targets_and_difficult_ignore_match_the_hand_built_devkit(tmp_path, point_at_year_dir):
    write_voc(tmp_path / "VOCdevkit", "2007", "trainval", FLAGS, IDS, VOC_CLASSES)
    root = tmp_path / "VOCdevkit" / ("VOC2007" if point_at_year_dir else "")
    index = load_voc(root, "2007", "trainval")
    targets, ignore = expected()
    np.testing.assert_array_equal(index.targets, targets)
    np.testing.assert_array_equal(index.ignore, ignore)
    assert index.classes == VOC_CLASSES
    assert index.files == [str(tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / f"{i}.jpg") for i in IDS]


def test_missing_split_names_the_absent_file(tmp_path):
    write_voc(tmp_path, "2012", "trainval", FLAGS, IDS, VOC_CLASSES)
    with pytest.raises(MLICDataError, match="aeroplane_test.txt") as caught:
        load_voc(tmp_path, "2012", "test")
    assert "20 of the 20" in str(caught.value)


def test_no_devkit_here(tmp_path):
    with pytest.raises(MLICDataError, match="no VOC2007/ImageSets/Main"):
        load_voc(tmp_path, "2007")


def test_malformed_line_and_mismatched_lists(tmp_path):
    write_voc(tmp_path, "2007", "train", FLAGS, IDS, VOC_CLASSES)
    bird = tmp_path / "VOC2007" / "ImageSets" / "Main" / "bird_train.txt"
    bird.write_text("000005 -1\n000007 2\n000009 -1\n")
    with pytest.raises(MLICDataError, match="line 2") as caught:
        load_voc(tmp_path, "2007", "train")
    assert str(bird) in str(caught.value)
    bird.write_text("000005 -1\n000009 -1\n")
    with pytest.raises(MLICDataError, match="lists different images"):
        load_voc(tmp_path, "2007", "train")


def test_missing_jpeg_raises_or_drops(tmp_path):
    write_voc(tmp_path, "2007", "val", FLAGS, IDS, VOC_CLASSES)
    os.remove(tmp_path / "VOC2007" / "JPEGImages" / "000007.jpg")
    with pytest.raises(MLICDataError, match="1 of 3 image files are missing.*000007.jpg"):
        load_voc(tmp_path, "2007", "val")
    with pytest.warns(UserWarning, match="dropping 1 of 3"):
        index = load_voc(tmp_path, "2007", "val", missing="drop")
    targets, ignore = expected()
    np.testing.assert_array_equal(index.targets, targets[[0, 2]])
    np.testing.assert_array_equal(index.ignore, ignore[[0, 2]])

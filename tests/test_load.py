import numpy as np
import pytest

from builders import write_coco, write_image, write_nuswide, write_voc
from mlic_pipe.datasets import VOC_CLASSES, MLICDataError, detect_format, load, load_coco


def test_each_layout_is_detected_and_loaded(tmp_path):
    write_image(tmp_path / "coco" / "train2017" / "a.jpg")
    ann = write_coco(tmp_path / "coco" / "annotations" / "instances_train2017.json", [(1, "a.jpg")], [(3, "x")],
                     [(1, 3, 0)])
    write_voc(tmp_path / "VOCdevkit", "2007", "trainval", {"cat": [1]}, ["000001"], VOC_CLASSES)
    write_nuswide(tmp_path / "nus", "Train", ["sky"], ["sky/1.jpg"], np.array([[1]]))
    write_image(tmp_path / "c" / "a.jpg")
    (tmp_path / "c" / "l.csv").write_text("path,labels\na.jpg,y\n")

    assert detect_format(ann) == "coco" and detect_format(tmp_path / "coco") == "coco"
    assert detect_format(tmp_path / "VOCdevkit") == "voc"
    assert detect_format(tmp_path / "nus") == "nuswide"
    assert detect_format(tmp_path / "c" / "l.csv") == "csv"
    assert detect_format("demo:val") == "demo"

    assert load(ann).classes == ["x"]  # images found in COCO's sibling train2017/
    assert load(tmp_path / "coco", split="train2017").files == [str(tmp_path / "coco" / "train2017" / "a.jpg")]
    assert load(tmp_path / "VOCdevkit", year="2007").targets[0, VOC_CLASSES.index("cat")] == 1
    assert load(tmp_path / "nus").classes == ["sky"]
    assert load(tmp_path / "c" / "l.csv").classes == ["y"]
    # a single annotation file is its own split; split=None is every reader's default
    assert load(ann, split="val").files == load(ann).files
    assert load(tmp_path / "c" / "l.csv", split="train").classes == ["y"]
    assert load(tmp_path / "nus", split=None).classes == ["sky"]
    assert len(load("demo", split=None)) == len(load("demo:train"))


def test_demo_spec_matches_load_coco(demo_root):
    via_spec = load("demo:val")
    direct = load_coco(demo_root / "annotations" / "instances_val.json", demo_root / "val")
    assert via_spec.files == direct.files
    np.testing.assert_array_equal(via_spec.targets, direct.targets)


def test_unknown_paths_raise(tmp_path):
    with pytest.raises(MLICDataError, match="no such file"):
        load(tmp_path / "nothing")
    with pytest.raises(MLICDataError, match="not a dataset layout"):
        load(tmp_path)
    (tmp_path / "x.yaml").write_text("hi")
    with pytest.raises(MLICDataError, match="neither a COCO .json annotation file, a .csv label file nor a .txt list"):
        load(tmp_path / "x.yaml")
    (tmp_path / "x.txt").write_text("hi")  # a .txt is read as a list file, which needs its classes
    with pytest.raises(MLICDataError, match="x.txt: a list file does not name its classes"):
        load(tmp_path / "x.txt")

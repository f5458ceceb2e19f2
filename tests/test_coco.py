import json
import os
import warnings

import numpy as np
import pytest
from pycocotools.coco import COCO

from builders import write_coco, write_image
from mlic_pipe.datasets import MLICDataError, load_coco

# Category ids listed out of order and sparse, as COCO's are; expected columns are by ascending id.
CATEGORIES = [(90, "toothbrush"), (1, "person"), (5, "airplane")]
IMAGES = [(10, "a.jpg"), (7, "b.jpg"), (3, "c.jpg"), (42, "d.jpg")]
ANNOTATIONS = [(10, 90, 0), (10, 1, 0), (7, 5, 0), (7, 5, 0), (7, 1, 1), (42, 5, 0)]  # (image, category, crowd)
EXPECTED = np.array([
    # person airplane toothbrush
    [1, 0, 1],  # a.jpg
    [1, 1, 0],  # b.jpg (its person is a crowd annotation: it counts)
    [0, 0, 0],  # c.jpg, no annotation
    [0, 1, 0],  # d.jpg
], dtype=np.uint8)


@pytest.fixture
def coco_dir(tmp_path):
    for _, name in IMAGES:
        write_image(tmp_path / "images" / name)
    write_coco(tmp_path / "annotations" / "instances_x.json", IMAGES, CATEGORIES, ANNOTATIONS)
    return tmp_path


def test_targets_classes_and_files_match_the_hand_built_file(coco_dir):
    index = load_coco(coco_dir / "annotations" / "instances_x.json", coco_dir / "images")
    assert index.classes == ["person", "airplane", "toothbrush"]
    np.testing.assert_array_equal(index.targets, EXPECTED)
    assert index.targets.dtype == np.uint8
    assert index.ignore is None
    assert index.files == [str(coco_dir / "images" / name) for _, name in IMAGES]


def test_drop_empty_removes_only_images_without_annotations(coco_dir):
    index = load_coco(coco_dir / "annotations" / "instances_x.json", coco_dir / "images", drop_empty=True)
    assert [os.path.basename(f) for f in index.files] == ["a.jpg", "b.jpg", "d.jpg"]
    np.testing.assert_array_equal(index.targets, EXPECTED[[0, 1, 3]])


def test_agrees_with_pycocotools_on_the_demo_data(demo_root):
    annotation_file = demo_root / "annotations" / "instances_train.json"
    index = load_coco(annotation_file, demo_root / "train")
    coco = COCO(str(annotation_file))
    cat_ids = sorted(coco.getCatIds())
    assert index.classes == [c["name"] for c in coco.loadCats(cat_ids)]
    for row, image in enumerate(coco.dataset["images"]):
        present = {a["category_id"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))}
        expected = [int(c in present) for c in cat_ids]
        assert index.targets[row].tolist() == expected, image["file_name"]
        assert index.files[row] == str(demo_root / "train" / image["file_name"])


def _write_raw(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("truncated", "not valid JSON"),
    ("list", "top level is not an object"),
    ("unknown_image", "image ids not in 'images'"),
    ("unknown_category", "category ids not in 'categories'"),
    ("duplicate_images", "duplicate image ids"),
    ("no_categories", "no categories"),
    ("no_images", "no images"),
])
def test_bad_annotation_files_raise_naming_the_file(tmp_path, case, message):
    path = tmp_path / "annotations" / "instances_bad.json"
    write_image(tmp_path / "images" / "a.jpg")
    if case == "truncated":
        write_coco(path, IMAGES, CATEGORIES, ANNOTATIONS)
        _write_raw(path, open(path).read()[:50])
    elif case == "list":
        _write_raw(path, json.dumps([1, 2, 3]))
    elif case == "unknown_image":
        write_coco(path, [(1, "a.jpg")], CATEGORIES, [(1, 1, 0), (999, 1, 0)])
    elif case == "unknown_category":
        write_coco(path, [(1, "a.jpg")], CATEGORIES, [(1, 2, 0)])
    elif case == "duplicate_images":
        write_coco(path, [(1, "a.jpg"), (1, "a.jpg")], CATEGORIES, [])
    elif case == "no_categories":
        write_coco(path, [(1, "a.jpg")], [], [])
    elif case == "no_images":
        write_coco(path, [], CATEGORIES, [])
    with pytest.raises(MLICDataError, match=message) as caught:
        load_coco(path, tmp_path / "images")
    assert str(path) in str(caught.value)


def test_missing_files_raise_with_count_or_drop_with_a_warning(coco_dir):
    os.remove(coco_dir / "images" / "b.jpg")
    os.remove(coco_dir / "images" / "d.jpg")
    annotation_file = coco_dir / "annotations" / "instances_x.json"
    with pytest.raises(MLICDataError, match="2 of 4 image files are missing") as caught:
        load_coco(annotation_file, coco_dir / "images")
    assert str(annotation_file) in str(caught.value) and "b.jpg" in str(caught.value)
    with pytest.warns(UserWarning, match="dropping 2 of 4"):
        index = load_coco(annotation_file, coco_dir / "images", missing="drop")
    np.testing.assert_array_equal(index.targets, EXPECTED[[0, 2]])


def test_missing_annotation_file_or_image_dir_raise(tmp_path, coco_dir):
    with pytest.raises(MLICDataError, match="annotation file not found"):
        load_coco(tmp_path / "nope.json", coco_dir / "images")
    with pytest.raises(MLICDataError, match="image directory not found"):
        load_coco(coco_dir / "annotations" / "instances_x.json", tmp_path / "nope")


def test_second_load_comes_from_the_cache_and_edits_invalidate_it(coco_dir, monkeypatch):
    annotation_file = coco_dir / "annotations" / "instances_x.json"
    first = load_coco(annotation_file, coco_dir / "images")

    class ParsedAgain(Exception):
        pass

    def refuse(*args, **kwargs):
        raise ParsedAgain("parsed again although the file did not change")

    monkeypatch.setattr("pycocotools.coco.COCO", refuse)
    second = load_coco(annotation_file, coco_dir / "images")
    assert second.files == first.files and second.classes == first.classes
    np.testing.assert_array_equal(second.targets, first.targets)
    with pytest.raises(ParsedAgain):
        load_coco(annotation_file, coco_dir / "images", use_cache=False)

    monkeypatch.undo()
    write_coco(annotation_file, IMAGES, CATEGORIES, ANNOTATIONS[:1])  # an edit: new size and mtime
    os.utime(annotation_file, ns=(1, 1))
    edited = load_coco(annotation_file, coco_dir / "images")
    assert edited.targets.sum() == 1


def test_annotation_less_file_gives_all_zero_rows(tmp_path):
    write_image(tmp_path / "images" / "a.jpg")
    path = write_coco(tmp_path / "image_info.json", [(1, "a.jpg")], CATEGORIES)  # like COCO test-dev
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index = load_coco(path, tmp_path / "images")
    np.testing.assert_array_equal(index.targets, np.zeros((1, 3), np.uint8))

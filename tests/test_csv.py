import numpy as np
import pytest

from builders import write_image
from mlic_pipe.datasets import MLICDataError, load_csv

ROWS = "path,labels\nimg/a.jpg,dog|cat\nimg/b.jpg,\n\"img/c,1.jpg\",zebra\n"


@pytest.fixture
def csv_path(tmp_path):
    for name in ("a.jpg", "b.jpg", "c,1.jpg"):
        write_image(tmp_path / "img" / name)
    path = tmp_path / "labels.csv"
    path.write_text(ROWS)
    return path


def test_classes_from_the_file_are_sorted(csv_path, tmp_path):
    index = load_csv(csv_path)
    assert index.classes == ["cat", "dog", "zebra"]
    np.testing.assert_array_equal(index.targets, [[1, 1, 0], [0, 0, 0], [0, 0, 1]])
    assert index.files == [str(tmp_path / "img" / n) for n in ("a.jpg", "b.jpg", "c,1.jpg")]


def test_given_classes_set_the_order_and_reject_unknown_labels(csv_path):
    index = load_csv(csv_path, classes=["zebra", "dog", "cat", "emu"])
    np.testing.assert_array_equal(index.targets, [[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    with pytest.raises(MLICDataError, match=r"line 2 has labels \['cat'\]") as caught:
        load_csv(csv_path, classes=["dog", "zebra"])
    assert str(csv_path) in str(caught.value)


def test_image_dir_and_bad_header(tmp_path, csv_path):
    moved = tmp_path / "elsewhere.csv"
    moved.write_text("path,labels\na.jpg,x\n")
    assert load_csv(moved, image_dir=tmp_path / "img").files == [str(tmp_path / "img" / "a.jpg")]
    moved.write_text("file,tags\na.jpg,x\n")  # other names for the two columns
    assert load_csv(moved, image_dir=tmp_path / "img").classes == ["x"]
    moved.write_text("a.jpg\n")
    with pytest.raises(MLICDataError, match="line 1 has one column; expected path and labels"):
        load_csv(moved)
    moved.write_text("path,labels\n")
    with pytest.raises(MLICDataError, match="lists no images"):
        load_csv(moved)


def test_classes_from_a_file_set_the_column_order_as_a_list_does(csv_path, tmp_path):
    """`--classes FILE` reaches load_csv as a path: one name a line, the same order as the list form."""
    from mlic_pipe.datasets import load

    (tmp_path / "classes.txt").write_text("zebra\ndog\ncat\nemu\n")
    by_file = load(str(csv_path), classes=str(tmp_path / "classes.txt"))
    assert by_file.classes == ["zebra", "dog", "cat", "emu"]
    np.testing.assert_array_equal(by_file.targets, load_csv(csv_path, classes=["zebra", "dog", "cat", "emu"]).targets)

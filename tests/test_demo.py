import filecmp
import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from mlic_pipe.datasets import DEMO_CLASSES, build_demo, load_coco
from mlic_pipe.datasets import demo as demo_module


def test_build_is_deterministic(tmp_path):
    first = build_demo(tmp_path / "a", splits={"train": 5, "val": 2}, progress=False)
    second = build_demo(tmp_path / "b", splits={"train": 5, "val": 2}, progress=False)
    for split in ("train", "val"):
        names = sorted(p.name for p in (first / split).iterdir())
        assert len(names) == {"train": 5, "val": 2}[split]
        match, mismatch, errors = filecmp.cmpfiles(first / split, second / split, names, shallow=False)
        assert not mismatch and not errors
        assert filecmp.cmp(first / "annotations" / f"instances_{split}.json",
                           second / "annotations" / f"instances_{split}.json", shallow=False)
    other_seed = build_demo(tmp_path / "c", seed=1, splits={"train": 1}, progress=False)
    assert not filecmp.cmp(first / "train" / "000000000001.jpg", other_seed / "train" / "000000000001.jpg",
                           shallow=False)


def test_demo_shape_and_label_counts(demo_root):
    train = load_coco(demo_root / "annotations" / "instances_train.json", demo_root / "train")
    val = load_coco(demo_root / "annotations" / "instances_val.json", demo_root / "val")
    assert len(train) + len(val) == 500 and len(val) == 100
    assert train.classes == DEMO_CLASSES
    labels = np.concatenate([train.targets, val.targets]).sum(axis=1)
    assert labels.min() >= 1 and labels.max() <= 4
    assert (np.concatenate([train.targets, val.targets]).sum(axis=0) > 20).all()  # every class is well represented
    with Image.open(train.files[0]) as image:
        assert image.size == (640, 480) and image.format == "JPEG" and image.mode == "RGB"


def _photo(name):
    with Image.open(f"{skimage.data.data_dir}/{name}") as image:
        return image.convert("RGB")


def test_every_box_shows_the_photo_of_its_class(demo_root):
    """Independent check of the labels: each annotated box, cut from the JPEG, must look like its
    class's photo (resized the same way) and less like any other class's photo."""
    photos = [_photo(obj.file).crop(obj.box) for obj in demo_module._OBJECTS]
    data = json.loads((demo_root / "annotations" / "instances_val.json").read_text())
    images = {image["id"]: image for image in data["images"]}
    for ann in data["annotations"][:60]:
        x, y, w, h = ann["bbox"]
        with Image.open(demo_root / "val" / images[ann["image_id"]]["file_name"]) as image:
            crop = np.asarray(image.convert("RGB").crop((x, y, x + w, y + h)), dtype=np.float32)
        distances = []
        for photo in photos:
            patch = np.asarray(photo.resize((w, h), Image.BILINEAR), dtype=np.float32)
            # later objects may cover up to a quarter of a box: the median ignores that part
            distances.append(min(np.median(np.abs(crop - patch)), np.median(np.abs(crop - patch[:, ::-1]))))
        assert int(np.argmin(distances)) == ann["category_id"] - 1, ann
        assert distances[ann["category_id"] - 1] < 8, ann


def test_demo_refuses_unknown_split():
    with pytest.raises(ValueError, match="splits"):
        demo_module.load_demo("test")

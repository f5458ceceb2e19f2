"""Annotation loading: a cold parse of a COCO train2014-sized file vs the cached second start.

Run: pytest benchmarks/test_bench_annotations.py --benchmark-only
"""
import json
import os

import numpy as np
import pytest

from mlic_pipe.datasets import load_coco

from benchmarks.common import preset_name, record

# COCO train2014: 82,783 images, 604,907 instance annotations, 80 categories (ids 1..90); --tiny: 1%.
NUM_IMAGES, NUM_ANNOTATIONS = (828, 6_049) if preset_name() == "tiny" else (82_783, 604_907)
CATEGORY_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


@pytest.fixture(scope="module")
def train2014_sized(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    rng = np.random.default_rng(0)
    image_dir = root / "train2014"
    image_dir.mkdir()
    names = [f"COCO_train2014_{i:012d}.jpg" for i in range(NUM_IMAGES)]
    for name in names:  # empty files: the loader checks existence, not content
        open(image_dir / name, "wb").close()
    ann_images = rng.integers(0, NUM_IMAGES, NUM_ANNOTATIONS)
    ann_cats = rng.choice(CATEGORY_IDS, NUM_ANNOTATIONS)
    data = {
        "images": [{"id": i, "file_name": n, "width": 640, "height": 480} for i, n in enumerate(names)],
        "categories": [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in CATEGORY_IDS],
        "annotations": [{"id": k, "image_id": int(i), "category_id": int(c), "iscrowd": 0, "area": 100.0,
                         "bbox": [1.0, 2.0, 10.0, 10.0], "segmentation": [[1.0, 2.0, 11.0, 2.0, 11.0, 12.0]]}
                        for k, (i, c) in enumerate(zip(ann_images, ann_cats))],
    }
    path = root / "instances_train2014.json"
    path.write_text(json.dumps(data))
    return path, image_dir


@pytest.mark.benchmark(group="annotations: COCO train2014-sized")
def test_cold_parse(benchmark, train2014_sized):
    path, image_dir = train2014_sized
    index = benchmark.pedantic(load_coco, args=(path, image_dir), kwargs={"use_cache": False}, rounds=2, iterations=1)
    record(benchmark, baseline=True, images=len(index), device="cpu", nbytes=os.path.getsize(path),
           mb=round(os.path.getsize(path) / 2**20, 1), contender="cold-parse")


@pytest.mark.benchmark(group="annotations: COCO train2014-sized")
def test_cached_second_start(benchmark, train2014_sized):
    path, image_dir = train2014_sized
    load_coco(path, image_dir)  # the first start writes the cache
    index = benchmark.pedantic(load_coco, args=(path, image_dir), rounds=5, iterations=1)
    record(benchmark, baseline=False, images=len(index), device="cpu", mb=round(os.path.getsize(path) / 2**20, 1),
           contender="cached")

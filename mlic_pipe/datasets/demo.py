"""A small, real-photo, COCO-format demo dataset built offline from scikit-image's photos.

Every command of the package needs data to run on; downloading COCO is not a quick start. This
module composes about 500 640x480 JPEGs from the photographs that scikit-image ships inside its
wheel: each image is a real texture photo (brick, grass, gravel) as background with 1-4 crops of
object photos (astronaut, cat, coffee, rocket, ...) pasted at random scales and positions. The
labels are exactly the classes placed, with their true boxes, written as a COCO instances file so
the same reader and pipeline serve the demo and the real thing. The build is deterministic (each
image draws from its own seeded generator) and happens once into the user cache directory.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from mlic_pipe.datasets.cache import cache_dir
from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.errors import MLICDataError

__all__ = ["DEMO_CLASSES", "build_demo", "demo_root", "ensure_demo", "load_demo"]

# Bump whenever the images or annotations would change, so old caches are rebuilt.
DEMO_VERSION = 1
IMAGE_WIDTH, IMAGE_HEIGHT = 640, 480
JPEG_QUALITY = 90
SPLITS = {"train": 400, "val": 100}


@dataclass(frozen=True)
class _ObjectPhoto:
    name: str
    file: str
    box: tuple[int, int, int, int]  # left, top, right, bottom of the object in the photo


_OBJECTS = (
    _ObjectPhoto("astronaut", "astronaut.png", (40, 0, 470, 512)),
    _ObjectPhoto("cat", "chelsea.png", (60, 0, 420, 300)),
    _ObjectPhoto("coffee", "coffee.png", (40, 0, 560, 400)),
    _ObjectPhoto("rocket", "rocket.jpg", (100, 0, 330, 640)),
    _ObjectPhoto("motorcycle", "motorcycle_left.png", (0, 0, 741, 500)),
    _ObjectPhoto("coins", "coins.png", (0, 0, 384, 303)),
    _ObjectPhoto("cameraman", "camera.png", (0, 0, 512, 512)),
    _ObjectPhoto("clock", "clock_motion.png", (0, 0, 400, 300)),
    _ObjectPhoto("galaxy", "hubble_deep_field.jpg", (150, 150, 750, 750)),
    _ObjectPhoto("retina", "retina.jpg", (0, 0, 1411, 1411)),
    _ObjectPhoto("tissue", "ihc.png", (0, 0, 512, 512)),
)
_BACKGROUNDS = ("brick.png", "grass.png", "gravel.png")
DEMO_CLASSES = [obj.name for obj in _OBJECTS]


def _photo_dir() -> Path:
    import skimage.data

    return Path(skimage.data.data_dir)


def _read_photo(name: str) -> Image.Image:
    path = _photo_dir() / name
    if not path.is_file():
        raise MLICDataError(path, "scikit-image's bundled photo is missing",
                            "reinstall scikit-image (pip install --force-reinstall scikit-image)")
    with Image.open(path) as image:
        return image.convert("RGB")


def _background(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(256, min(photo.size) + 1))
    left = int(rng.integers(0, photo.size[0] - side + 1))
    top = int(rng.integers(0, photo.size[1] - side + 1))
    crop = photo.crop((left, top, left + side, top + side)).resize((IMAGE_WIDTH, IMAGE_HEIGHT), Image.BILINEAR)
    tint = rng.uniform(0.55, 1.0, size=3)  # the textures are gray: give each background a colour cast
    pixels = np.asarray(crop, dtype=np.float32) * tint
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _overlaps(box, placed, limit: float = 0.25) -> bool:
    """True if `box` covers more than `limit` of its own or any placed box's area."""
    x0, y0, x1, y1 = box
    for px0, py0, px1, py1 in placed:
        inter = max(0, min(x1, px1) - max(x0, px0)) * max(0, min(y1, py1) - max(y0, py0))
        if inter > limit * min((x1 - x0) * (y1 - y0), (px1 - px0) * (py1 - py0)):
            return True
    return False


def _compose(rng: np.random.Generator, objects: list[Image.Image], backgrounds: list[Image.Image]):
    """One demo image and its (class index, box) list; boxes are left, top, right, bottom."""
    canvas = _background(backgrounds[int(rng.integers(len(backgrounds)))], rng)
    wanted = rng.choice(len(objects), size=int(rng.integers(1, 5)), replace=False)
    placed: list[tuple[int, tuple[int, int, int, int]]] = []
    for cls in wanted.tolist():
        photo = objects[cls]
        longest = rng.uniform(110, 300)
        scale = longest / max(photo.size)
        width, height = max(16, round(photo.size[0] * scale)), max(16, round(photo.size[1] * scale))
        for _ in range(50):  # rejection-sample a position that hides no earlier object
            left = int(rng.integers(0, IMAGE_WIDTH - width + 1))
            top = int(rng.integers(0, IMAGE_HEIGHT - height + 1))
            box = (left, top, left + width, top + height)
            if not _overlaps(box, [b for _, b in placed]):
                break
        else:
            continue  # no room: this class is not placed, so it is not labelled either
        patch = photo.resize((width, height), Image.BILINEAR)
        if rng.random() < 0.5:
            patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
        canvas.paste(patch, box[:2])
        placed.append((cls, box))
    return canvas, placed


def build_demo(root: str | os.PathLike, *, seed: int = 0, splits: dict[str, int] | None = None,
               progress: bool = True) -> Path:
    """Write the demo dataset under `root` (COCO layout) and return `root`.

    Layout: ``root/annotations/instances_<split>.json`` and ``root/<split>/<id>.jpg``.
    """
    root = Path(root)
    splits = dict(SPLITS if splits is None else splits)
    objects = [_read_photo(obj.file).crop(obj.box) for obj in _OBJECTS]
    backgrounds = [_read_photo(name) for name in _BACKGROUNDS]
    categories = [{"id": i + 1, "name": name, "supercategory": "demo"} for i, name in enumerate(DEMO_CLASSES)]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    total = sum(splits.values())
    bar = tqdm(total=total, desc="building demo images", unit="img", disable=not progress)
    next_ann_id = 1
    for split_number, (split, count) in enumerate(splits.items()):
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image_id = split_number * 100_000 + i + 1
            rng = np.random.default_rng([seed, split_number, i])
            canvas, placed = _compose(rng, objects, backgrounds)
            file_name = f"{image_id:012d}.jpg"
            canvas.save(root / split / file_name, quality=JPEG_QUALITY)
            images.append({"id": image_id, "file_name": file_name, "width": IMAGE_WIDTH, "height": IMAGE_HEIGHT})
            for cls, (x0, y0, x1, y1) in placed:
                annotations.append({
                    "id": next_ann_id, "image_id": image_id, "category_id": cls + 1, "iscrowd": 0,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                })
                next_ann_id += 1
            bar.update()
        info = {"description": "mlic-pipe demo data: scikit-image photos composed on texture photos",
                "version": DEMO_VERSION, "seed": seed}
        with open(root / "annotations" / f"instances_{split}.json", "w") as handle:
            json.dump({"info": info, "images": images, "annotations": annotations, "categories": categories}, handle)
    bar.close()
    return root


def demo_root() -> Path:
    """Where the demo dataset lives in the user cache directory."""
    return cache_dir() / f"demo-v{DEMO_VERSION}"


def ensure_demo(progress: bool = True) -> Path:
    """Build the demo dataset into the cache directory unless it is already there; return its root.

    The build goes to a temporary sibling directory that is renamed into place when complete,
    so an interrupted build never leaves a half dataset behind.
    """
    root = demo_root()
    if (root / "COMPLETE").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=root.name + "-", dir=root.parent))
    try:
        build_demo(staging, progress=progress)
        (staging / "COMPLETE").write_text(f"mlic-pipe demo data v{DEMO_VERSION}\n")
        if root.exists():  # left by an interrupted build of an older release
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(staging, root)
        except OSError:
            if not (root / "COMPLETE").exists():  # another process finished first: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def load_demo(split: str = "train", **kw) -> LabelIndex:
    """The demo dataset's `split` ("train" or "val") as a `LabelIndex`, built on first use."""
    if split not in SPLITS:
        raise ValueError(f"the demo data has splits {sorted(SPLITS)}, not {split!r}")
    from mlic_pipe.datasets.coco import load_coco

    root = ensure_demo()
    return load_coco(root / "annotations" / f"instances_{split}.json", root / split, **kw)

"""Small datasets in the real on-disk layouts, built by the tests themselves, and photographs to test images on."""
from __future__ import annotations

import io
import json
import os

import numpy as np
from PIL import Image


def write_image(path, size=(16, 12), color=(200, 30, 40), mode="RGB", fmt=None) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new(mode, size, color if mode != "L" else color[0]).save(path, format=fmt)
    return str(path)


def write_coco(path, images, categories, annotations=None, **extra) -> str:
    """images: [(id, file_name)], categories: [(id, name)], annotations: [(image_id, category_id, iscrowd)]."""
    data = {
        "images": [{"id": i, "file_name": f, "width": 16, "height": 12} for i, f in images],
        "categories": [{"id": c, "name": n} for c, n in categories],
        **extra,
    }
    if annotations is not None:
        data["annotations"] = [
            {"id": k + 1, "image_id": i, "category_id": c, "iscrowd": crowd, "bbox": [0, 0, 4, 4], "area": 16}
            for k, (i, c, crowd) in enumerate(annotations)
        ]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(data, handle)
    return str(path)


def write_voc(root, year, split, flags: dict[str, list[int]], image_ids: list[str], classes: list[str],
              images=True) -> str:
    """flags[class] = one VOC flag (1, -1, 0) per image id; classes not in `flags` are all -1."""
    year_dir = os.path.join(root, f"VOC{year}")
    main = os.path.join(year_dir, "ImageSets", "Main")
    os.makedirs(main, exist_ok=True)
    for cls in classes:
        column = flags.get(cls, [-1] * len(image_ids))
        with open(os.path.join(main, f"{cls}_{split}.txt"), "w") as handle:
            for image_id, flag in zip(image_ids, column):
                handle.write(f"{image_id} {flag:2d}\n")
    if images:
        for image_id in image_ids:
            write_image(os.path.join(year_dir, "JPEGImages", f"{image_id}.jpg"))
    return str(root)


def write_nuswide(root, split_tag, concepts, relative_paths, labels: np.ndarray, images=True) -> str:
    """labels: (N, C) 0/1 aligned with `relative_paths` (written with backslashes, as the official list)."""
    os.makedirs(os.path.join(root, "ImageList"), exist_ok=True)
    os.makedirs(os.path.join(root, "TrainTestLabels"), exist_ok=True)
    with open(os.path.join(root, "Concepts81.txt"), "w") as handle:
        handle.write("\n".join(concepts) + "\n")
    with open(os.path.join(root, "ImageList", f"{split_tag}Imagelist.txt"), "w") as handle:
        handle.write("\r\n".join(p.replace("/", "\\") for p in relative_paths) + "\r\n")
    for column, concept in enumerate(concepts):
        with open(os.path.join(root, "TrainTestLabels", f"Labels_{concept}_{split_tag}.txt"), "w") as handle:
            handle.write("".join(f"{int(v)}\n" for v in labels[:, column]))
    if images:
        for rel in relative_paths:
            write_image(os.path.join(root, "images", *rel.split("/")))
    return str(root)


# Encoded images and label lists shared by the Hugging Face and WebDataset tests.
CLASSES = ["cat", "dog", "car", "tree"]
OPTIONS = dict(image_size=16, device="cpu", num_threads=1, seed=3)


def encoded_image(k: int, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:24 + k % 3, 0:30 + 2 * (k % 4)]
    picture = np.stack([(x * rng.integers(2, 9)) % 256, (y * rng.integers(2, 9)) % 256,
                        np.full_like(x, rng.integers(0, 256))], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, fmt)
    return buffer.getvalue()


def random_labels(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [sorted(rng.choice(len(CLASSES), size=int(rng.integers(0, 3)), replace=False).tolist()) for _ in range(n)]


def multi_hot(labels) -> np.ndarray:
    table = np.zeros((len(labels), len(CLASSES)), dtype=np.uint8)
    for k, row in enumerate(labels):
        table[k, row] = 1
    return table


def photographs(size: int | None = None) -> list[np.ndarray]:
    """scikit-image's bundled photographs (RGB uint8, several sizes, not square), optionally resized to size x size."""
    from skimage import data

    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "cat"):
        image = np.ascontiguousarray(getattr(data, name)()[..., :3]).astype(np.uint8)
        photos.append(np.array(Image.fromarray(image).resize((size, size))) if size else image)
    return photos

"""A synthetic Open Images V7 folder (label files only, no images): what the Open Images benchmarks parse.

Shaped like the real train split's human labels: images sorted by ImageID, a dozen rows per image on
average from two sources, two thirds positive, MIDs drawn from a 19,995-class descriptions file of
which a 9,605-class trainable list picks the columns (so rows outside the columns occur, as they do).
"""
from __future__ import annotations

import os

import numpy as np

ALL_CLASSES, TRAINABLE = 19_995, 9_605


def write_synthetic_openimages(root: str, images: int = 300_000, rows: int = 3_900_000, seed: int = 0,
                               split: str = "train") -> str:
    """Write the folder under `root` (once: an existing complete folder is reused) and return it."""
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    mids = [f"/m/0{k:06x}" for k in range(ALL_CLASSES)]
    with open(os.path.join(root, "oidv7-class-descriptions.csv"), "w", encoding="utf-8") as handle:
        handle.write("LabelName,DisplayName\n")
        handle.writelines(f"{mid},Class {k}\n" for k, mid in enumerate(mids))
    trainable = rng.choice(ALL_CLASSES, TRAINABLE, replace=False)
    with open(os.path.join(root, "oidv7-classes-trainable.txt"), "w", encoding="utf-8") as handle:
        handle.writelines(f"{mids[k]}\n" for k in trainable)
    ids = np.sort(rng.choice(np.unique(rng.integers(0, 2**63, images * 2, dtype=np.int64)), images, replace=False))
    per_image = rng.multinomial(rows - images, np.full(images, 1 / images)) + 1  # every image has a row
    image_of_row = np.repeat(np.arange(images), per_image)
    # Zipf-like class frequencies, as real labels have: a few classes are everywhere
    weights = 1.0 / np.arange(1, ALL_CLASSES + 1)
    mid_of_row = rng.choice(ALL_CLASSES, rows, p=weights / weights.sum())
    source_of_row = rng.random(rows) < 0.5
    confidence_of_row = rng.random(rows) < 2 / 3
    hex_ids = [f"{value:016x}" for value in ids.tolist()]
    image_of_row, mid_of_row = image_of_row.tolist(), mid_of_row.tolist()
    source_of_row, confidence_of_row = source_of_row.tolist(), confidence_of_row.astype(int).tolist()
    tag = {"train": "train", "validation": "val", "test": "test"}[split]
    path = os.path.join(root, f"oidv7-{tag}-annotations-human-imagelabels.csv")
    sources = ("verification", "crowdsource-verification")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("ImageID,Source,LabelName,Confidence\n")
        chunk = 500_000
        for first in range(0, rows, chunk):
            part = range(first, min(first + chunk, rows))
            handle.write("".join(f"{hex_ids[image_of_row[i]]},{sources[source_of_row[i]]},{mids[mid_of_row[i]]},"
                                 f"{confidence_of_row[i]}\n" for i in part))
    open(done, "w").close()
    return root

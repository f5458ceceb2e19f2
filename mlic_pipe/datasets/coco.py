"""MS-COCO instance annotations -> `LabelIndex`.

An image's label row is the set of categories of its annotations (crowd ones included); the
columns are the categories in ascending id order, so COCO's 80 sparse ids 1..90 become 80
contiguous columns. pycocotools reads the file; everything it does not check (dangling ids,
duplicate images) is checked here, because pycocotools silently overwrites or ignores them.
"""
from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
from tqdm.auto import tqdm

from mlic_pipe.datasets.cache import cached_index
from mlic_pipe.datasets.index import LabelIndex, MissingPolicy, check_present
from mlic_pipe.datasets.labels import SparseLabels
from mlic_pipe.errors import MLICDataError

__all__ = ["load_coco"]

# Above this size a progress bar is shown while parsing (train2014 is ~330 MB).
_BIG_FILE_BYTES = 32 * 2**20


def _read_coco(annotation_file: str):
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its timings
            return COCO(annotation_file)
    except FileNotFoundError:
        raise MLICDataError(annotation_file, "annotation file not found",
                            "check the path; COCO's are annotations/instances_<split>.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MLICDataError(annotation_file, f"not valid JSON ({error})",
                            "the file may be truncated: download or extract it again") from None
    except AssertionError:
        raise MLICDataError(annotation_file, "the JSON top level is not an object",
                            "expected a COCO annotation file with 'images' and 'categories'") from None
    except OSError as error:
        raise MLICDataError(annotation_file, f"cannot be read ({error.strerror or error})") from None


def _ids(records: list, field: str, what: str, annotation_file: str) -> np.ndarray:
    try:
        return np.array([record[field] for record in records], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise MLICDataError(annotation_file, f"every {what} needs an integer '{field}'",
                            "the file is not in COCO format") from None


def _multi_hot(annotations: list, image_ids: np.ndarray, cat_ids_sorted: np.ndarray,
               annotation_file: str) -> SparseLabels:
    """(images, categories) in CSR: an entry where an annotation puts the category on the image (crowd included)."""
    if not annotations:
        return SparseLabels.from_pairs([], [], len(image_ids), len(cat_ids_sorted))
    ann_images = _ids(annotations, "image_id", "annotation", annotation_file)
    ann_cats = _ids(annotations, "category_id", "annotation", annotation_file)
    order = np.argsort(image_ids, kind="stable")
    rows = order[np.clip(np.searchsorted(image_ids, ann_images, sorter=order), 0, len(order) - 1)]
    bad = image_ids[rows] != ann_images
    if bad.any():
        raise MLICDataError(annotation_file, f"{int(bad.sum())} annotations refer to image ids not in "
                            f"'images', e.g. {ann_images[bad][:5].tolist()}",
                            "the file is inconsistent: download it again")
    cols = np.clip(np.searchsorted(cat_ids_sorted, ann_cats), 0, len(cat_ids_sorted) - 1)
    bad = cat_ids_sorted[cols] != ann_cats
    if bad.any():
        raise MLICDataError(annotation_file, f"{int(bad.sum())} annotations refer to category ids not in "
                            f"'categories', e.g. {sorted(set(ann_cats[bad].tolist()))[:5]}",
                            "the file is inconsistent: download it again")
    return SparseLabels.from_pairs(rows, cols, len(image_ids), len(cat_ids_sorted))


def _parse(annotation_file: str, image_dir: str, drop_empty: bool) -> LabelIndex:
    big = os.path.getsize(annotation_file) > _BIG_FILE_BYTES
    with tqdm(total=3, desc=f"parsing {os.path.basename(annotation_file)}", unit="step",
              disable=not big, leave=False) as progress:
        coco = _read_coco(annotation_file)
        progress.update()
        data = coco.dataset
        images = data.get("images")
        categories = data.get("categories")
        if not isinstance(images, list) or not isinstance(categories, list):
            raise MLICDataError(annotation_file, "missing the 'images' or 'categories' list",
                                "expected a COCO instances file (instances_<split>.json)")
        if not categories:
            raise MLICDataError(annotation_file, "has no categories",
                                "a multi-label dataset needs at least one class")
        if not images:
            raise MLICDataError(annotation_file, "has no images", "the dataset is empty")

        image_ids = _ids(images, "id", "image", annotation_file)
        unique_images, counts = np.unique(image_ids, return_counts=True)
        if len(unique_images) != len(image_ids):
            dupes = unique_images[counts > 1][:5].tolist()
            raise MLICDataError(annotation_file, f"duplicate image ids {dupes}",
                                "each image must appear once in 'images'")
        cat_ids_sorted = np.array(sorted(coco.getCatIds()), dtype=np.int64)
        if len(np.unique(_ids(categories, "id", "category", annotation_file))) != len(categories):
            raise MLICDataError(annotation_file, "duplicate category ids")
        names = [cat.get("name", str(cid)) for cid, cat in
                 zip(cat_ids_sorted.tolist(), coco.loadCats(cat_ids_sorted.tolist()))]
        progress.update()

        targets = _multi_hot(data.get("annotations") or [], image_ids, cat_ids_sorted, annotation_file)
        progress.update()

    try:
        files = [os.path.join(image_dir, image["file_name"]) for image in images]
    except (KeyError, TypeError):
        raise MLICDataError(annotation_file, "every image needs a 'file_name'") from None
    index = LabelIndex(files=files, targets=targets, ignore=None, classes=names)
    if drop_empty:
        index = index.subset(targets.row_counts() > 0)
        if len(index) == 0:
            raise MLICDataError(annotation_file, "no image has an annotation, so drop_empty=True left nothing")
    return index


def load_coco(annotation_file: str | os.PathLike, image_dir: str | os.PathLike, *, drop_empty: bool = False,
              missing: MissingPolicy = "raise", use_cache: bool = True) -> LabelIndex:
    """Read a COCO instances file into a `LabelIndex`.

    Args:
        annotation_file: e.g. ``annotations/instances_train2014.json``.
        image_dir: the directory the images' ``file_name`` fields are relative to.
        drop_empty: drop images without any annotation (kept as all-zero rows by default, as
            most MLIC papers evaluate on every image).
        missing: "raise" (default) if any image file is missing on disk, "drop" to drop those rows
            with a warning that counts them.
        use_cache: reuse the parsed index from the user cache when the file is unchanged.
    """
    annotation_file = os.path.abspath(annotation_file)
    image_dir = os.path.abspath(image_dir)
    if not os.path.isfile(annotation_file):
        raise MLICDataError(annotation_file, "annotation file not found",
                            "check the path; COCO's are annotations/instances_<split>.json")
    if not os.path.isdir(image_dir):
        raise MLICDataError(image_dir, "image directory not found", "pass the folder that holds the JPEGs")
    index = cached_index("coco", [annotation_file], {"image_dir": image_dir, "drop_empty": drop_empty},
                         lambda: _parse(annotation_file, image_dir, drop_empty), use_cache=use_cache)
    present = check_present(index.files, annotation_file, missing)
    return index if present.all() else index.subset(present)

"""Pascal VOC classification labels -> `LabelIndex`.

VOC gives one file per class, ``ImageSets/Main/<class>_<split>.txt``, with a line
``<image id> <flag>`` per image: 1 present, -1 absent, 0 'difficult'. Difficult entries become
target 0 with ``ignore=True`` so metrics skip them, as the VOC evaluation does.
"""
from __future__ import annotations

import os

import numpy as np

from mlic_pipe.datasets.cache import cached_index
from mlic_pipe.datasets.index import LabelIndex, MissingPolicy, check_present
from mlic_pipe.errors import MLICDataError

__all__ = ["VOC_CLASSES", "load_voc", "voc_year_dir"]

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]


def voc_year_dir(devkit_root: str | os.PathLike, year: str) -> str:
    """``VOCdevkit/VOC<year>``, accepting either the devkit root or the year directory itself."""
    devkit_root = os.path.abspath(devkit_root)
    for candidate in (os.path.join(devkit_root, f"VOC{year}"), devkit_root):
        if os.path.isdir(os.path.join(candidate, "ImageSets", "Main")):
            return candidate
    raise MLICDataError(devkit_root, f"no VOC{year}/ImageSets/Main here",
                        "pass the VOCdevkit directory (or VOCdevkit/VOC<year>) and the right year")


def _read_class_file(path: str) -> tuple[list[str], np.ndarray]:
    ids, flags = [], []
    try:
        with open(path) as handle:
            for number, line in enumerate(handle, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or fields[1] not in ("1", "-1", "0"):
                    raise MLICDataError(path, f"line {number} is {line.strip()!r}, expected '<image id> <1|-1|0>'",
                                        "the file is not a VOC classification label file")
                ids.append(fields[0])
                flags.append(int(fields[1]))
    except OSError as error:
        raise MLICDataError(path, f"cannot be read ({error.strerror or error})") from None
    return ids, np.array(flags, dtype=np.int8)


def _class_files(year_dir: str, split: str) -> list[str]:
    files = [os.path.join(year_dir, "ImageSets", "Main", f"{cls}_{split}.txt") for cls in VOC_CLASSES]
    absent = [f for f in files if not os.path.isfile(f)]
    if absent:
        raise MLICDataError(absent[0], f"missing ({len(absent)} of the 20 class label files for split "
                            f"{split!r} are absent)",
                            "VOC2012's test split has no public labels; use trainval/train/val, or "
                            "extract the full devkit")
    return files


def _parse(year_dir: str, files: list[str]) -> LabelIndex:
    image_ids, first_flags = _read_class_file(files[0])
    if not image_ids:
        raise MLICDataError(files[0], "lists no images", "the dataset is empty")
    flags = np.empty((len(image_ids), len(files)), dtype=np.int8)
    flags[:, 0] = first_flags
    for column, path in enumerate(files[1:], 1):
        ids, column_flags = _read_class_file(path)
        if ids != image_ids:
            raise MLICDataError(path, f"lists different images than {os.path.basename(files[0])} "
                                f"({len(ids)} vs {len(image_ids)} lines)",
                                "all class files of one split must list the same images in the same order")
        flags[:, column] = column_flags
    image_dir = os.path.join(year_dir, "JPEGImages")
    return LabelIndex(
        files=[os.path.join(image_dir, f"{image_id}.jpg") for image_id in image_ids],
        targets=(flags == 1).astype(np.uint8),
        ignore=flags == 0,
        classes=list(VOC_CLASSES),
    )


def load_voc(devkit_root: str | os.PathLike, year: str = "2007", split: str = "trainval", *,
             missing: MissingPolicy = "raise", use_cache: bool = True) -> LabelIndex:
    """Read VOC<year>'s classification labels for `split` into a `LabelIndex`.

    Args:
        devkit_root: the ``VOCdevkit`` directory (or ``VOCdevkit/VOC<year>``).
        year: "2007" or "2012" (any year with the same layout works).
        split: "train", "val", "trainval" or "test" (2007).
        missing: "raise" if an image in ``JPEGImages/`` is missing, "drop" to drop it with a warning.
        use_cache: reuse the parsed index from the user cache when the files are unchanged.
    """
    year_dir = voc_year_dir(devkit_root, str(year))
    files = _class_files(year_dir, split)
    index = cached_index("voc", files, {"year_dir": year_dir}, lambda: _parse(year_dir, files),
                         use_cache=use_cache)
    present = check_present(index.files, files[0], missing)
    return index if present.all() else index.subset(present)

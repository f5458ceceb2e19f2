"""`load`: one entry point that tells which reader a path (or the word "demo") needs."""
from __future__ import annotations

import glob
import os
import re

from mlic_pipe.datasets.coco import load_coco
from mlic_pipe.datasets.csv import load_csv
from mlic_pipe.datasets.demo import load_demo
from mlic_pipe.datasets.hf import is_hf_disk, load_hf_disk
from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.datasets.listfile import load_list
from mlic_pipe.datasets.nuswide import find_nuswide, load_nuswide
from mlic_pipe.datasets.openimages import find_openimages, load_openimages
from mlic_pipe.datasets.voc import load_voc
from mlic_pipe.datasets.wds import load_webdataset
from mlic_pipe.errors import MLICDataError
from mlic_pipe.shards.format import MANIFEST
from mlic_pipe.shards.index import ShardIndex, load_shards

__all__ = ["load", "detect_format"]

FORMATS = ("demo", "coco", "voc", "nuswide", "openimages", "csv", "list", "shards", "hf", "webdataset")


def _coco_image_dir(annotation_file: str) -> str | None:
    """COCO's own layout: annotations/instances_train2017.json -> ../train2017."""
    name = os.path.splitext(os.path.basename(annotation_file))[0]
    split = name.split("_", 1)[1] if "_" in name else name
    candidate = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(annotation_file))), split)
    return candidate if os.path.isdir(candidate) else None


def detect_format(path: str | os.PathLike) -> str:
    """Name the format of `path`: one of FORMATS. Raises MLICDataError when it is none of them."""
    path = os.fspath(path)
    if path == "demo" or path.startswith("demo:"):
        return "demo"
    if path.lower().endswith(".tar") and (os.path.isfile(path) or re.search(r"\{\d+\.\.\d+\}", path)):
        return "webdataset"  # one tar, or a brace pattern of them
    if os.path.isfile(path):
        lowered = path.lower()
        if os.path.basename(lowered) == MANIFEST:
            return "shards"
        if lowered.endswith(".json"):
            return "coco"
        if lowered.endswith(".csv"):
            return "csv"
        if lowered.endswith(".txt"):
            return "list"
        raise MLICDataError(path, "is neither a COCO .json annotation file, a .csv label file nor a .txt list "
                            "(<path> <0/1 per class> lines)")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, MANIFEST)) or glob.glob(os.path.join(path, "shard-*.tar")):
            return "shards"  # (our tars without dataset.json are an unfinished run, refused by load_shards)
        if glob.glob(os.path.join(path, "*.tar")):
            return "webdataset"  # other people's tars: the classes come from the user
        if is_hf_disk(path):
            return "hf"
        if find_nuswide(path) is not None:
            return "nuswide"
        if find_openimages(path) is not None:
            return "openimages"
        if os.path.isdir(os.path.join(path, "ImageSets", "Main")) or glob.glob(os.path.join(path, "VOC*", "ImageSets", "Main")):
            return "voc"
        if glob.glob(os.path.join(path, "annotations", "instances_*.json")):
            return "coco"
        raise MLICDataError(path, "is not a dataset layout mlic-pipe knows",
                            "expected a COCO root (annotations/instances_*.json), a VOCdevkit, a NUS-WIDE root "
                            "(ConceptsList/Concepts81.txt or Concepts81.txt, ImageList/, TrainTestLabels/), an Open Images "
                            "folder (oidv7-<split>-annotations-human-imagelabels.csv, oidv7-class-descriptions.csv), a Hugging "
                            "Face `save_to_disk` folder or a .json/.csv/.txt file")
    raise MLICDataError(path, "no such file or directory")


def load(path_or_spec: str | os.PathLike, **kw) -> LabelIndex | ShardIndex:
    """Load any supported dataset into a `LabelIndex`.

    Args:
        path_or_spec: "demo" or "demo:<split>"; a COCO annotation ``.json`` (images in
            ``image_dir=``, or in COCO's sibling ``<split>/`` directory); a COCO root with
            ``annotations/`` (pass ``split=``, default "train"); a VOCdevkit (``year=``, ``split=``);
            a NUS-WIDE root as released or rearranged (``split=``); an Open Images folder (V6/V7 label files,
            ``split=`` "train" / "validation" / "test", ``classes=``, ``unverified=``, ``machine_threshold=``; see
            `load_openimages`); a ``.csv`` (ours, or ASL's
            ``nus_wid_data.csv`` with ``split=``); a ``.txt`` list of ``<path> <0/1 per class>``
            lines (``classes=``, ``image_dir=``); or a shard directory written by
            ``mlic-pipe shard`` (its tars elsewhere with ``shard_root="s3://..."``), read as a
            `ShardIndex` whose labels stay in the tars; or a Hugging Face dataset saved with
            ``save_to_disk`` (``split=`` for a DatasetDict, ``image_column=``, ``label_column=``,
            ``classes=``; see `load_hf`); or other people's WebDataset tars (a folder of ``*.tar``
            without our dataset.json, a tar, or a ``{000..009}`` brace pattern) with ``classes=`` and
            ``label_key=`` (see `load_webdataset`).
        **kw: passed to the reader (see `load_coco`, `load_voc`, `load_nuswide`, `load_csv`,
            `load_list`). ``split=None`` means the reader's default. A single annotation file (a
            COCO ``.json``, a list, a CSV without a split column) is its own split, so ``split`` is
            ignored there: callers such as the trainer can pass their split names whatever the layout.
            ``classes=`` is read by the CSV, list, Open Images, Hugging Face and WebDataset readers only.
    """
    path = os.fspath(path_or_spec)
    kind = detect_format(path)
    split = kw.pop("split", None)
    with_split = {"split": split} if split is not None else {}
    classes = kw.pop("classes", None)
    if kind == "list":
        return load_list(path, classes, **kw)
    if kind == "webdataset":  # one split per set of tars; the images are members, so image_dir= and missing= do not apply
        return load_webdataset(path, classes, **{k: v for k, v in kw.items() if k == "label_key"})
    if kind == "hf":  # images inside the Arrow table: image_dir=, missing= and use_cache= have no meaning there
        return load_hf_disk(path, split, classes=classes,
                            **{k: v for k, v in kw.items() if k in ("image_column", "label_column")})
    if kind == "openimages":
        return load_openimages(path, **with_split, classes=classes, **kw)
    if classes is not None and kind != "csv":
        raise MLICDataError(path, f"is a {kind} dataset, which names its own classes", "leave out {classes}")
    if kind == "demo":
        return load_demo(path.split(":", 1)[1] if ":" in path else split or "train", **kw)
    if kind == "csv":
        return load_csv(path, classes=classes, **with_split, **kw)
    if kind == "shards":  # one split per directory, like a single annotation file; missing= has no meaning here
        return load_shards(path, **{k: v for k, v in kw.items() if k == "shard_root"})
    if kind == "voc":
        return load_voc(path, **with_split, **kw)
    if kind == "nuswide":
        return load_nuswide(path, **with_split, **kw)
    if os.path.isdir(path):  # a COCO root
        split = split or "train"
        matches = sorted(glob.glob(os.path.join(path, "annotations", f"instances_{split}*.json")))
        if not matches:
            raise MLICDataError(path, f"has no annotations/instances_{split}*.json", "pass {split:} or the .json itself")
        path = matches[0]
    image_dir = kw.pop("image_dir", None) or _coco_image_dir(path)
    if image_dir is None:
        raise MLICDataError(path, "cannot tell where its images are", "pass {image_dir:}")
    return load_coco(path, image_dir, **kw)

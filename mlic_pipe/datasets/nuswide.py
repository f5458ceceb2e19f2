"""NUS-WIDE in the layouts people have it -> `LabelIndex`.

NUS's release, as extracted (``NUS-WIDE/``)::

    ConceptsList/Concepts81.txt                               one concept a line
    ImageList/Imagelist.txt, TrainImagelist.txt, TestImagelist.txt
    Groundtruth/TrainTestLabels/Labels_<concept>_<Train|Test>.txt   one 0/1 a line, aligned with the image list
    Groundtruth/AllLabels/Labels_<concept>.txt                (all images; not needed here)
    Flickr/<tag folder>/<nnnn>_<flickr id>.jpg               704 tag folders, not the concept names

and the common rearrangement with ``Concepts81.txt`` (and ``TrainTestLabels/``) moved to the root and
the images under ``images/``. Any number of concepts (the ``Concepts*.txt`` found), Windows (CRLF)
or Unix line endings. Image-list lines come in two forms in circulation: relative
(``actor\\0001_2124494179.jpg``) and absolute (``C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg``);
everything up to and including ``Flickr\\`` (or a drive prefix) is dropped and the rest is looked up
under the image folder (``Flickr/``, else ``images/``; ``image_dir=`` / ``--images DIR`` overrides).

ASL's ``nus_wid_data.csv`` (the split ASL and ML-Decoder report on) is read by `load_csv`.
"""
from __future__ import annotations

import glob
import os
import re

import numpy as np
from tqdm.auto import tqdm

from mlic_pipe.datasets.cache import cached_index
from mlic_pipe.datasets.index import LabelIndex, MissingPolicy, check_present
from mlic_pipe.errors import MLICDataError

__all__ = ["find_nuswide", "image_path", "load_nuswide"]

_SPLITS = {"train": "Train", "test": "Test"}
_LAYOUT_HINT = ("pass the NUS-WIDE root: ConceptsList/Concepts81.txt (or Concepts81.txt), ImageList/, "
                "Groundtruth/TrainTestLabels/ (or TrainTestLabels/) and Flickr/ (or images/)")
_DRIVE = re.compile(r"^[A-Za-z]:/")


def find_nuswide(root: str) -> tuple[str, str] | None:
    """(concept list, labels folder) of a NUS-WIDE root in either layout, or None if `root` is not one."""
    for concepts_dir, labels_dir in (("ConceptsList", "Groundtruth/TrainTestLabels"), ("", "TrainTestLabels"),
                                     ("", "Groundtruth/TrainTestLabels"), ("ConceptsList", "TrainTestLabels")):
        lists = sorted(glob.glob(os.path.join(root, concepts_dir, "Concepts*.txt")))
        labels = os.path.join(root, *labels_dir.split("/"))
        if lists and os.path.isdir(labels) and os.path.isdir(os.path.join(root, "ImageList")):
            return lists[0], labels
    return None


def _read_lines(path: str, what: str) -> list[str]:
    """Non-empty lines, stripped (CRLF or LF)."""
    try:
        with open(path, encoding="utf-8", errors="strict") as handle:
            return [line.strip() for line in handle if line.strip()]
    except FileNotFoundError:
        raise MLICDataError(path, f"{what} not found", _LAYOUT_HINT) from None
    except (OSError, UnicodeDecodeError) as error:
        raise MLICDataError(path, f"{what} cannot be read ({error})") from None


def image_path(line: str) -> str:
    """An image-list line as a path below the image folder: backslashes as folders, anything up to and
    including ``Flickr/`` (or a drive prefix) dropped."""
    path = line.replace("\\", "/")
    marker = path.lower().rfind("flickr/")
    if marker >= 0:
        return path[marker + len("flickr/"):]
    return _DRIVE.sub("", path).lstrip("/")


def _parse(image_dir: str, list_file: str, label_files: list[str], concepts: list[str]) -> LabelIndex:
    relative = _read_lines(list_file, "image list")
    if not relative:
        raise MLICDataError(list_file, "lists no images", "the dataset is empty")
    targets = np.zeros((len(relative), len(concepts)), dtype=np.uint8)
    for column, path in enumerate(tqdm(label_files, desc="reading NUS-WIDE labels", unit="concept",
                                       leave=False, disable=len(relative) < 50_000)):
        values = _read_lines(path, "label file")
        if len(values) != len(relative):
            raise MLICDataError(path, f"has {len(values)} labels but {os.path.basename(list_file)} lists "
                                f"{len(relative)} images", "the label file and image list must align line by line")
        column_values = np.array(values)
        bad = (column_values != "0") & (column_values != "1")
        if bad.any():
            line = int(np.flatnonzero(bad)[0]) + 1
            raise MLICDataError(path, f"label {line} is {values[line - 1]!r}, expected 0 or 1")
        targets[:, column] = column_values == "1"
    files = [os.path.join(image_dir, *image_path(name).split("/")) for name in relative]
    return LabelIndex(files=files, targets=targets, ignore=None, classes=concepts)


def load_nuswide(root: str | os.PathLike, split: str = "train", *, image_dir: str | os.PathLike | None = None,
                 drop_empty: bool = False, missing: MissingPolicy = "raise", use_cache: bool = True) -> LabelIndex:
    """Read NUS-WIDE's concept labels for `split` ("train" or "test") into a `LabelIndex`.

    Args:
        root: the NUS-WIDE folder, as released or rearranged (see the module docstring).
        split: "train" or "test".
        image_dir: where the images are (default ``root/Flickr``, else ``root/images``).
        drop_empty: drop images with no concept (many papers do; their count is then reported by
            the number of rows).
        missing: "raise" if images are missing, "drop" to drop them with a warning. The public
            Flickr links have rotted, so most copies miss some images.
        use_cache: reuse the parsed index from the user cache when the files are unchanged.
    """
    if split not in _SPLITS:
        raise MLICDataError(os.fspath(root), f"NUS-WIDE's splits are {', '.join(_SPLITS)}, not {split!r}",
                            "pass {split:train} or {split:test}")
    root = os.path.abspath(root)
    found = find_nuswide(root)
    if found is None:
        raise MLICDataError(root, "is not a NUS-WIDE root (no concept list, ImageList/ and TrainTestLabels/ found)",
                            _LAYOUT_HINT)
    concepts_file, labels_dir = found
    tag = _SPLITS[split]
    concepts = _read_lines(concepts_file, "concept list")
    if not concepts:
        raise MLICDataError(concepts_file, "lists no concepts", "a multi-label dataset needs at least one class")
    list_file = os.path.join(root, "ImageList", f"{tag}Imagelist.txt")
    label_files = [os.path.join(labels_dir, f"Labels_{c}_{tag}.txt") for c in concepts]
    for path in [list_file, *label_files]:
        if not os.path.isfile(path):
            raise MLICDataError(path, "not found", "the NUS-WIDE layout needs ImageList/<Split>Imagelist.txt and "
                                "TrainTestLabels/Labels_<concept>_<Split>.txt for every concept")
    if image_dir is None:
        flickr = os.path.join(root, "Flickr")
        image_dir = flickr if os.path.isdir(flickr) else os.path.join(root, "images")
    image_dir = os.path.abspath(image_dir)

    def parse() -> LabelIndex:
        index = _parse(image_dir, list_file, label_files, concepts)
        return index.subset(index.positives.row_counts() > 0) if drop_empty else index

    index = cached_index("nuswide", [concepts_file, list_file, *label_files],
                         {"drop_empty": drop_empty, "image_dir": image_dir}, parse, use_cache=use_cache)
    present = check_present(index.files, list_file, missing)
    return index if present.all() else index.subset(present)

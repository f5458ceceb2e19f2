"""NUS-WIDE (81 concepts) in its official layout -> `LabelIndex`.

The official release gives the concept list ``Concepts81.txt``, the image lists
``ImageList/TrainImagelist.txt`` / ``TestImagelist.txt`` (Windows paths such as
``actor\\0001_2124494179.jpg``) and one 0/1 column per concept and split,
``TrainTestLabels/Labels_<concept>_<Train|Test>.txt``, aligned line by line with the image list.
Images are looked up under ``root/images/`` with the backslashes turned into directories.
"""
from __future__ import annotations

import os

import numpy as np
from tqdm.auto import tqdm

from mlic_pipe.datasets.cache import cached_index
from mlic_pipe.datasets.index import LabelIndex, MissingPolicy, check_present
from mlic_pipe.errors import MLICDataError

__all__ = ["load_nuswide"]

_SPLITS = {"train": "Train", "test": "Test"}


def _read_lines(path: str, what: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="strict") as handle:
            return [line.strip() for line in handle if line.strip()]
    except FileNotFoundError:
        raise MLICDataError(path, f"{what} not found",
                            "pass the NUS-WIDE root holding Concepts81.txt, ImageList/ and TrainTestLabels/") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MLICDataError(path, f"{what} cannot be read ({error})") from None


def _parse(root: str, concepts_file: str, list_file: str, label_files: list[str], concepts: list[str]) -> LabelIndex:
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
    image_dir = os.path.join(root, "images")
    files = [os.path.join(image_dir, *name.replace("\\", "/").split("/")) for name in relative]
    return LabelIndex(files=files, targets=targets, ignore=None, classes=concepts)


def load_nuswide(root: str | os.PathLike, split: str = "train", *, drop_empty: bool = False,
                 missing: MissingPolicy = "raise", use_cache: bool = True) -> LabelIndex:
    """Read NUS-WIDE's 81-concept labels for `split` ("train" or "test") into a `LabelIndex`.

    Args:
        root: the directory holding ``Concepts81.txt``, ``ImageList/``, ``TrainTestLabels/`` and ``images/``.
        split: "train" or "test".
        drop_empty: drop images with no concept (many papers do; their count is then reported by
            the number of rows).
        missing: "raise" if images are missing under ``root/images``, "drop" to drop them with a
            warning. The public Flickr links have rotted, so most copies miss some images.
        use_cache: reuse the parsed index from the user cache when the files are unchanged.
    """
    if split not in _SPLITS:
        raise ValueError(f"NUS-WIDE splits are {sorted(_SPLITS)}, not {split!r}")
    root = os.path.abspath(root)
    tag = _SPLITS[split]
    concepts_file = os.path.join(root, "Concepts81.txt")
    concepts = _read_lines(concepts_file, "concept list")
    if not concepts:
        raise MLICDataError(concepts_file, "lists no concepts", "a multi-label dataset needs at least one class")
    list_file = os.path.join(root, "ImageList", f"{tag}Imagelist.txt")
    label_files = [os.path.join(root, "TrainTestLabels", f"Labels_{c}_{tag}.txt") for c in concepts]
    for path in [list_file, *label_files]:
        if not os.path.isfile(path):
            raise MLICDataError(path, "not found", "the NUS-WIDE layout needs ImageList/<Split>Imagelist.txt and "
                                "TrainTestLabels/Labels_<concept>_<Split>.txt for every concept")

    def parse() -> LabelIndex:
        index = _parse(root, concepts_file, list_file, label_files, concepts)
        return index.subset(index.targets.any(axis=1)) if drop_empty else index

    index = cached_index("nuswide", [concepts_file, list_file, *label_files], {"drop_empty": drop_empty},
                         parse, use_cache=use_cache)
    present = check_present(index.files, list_file, missing)
    return index if present.all() else index.subset(present)

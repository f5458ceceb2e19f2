"""Open Images image-level labels (V6 and V7 layouts) -> a sparse `LabelIndex`.

The files, as Google publishes them (https://storage.googleapis.com/openimages/web/download_v7.html)::

    oidv7-train-annotations-human-imagelabels.csv      ImageID,Source,LabelName,Confidence   (V7)
    oidv7-val-annotations-human-imagelabels.csv        (and -test-; -machine- for the model's labels)
    oidv6-train-annotations-human-imagelabels.csv      (V6: train; validation- and test-annotations-...)
    oidv7-class-descriptions.csv                       LabelName,DisplayName   (MID -> name; V6: oidv6-)
    oidv7-classes-trainable.txt                        one MID a line: the columns and their order (V6: oidv6-)
    <split>/<ImageID>.jpg                              train/, validation/, test/

A human label row with Confidence 1 is a verified positive, 0 a verified negative; the same (image, class)
may come from several sources (``verification``, ``crowdsource-verification``) and is merged, a positive
winning over a disagreeing negative. Everything no human verified is a negative by default, or unknown with
``unverified="ignore"`` (left out of the loss and the metrics, as VOC's difficult: ML-Decoder's partial
labels). Machine-generated labels join with ``machine_threshold=t``: a machine row of confidence >= t is a
positive unless a human verified that pair negative.

Speed: the CSV is parsed with vectorised numpy over its bytes (no per-row Python): a field's bytes are
gathered as 16-byte words, images are found as runs of equal ImageIDs (the files are sorted by image), and
MIDs are interned through a hash table verified against the full words. What comes out is CSR
(`SparseLabels`), so 9M images x 9,605 classes costs O(labels), and the parse is cached like every reader's.
"""
from __future__ import annotations

import os
import warnings
from typing import Literal, Sequence

import numpy as np

from mlic_pipe.datasets.cache import cached_index
from mlic_pipe.datasets.index import LabelIndex, MissingPolicy, check_present
from mlic_pipe.datasets.listfile import read_classes
from mlic_pipe.datasets.labels import SparseLabels, sorted_member, sorted_unique
from mlic_pipe.errors import MLICDataError

__all__ = ["find_openimages", "label_file", "load_openimages", "parse_label_csv"]

Unverified = Literal["negative", "ignore"]
SPLITS = ("train", "validation", "test")
_V7_TAG = {"train": "train", "validation": "val", "test": "test"}
_HEADER = ["ImageID", "Source", "LabelName", "Confidence"]
_HINT = ("pass the folder that holds the Open Images label files (oidv7-<split>-annotations-human-imagelabels.csv "
         "and oidv7-class-descriptions.csv, or V6's names) and the <split>/ image folders")


def _label_names(split: str, kind: str) -> list[str]:
    """The file names a split's `kind` ("human" / "machine") labels have had, newest first."""
    tag = _V7_TAG[split]
    return [f"oidv7-{tag}-annotations-{kind}-imagelabels.csv", f"oidv6-{split}-annotations-{kind}-imagelabels.csv",
            f"{split}-annotations-{kind}-imagelabels.csv"]


def _first(folders: Sequence[str], names: Sequence[str]) -> str | None:
    for name in names:
        for folder in folders:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def _folders(root: str) -> list[str]:
    """Where the label files may lie: the root, or its annotations/ or metadata/ folder."""
    return [root] + [os.path.join(root, sub) for sub in ("annotations", "metadata", "labels")
                     if os.path.isdir(os.path.join(root, sub))]


def label_file(root: str, split: str, kind: str = "human") -> str | None:
    """The path of `split`'s `kind` label file under `root`, or None."""
    return _first(_folders(root), _label_names(split, kind))


def find_openimages(root: str) -> dict | None:
    """The class files and the splits with human labels under `root`, or None if it is not an Open Images folder."""
    folders = _folders(root)
    descriptions = _first(folders, ["oidv7-class-descriptions.csv", "oidv6-class-descriptions.csv",
                                    "class-descriptions.csv"])
    splits = [split for split in SPLITS if label_file(root, split)]
    if descriptions is None or not splits:
        return None
    trainable = _first(folders, ["oidv7-classes-trainable.txt", "oidv6-classes-trainable.txt", "classes-trainable.txt"])
    return {"descriptions": descriptions, "trainable": trainable, "splits": splits}


# -- the CSV, vectorised ----------------------------------------------------------------------------------------


class _Rows:
    """A label CSV's rows: each row's image (index into `image_ids`), MID (index into `mids`) and confidence."""

    def __init__(self, image_ids: np.ndarray, image: np.ndarray, mids: list[str], mid: np.ndarray,
                 confidence: np.ndarray):
        self.image_ids, self.image, self.mids, self.mid, self.confidence = image_ids, image, mids, mid, confidence


# byte masks keeping the first k bytes of a little-endian uint64, k = 0..8
_KEEP = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)


def _words(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, path: str, what: str) -> np.ndarray:
    """(L, 2) uint64: each field's first 16 bytes, zero past its end (a field longer than 16 bytes is refused).

    Two unaligned 8-byte gathers per row through a byte-strided uint64 view of `buffer` (which ends in 16
    spare bytes), then the bytes past the field masked off: no (L, 16) byte matrix.
    """
    if len(lengths) and lengths.max() > 16:
        first = int(np.argmax(lengths > 16))
        shown = buffer[starts[first]:starts[first] + min(int(lengths[first]), 60)].tobytes().decode("utf-8", "replace")
        raise MLICDataError(path, f"a row's {what} field is {int(lengths[first])} bytes ({shown!r}); Open Images' are "
                            "at most 16", "check that this is an Open Images image-level label file")
    eights = np.ndarray(shape=(len(buffer) - 8,), dtype="<u8", buffer=buffer, strides=(1,))
    words = np.empty((len(starts), 2), dtype=np.uint64)
    words[:, 0] = eights[starts] & _KEEP[np.minimum(lengths, 8)]
    words[:, 1] = eights[starts + 8] & _KEEP[np.clip(lengths - 8, 0, 8)]
    return words


def _intern(words: np.ndarray, salt: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Codes for equal 16-byte words: (code of each row, a row holding each code).

    A hash table indexed by up to 21 bits of a multiplicative hash; each row is checked against its bucket's
    representative over the full 16 bytes. Rows whose bucket another word holds (a collision: a few dozen of
    Open Images' 20k MIDs share a bucket) are interned again with another hash, and so on; no sort anywhere.
    """
    pair = words  # (L, 2) uint64
    multipliers = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
    with np.errstate(over="ignore"):
        hashed = ((pair[:, 0] * np.uint64(multipliers[salt % 4])) ^
                  (pair[:, 1] * np.uint64(multipliers[(salt + 1) % 4])) ^ np.uint64((salt * 0x632BE59BD9B4E019) % 2**64))
    bits = int(min(21, max(10, np.ceil(np.log2(max(len(pair), 1) * 4)))))  # a table a piece can afford
    bucket = (hashed >> np.uint64(64 - bits)).astype(np.int64)
    holder = np.full(1 << bits, -1, dtype=np.int64)
    holder[bucket] = np.arange(len(bucket))  # any row of the bucket will do as its representative
    used = np.flatnonzero(holder >= 0)
    code_of_bucket = np.full(1 << bits, -1, dtype=np.int64)
    code_of_bucket[used] = np.arange(len(used))
    code, holders = code_of_bucket[bucket], holder[used]
    lost = np.flatnonzero((pair[holder[bucket]] != pair).any(axis=1))  # their bucket holds another word
    if len(lost):
        if salt > 16:
            raise RuntimeError("interning the label names does not converge")  # not reachable with real hashes
        lost_code, lost_holders = _intern(words[lost], salt + 1)
        code[lost] = lost_code + len(used)
        holders = np.concatenate([holders, lost[lost_holders]])
    return code, holders


def _text(words: np.ndarray) -> list[str]:
    return [bytes(row).rstrip(b"\0").decode("ascii", "replace") for row in np.ascontiguousarray(words).view(np.uint8)
            .reshape(-1, 16)]


PIECE_BYTES = 8 << 20  # what one scanning thread takes at a time

# what the scanner looks for: 1 comma, 2 newline, 3 carriage return, 4 quote
_SPECIAL = np.zeros(256, dtype=np.uint8)
_SPECIAL[[ord(","), ord("\n"), ord("\r"), ord('"')]] = [1, 2, 3, 4]


def _pieces(path: str, handle) -> list[tuple[int, int]]:
    """Check the header; return where the rows start and the (begin, end) byte ranges of whole lines to scan."""
    size = os.fstat(handle.fileno()).st_size
    head = os.pread(handle.fileno(), 65536, 0)
    header_end = head.find(b"\n") if b"\n" in head else len(head)
    header = head[:header_end].rstrip(b"\r").decode("utf-8", "replace").split(",")
    if header != _HEADER:
        raise MLICDataError(path, f"has the columns {header}, expected {_HEADER}", _HINT)
    pieces, begin = [], header_end + 1
    while begin < size:
        cut = min(begin + PIECE_BYTES, size)
        if cut < size:  # end the piece at a line end
            ahead = os.pread(handle.fileno(), 65536, cut)
            cut = cut + ahead.find(b"\n") + 1 if b"\n" in ahead else size
        pieces.append((begin, cut))
        begin = cut
    return pieces


def _read_piece(fd: int, begin: int, end: int, path: str) -> np.ndarray:
    """Bytes begin..end of the file, a newline added if the last line lacks one, carriage returns dropped, then
    16 zero bytes (room for the field gathers)."""
    buffer = np.zeros(end - begin + 17, dtype=np.uint8)
    try:
        if os.preadv(fd, [memoryview(buffer)[:end - begin]], begin) != end - begin:
            raise OSError("the file changed while it was read")
    except OSError as error:
        raise MLICDataError(path, f"cannot be read ({error})") from None
    length = end - begin
    if length and buffer[length - 1] != 10:
        buffer[length] = 10
        length += 1
    text = buffer[:length]
    if np.count_nonzero(text == 13):  # CRLF line endings: the carriage returns carry nothing
        text = text[text != 13]
        return np.concatenate([text, np.zeros(16, dtype=np.uint8)])
    return buffer[:length + 16]


def parse_label_csv(path: str, workers: int | None = None) -> _Rows:
    """Read an image-level label CSV (``ImageID,Source,LabelName,Confidence``) without a per-row Python loop.

    The file is read in ~8 MB pieces cut at line ends and scanned on `workers` threads (default: every core;
    numpy releases the GIL in these loops). A piece hands back only its runs of ImageIDs, its rows' MID codes
    into its own small vocabulary and the confidences, so memory is ~16 bytes a row plus a piece per thread,
    not the file plus its fields.
    """
    from concurrent.futures import ThreadPoolExecutor

    try:
        handle = open(path, "rb")
    except OSError as error:
        raise MLICDataError(path, f"cannot be read ({error})") from None
    with handle:
        pieces = _pieces(path, handle)
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            parts = list(pool.map(lambda piece: _scan(_read_piece(handle.fileno(), *piece, path), path), pieces))
    if not parts:
        return _Rows(np.zeros(0, dtype="S16"), np.zeros(0, dtype=np.int64), [], np.zeros(0, dtype=np.int64),
                     np.zeros(0, dtype=np.float32))
    # images: the files list each image's rows together, so an image is a run of equal ImageIDs (a run cut by a
    # piece boundary, or an image listed twice, is merged here)
    run_ids = np.concatenate([part.run_ids for part in parts])
    image_ids, run_image = sorted_unique(run_ids, return_inverse=True)
    image = np.repeat(run_image.reshape(-1), np.concatenate([part.run_lengths for part in parts]))
    # MIDs: each piece's vocabulary interned once more, globally
    vocabulary = np.concatenate([part.vocabulary for part in parts])
    global_code, holders = _intern(vocabulary)
    offsets = np.cumsum([0] + [len(part.vocabulary) for part in parts[:-1]])
    mid = np.concatenate([global_code[offset + part.mid] for part, offset in zip(parts, offsets)])
    confidence = np.concatenate([part.confidence for part in parts])
    return _Rows(image_ids, image, _text(vocabulary[holders]), mid, confidence)


class _Piece:
    """What a scanned piece hands back: runs of ImageIDs, MID codes into its vocabulary, confidences."""

    def __init__(self, run_ids, run_lengths, vocabulary, mid, confidence):
        self.run_ids, self.run_lengths, self.vocabulary, self.mid, self.confidence = (
            run_ids, run_lengths, vocabulary, mid, confidence)


def _scan(buffer: np.ndarray, path: str) -> _Piece:
    """The rows of one piece (whole lines, 16 spare bytes after them)."""
    text = buffer[:-16]
    kind_of_byte = _SPECIAL[text]  # one pass finds every comma and line end
    where = np.flatnonzero(kind_of_byte)
    kinds = kind_of_byte[where]
    del kind_of_byte
    if (kinds == 4).any():
        raise MLICDataError(path, "has quoted fields, which Open Images label files never have", _HINT)
    pattern = np.array([1, 1, 1, 2], dtype=np.uint8)  # three commas, then the line's end
    line_starts = None
    if len(kinds) % 4 or not (kinds.reshape(-1, 4) == pattern).all():
        # empty lines carry nothing: a newline right after a newline (or at the piece's start)
        previous = np.concatenate([[-1], where[:-1]])
        empty = (kinds == 2) & (where == previous + 1) & np.concatenate([[True], kinds[:-1] == 2])
        where, kinds, previous = where[~empty], kinds[~empty], previous[~empty]
        if len(kinds) % 4 or not (kinds.reshape(-1, 4) == pattern).all():
            _raise_bad_line(path, text, where, kinds, 0)
        line_starts = previous.reshape(-1, 4)[:, 0] + 1  # a line starts after the newline before its first comma
    marks = where.reshape(-1, 4)
    commas, line_ends = marks[:, :3], marks[:, 3]
    if line_starts is None:
        line_starts = np.concatenate([[0], line_ends[:-1] + 1]).astype(np.int64)
    ids = _words(buffer, line_starts, commas[:, 0] - line_starts, path, "ImageID")
    new = np.ones(len(ids), dtype=bool)
    new[1:] = (ids[1:] != ids[:-1]).any(axis=1)
    starts = np.flatnonzero(new)
    run_ids = np.ascontiguousarray(ids[starts]).view("S16").ravel()
    del ids
    mids = _words(buffer, commas[:, 1] + 1, commas[:, 2] - commas[:, 1] - 1, path, "LabelName")
    mid, holders = _intern(mids)
    confidence = _confidence(buffer, commas[:, 2] + 1, line_ends - commas[:, 2] - 1, path)
    return _Piece(run_ids, np.diff(np.append(starts, len(new))), mids[holders], mid.astype(np.int32), confidence)


def _raise_bad_line(path: str, text: np.ndarray, where: np.ndarray, kinds: np.ndarray, begin: int) -> None:
    """Name the first line that does not have exactly four fields."""
    line_ends = where[kinds == 2]
    commas_per_line = np.bincount(np.searchsorted(line_ends, where[kinds == 1]), minlength=len(line_ends) + 1)
    bad = int(np.argmax(commas_per_line != 3))
    start = begin if bad == 0 else int(line_ends[bad - 1]) + 1
    end = int(line_ends[bad]) if bad < len(line_ends) else len(text)
    shown = text[start:end].tobytes().decode("utf-8", "replace")
    raise MLICDataError(path, f"a line after the header has {commas_per_line[bad] + 1} fields, expected 4: "
                        f"{shown[:120]!r}", _HINT)


def _confidence(padded: np.ndarray, starts: np.ndarray, lengths: np.ndarray, path: str) -> np.ndarray:
    """float32 confidences: one-character fields ("0", "1") by arithmetic, the others ("0.7") parsed."""
    value = (padded[starts].astype(np.float32) - ord("0"))
    longer = np.flatnonzero(lengths != 1)
    if len(longer):
        words = _words(padded, starts[longer], lengths[longer], path, "Confidence")
        try:
            value[longer] = np.ascontiguousarray(words).view("S16").ravel().astype(np.float32)
        except ValueError:
            raise MLICDataError(path, "has a Confidence that is not a number", _HINT) from None
    if len(value) and (np.isnan(value).any() or value.min() < 0 or value.max() > 1):
        bad = int(np.argmax(np.isnan(value) | (value < 0) | (value > 1)))
        raise MLICDataError(path, f"a row's Confidence is {float(value[bad])}; it must lie in [0, 1]",
                            "check that this is an Open Images image-level label file")
    return value


# -- classes ----------------------------------------------------------------------------------------------------


def _read_descriptions(path: str) -> dict[str, str]:
    """MID -> display name (a header ``LabelName,DisplayName`` in V6/V7, none before)."""
    import csv

    names = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if not row or (number == 1 and row[0] == "LabelName"):
                continue
            if len(row) < 2:
                raise MLICDataError(path, f"line {number} has no display name: {row!r}", _HINT)
            names[row[0]] = row[1]
    return names


def _columns(info: dict, classes: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(MIDs, display names) of the columns: `classes` (names or MIDs), else the trainable list, else every class."""
    descriptions = _read_descriptions(info["descriptions"])
    if classes is not None:
        by_name: dict[str, list[str]] = {}
        for mid, name in descriptions.items():
            by_name.setdefault(name, []).append(mid)
        mids = []
        for entry in classes:
            if entry in descriptions:
                mids.append(entry)
            elif len(by_name.get(entry, [])) == 1:
                mids.append(by_name[entry][0])
            elif entry in by_name:
                raise MLICDataError(info["descriptions"], f"the display name {entry!r} belongs to several classes "
                                    f"({', '.join(by_name[entry])})", "name that class by its MID in {classes}")
            else:
                raise MLICDataError(info["descriptions"], f"has no class {entry!r} (neither a MID nor a display name)",
                                    "check the spelling in {classes}")
    elif info["trainable"] is not None:
        with open(info["trainable"], encoding="utf-8") as handle:
            mids = [line.strip() for line in handle if line.strip()]
    else:
        mids = list(descriptions)
    if len(set(mids)) != len(mids):
        raise MLICDataError(info["trainable"] or info["descriptions"], "names a class twice")
    names = [descriptions.get(mid, mid) for mid in mids]
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    # a few display names are shared by several MIDs: such columns are told apart by their MID
    return mids, [f"{name} ({mid})" if seen[name] > 1 else name for mid, name in zip(mids, names)]


# -- the index --------------------------------------------------------------------------------------------------


def _pairs(rows: _Rows, image_of: np.ndarray, column_of: dict[str, int], num_classes: int, path: str,
           notes: list[str]):
    """(keys = image * C + column, confidence) of the rows whose class is a column; the others counted in `notes`."""
    column = np.array([column_of.get(mid, -1) for mid in rows.mids], dtype=np.int64)[rows.mid]
    inside = column >= 0
    outside = len(column) - int(inside.sum())
    if outside:
        examples = sorted({rows.mids[code] for code in rows.mid[~inside][:1000].tolist()})[:3]
        notes.append(f"{path}: {outside} of {len(column)} label rows name a class outside the {num_classes} "
                     f"columns (e.g. {', '.join(examples)}); they are left out")
    return image_of[rows.image[inside]] * num_classes + column[inside], rows.confidence[inside]


def _without(keys: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """The sorted unique `keys` not in the sorted unique `drop`."""
    return keys[~sorted_member(drop, keys)]


def _parse(info: dict, files: dict, split: str, image_dir: str, classes, unverified: Unverified,
           machine_threshold: float | None) -> LabelIndex:
    if isinstance(classes, (str, os.PathLike)):  # a file with one name (or MID) a line, as the CLI's --classes
        classes = read_classes(classes, info["descriptions"])
    mids, names = _columns(info, classes)
    column_of = {mid: k for k, mid in enumerate(mids)}
    c = len(mids)
    human = parse_label_csv(files["human"])
    machine = parse_label_csv(files["machine"]) if machine_threshold is not None else None
    image_ids = human.image_ids if machine is None else sorted_unique(np.concatenate([human.image_ids,
                                                                                      machine.image_ids]))
    n = len(image_ids)
    if n == 0:
        raise MLICDataError(files["human"], "lists no image (a header and no label rows)",
                            "download the file again; an empty split has nothing to train or evaluate on")
    notes: list[str] = []
    keys, confidence = _pairs(human, np.searchsorted(image_ids, human.image_ids), column_of, c, files["human"], notes)
    positive = sorted_unique(keys[confidence >= 0.5])  # human labels are 0 or 1: a positive wins a disagreement
    verified_negative = _without(sorted_unique(keys[confidence < 0.5]), positive)
    if machine is not None:
        machine_keys, machine_confidence = _pairs(machine, np.searchsorted(image_ids, machine.image_ids),
                                                  column_of, c, files["machine"], notes)
        chosen = _without(sorted_unique(machine_keys[machine_confidence >= machine_threshold]), verified_negative)
        positive = sorted_unique(np.concatenate([positive, chosen]))
    targets = SparseLabels.from_pairs(positive // c, positive % c, n, c)
    ignore = None
    if unverified == "ignore":
        known = np.concatenate([positive, verified_negative])
        ignore = SparseLabels.from_pairs(known // c, known % c, n, c, complement=True)
    prefix = os.path.join(image_dir, split, "")
    paths = [f"{prefix}{image_id}.jpg" for image_id in image_ids.astype(str).tolist()]
    return LabelIndex(files=paths, targets=targets, ignore=ignore, classes=names, class_ids=mids, notes=notes)


def load_openimages(root: str | os.PathLike, split: str = "train",
                    classes: Sequence[str] | str | os.PathLike | None = None,
                    unverified: Unverified = "negative", machine_threshold: float | None = None,
                    image_dir: str | os.PathLike | None = None, missing: MissingPolicy = "raise",
                    use_cache: bool = True) -> LabelIndex:
    """Open Images' image-level labels of `split` ("train", "validation" or "test") as a sparse `LabelIndex`.

    Args:
        root: the folder with the label files (or their ``annotations/`` / ``metadata/`` subfolder) and
            the ``<split>/<ImageID>.jpg`` images (or give `image_dir`).
        classes: the columns, as display names or MIDs, in order (or a file with one a line); default the trainable-classes list when
            the folder has one (ML-Decoder's 9,605 of V6), else every class of the descriptions file.
            ``index.classes`` are display names (a shared name gets its MID in brackets), ``index.class_ids``
            the MIDs.
        unverified: what a class no human verified for an image is: "negative" (the default) or "ignore"
            (unknown: left out of the loss and the metrics).
        machine_threshold: also read the machine-generated labels, taking those of confidence >= it as positives
            (a human-verified negative still wins).
        missing: "raise" (default) or "drop" images whose file is not on disk.
        use_cache: reuse the parsed index while the label files are unchanged.
    """
    root = os.path.abspath(os.fspath(root))
    split = {"val": "validation"}.get(split, split)
    if split not in SPLITS:
        raise MLICDataError(root, f"has no split {split!r}", f"Open Images' splits are {', '.join(SPLITS)}")
    if unverified not in ("negative", "ignore"):
        raise ValueError(f"unverified must be 'negative' or 'ignore', got {unverified!r}")
    if machine_threshold is not None and not 0 <= machine_threshold <= 1:
        raise ValueError(f"machine_threshold must lie in [0, 1], got {machine_threshold}")
    info = find_openimages(root)
    if info is None:
        raise MLICDataError(root, "is not an Open Images folder", _HINT)
    files = {"human": label_file(root, split)}
    if files["human"] is None:
        raise MLICDataError(root, f"has no human image-level labels for {split} (looked for "
                            f"{', '.join(_label_names(split, 'human'))})", f"its splits here: {', '.join(info['splits'])}")
    if machine_threshold is not None:
        files["machine"] = label_file(root, split, "machine")
        if files["machine"] is None:
            raise MLICDataError(root, f"has no machine-generated labels for {split} (looked for "
                                f"{', '.join(_label_names(split, 'machine'))})", "download them or leave out "
                                "{machine_threshold}")
    image_dir = os.path.abspath(os.fspath(image_dir)) if image_dir is not None else root
    sources = [path for path in (*files.values(), info["descriptions"], info["trainable"]) if path]
    if isinstance(classes, (str, os.PathLike)):
        sources.append(os.fspath(classes))
        classes_key = os.path.abspath(os.fspath(classes))
    else:
        classes_key = list(classes) if classes is not None else None
    params = {"split": split, "classes": classes_key, "unverified": unverified,
              "machine_threshold": machine_threshold, "image_dir": image_dir}
    index = cached_index("openimages", sources, params,
                         lambda: _parse(info, files, split, image_dir, classes, unverified, machine_threshold),
                         use_cache=use_cache)
    for note in index.notes:  # on a cached restart too: nothing left out silently
        warnings.warn(note, stacklevel=2)
    present = check_present(index.files, files["human"], missing)
    return index if present.all() else index.subset(present)

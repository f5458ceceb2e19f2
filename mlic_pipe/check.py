"""`mlic-pipe check`: find the files that would stop or skew training before training starts.

Only image headers are opened (plus the last bytes of each file, where JPEG and PNG keep their end
markers), so a dataset of 100k images is checked in seconds rather than decoded for minutes.
"""
from __future__ import annotations

import io
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.shards.index import ShardIndex

__all__ = ["CheckReport", "check_index", "inspect_image"]

# Problems that stop a file from being decoded; anything else found is only 'odd'.
UNUSABLE = ("missing", "zero bytes", "not an image", "truncated header", "truncated data", "unreadable")
TINY_SIDE = 32
HUGE_PIXELS = 50_000_000
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")


def _truncated(source, fmt: str | None, size: int) -> bool:
    """True if a JPEG lacks its end-of-image marker or a PNG its IEND chunk near the end."""
    if fmt not in ("JPEG", "PNG"):
        return False
    if isinstance(source, bytes):
        tail = source[-1024:]
    else:
        with open(source, "rb") as handle:
            handle.seek(max(0, size - 1024))
            tail = handle.read()
    if fmt == "JPEG":
        return b"\xff\xd9" not in tail  # cameras may pad after the marker, so search the tail
    return b"IEND" not in tail


def _head(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(8)


def inspect_image(path: str, data: bytes | None = None) -> list[str]:
    """The problems of one image file (or of its bytes `data`, read from a shard), as short names; [] if fine."""
    try:
        size = os.path.getsize(path) if data is None else len(data)
    except FileNotFoundError:
        return ["missing"]
    except OSError:
        return ["unreadable"]
    if size == 0:
        return ["zero bytes"]
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as image:
            fmt, mode, (width, height) = image.format, image.mode, image.size
            has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info)
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError):
        try:
            head = data[:8] if data is not None else _head(path)
        except OSError:
            return ["unreadable"]
        return ["truncated header" if head.startswith(_MAGIC) else "not an image"]
    problems = []
    if _truncated(path if data is None else data, fmt, size):
        problems.append("truncated data")
    if mode == "CMYK":
        problems.append("CMYK")
    elif mode in ("L", "LA", "1", "I", "I;16", "F"):
        problems.append("grayscale")
    elif mode in ("P", "PA"):
        problems.append("palette")
    if has_alpha:
        problems.append("alpha")
    if min(width, height) < TINY_SIDE:
        problems.append("tiny")
    if width * height > HUGE_PIXELS:
        problems.append("huge")
    return problems


CLASSES_SHOWN = 25  # per end of the frequency table, when a set has more than twice as many classes


@dataclass
class CheckReport:
    """What `check_index` found. `files_by_problem` maps a problem name to the files that have it."""

    num_images: int
    classes: list[str]
    labels_per_image: np.ndarray
    class_counts: np.ndarray
    num_ignored: int
    files_by_problem: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_unusable(self) -> int:
        return len({f for problem in UNUSABLE for f in self.files_by_problem.get(problem, [])})

    def format(self, examples: int = 3) -> str:
        """A plain-text table for the terminal."""
        lpi = self.labels_per_image
        lines = [
            f"{'images':<16}{self.num_images}",
            f"{'classes':<16}{len(self.classes)}",
            f"{'labels/image':<16}mean {lpi.mean():.2f}, min {lpi.min()}, max {lpi.max()}, "
            f"without any label {int((lpi == 0).sum())}",
        ]
        if self.num_ignored:
            lines.append(f"{'ignored labels':<16}{self.num_ignored} (e.g. VOC 'difficult'; excluded from metrics)")
        lines.append("")
        lines.append("class frequencies")
        ranked = sorted(zip(self.classes, self.class_counts.tolist()), key=lambda x: -x[1])
        if len(ranked) > 2 * CLASSES_SHOWN:  # thousands of classes (Open Images): the commonest and the rarest
            never = sum(1 for _, count in ranked if count == 0)
            lines[-1] += (f" (the {CLASSES_SHOWN} commonest and rarest of {len(ranked)}; {never} classes have no "
                          f"positive here)")
            ranked = ranked[:CLASSES_SHOWN] + [("...", None)] + ranked[-CLASSES_SHOWN:]
        width = max(len(c) for c, _ in ranked)
        peak = max(int(self.class_counts.max()), 1)
        for name, count in ranked:
            if count is None:
                lines.append(f"  {name}")
                continue
            bar = "#" * round(30 * count / peak)
            lines.append(f"  {name:<{width}}  {count:>7}  {100 * count / max(self.num_images, 1):5.1f}%  {bar}")
        lines.append("")
        if not self.files_by_problem:
            lines.append(f"files           all {self.num_images} images have readable headers and nothing odd")
        for kind in ("unusable", "odd"):
            names = [p for p in self.files_by_problem if (p in UNUSABLE) == (kind == "unusable")]
            if not names:
                continue
            lines.append(f"{kind} files" + (" (training would stop on these)" if kind == "unusable" else
                                            " (decoded fine, but worth knowing)"))
            for problem in names:
                files = self.files_by_problem[problem]
                shown = ", ".join(files[:examples]) + (" ..." if len(files) > examples else "")
                lines.append(f"  {problem:<18}{len(files):>7}  {shown}")
        return "\n".join(lines)


def check_index(index: LabelIndex | ShardIndex, *, workers: int | None = None, progress: bool = True) -> CheckReport:
    """Inspect every image header of `index` (in threads: this is I/O-bound) and summarise."""
    workers = workers or min(32, 4 * (os.cpu_count() or 1))
    if isinstance(index, ShardIndex):  # every byte against its checksum first
        index.check_members(progress=progress)
    if hasattr(index, "read_encoded"):  # images held as bytes (our shards, Arrow tables, tar members): by row
        names = [index.name(row) for row in range(len(index))]
        inspect = lambda row: inspect_image(names[row], index.read_encoded([row])[0].tobytes())  # noqa: E731
        items = range(len(index))
    else:
        names, inspect, items = index.files, inspect_image, index.files
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(tqdm(pool.map(inspect, items, chunksize=64), total=len(index),
                            desc="reading image headers", unit="img", disable=not progress))
    files_by_problem: dict[str, list[str]] = defaultdict(list)
    for path, problems in zip(names, results):
        for problem in problems:
            files_by_problem[problem].append(path)
    ordered = dict(sorted(files_by_problem.items(), key=lambda item: -len(item[1])))  # commonest first
    return CheckReport(
        num_images=len(index),
        classes=list(index.classes),
        labels_per_image=index.positives.row_counts(),
        class_counts=index.positives.class_counts(),
        num_ignored=0 if index.ignored is None else index.ignored.total(),
        files_by_problem=ordered,
    )

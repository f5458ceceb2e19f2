"""`SparseLabels`: a set of (row, class) entries in CSR form, the way every `LabelIndex` holds its labels.

A dense (N, C) table is fine for COCO (118k x 80 = 9 MB) and impossible for Open Images (9M x 9,605 =
86 GB, of which ~0.1% are positives). CSR keeps one int32 per listed entry plus one int64 per row, so an
index costs O(labels), not O(N x C); the loader asks for the dense rows of one batch at a time.

Some sets are mostly full rather than mostly empty: with Open Images' ``unverified="ignore"`` every
entry that no human verified is unknown, which is nearly all of them. Those are stored as their
complement (``complement=True``: the listed entries are the ones *not* in the set), so memory stays
O(labels) either way.
"""
from __future__ import annotations

import numpy as np

__all__ = ["DENSE_LIMIT", "SparseLabels", "sorted_member", "sorted_unique"]

# Past this many (row, class) entries a dense table is refused (`LabelIndex.targets`): 256 Mi entries is
# 256 MiB as uint8 and 1 GiB once the loader makes it float32 on a device.
DENSE_LIMIT = 1 << 28


def sorted_unique(values: np.ndarray, return_inverse: bool = False):
    """`np.unique` by sorting: numpy 2's hash-based unique takes seconds on millions of int64 keys that a
    sort dedupes in tens of milliseconds (measured here: 4.4 s against 0.04 s for 3.9M label keys)."""
    values = np.asarray(values).reshape(-1)
    order = np.argsort(values, kind="stable") if return_inverse else None
    ordered = values[order] if return_inverse else np.sort(values)
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    unique = ordered[first]
    if not return_inverse:
        return unique
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return unique, inverse


def sorted_member(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """(len(wanted),) bool: which of `wanted` occur in the sorted array `keys` (a binary search each)."""
    at = np.searchsorted(keys, wanted)
    found = at < len(keys)
    found[found] = keys[at[found]] == wanted[found]
    return found


class SparseLabels:
    """Which (row, class) entries are set: row r's listed classes are ``indices[indptr[r]:indptr[r + 1]]``.

    Within a row the classes are sorted and unique. With ``complement=True`` the set is every entry of
    the (num_rows, num_classes) grid that is *not* listed.
    """

    __slots__ = ("indptr", "indices", "num_classes", "complement")

    def __init__(self, indptr, indices, num_classes: int, complement: bool = False):
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.num_classes, self.complement = int(num_classes), bool(complement)
        if self.indptr.ndim != 1 or len(self.indptr) < 1 or self.indptr[0] != 0 or \
                self.indptr[-1] != len(self.indices) or (np.diff(self.indptr) < 0).any():
            raise ValueError("indptr must start at 0, never decrease and end at len(indices)")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= self.num_classes):
            raise ValueError(f"class indices must lie in 0..{self.num_classes - 1}")

    # construction ---------------------------------------------------------------------------------------------

    @classmethod
    def from_dense(cls, table) -> "SparseLabels":
        """The nonzero entries of an (N, C) table."""
        table = np.asarray(table)
        if table.ndim != 2:
            raise ValueError(f"a label table must be (N, C), got shape {table.shape}")
        rows, cols = np.nonzero(table)
        indptr = np.zeros(table.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=table.shape[0]), out=indptr[1:])
        return cls(indptr, cols, table.shape[1])

    @classmethod
    def from_pairs(cls, rows, cols, num_rows: int, num_classes: int, complement: bool = False) -> "SparseLabels":
        """The entries (rows[i], cols[i]), in any order, repeats merged."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= num_rows):
            raise ValueError(f"row indices must lie in 0..{num_rows - 1}")
        if len(cols) and (cols.min() < 0 or cols.max() >= num_classes):
            raise ValueError(f"class indices must lie in 0..{num_classes - 1}")
        keys = sorted_unique(rows * num_classes + cols)  # sorted by row, then class; repeats gone
        indptr = np.zeros(num_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // num_classes, minlength=num_rows), out=indptr[1:])
        return cls(indptr, keys % num_classes, num_classes, complement)

    @classmethod
    def stack(cls, parts: list["SparseLabels"]) -> "SparseLabels":
        """Row blocks of the same classes and form (all listed sets, or all complements), one after another."""
        if not parts or len({(p.num_classes, p.complement) for p in parts}) != 1:
            raise ValueError("stack needs at least one block, all of the same classes and form")
        offsets = np.cumsum([0] + [len(p.indices) for p in parts[:-1]])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + offset for p, offset in zip(parts, offsets)])
        return cls(indptr, np.concatenate([p.indices for p in parts]), parts[0].num_classes, parts[0].complement)

    @classmethod
    def from_lists(cls, lists, num_classes: int) -> "SparseLabels":
        """Row r's classes are ``lists[r]`` (any iterable of class indices, repeats merged)."""
        rows = [np.full(len(entry), r, dtype=np.int64) for r, entry in enumerate(lists)]
        cols = [np.asarray(list(entry), dtype=np.int64) for entry in lists]
        return cls.from_pairs(np.concatenate(rows) if rows else [], np.concatenate(cols) if cols else [],
                              len(lists), num_classes)

    # shape and counts -----------------------------------------------------------------------------------------

    @property
    def num_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def shape(self) -> tuple[int, int]:
        return self.num_rows, self.num_classes

    @property
    def nbytes(self) -> int:
        """Bytes of the two arrays: what holding these labels costs."""
        return self.indptr.nbytes + self.indices.nbytes

    def row_counts(self) -> np.ndarray:
        """(N,) int64: how many entries of each row are in the set."""
        listed = np.diff(self.indptr)
        return self.num_classes - listed if self.complement else listed

    def class_counts(self) -> np.ndarray:
        """(C,) int64: how many rows have each class in the set."""
        listed = np.bincount(self.indices, minlength=self.num_classes).astype(np.int64)
        return self.num_rows - listed if self.complement else listed

    def total(self) -> int:
        """How many entries are in the set."""
        return int(self.row_counts().sum())

    # rows -----------------------------------------------------------------------------------------------------

    def pairs(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """The listed entries of `rows` as (position in `rows`, class) int64 arrays.

        What the loader sends to the device for a batch: a few values per image instead of C.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        position = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        first = np.cumsum(lengths) - lengths  # where each row's run begins in the output
        offsets = np.arange(total, dtype=np.int64) - np.repeat(first - starts, lengths)
        return position, self.indices[offsets].astype(np.int64)

    def dense(self, rows=None, dtype=np.uint8) -> np.ndarray:
        """(len(rows), C) table of `rows` (all rows when None): 1 where the entry is in the set."""
        rows = np.arange(self.num_rows) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        table = np.zeros((len(rows), self.num_classes), dtype=dtype)
        position, cols = self.pairs(rows)
        table[position, cols] = 1
        return (table == 0).astype(dtype) if self.complement else table

    def take(self, rows) -> "SparseLabels":
        """The labels of `rows` (indices, or a boolean mask over rows), in that order."""
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64).reshape(-1)
        position, cols = self.pairs(rows)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.bincount(position, minlength=len(rows)), out=indptr[1:])
        return SparseLabels(indptr, cols, self.num_classes, self.complement)

    def __eq__(self, other) -> bool:
        return (isinstance(other, SparseLabels) and self.shape == other.shape
                and self.complement == other.complement and np.array_equal(self.indptr, other.indptr)
                and np.array_equal(self.indices, other.indices))

    def __repr__(self) -> str:
        kind = "complement of " if self.complement else ""
        return (f"SparseLabels({kind}{len(self.indices)} listed entries of {self.num_rows} x {self.num_classes}, "
                f"{self.nbytes / 2**20:.1f} MiB)")

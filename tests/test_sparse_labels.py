"""`SparseLabels` and the CSR-holding `LabelIndex` against dense numpy tables built another way."""
import numpy as np
import pytest
import torch

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.datasets.labels import SparseLabels


def _table(rows=40, classes=13, density=0.2, seed=0):
    return (np.random.default_rng(seed).random((rows, classes)) < density).astype(np.uint8)


def test_dense_round_trip_rows_counts_and_take():
    table = _table()
    table[5] = 0  # an image without labels
    labels = SparseLabels.from_dense(table)
    assert np.array_equal(labels.dense(), table)
    rows = [7, 5, 7, 0, 39]
    assert np.array_equal(labels.dense(rows), table[rows])
    assert np.array_equal(labels.take(rows).dense(), table[rows])
    mask = np.arange(40) % 3 == 0
    assert np.array_equal(labels.take(mask).dense(), table[mask])
    assert np.array_equal(labels.row_counts(), table.sum(1)) and np.array_equal(labels.class_counts(), table.sum(0))
    assert labels.total() == table.sum() and labels.nbytes == 41 * 8 + table.sum() * 4
    stacked = SparseLabels.stack([labels.take(np.arange(0, 7)), labels.take([]), labels.take(np.arange(7, 40))])
    assert stacked == labels
    with pytest.raises(ValueError, match="same classes and form"):
        SparseLabels.stack([labels, SparseLabels(labels.indptr, labels.indices, 13, complement=True)])
    position, cols = labels.pairs(rows)
    expected = np.argwhere(table[rows])
    assert np.array_equal(np.stack([position, cols], 1), expected)


def test_pairs_in_any_order_with_repeats_and_lists():
    table = _table(seed=1)
    rows, cols = np.nonzero(table)
    order = np.random.default_rng(2).permutation(len(rows))
    doubled = np.concatenate([order, order[:10]])
    labels = SparseLabels.from_pairs(rows[doubled], cols[doubled], *table.shape)
    assert labels == SparseLabels.from_dense(table)
    lists = [list(np.flatnonzero(row)[::-1]) + list(np.flatnonzero(row)[:1]) for row in table]
    assert SparseLabels.from_lists(lists, table.shape[1]) == SparseLabels.from_dense(table)
    with pytest.raises(ValueError, match="class indices"):
        SparseLabels.from_pairs([0], [13], 40, 13)


def test_a_complement_set_is_everything_not_listed():
    known = _table(density=0.1, seed=3)
    unknown = SparseLabels(SparseLabels.from_dense(known).indptr, SparseLabels.from_dense(known).indices, 13,
                           complement=True)
    assert np.array_equal(unknown.dense(dtype=bool), known == 0)
    assert np.array_equal(unknown.dense([3, 3, 1], dtype=bool), known[[3, 3, 1]] == 0)
    assert np.array_equal(unknown.row_counts(), (known == 0).sum(1))
    assert np.array_equal(unknown.class_counts(), (known == 0).sum(0))
    assert np.array_equal(unknown.take([2, 0]).dense(), (known[[2, 0]] == 0).astype(np.uint8))


def test_label_index_holds_csr_and_refuses_a_huge_dense_table(monkeypatch):
    table, ignore = _table(), _table(density=0.05, seed=4).astype(bool)
    index = LabelIndex([f"/x/{i}.jpg" for i in range(40)], table, ignore, [f"c{i}" for i in range(13)])
    assert isinstance(index.positives, SparseLabels) and index.has_ignore
    assert np.array_equal(index.labels_for([3, 1]), table[[3, 1]])
    assert np.array_equal(index.ignore_for([3, 1]), ignore[[3, 1]])
    keep = table[:, 0] == 1
    sub = index.subset(keep)
    assert np.array_equal(sub.targets, table[keep]) and np.array_equal(sub.ignore, ignore[keep])
    # a 300k-image x 9,605-class set: held in O(labels), rows on demand, the dense table refused by size
    n, c = 300_000, 9605
    rng = np.random.default_rng(5)
    rows, cols = rng.integers(0, n, 4 * n), rng.integers(0, c, 4 * n)
    big = LabelIndex([f"{i}.jpg" for i in range(n)], SparseLabels.from_pairs(rows, cols, n, c), None,
                     [str(k) for k in range(c)])
    assert big.positives.nbytes < 8 * 2**20
    expected = np.zeros((3, c), dtype=np.uint8)
    for position, row in enumerate([10, 299_999, 10]):
        expected[position, cols[rows == row]] = 1
    assert np.array_equal(big.labels_for([10, 299_999, 10]), expected)
    with pytest.raises(MemoryError, match=r"300000 images x 9605 classes.*labels_for"):
        big.targets


@pytest.mark.parametrize("build", ["rows_on_device", "_rows_from_pairs"])
def test_rows_on_device_equal_the_dense_rows(build):
    """Both ways of building a batch's rows (numpy on the CPU, pairs filled in on a device; the latter run here on
    the CPU) against rows of the dense table."""
    from mlic_pipe.loading import row_source

    build = getattr(row_source, build)
    table = _table(seed=6)
    labels = SparseLabels.from_dense(table)
    rows = np.array([4, 4, 0, 17])
    out = build(labels, rows, torch.device("cpu"), torch.float32)
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(table[rows]).float())
    complement = SparseLabels(labels.indptr, labels.indices, 13, complement=True)
    assert torch.equal(build(complement, rows, torch.device("cpu"), torch.bool), torch.from_numpy(table[rows] == 0))


def test_cache_round_trip_keeps_csr_complement_and_class_ids(tmp_path, monkeypatch):
    from mlic_pipe.datasets import cache

    monkeypatch.setenv("MLIC_PIPE_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "labels.csv"
    source.write_text("x")
    table = _table(seed=7)
    known = SparseLabels.from_dense(_table(density=0.3, seed=8))
    unknown = SparseLabels(known.indptr, known.indices, 13, complement=True)
    made = LabelIndex([f"/d/{i}.jpg" for i in range(40)], table, unknown, [f"name {i}" for i in range(13)],
                      class_ids=[f"/m/{i}" for i in range(13)])
    calls = []
    first = cache.cached_index("t", [source], {}, lambda: calls.append(1) or made)
    second = cache.cached_index("t", [source], {}, lambda: calls.append(1) or made)
    assert calls == [1] and first is made and second is not made
    assert second.positives == made.positives and second.ignored == made.ignored and second.ignored.complement
    assert second.files == made.files and second.classes == made.classes and second.class_ids == made.class_ids
    saved, = (tmp_path / "cache" / "index").iterdir()
    saved.write_bytes(saved.read_bytes()[:100])  # a truncated cache file: parsed again, never garbage
    third = cache.cached_index("t", [source], {}, lambda: calls.append(1) or made)
    assert calls == [1, 1] and third is made


def test_cooccurrence_from_csr_equals_the_dense_product():
    from mlic_pipe.models.graph import cooccurrence_adjacency

    table = _table(rows=200, classes=9, density=0.3, seed=9)
    assert torch.equal(cooccurrence_adjacency(SparseLabels.from_dense(table)), cooccurrence_adjacency(table))
    y = torch.from_numpy(table).double()
    from mlic_pipe.models.graph import _cooccurrence_counts
    assert torch.equal(_cooccurrence_counts(SparseLabels.from_dense(table)), y.T @ y)

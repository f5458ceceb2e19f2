"""Open Images labels at scale: the vectorised parse against the csv module, and a cold load against a cached restart.

The set is synthetic, written by the benchmark (`benchmarks.synthetic_openimages`: no download): 300k
images, 3.9M human label rows, 9,605 trainable columns of 19,995 classes (--tiny: 1%). Each figure is per
call; `rows_per_s` and the index's array memory are in each entry's extra info.

Run: pytest benchmarks/test_bench_openimages.py --benchmark-only
"""
import csv
import os
import tracemalloc
import warnings

import numpy as np
import pytest

from mlic_pipe.datasets.openimages import load_openimages, parse_label_csv

from benchmarks.common import preset_name, record
from benchmarks.synthetic_openimages import write_synthetic_openimages

IMAGES, ROWS = (3_000, 39_000) if preset_name() == "tiny" else (300_000, 3_900_000)
PARSE = "Open Images: parse the human label CSV"
LOAD = "Open Images: LabelIndex of the train split (9,605 classes)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_synthetic_openimages(str(tmp_path_factory.mktemp("openimages")), IMAGES, ROWS)


def _label_file(root):
    return os.path.join(root, "oidv7-train-annotations-human-imagelabels.csv")


def csv_module_parse(path):
    """The same result the way Python's docs read a CSV: csv.reader, ids and MIDs interned through dicts."""
    images, mids, image, mid, confidence = {}, {}, [], [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for image_id, _source, label, value in reader:
            image.append(images.setdefault(image_id, len(images)))
            mid.append(mids.setdefault(label, len(mids)))
            confidence.append(float(value))
    return np.array(image), np.array(mid), np.array(confidence, dtype=np.float32)


@pytest.mark.benchmark(group=PARSE)
def test_parse_with_the_csv_module(benchmark, folder):
    image, _, _ = benchmark.pedantic(csv_module_parse, args=(_label_file(folder),), rounds=2, iterations=1)
    assert len(image) == ROWS
    record(benchmark, baseline=True, images=ROWS, device="cpu", contender="csv.reader + dicts", unit="label row",
           rows_per_s=round(ROWS / benchmark.stats.stats.median) if benchmark.stats else None)


@pytest.mark.benchmark(group=PARSE)
def test_parse_vectorised(benchmark, folder):
    rows = benchmark.pedantic(parse_label_csv, args=(_label_file(folder),), rounds=5, iterations=1)
    reference = csv_module_parse(_label_file(folder)) if preset_name() == "tiny" else None
    if reference is not None:  # the same rows as the csv module read (codes differ, the strings agree)
        assert np.array_equal(rows.image_ids.astype(str)[rows.image],
                              np.array(list(_ids(_label_file(folder))))[reference[0]])
        assert np.array_equal(rows.confidence, reference[2])
    record(benchmark, baseline=False, images=ROWS, device="cpu", contender="mlic-pipe parse_label_csv",
           unit="label row", rows_per_s=round(ROWS / benchmark.stats.stats.median) if benchmark.stats else None)


def _ids(path):
    seen = {}
    with open(path, newline="") as handle:
        for row in list(csv.reader(handle))[1:]:
            seen.setdefault(row[0], None)
    return seen


def _load(folder, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rows outside the 9,605 columns are reported; counted, not timed
        return load_openimages(folder, missing="keep", **kw)


@pytest.mark.benchmark(group=LOAD)
def test_cold_load(benchmark, folder):
    index = benchmark.pedantic(_load, args=(folder,), kwargs={"use_cache": False}, rounds=3, iterations=1)
    tracemalloc.start()
    _load(folder, use_cache=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    record(benchmark, baseline=True, images=len(index), device="cpu", contender="cold parse",
           classes=index.num_classes, index_array_mb=round(index.positives.nbytes / 2**20, 2),
           peak_parse_mb=round(peak / 2**20), label_rows=ROWS,
           rows_per_s=round(ROWS / benchmark.stats.stats.median) if benchmark.stats else None)


@pytest.mark.benchmark(group=LOAD)
def test_cached_restart(benchmark, folder):
    _load(folder)  # the first start writes the cache
    index = benchmark.pedantic(_load, args=(folder,), rounds=5, iterations=1)
    partial = _load(folder, unverified="ignore")
    record(benchmark, baseline=False, images=len(index), device="cpu", contender="cached restart",
           classes=index.num_classes, index_array_mb=round(index.positives.nbytes / 2**20, 2),
           ignore_array_mb=round(partial.ignored.nbytes / 2**20, 2), label_rows=ROWS)

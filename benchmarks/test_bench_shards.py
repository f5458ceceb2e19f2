"""Shards vs the file list: one epoch of the demo data through MLICLoader, the same B, S, mixer and threads.

Contenders (group per device and S):

- ``file-list`` (baseline): MLICLoader on the COCO-format demo index (DALI's file reader, one
  file per image, crops drawn on the host).
- ``shards``: MLICLoader on the same images written by ``mlic-pipe shard`` (64 samples per tar):
  DALI's WebDataset reader, labels unpacked from the tars, in-pipeline crop draws.

Each round is a whole epoch, pipeline start-up included. extra_info: images/s and
``ratio_to_baseline`` (file-list time / shards time: above 1, shards are faster).

Run: pytest benchmarks/test_bench_shards.py --benchmark-only
"""
import pytest

from mlic_pipe.loader import MLICLoader
from mlic_pipe.shards import load_shards, write_shards

from benchmarks.common import demo_images, devices, preset, record

CONTENDERS = ["file-list", "shards"]


@pytest.fixture(scope="module")
def demo_sets(tmp_path_factory):
    index = demo_images()
    out = tmp_path_factory.mktemp("shards")
    write_shards(index, out, samples_per_shard=64, progress=False)
    return {"file-list": index, "shards": load_shards(out)}


@pytest.mark.parametrize("name", CONTENDERS)
@pytest.mark.parametrize("size", preset()["loader"])
@pytest.mark.parametrize("device", devices())
def test_shards_epoch(benchmark, demo_sets, device, size, name):
    batch = preset()["loader_batch"]
    benchmark.group = f"shards vs file list demo B={batch} S={size} {device}"
    loader = MLICLoader(demo_sets[name], batch, image_size=size, mix="splicemix", device=device,
                        num_threads=2 if device == "cpu" else 8)

    def run():
        count = 0
        for batch in loader:
            count += len(batch.rows)  # images read (the mixed outputs come on top)
        return count

    images = run()  # warm-up
    benchmark.pedantic(run, rounds=preset()["rounds"], warmup_rounds=0, iterations=1)
    record(benchmark, baseline=name == "file-list", images=images, device=device, batch=batch, image_size=size,
           contender=name)

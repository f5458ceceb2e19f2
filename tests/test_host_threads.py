"""`over_parts` (the CPU plans' host threads), and the plans' results on any number of threads."""
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
import torch

from mlic_pipe.mix import cpu_saliency, fmix_masks, normals, rank_ramp
from mlic_pipe.mix.host_threads import over_parts

CORES = os.cpu_count() or 1


@pytest.mark.parametrize("grain", [1, 2])
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_the_parts_cover_the_range_once_in_order(threads, grain):
    for count in range(10):
        parts, lock = [], threading.Lock()

        def run(start, stop):
            with lock:
                parts.append((start, stop, threading.get_ident()))
        over_parts(run, count, threads, grain)
        spans = sorted((start, stop) for start, stop, _ in parts)
        assert [i for start, stop in spans for i in range(start, stop)] == list(range(count))
        assert all(stop > start for start, stop in spans)
        assert len(spans) == (0 if count == 0 else max(1, min(threads, count // grain, CORES)))
        assert threading.get_ident() in {ident for *_, ident in parts} or count == 0  # the caller takes a part


def test_a_failing_part_is_raised_after_every_part_has_finished():
    if CORES < 2:
        pytest.skip("one core: a single part")
    finished = []

    def run(start, stop):
        if start > 0:
            raise ValueError(f"part {start}")
        time.sleep(0.2)  # the caller's part ends last
        finished.append(start)
    with pytest.raises(ValueError, match="part"):
        over_parts(run, 8, 2)
    assert finished == [0]


def _in_child(queue):
    out = np.zeros(8)

    def run(start, stop):
        out[start:stop] = np.arange(start, stop)
    over_parts(run, 8, 2)
    queue.put(out.tolist())


def test_a_forked_process_makes_its_own_pool():
    over_parts(lambda start, stop: None, 8, 2)  # the parent's pool exists (with threads) before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == list(range(8))


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.skipif(not (normals.AVAILABLE and rank_ramp.AVAILABLE and cpu_saliency.AVAILABLE),
                    reason="numba is not installed")
def test_the_cpu_plans_are_the_same_on_any_number_of_threads(torch_threads):
    images = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (5, 40, 56, 3), dtype=np.uint8))
    lam = np.random.default_rng(3).random(5)
    grey = np.random.default_rng(4).standard_normal((5, 999)).astype(np.float32)
    low, high = np.array([0, 10, 500, 998, 999]), np.array([0, 90, 700, 998, 1200])
    results = []
    for threads in (1, 2, 3):
        torch_threads(threads)
        results.append((normals.standard_normals(300_001, 9), cpu_saliency.saliency_maps_cpu(images.numpy()),
                        rank_ramp.rank_ramp(grey, low, high, np.empty(grey.shape)),
                        *fmix_masks(lam, 48, max_soft=0.1, seed=5)))
    for other in results[1:]:
        for one, two in zip(results[0], other):
            assert (torch.equal(one, two) if isinstance(one, torch.Tensor) else np.array_equal(one, two))

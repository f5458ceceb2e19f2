"""`over_parts`: a compiled function (a CPU plan's, the CPU render's) run over parts of a batch on several host threads.

Why: the CPU plans of FMix (`normals`, `rank_ramp`, numpy's FFT) and SaliencyMix (`cpu_saliency`) are
functions that release the GIL, and one core takes ~55 and ~42 ms for B=32 at S=448 on this project's
machine: more than the batch's decode. Where the machine has cores to spare, the plan should use them:
as many as torch's thread count during the call, which the loader sets to its render's thread count
(`MLICLoader.render_threads`: torch's own count by default). The CPU render (`cpu_render`) shares the
pool: its threads take runs of output rows from one atomic count.

Plain threads rather than numba's ``parallel=True``: nothing spins between calls (OpenMP's threads did,
on the cores the decode needed), one function serves both the serial and the split call, and a process
forked after a call (a DataLoader worker) makes a pool of its own instead of waiting on threads that
were not copied into it.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

__all__ = ["over_parts"]

_CORES = os.cpu_count() or 1  # read once: os.cpu_count reads /sys on Linux (~7 us), and parts are split per call
_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """This process's pool (made again in a forked child, whose copy of the parent's has no threads)."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=max(1, _CORES - 1), thread_name_prefix="mlic-host")
            _pool_pid = os.getpid()
        return _pool


def over_parts(run: Callable[[int, int], None], count: int, threads: int | None = None, grain: int = 1) -> None:
    """``run(start, stop)`` over consecutive parts of ``range(count)``, on up to `threads` threads (default:
    torch's thread count), parts of at least `grain` items, the calling thread taking the first part; returns
    when every part is done.

    An exception in any part is raised after all parts have finished (none is left writing into the
    caller's arrays).
    """
    threads = max(1, min(int(threads or torch.get_num_threads()), count // max(1, grain), _CORES))
    if threads == 1:
        if count:
            run(0, count)
        return
    bounds = [count * part // threads for part in range(threads + 1)]
    pool = _executor()
    futures = [pool.submit(run, start, stop) for start, stop in zip(bounds[1:-1], bounds[2:])]
    try:
        run(bounds[0], bounds[1])
    finally:
        errors = []
        for future in futures:
            try:
                future.result()
            except BaseException as error:  # noqa: BLE001 - re-raised below, after every part has finished
                errors.append(error)
    if errors:
        raise errors[0]

"""`build_at_lower_priority`: the CPU decode's threads yield the cores to the step that waits on them.

Why: on a CPU, DALI's worker threads decode the next batches while the caller renders (and trains on) this
one, on the same cores. At equal priority the kernel splits the cores between them, so the render the step
is waiting for runs at a fraction of its speed while DALI works ahead: measured on 2 cores at S=448, the
render took ~15 ms alone and 35-40 ms beside the decode, the same total work taking longer for the stage on
the critical path. Prefetching should use the time the step leaves, not take it: DALI's threads run at a
higher nice value (lower priority; `DecodeSettings.decode_nice`, +10 by default), so the caller's threads get
the cores first and the decode every cycle they leave. The total work, and so the throughput of a
CPU-bound loop, is unchanged; the step's own stages run at about their own cost, and the time waiting for
the decode shows as what it is.

Linux only: its threads are tasks with their own nice value (``setpriority(PRIO_PROCESS, tid)``) listed in
``/proc/self/task``; elsewhere, or where the call is refused, nothing changes. The threads touched are those that
appear during the build: DALI's, all of which end with the pipeline. Not by name: DALI names a thread a moment
after starting it, so a name read right after the build can still be the process's. Whatever the build imports
for the first time (numba, DALI's plugins) may start threads of its own, so callers import it first
(`mlic_pipe.pipeline.build_decode`).
"""
from __future__ import annotations

import os

__all__ = ["build_at_lower_priority", "thread_names"]

_TASKS = "/proc/self/task"


def thread_names() -> dict[int, str]:
    """This process's threads by id (Linux): their names; empty where /proc is not there."""
    names = {}
    try:
        tids = os.listdir(_TASKS)
    except OSError:
        return names
    for tid in tids:
        try:
            with open(f"{_TASKS}/{tid}/comm") as comm:
                names[int(tid)] = comm.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
    return names


def build_at_lower_priority(pipe, nice: int) -> list[int]:
    """``pipe.build()``, then the threads the build started run `nice` levels below the caller; their ids.

    `nice` 0 builds only. The threads are DALI's, which end with the pipeline: its thread pool, where the
    operators (the decode, the resize) run, and its executor's; an executor thread DALI may add at the first run
    only hands batches on (measured: ~1% of the pool's CPU time) and keeps the caller's priority.
    """
    before = set(thread_names()) if nice else set()
    pipe.build()
    if not nice:
        return []
    lowered = []
    for tid in set(thread_names()) - before:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + nice, 19))
        except (OSError, AttributeError):  # not Linux, not allowed, or the thread ended: its priority stays
            continue
        lowered.append(tid)
    return lowered

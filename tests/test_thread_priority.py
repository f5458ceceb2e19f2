"""The CPU decode's threads run below the caller's priority (nice + decode_nice); nothing else is touched."""
from __future__ import annotations

import os
import sys

import pytest

from mlic_pipe.errors import ConfigError
from mlic_pipe.loading.thread_priority import thread_names
from mlic_pipe.pipeline import DecodeSettings, build_pipeline

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def _nice(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/stat") as stat:  # field 19 (nice), counted after the parenthesized name
        return int(stat.read().rsplit(")", 1)[1].split()[16])


@pytest.mark.parametrize("decode_nice", [10, 0])
def test_cpu_pipeline_threads_run_decode_nice_levels_below_the_caller(demo, decode_nice, monkeypatch):
    import mlic_pipe.pipeline as pipeline

    lowered, real = [], pipeline.build_at_lower_priority
    monkeypatch.setattr(pipeline, "build_at_lower_priority", lambda pipe, nice: lowered.extend(real(pipe, nice)))
    caller = os.getpriority(os.PRIO_PROCESS, 0)
    before = thread_names()
    settings = DecodeSettings(image_size=32, decode_nice=decode_nice, num_threads=2)
    pipe = build_pipeline(list(demo.files[:8]), list(range(8)), 4, settings, device_id=None, seed=0)
    pipe.run()  # decodes on the thread pool the build started; by now DALI has named its threads
    started = {tid: name for tid, name in thread_names().items() if tid not in before}
    pool = [tid for tid, name in started.items() if name.startswith("[DALI][TP")]
    assert len(pool) == 2, started  # DALI's thread pool (num_threads=2), where the operators run
    assert set(pool) <= set(lowered) if decode_nice else not lowered
    for tid in pool:
        assert _nice(tid) == min(caller + decode_nice, 19), started[tid]
    for tid in lowered:  # every thread lowered is the pipeline's (all DALI's, named by now)
        assert started[tid].startswith("[DALI]") and _nice(tid) == min(caller + decode_nice, 19), started[tid]
    assert os.getpriority(os.PRIO_PROCESS, 0) == caller  # the calling thread itself is untouched
    del pipe


def test_decode_nice_outside_the_nice_range_is_a_config_error():
    with pytest.raises(ConfigError, match="decode_nice.*within \\[0, 19\\]"):
        DecodeSettings(decode_nice=25).validate()

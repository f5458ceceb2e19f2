"""The compiled CPU renderer (`mlic_pipe.mix.cpu_render`, numba) against the torch reference renderer.

The reference is itself tested against F.interpolate (test_render.py), so equality here means the
compiled path computes what every plan specifies: every plan type (grids with dropout, box, dense
mask, constant, ResizeMix bilinear and nearest), both resample modes and corner conventions, uint8
and float input, float32 / float16 / bfloat16 output, contiguous and channels_last layouts.
Outputs are poisoned with NaN first, so an element the renderer fails to write fails.
"""
import multiprocessing
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch

from mlic_pipe.mix import MixPlan, SaliencyMix, SpliceMix, dispatch, render, render_reference
from mlic_pipe.mix import cpu_render
from mlic_pipe.mix.cpu_render import render_cpu

from render_cases import MIXERS, TOLERANCE, fuzz_plan, poisoned, random_images

pytestmark = pytest.mark.skipif(not cpu_render.AVAILABLE, reason="numba is not installed")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def check(images, plan, *, out_dtype=torch.float32, channels_last=False, **kw):
    """Render into a poisoned buffer and compare with the reference."""
    size = images.shape[1] if images.dtype == torch.uint8 else images.shape[2]
    out = poisoned((plan.num_outputs, 3, size, size), out_dtype, "cpu", channels_last)
    got = render_cpu(images, plan, out_dtype=out_dtype, channels_last=channels_last, out=out, **kw)
    assert got is out
    torch.testing.assert_close(got.float(), render_reference(images, plan, **kw), **TOLERANCE[out_dtype])
    return got


@pytest.mark.parametrize("size", [5, 16, 33, 97, 448])
@pytest.mark.parametrize("resample, align_corners", [("bilinear", True), ("bilinear", False), ("area", False),
                                                     ("area", True)])
def test_random_plans_of_every_mask_mode(size, resample, align_corners):
    images = random_images(4, size, seed=size, device="cpu")
    for seed in range(3 if size < 100 else 1):
        plan = fuzz_plan(4, size, seed=seed + size, max_grid=min(4, size), modes=6, erase=seed)
        check(images, plan, resample=resample, align_corners=align_corners)


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_every_mixer_plan(name):
    images = random_images(10, 37, seed=len(name), device="cpu")
    for seed in range(3):
        check(images, MIXERS[name].plan(10, 37, np.random.default_rng(seed)))


def test_saliencymix_plan():
    images = random_images(6, 40, seed=3, device="cpu")
    check(images, SaliencyMix(append=True).plan(6, 40, np.random.default_rng(0), images=images))

@pytest.mark.parametrize("size", [33, 224, 448])
@pytest.mark.parametrize("align_corners", [True, False])
def test_strided_runs_rebuild_every_bilinear_tap(size, align_corners):
    """`_axis_tables`' runs against the taps they stand for: within a run starting at x, tap x + m is
    tap x + step * m; and the SpliceMix grids' columns of S and S/2 at 224 and 448 take the stride (S/3's are
    read one by one: a stride of 3 compiles to slow gathers)."""
    low, _, _, run, step = cpu_render._tables(size, 4, align_corners, False)
    for parts in range(1, 5):
        for cell in range(parts):
            start, end = cell * size // parts, (cell + 1) * size // parts
            k = int(step[parts, cell])
            if not k:
                continue
            x = start
            while x < end:
                length = int(run[parts, x])
                assert 1 <= length <= end - x
                expected = int(low[parts, x]) + k * np.arange(length)
                np.testing.assert_array_equal(low[parts, x:x + length].astype(np.int64), expected)
                x += length
    if size in (224, 448):
        assert step[1, 0] == 1 and list(step[2, :2]) == [2, 2] and not step[3, :3].any()
    assert not cpu_render._tables(size, 3, align_corners, True)[4].any()  # area windows: summed, no stride



@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_output_dtypes_and_layouts(out_dtype, channels_last):
    images = random_images(4, 29, seed=1, device="cpu")
    plan = fuzz_plan(4, 29, seed=3, modes=6, erase=2)
    got = check(images, plan, out_dtype=out_dtype, channels_last=channels_last)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    allocated = render_cpu(images, plan, out_dtype=out_dtype, channels_last=channels_last)
    assert torch.equal(allocated, got) and allocated.dtype == out_dtype


@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
def test_half_outputs_are_the_float32_render_rounded_as_tensor_to_rounds(out_dtype):
    """Bit-exact against torch's rounding, across normal numbers, float16 subnormals and overflow."""
    images = random_images(4, 24, seed=4, device="cpu")
    plan = fuzz_plan(4, 24, seed=5, modes=6)
    for mean, std in [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet: normal numbers
                      ((0.0, 0.0, 0.0), (2e4, 3e3, 5e2)),  # |x| < 2e-3: many float16 subnormals
                      ((0.5, 0.0, -0.5), (1e-6, 1.7e-5, 1.5e-5))]:  # past 65504: infinities
        wide = render_cpu(images, plan, mean=mean, std=std)
        half = render_cpu(images, plan, mean=mean, std=std, out_dtype=out_dtype)
        assert torch.equal(half.view(torch.int16), wide.to(out_dtype).view(torch.int16)), (mean, std)


@pytest.mark.slow  # compiles the float-input variants (~13 s on a clean clone); CI runs it
def test_inputs_of_every_kind():
    size = 23
    plan = fuzz_plan(4, size, seed=5, modes=6)
    big = random_images(4, size + 7, seed=6, device="cpu")
    window = big[:, 3:3 + size, 5:5 + size, :]  # a crop view: not contiguous
    check(window, plan)
    floats = torch.rand((4, 3, size, size), generator=torch.Generator().manual_seed(8))
    check(floats, plan)
    check(floats.to(torch.float16).contiguous(memory_format=torch.channels_last), plan)
    check(floats.to(torch.bfloat16), plan, resample="area")


def test_strided_output_buffer_is_written_only_where_it_is():
    size = 19
    images = random_images(4, size, seed=10, device="cpu")
    plan = fuzz_plan(4, size, seed=11, modes=6)
    storage = torch.full((plan.num_outputs, 3, size, size + 4), float("nan"))
    out = storage[..., 2:2 + size]
    render_cpu(images, plan, out=out)
    torch.testing.assert_close(out, render_reference(images, plan), atol=1e-5, rtol=0)
    assert storage[..., :2].isnan().all() and storage[..., 2 + size:].isnan().all()


@pytest.mark.slow  # compiles the float32-mask variant (~10 s on a clean clone); CI runs it
def test_float32_dense_masks_and_tiny_batches():
    images = random_images(3, 17, seed=12, device="cpu")
    plan = fuzz_plan(3, 17, seed=13, modes=6)
    plan.masks = plan.masks.float()  # a user's plan with float32 masks: read as they are
    check(images, plan)
    check(images[:1], MixPlan.identity(1))
    check(images[:1], MixPlan.build(num_regular=1, cells=[[0, -1], [0, 0]], grid=[[1, 1], [1, 2]]))
    empty = MixPlan.build(num_regular=0, cells=np.zeros((0, 1)), grid=np.zeros((0, 2)))
    assert render_cpu(images, empty).shape == (0, 3, 17, 17)


def test_bad_arguments_raise_clearly():
    images = random_images(2, 16, seed=17, device="cpu")
    with pytest.raises(ValueError, match="refers to input rows"):
        render_cpu(images[:1], MixPlan.identity(2))
    with pytest.raises(ValueError, match="out must be"):
        render_cpu(images, MixPlan.identity(2), out=torch.empty(2, 3, 16, 15))
    with pytest.raises(ValueError, match="NHWC"):
        render_cpu(images.permute(0, 3, 1, 2), MixPlan.identity(2))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_any_thread_count_renders_the_reference(threads):
    """`threads` chooses who renders (the calling thread alone, or with the pool's), never what is rendered."""
    images = random_images(6, 64, seed=40 + threads, device="cpu")
    plan = fuzz_plan(6, 64, seed=threads, max_grid=3, modes=6, erase=1)
    out = poisoned((plan.num_outputs, 3, 64, 64), torch.float32, "cpu", False)
    got = render_cpu(images, plan, out=out, threads=threads)
    torch.testing.assert_close(got, render_reference(images, plan), **TOLERANCE[torch.float32])
    assert torch.equal(got, render_cpu(images, plan, threads=None))


def test_bad_thread_counts_raise_clearly():
    images = random_images(2, 16, seed=18, device="cpu")
    for threads in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            render_cpu(images, MixPlan.identity(2), threads=threads)


def test_render_picks_the_compiled_renderer_for_cpu_tensors_and_falls_back_with_one_warning(monkeypatch):
    images = random_images(8, 20, seed=20, device="cpu")
    plan = SpliceMix().plan(8, 20, np.random.default_rng(0))
    calls = []
    monkeypatch.setattr(cpu_render, "render_cpu",
                        lambda *a, threads=None, **k: calls.append(a) or render_reference(*a, **k))
    render(images, plan)
    assert len(calls) == 1
    render(images, plan, backend="reference")
    assert len(calls) == 1
    monkeypatch.setattr(cpu_render, "AVAILABLE", False)
    monkeypatch.setattr(cpu_render, "NUMBA_IMPORT_ERROR", "No module named 'numba'")
    monkeypatch.setattr(dispatch, "_warned", set())
    with pytest.warns(RuntimeWarning, match="pip install numba"):
        fallback = render(images, plan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not per batch
        render(images, plan)
    assert torch.equal(fallback, render_reference(images, plan)) and len(calls) == 1
    with pytest.raises(RuntimeError, match="needs numba"):
        render(images, plan, backend="cpu")


def test_threads_rendering_at_once_each_get_their_own_batch():
    """A loader's prefetch thread and a training loop may render at the same time: the calls share the host
    pool, each takes its rows from its own count."""
    batches = [random_images(8, 48, seed=30 + k, device="cpu") for k in range(4)]
    plans = [SpliceMix().plan(8, 48, np.random.default_rng(k)) for k in range(4)]
    results = [None] * 4

    def work(k):
        for _ in range(5):
            results[k] = render_cpu(batches[k], plans[k], threads=2)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for k in range(4):
        torch.testing.assert_close(results[k], render_reference(batches[k], plans[k]), atol=1e-5, rtol=0)


def _render_in_child(queue, images, plan):
    queue.put(render_cpu(images, plan).numpy())  # plain pickled bytes, not torch's shared memory


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_renders_after_its_parent_did():
    """A DataLoader worker forked after the parent rendered: OpenMP threads must not hang it."""
    images = random_images(8, 32, seed=40, device="cpu")
    plan = SpliceMix().plan(8, 32, np.random.default_rng(1))
    render_cpu(images, plan)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_render_in_child, args=(queue, images, plan))
    child.start()
    got = torch.from_numpy(queue.get(timeout=120))
    child.join(timeout=60)
    assert child.exitcode == 0
    torch.testing.assert_close(got, render_reference(images, plan), atol=1e-5, rtol=0)


@pytest.mark.slow  # ~8-12 s: two processes (the default run stays under 6 minutes; CI runs it)
def test_the_compiled_code_is_loaded_from_the_disk_cache_by_the_next_process():
    code = ("import numpy as np, torch; from mlic_pipe.mix import SpliceMix; from mlic_pipe.mix import cpu_render;"
            "x = torch.zeros((8, 16, 16, 3), dtype=torch.uint8);"
            "cpu_render.render_cpu(x, SpliceMix().plan(8, 16, np.random.default_rng(0)));"
            "stats = cpu_render._render_rows.stats; print(stats.cache_hits and 1, len(stats.cache_misses))")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    hits, misses = runs[1].stdout.split()
    assert hits == "1" and misses == "0", runs[1].stdout  # the second process compiled nothing

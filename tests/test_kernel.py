"""The Triton render kernel against the torch reference renderer (itself tested against F.interpolate).

Without a GPU these run in Triton's interpreter (conftest sets TRITON_INTERPRET=1) on small
shapes with one tile per image; with a GPU the same tests run on CUDA (`pytest -m gpu`).
Every output buffer is poisoned with NaN first, so an element the kernel fails to write fails.
"""
import numpy as np
import pytest
import torch

import mlic_pipe.kernels
from mlic_pipe.kernels import INTERPRETED, area_taps, index_bits, pack_plan
from mlic_pipe.kernels import render as kernel_render
from mlic_pipe.mix import MixPlan, MixUp, SpliceMix, render, render_reference

from render_cases import MIXERS, TOLERANCE, fuzz_plan, poisoned, random_images

DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1")),
    pytest.param("cuda", marks=pytest.mark.gpu),
]
def check(images, plan, device, *, out_dtype=torch.float32, channels_last=False, **kw):
    """Render with the kernel into a poisoned buffer and compare with the reference on the same device."""
    size = images.shape[1] if images.dtype == torch.uint8 else images.shape[2]
    out = poisoned((plan.num_outputs, 3, size, size), out_dtype, device, channels_last)
    got = kernel_render(images, plan, out_dtype=out_dtype, out=out, **kw)
    assert got is out
    expected = render_reference(images, plan, **kw)
    torch.testing.assert_close(got.float(), expected, **TOLERANCE[out_dtype])
    return got


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [97, 447, 449])
@pytest.mark.parametrize("resample, align_corners", [("bilinear", True), ("bilinear", False), ("area", False)])
def test_random_plans_odd_sizes(device, size, resample, align_corners):
    images = random_images(3, size, seed=size, device=device)
    plan = fuzz_plan(3, size, seed=size + len(resample) + align_corners)
    check(images, plan, device, resample=resample, align_corners=align_corners)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(3))
def test_random_plans_with_erase_boxes(device, seed):
    """Cutout / random erasing in the same pass: constants, colours and the shared noise, over every mix."""
    size = [7, 24, 33][seed]
    images = random_images(4, size, seed=seed, device=device)
    check(images, fuzz_plan(4, size, seed=seed, modes=6, erase=seed + 1), device)
    check(images, fuzz_plan(4, size, seed=seed, modes=6, erase=2), device, out_dtype=torch.bfloat16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(6))
def test_random_plans_small(device, seed):
    size = [5, 16, 31, 33, 40, 64][seed]
    images = random_images(4, size, seed=seed, device=device)
    for resample, align_corners in [("bilinear", True), ("bilinear", False), ("area", False)]:
        check(images, fuzz_plan(4, size, seed=seed, max_grid=4), device, resample=resample,
              align_corners=align_corners)




@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MIXERS))
def test_every_mixer_plan(device, name):
    size = 37
    images = random_images(10, size, seed=len(name), device=device)
    for seed in range(3):
        check(images, MIXERS[name].plan(10, size, np.random.default_rng(seed), device=device), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_half_outputs_and_layouts(device, out_dtype, channels_last):
    images = random_images(4, 29, seed=1, device=device)
    got = check(images, fuzz_plan(4, 29, seed=3), device, out_dtype=out_dtype, channels_last=channels_last)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("device", DEVICES)
def test_allocates_the_requested_layout_without_out(device):
    images = random_images(4, 21, seed=2, device=device)
    plan = fuzz_plan(4, 21, seed=4)
    got = kernel_render(images, plan, out_dtype=torch.bfloat16, channels_last=True)
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.float(), render_reference(images, plan), **TOLERANCE[torch.bfloat16])


@pytest.mark.parametrize("device", DEVICES)
def test_strided_inputs_use_their_real_strides(device):
    size = 23
    plan = fuzz_plan(4, size, seed=5)
    big = random_images(4, size + 7, seed=6, device=device)
    window = big[:, 3:3 + size, 5:5 + size, :]  # a crop view: row stride of the larger image
    assert not window.is_contiguous()
    check(window, plan, device)
    planar = random_images(4, size, seed=7, device=device).permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    assert planar.stride()[3] == size * size  # NHWC view of NCHW storage
    check(planar, plan, device)
    floats = torch.rand((4, 3, size, size), generator=torch.Generator().manual_seed(8)).to(device)
    check(floats, plan, device)
    check(floats.to(torch.float16).contiguous(memory_format=torch.channels_last), plan, device)
    check(torch.rand((5, 3, size + 2, size), generator=torch.Generator().manual_seed(9)).to(device)[::1, :, 1:-1, :][:4],
          plan, device)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_output_buffer(device):
    size = 19
    images = random_images(4, size, seed=10, device=device)
    plan = fuzz_plan(4, size, seed=11)
    storage = torch.full((plan.num_outputs, 3, size, size + 4), float("nan"), device=device)
    out = storage[..., 2:2 + size]
    kernel_render(images, plan, out=out)
    torch.testing.assert_close(out, render_reference(images, plan), atol=1e-5, rtol=0)
    assert storage[..., :2].isnan().all() and storage[..., 2 + size:].isnan().all()  # nothing outside written


@pytest.mark.parametrize("device", DEVICES)
def test_batch_of_one_and_no_mixed_outputs(device):
    images = random_images(1, 31, seed=12, device=device)
    check(images, MixPlan.identity(1), device)
    one_input = MixPlan.build(num_regular=1, cells=[[0, -1], [0, 0]], grid=[[1, 1], [1, 2]])
    check(images, one_input, device)
    check(images, MixUp().plan(1, 31, np.random.default_rng(0)), device)
    check(random_images(5, 31, seed=13, device=device), MixPlan.identity(5), device)
    empty = MixPlan.build(num_regular=0, cells=np.zeros((0, 1)), grid=np.zeros((0, 2)))
    assert kernel_render(images, empty).shape == (0, 3, 31, 31)


@pytest.mark.parametrize("device", DEVICES)
def test_int64_offsets_give_the_same_numbers(device):
    images = random_images(3, 27, seed=14, device=device)
    plan = fuzz_plan(3, 27, seed=15)
    narrow = kernel_render(images, plan, _index_bits=32)
    wide = kernel_render(images, plan, _index_bits=64)
    assert torch.equal(narrow, wide)
    wide_area = kernel_render(images, plan, resample="area", _index_bits=64)
    torch.testing.assert_close(wide_area, render_reference(images, plan, resample="area"), atol=1e-5, rtol=0)


def test_index_width_follows_the_largest_offset():
    # shapes only: meta tensors have real strides and no storage
    def meta(*shape, dtype=torch.uint8):
        return torch.empty(shape, dtype=dtype, device="meta")

    assert index_bits(meta(512, 640, 640, 3), meta(640, 3, 640, 640, dtype=torch.float16)) == 32
    assert index_bits(meta(2048, 640, 640, 3)) == 64  # 2.5e9 elements
    assert index_bits(meta(512, 640, 640, 3), meta(1800, 3, 640, 640)) == 64  # 2.2e9
    assert index_bits(meta(1, 2**31, dtype=torch.uint8)) == 32  # last offset 2**31 - 1 still fits
    assert index_bits(meta(1, 2**31 + 1, dtype=torch.uint8)) == 64


def test_area_taps_is_the_widest_pooling_window():
    for size in (5, 31, 97, 224, 447, 448):
        for parts in range(1, min(size, 6) + 1):  # plans keep grids within the image size
            widest = 1
            for cell in range(parts):
                extent = (cell + 1) * size // parts - cell * size // parts
                for local in range(extent):
                    start = (local * size) // extent
                    end = -((-(local + 1) * size) // extent)  # ceil division
                    widest = max(widest, end - start)
            assert area_taps(size, parts) == widest, (size, parts)


def test_pack_plan_columns():
    plan = fuzz_plan(4, 17, seed=16)
    table = pack_plan(plan)
    assert table.dtype == torch.int32 and table.shape == (plan.num_outputs, 10 + plan.cells.shape[1])
    assert torch.equal(table[:, :2], plan.grid) and torch.equal(table[:, 2], plan.partner)
    assert torch.equal(table[:, 3], plan.mask_mode.int()) and torch.equal(table[:, 4:8], plan.box)
    assert torch.equal(table[:, 8], plan.mask_index) and torch.equal(table[:, 10:], plan.cells)
    assert torch.equal(table[:, 9].view(torch.float32), plan.lam)


def test_bad_arguments_raise_clearly():
    images = random_images(2, 16, seed=17, device="cpu")
    plan = MixPlan.identity(2)
    with pytest.raises(ValueError, match="refers to input rows"):
        kernel_render(images[:1], plan)
    with pytest.raises(ValueError, match="out must be"):
        kernel_render(images, plan, out=torch.empty(2, 3, 16, 15))
    with pytest.raises(ValueError, match="out_dtype"):
        kernel_render(images, plan, out_dtype=torch.float64)
    with pytest.raises(ValueError, match="resample"):
        kernel_render(images, plan, resample="bicubic")
    with pytest.raises(ValueError, match="limit"):
        kernel_render(torch.empty((1, 16385, 16385, 3), dtype=torch.uint8, device="meta"), MixPlan.identity(1))
    with pytest.raises(ValueError, match="NHWC"):
        kernel_render(images.permute(0, 3, 1, 2), plan)


def test_render_dispatches_to_the_kernel_only_when_asked_or_on_cuda(monkeypatch):
    calls = []

    def spy(*args, **kw):
        calls.append(args)
        return render_reference(*args, **kw)

    monkeypatch.setattr(mlic_pipe.kernels, "render", spy)
    images = random_images(2, 8, seed=18, device="cpu")
    render(images, MixPlan.identity(2))
    assert calls == []  # CPU tensors: not the kernel (the compiled CPU renderer)
    if INTERPRETED:
        render(images, MixPlan.identity(2), backend="triton")
        assert len(calls) == 1
    render(images, MixPlan.identity(2), backend="reference")
    assert len(calls) == int(INTERPRETED)


@pytest.mark.gpu
def test_cuda_dispatch_uses_the_kernel(monkeypatch):
    calls = []
    monkeypatch.setattr(mlic_pipe.kernels, "render", lambda *a, **k: calls.append(a) or render_reference(*a, **k))
    images = random_images(2, 8, seed=19, device="cuda")
    render(images, MixPlan.identity(2))
    assert len(calls) == 1
    render(images, MixPlan.identity(2), backend="reference")
    assert len(calls) == 1


def test_render_config_variable_fixes_one_block_config_per_variant(monkeypatch):
    """`MLIC_PIPE_RENDER_CONFIG` skips autotuning (tests, the GPU session): the first config a variant may use."""
    from mlic_pipe.kernels.fused_render import CONFIG_VARIABLE, fixed_config, parse_configs, pixels_per_thread

    monkeypatch.delenv(CONFIG_VARIABLE, raising=False)
    assert fixed_config(False, False) is None  # unset: autotune
    monkeypatch.setenv(CONFIG_VARIABLE, "16x64w4, 8x64w4")
    plain, area, resized = fixed_config(False, False), fixed_config(True, False), fixed_config(False, True)
    assert (plain.kwargs, plain.num_warps) == ({"BLOCK_Y": 16, "BLOCK_X": 64}, 4)
    assert area.kwargs == resized.kwargs == {"BLOCK_Y": 8, "BLOCK_X": 64}  # 16x64 on 4 warps: 8 pixels a thread
    assert pixels_per_thread(area) == 4
    monkeypatch.setenv(CONFIG_VARIABLE, "16x64w4")
    with pytest.raises(ValueError, match="at most 4 pixels per thread"):
        fixed_config(True, False)
    for bad, why in (("16x64", "form YxXwW"), ("12x64w4", "powers of two"), (" , ", "empty")):
        with pytest.raises(ValueError, match=why):
            parse_configs(bad)


@pytest.mark.gpu
def test_gpu_render_with_a_fixed_config_never_autotunes(monkeypatch):
    from mlic_pipe.kernels import fused_render

    monkeypatch.setenv(fused_render.CONFIG_VARIABLE, "8x64w4")
    images = random_images(8, 96, seed=20, device="cuda")
    plan = SpliceMix().plan(8, 96, np.random.default_rng(20))
    tuned_before = dict(fused_render._render_tuned.cache)
    out = kernel_render(images, plan)
    torch.testing.assert_close(out, render_reference(images, plan), **TOLERANCE[torch.float32])
    assert fused_render._render_tuned.cache == tuned_before  # no autotune run, no new entry

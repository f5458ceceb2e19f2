import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlic_pipe.mix import CutMix, FMix, MixPlan, MixUp, SpliceMix, fmix_masks, render
from mlic_pipe.mix.plan import MASK_BOX

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def images(n, size, seed=0):
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def normalized(batch):
    """The normalization written out independently: (x / 255 - mean) / std, NCHW float32."""
    x = batch.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def edges(size, parts):
    return [(i * size) // parts for i in range(parts + 1)]


def spliced_plan(num_inputs, rows, cols, cells):
    """A hand-built plan: the regular images, then one spliced output with the given cell sources."""
    k = rows * cols
    table = np.full((num_inputs + 1, k), -1)
    table[:num_inputs, 0] = np.arange(num_inputs)
    table[num_inputs] = cells
    grid = np.ones((num_inputs + 1, 2))
    grid[num_inputs] = (rows, cols)
    return MixPlan.build(num_regular=num_inputs, cells=table, grid=grid)


@pytest.mark.parametrize("size", [448, 97, 447])
@pytest.mark.parametrize("rows, cols", [(1, 2), (2, 1), (2, 2), (2, 3), (3, 2)])
@pytest.mark.parametrize("mode, align_corners", [("bilinear", True), ("bilinear", False), ("area", False)])
def test_each_cell_equals_f_interpolate_of_its_source(size, rows, cols, mode, align_corners):
    batch = images(6, size, seed=size + rows * 10 + cols)
    sources = np.arange(rows * cols)[::-1] % 6
    out = render(batch, spliced_plan(6, rows, cols, sources), mean=MEAN, std=STD, resample=mode,
                 align_corners=align_corners)
    src = normalized(batch)
    ys, xs = edges(size, rows), edges(size, cols)
    for r in range(rows):
        for c in range(cols):
            h, w = ys[r + 1] - ys[r], xs[c + 1] - xs[c]
            kwargs = {"align_corners": align_corners} if mode == "bilinear" else {}
            expected = F.interpolate(src[sources[r * cols + c]][None], (h, w), mode=mode, **kwargs)[0]
            got = out[6, :, ys[r]:ys[r + 1], xs[c]:xs[c + 1]]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_regular_outputs_equal_the_normalized_input(backend):
    """The reference is exact; the compiled CPU renderer normalizes with one multiply-add, as the kernel does."""
    batch = images(5, 33)
    plan = SpliceMix(["2x2-1"]).plan(5, 33, np.random.default_rng(0))
    out = render(batch, plan, mean=MEAN, std=STD, backend=backend)
    if backend == "reference":
        assert torch.equal(out[:5], normalized(batch))
    torch.testing.assert_close(out[:5], normalized(batch), atol=1e-6, rtol=0)


def test_dropped_cells_are_exactly_zero():
    batch = images(4, 30)
    out = render(batch, spliced_plan(4, 2, 3, [0, -1, 2, -1, -1, 3]), mean=MEAN, std=STD)
    assert torch.equal(out[4, :, 0:15, 10:20], torch.zeros(3, 15, 10))
    assert torch.equal(out[4, :, 15:30, 0:20], torch.zeros(3, 15, 20))
    assert out[4, :, 0:15, 0:10].abs().sum() > 0


def test_float_nchw_input_matches_uint8_input():
    batch = images(8, 40)
    plan = SpliceMix().plan(8, 40, np.random.default_rng(3))
    from_uint8 = render(batch, plan, mean=MEAN, std=STD)
    from_float = render(batch.permute(0, 3, 1, 2).float() / 255, plan, mean=MEAN, std=STD)
    torch.testing.assert_close(from_float, from_uint8, atol=1e-6, rtol=0)


def test_cutmix_box_shows_the_partner_and_lam_is_the_realized_area():
    batch = images(8, 64)
    plan = CutMix(alpha=1.0).plan(8, 64, np.random.default_rng(1))
    out = render(batch, plan, mean=MEAN, std=STD)
    src = normalized(batch)
    for n in range(8):
        y0, x0, y1, x1 = plan.box[n].tolist()
        assert plan.mask_mode[n] == MASK_BOX
        primary, partner = int(plan.cells[n, 0]), int(plan.partner[n])
        assert partner != primary
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        # within the normalization's rounding (a multiply-add in the compiled renderers)
        torch.testing.assert_close(out[n][:, inside], src[partner][:, inside], atol=1e-6, rtol=0)
        torch.testing.assert_close(out[n][:, ~inside], src[primary][:, ~inside], atol=1e-6, rtol=0)
        assert plan.lam[n].item() == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 64**2, abs=1e-7)


def test_cutmix_box_side_is_s_times_sqrt_one_minus_lambda():
    # Beta(2000, 2000) pins lambda near 1/2: unclipped boxes must then be squares of side ~ 100 * sqrt(1/2)
    plan = CutMix(alpha=2000.0).plan(2000, 100, np.random.default_rng(2))
    y0, x0, y1, x1 = plan.box.T
    unclipped = (y0 > 0) & (x0 > 0) & (y1 < 100) & (x1 < 100)
    assert unclipped.sum() > 50
    assert torch.equal((y1 - y0)[unclipped], (x1 - x0)[unclipped])
    assert set((y1 - y0)[unclipped].tolist()) <= set(range(68, 73))  # 3 sigma of lambda: 0.476..0.524
    clipped_area = ((y1 - y0) * (x1 - x0)).double() / 100**2
    torch.testing.assert_close(plan.lam.double(), 1 - clipped_area, atol=1e-7, rtol=0)


def test_mixup_is_the_constant_blend():
    batch = images(6, 20)
    plan = MixUp(alpha=0.4).plan(6, 20, np.random.default_rng(4))
    out = render(batch, plan, mean=MEAN, std=STD)
    src = normalized(batch)
    lam = plan.lam[:, None, None, None]
    expected = lam * src[plan.cells[:, 0].long()] + (1 - lam) * src[plan.partner.long()]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("max_soft", [0.0, 0.1])
def test_fmix_masks_keep_lambda_and_are_low_frequency(max_soft):
    size = 64
    lam = np.array([0.1, 0.37, 0.5, 0.81, 0.99])
    masks, realized = fmix_masks(lam, size, max_soft=max_soft, seed=7)
    assert masks.dtype == torch.float16 and masks.shape == (5, size, size)
    assert masks.min() >= 0 and masks.max() <= 1
    np.testing.assert_allclose(masks.float().mean(dim=(1, 2)).numpy(), lam, atol=1.0 / size**2 + 1e-3 * max_soft)
    torch.testing.assert_close(realized, masks.float().mean(dim=(1, 2)))
    if max_soft == 0:
        assert set(masks.unique().tolist()) <= {0.0, 1.0}
    # low frequency: most of the (non-DC) spectral energy within a radius of S/8 of the origin; not asked of
    # lambda 0.99, whose 1% region is a small blob with a wide spectrum (below 0.75 for ~1 seed in 3, with the
    # full-plane draws as with the half plane's: 200 seeds each, means 0.747 and 0.745)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(masks.float().numpy() - lam[:, None, None]), axes=(1, 2))) ** 2
    yy, xx = np.mgrid[:size, :size] - size // 2
    near = np.hypot(yy, xx) <= size / 8
    share = (spectrum[:, near].sum(1) / spectrum.sum(axis=(1, 2)))[:-1]
    assert (share > 0.75).all() and share.mean() > 0.85, share


def test_fmix_render_blends_with_the_dense_mask():
    batch = images(4, 32)
    plan = FMix(append=True, mix_ratio=0.5).plan(4, 32, np.random.default_rng(5))
    out = render(batch, plan, mean=MEAN, std=STD)
    src = normalized(batch)
    for n in range(4, 6):
        w = plan.masks[plan.mask_index[n]].float()
        expected = w * src[plan.cells[n, 0]] + (1 - w) * src[plan.partner[n]]
        torch.testing.assert_close(out[n], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:4], src, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_outputs_are_the_rounded_fp32_result(dtype):
    batch = images(4, 24)
    plan = SpliceMix(["2x2-1"], mix_ratio=0.5).plan(4, 24, np.random.default_rng(0))
    full = render(batch, plan, mean=MEAN, std=STD)
    half = render(batch, plan, mean=MEAN, std=STD, out_dtype=dtype)
    assert half.dtype == dtype and torch.equal(half, full.to(dtype))


def test_channels_last_and_out_buffer():
    batch = images(4, 24)
    plan = SpliceMix(["1x2"]).plan(4, 24, np.random.default_rng(0))
    expected = render(batch, plan, mean=MEAN, std=STD)
    cl = render(batch, plan, mean=MEAN, std=STD, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, expected)
    buffer = torch.full_like(expected, float("nan"))
    assert render(batch, plan, mean=MEAN, std=STD, out=buffer) is buffer
    assert torch.equal(buffer, expected)
    with pytest.raises(ValueError, match="out must be"):
        render(batch, plan, out=torch.empty(1, 3, 24, 24))


def test_bad_inputs_raise():
    plan = MixPlan.identity(2)
    with pytest.raises(ValueError, match="NHWC"):
        render(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), plan)
    with pytest.raises(ValueError, match="resample"):
        render(images(2, 8), plan, resample="nearest")
    with pytest.raises(ValueError, match="outside 0..1"):
        render(images(2, 8), MixPlan.identity(3))
    with pytest.raises(ValueError, match="out_dtype"):
        render(images(2, 8), plan, out_dtype=torch.int32)
    for backend in ("reference", "triton"):  # the check is shared by both renderers, not only the dispatcher
        with pytest.raises(ValueError, match="out_dtype"):
            render(images(2, 8), plan, out_dtype=torch.int32, backend=backend)


@pytest.mark.gpu
def test_cuda_reference_matches_cpu():
    batch = images(8, 64)
    for mixer in (SpliceMix(), CutMix(append=True), MixUp(), SpliceMix(["2x3-2"])):
        plan = mixer.plan(8, 64, np.random.default_rng(0))
        cpu = render(batch, plan, mean=MEAN, std=STD)
        gpu = render(batch.cuda(), plan, mean=MEAN, std=STD, backend="reference")
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


def test_render_settings_are_validated_where_they_are_set_and_override_per_call():
    from mlic_pipe.mix import RenderSettings

    with pytest.raises(ValueError, match="out_dtype"):
        RenderSettings(out_dtype=torch.int32)
    with pytest.raises(ValueError, match="resample"):
        RenderSettings(resample="bicubic")
    with pytest.raises(ValueError, match="std no zeros"):
        RenderSettings(std=(1, 0, 1))
    settings = RenderSettings(mean=MEAN, std=STD)
    batch, plan = images(8, 12), SpliceMix().plan(8, 12, np.random.default_rng(0))
    half = render(batch, plan, settings, out_dtype=torch.float16)  # one field overridden for this call
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), render(batch, plan, mean=MEAN, std=STD), atol=2e-3, rtol=2e-3)

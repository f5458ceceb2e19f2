"""Losses against their formulas evaluated directly in float64, and under fp16/bf16 autocast."""
import math

import numpy as np
import pytest
import torch

from mlic_pipe.losses import AAMLoss, AsymmetricLoss, BCELoss, SUMix, create_loss
from mlic_pipe.mix import CutMix, MixUp, SpliceMix, mix_targets


def case(seed=0, n=6, c=9, soft=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(n, c, generator=g) < 0.3).double()
    if soft:
        targets = torch.rand(n, c, generator=g, dtype=torch.float64)
    ignore = torch.rand(n, c, generator=g) < 0.2
    return logits, targets, ignore


def asl_by_formula(x, y, ignore, gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8):
    """Per element, in float64 python math: the ASL paper's L+ and L-."""
    total = 0.0
    for xi, yi, ii in zip(x.flatten().tolist(), y.flatten().tolist(), ignore.flatten().tolist()):
        if ii:
            continue
        p = 1 / (1 + math.exp(-xi))
        pm = max(p - clip, 0.0)
        pos = (1 - p) ** gamma_pos * math.log(max(p, eps))
        neg = pm ** gamma_neg * math.log(max(1 - pm, eps))
        total += -(yi * pos + (1 - yi) * neg)
    return total


@pytest.mark.parametrize("soft", [False, True])
def test_asl_equals_the_formula(soft):
    x, y, ignore = case(soft=soft)
    ours = AsymmetricLoss()(x, y, ignore)
    assert float(ours) == pytest.approx(asl_by_formula(x, y, ignore), rel=1e-6)
    assert float(AsymmetricLoss(gamma_neg=2, gamma_pos=1, clip=0.1)(x, y)) == pytest.approx(
        asl_by_formula(x, y, torch.zeros_like(ignore), 2, 1, 0.1), rel=1e-6)


def aam_by_formula(cos, y, ignore, s, m, k, gamma_pos, gamma_neg):
    total = 0.0
    for ci, yi, ii in zip(cos.flatten().tolist(), y.flatten().tolist(), ignore.flatten().tolist()):
        if ii:
            continue
        p_pos = 1 / (1 + math.exp(-s * (ci - m)))
        p_neg = 1 / (1 + math.exp(s * (ci + m)))
        pos = k * (1 - p_pos) ** gamma_pos * math.log(p_pos)
        neg = (1 - k) * (1 - p_neg) ** gamma_neg * math.log(p_neg)
        total += -(yi * pos + (1 - yi) * neg)
    return total


@pytest.mark.parametrize("params", [dict(s=16, m=0.2, k=0.8, gamma_pos=0, gamma_neg=4),
                                    dict(s=8, m=0.35, k=0.5, gamma_pos=1, gamma_neg=2)])
def test_aam_equals_the_formula(params):
    x, y, ignore = case(seed=1)
    cos = torch.tanh(x / 3)  # cosines in (-1, 1)
    ours = AAMLoss(**params)(cos, y, ignore)
    assert float(ours) == pytest.approx(aam_by_formula(cos, y, ignore, **params), rel=1e-5)


def test_bce_equals_the_formula_and_ignore_drops_entries_from_sum_and_count():
    x, y, ignore = case(seed=2)
    p = torch.sigmoid(x)
    elementwise = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    keep = ~ignore
    assert float(BCELoss()(x, y, ignore)) == pytest.approx(float(elementwise[keep].mean()), rel=1e-6)
    assert float(BCELoss("sum")(x, y, ignore)) == pytest.approx(float(elementwise[keep].sum()), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["asl", "aam", "bce"])
def test_gradients_are_finite_under_autocast(name, dtype):
    layer = torch.nn.Linear(16, 20)
    torch.manual_seed(0)
    features = torch.randn(8, 16) * 40  # large logits: saturated sigmoids are where fp16 logs break
    targets = (torch.rand(8, 20) < 0.2).float()
    loss_fn = create_loss(name)
    with torch.autocast("cpu", dtype=dtype):
        out = layer(features)
        if name == "aam":
            out = (torch.nn.functional.normalize(out.float(), dim=1) * 0.999).to(dtype)
        assert out.dtype == dtype
        loss = loss_fn(out, targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


def test_unknown_loss_and_bad_shapes_are_clear():
    with pytest.raises(ValueError, match="loss must be one of"):
        create_loss("focal")
    with pytest.raises(ValueError, match="same shape"):
        BCELoss()(torch.zeros(2, 3), torch.zeros(2, 4))


# ------------------------------------------------------------------------------------------ SUMix

def test_sumix_learned_ratio_and_loss_by_hand():
    rng = np.random.default_rng(0)
    plan = CutMix(append=True, mix_ratio=0.5).plan(4, 32, rng)  # 4 regular + 2 mixed
    targets = mix_targets(torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.float32), plan)
    logits = torch.tensor(rng.normal(size=(6, 3)) * 2, dtype=torch.float32, requires_grad=True)
    sumix = SUMix(gamma=0.5)
    loss = sumix(logits, targets, plan)
    # by hand, in float64 numpy
    p = 1 / (1 + np.exp(-logits.detach().double().numpy()))
    y = targets.double().numpy()
    total_bce, total_gap = 0.0, 0.0
    ratios = []
    for n in (4, 5):
        a, b = int(plan.cells[n, 0]), int(plan.partner[n])
        lam = float(plan.lam[n])
        d_a, d_b = np.abs(p[n] - p[a]).mean(), np.abs(p[n] - p[b]).mean()
        r = (d_b + 1e-6 * lam) / (d_a + d_b + 1e-6)
        ratios.append(r)
        soft = r * y[a] + (1 - r) * y[b]
        total_bce += -(soft * np.log(p[n]) + (1 - soft) * np.log(1 - p[n])).sum()
        total_gap += np.abs(p[n] - (r * p[a] + (1 - r) * p[b])).sum()
    expected = total_bce / 6 + 0.5 * total_gap / 6
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(sumix.last_ratio.numpy(), ratios, rtol=1e-5)
    loss.backward()  # the sources are detached: only mixed rows get gradient
    assert logits.grad[4:].abs().sum() > 0 and logits.grad[:4].abs().sum() == 0


def test_sumix_ratio_falls_back_to_lam_when_sources_look_alike():
    plan = MixUp(append=True, mix_ratio=0.5).plan(4, 16, np.random.default_rng(1))
    logits = torch.zeros(6, 5)
    sumix = SUMix()
    sumix(logits, torch.zeros(6, 5), plan)
    np.testing.assert_allclose(sumix.last_ratio.numpy(), plan.lam[4:].numpy(), rtol=1e-6)


def test_sumix_needs_the_appended_layout():
    plan = CutMix().plan(4, 16, np.random.default_rng(0))  # in place: sources are not in the batch
    with pytest.raises(ValueError, match="append=True"):
        SUMix()(torch.zeros(4, 3), torch.zeros(4, 3), plan)
    identity = SpliceMix().plan(8, 32, np.random.default_rng(0))  # no mask mix: nothing to do, zero loss
    assert float(SUMix()(torch.zeros(10, 3), torch.zeros(10, 3), identity)) == 0.0

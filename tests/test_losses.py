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


def aam_published(cos, y, s, m, k, gamma_pos, gamma_neg, margin=0.05):
    """deep-object-reid's AMBinaryLoss, written out in float64 torch: per-class sum, mean over rows."""
    log_pos = torch.nn.functional.logsigmoid(s * (cos - m))
    log_neg = torch.nn.functional.logsigmoid(-s * (cos + m))
    loss = (k / s) * y * log_pos + ((1 - k) / s) * (1 - y) * log_neg
    if gamma_pos > 0 or gamma_neg > 0:
        xs_pos, xs_neg = torch.sigmoid(s * (cos - m)), torch.sigmoid(-s * (cos + m))
        xs_neg = (xs_neg + margin).clamp(max=1)
        pt = xs_neg * y + xs_pos * (1 - y)
        loss = loss * torch.pow(pt, gamma_pos * y + gamma_neg * (1 - y))
    return -loss.sum() / cos.shape[0]


@pytest.mark.parametrize("params", [dict(s=30, m=0.35, k=0.8, gamma_pos=0, gamma_neg=0),
                                    dict(s=23, m=0.0, k=0.7, gamma_pos=0, gamma_neg=0),
                                    dict(s=8, m=0.35, k=0.5, gamma_pos=1, gamma_neg=2)])
def test_aam_equals_the_published_loss_in_value_and_gradient(params):
    x, y, _ = case(seed=1)
    cos = torch.tanh(x / 3).requires_grad_()  # cosines in (-1, 1)
    ours = AAMLoss(**params)(cos, y)
    (grad,) = torch.autograd.grad(ours, cos)
    reference_cos = cos.detach().clone().requires_grad_()
    reference = aam_published(reference_cos, y, **params)
    reference.backward()
    assert float(ours.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    torch.testing.assert_close(grad, reference_cos.grad, rtol=1e-5, atol=1e-7)  # ours computes in float32


def test_aam_defaults_are_the_published_class_defaults_and_hard_errors_keep_their_gradient():
    loss = AAMLoss()
    assert (loss.s, loss.m, loss.k, loss.gamma_pos, loss.gamma_neg, loss.margin) == (30, 0.35, 0.8, 0, 0, 0.05)
    cos = torch.tensor([[-1.0, 1.0]], requires_grad=True)  # a positive at -1, a negative at +1: the worst
    AAMLoss()(cos, torch.tensor([[1.0, 0.0]])).backward()
    # unclamped logs: the hardest errors keep the full gradient, k and 1 - k (a clamp at log eps zeroes it)
    torch.testing.assert_close(cos.grad, torch.tensor([[-0.8, 0.2]]), atol=1e-4, rtol=0)


def asl_published(x, y, gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8):
    """The published ASL with disable_torch_grad_focal_loss=True, in float64 torch: weights without gradient."""
    xs_pos = torch.sigmoid(x)
    xs_neg = (1 - xs_pos + clip).clamp(max=1)
    loss = y * torch.log(xs_pos.clamp(min=eps)) + (1 - y) * torch.log(xs_neg.clamp(min=eps))
    with torch.no_grad():
        pt = xs_pos * y + xs_neg * (1 - y)
        weight = torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
    return -(loss * weight).sum()


def test_asl_gradient_is_the_published_training_scripts_with_the_focusing_weight_detached():
    x, y, _ = case(seed=4)
    x = x.requires_grad_()
    (ours,) = torch.autograd.grad(AsymmetricLoss()(x, y), x)
    reference_x = x.detach().clone().requires_grad_()
    asl_published(reference_x, y).backward()
    torch.testing.assert_close(ours, reference_x.grad, rtol=1e-5, atol=1e-7)  # ours computes in float32
    (through,) = torch.autograd.grad(AsymmetricLoss(detach_focus=False)(x, y), x)
    negatives = (y == 0) & (torch.sigmoid(x) > 0.1)
    assert (through[negatives].abs() > ours[negatives].abs()).all()  # the literal reading pushes harder


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

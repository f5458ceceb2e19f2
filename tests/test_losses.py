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
    """deep-object-reid's final AMBinaryLoss (torchreid/losses/asl.py, 2022-08-03), written out in float64:
    log of sigmoid, the negative probability shifted (and its log taken) when focusing, a plain sum."""
    xs_pos = torch.sigmoid(s * (cos - m))
    xs_neg = torch.sigmoid(-s * (cos + m))
    focusing = gamma_neg > 0 or gamma_pos > 0
    if focusing and margin > 0:
        xs_neg = (xs_neg + margin).clamp(max=1)
    loss = (k / s) * y * torch.log(xs_pos) + ((1 - k) / s) * (1 - y) * torch.log(xs_neg)
    if focusing:
        pt = xs_neg * y + xs_pos * (1 - y)
        loss = loss * torch.pow(pt, gamma_pos * y + gamma_neg * (1 - y))
    return -loss.sum()


@pytest.mark.parametrize("params", [dict(s=30, m=0.35, k=0.8, gamma_pos=0, gamma_neg=0),
                                    dict(s=23, m=0.0, k=0.7, gamma_pos=0, gamma_neg=0),
                                    dict(s=8, m=0.35, k=0.5, gamma_pos=1, gamma_neg=2),
                                    dict(s=23, m=0.0, k=0.7, gamma_pos=0, gamma_neg=4),
                                    dict(s=30, m=0.35, k=0.8, gamma_pos=0, gamma_neg=4, margin=0.0)])
def test_aam_equals_the_published_loss_in_value_and_gradient(params):
    x, y, _ = case(seed=1)
    cos = torch.tanh(x / 3).requires_grad_()  # cosines in (-1, 1)
    ours = AAMLoss(**params)(cos, y)
    (grad,) = torch.autograd.grad(ours, cos)
    reference_cos = cos.detach().clone().requires_grad_()
    reference = aam_published(reference_cos, y, **params)
    reference.backward()
    assert float(ours.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    torch.testing.assert_close(grad, reference_cos.grad, rtol=1e-5, atol=1e-6)  # ours computes in float32


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

def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _l2(x):
    return x / np.sqrt((x ** 2).sum(1, keepdims=True))


def _bce_sum_over_rows(z, y):
    """BCE with logits, summed over classes, averaged over rows (the published CE with avg_factor = N)."""
    return float((np.logaddexp(0, z) - y * z).sum() / len(z))


def sumix_published(logits, unc, y, plan):
    """JinXins/SUMix IN_loss (paper Eq. 4-6) in float64 numpy, with the multi-hot changes the class documents."""
    mixed = [n for n in range(plan.num_outputs) if int(plan.mask_mode[n]) != 0]
    a = np.array([int(plan.cells[n, 0]) for n in mixed])
    b = np.array([int(plan.partner[n]) for n in mixed])
    lam = plan.lam.numpy()[mixed].astype(np.float64)
    count = len(mixed)
    sem_one, sem_mix = _softmax(logits[a]), _softmax(logits[mixed])
    sem_one_ = _softmax(logits[b])  # semantic_one[rand_index], taken before the zeroing
    for i in range(count):
        sem_one[i, y[b[i]] > 0] = 0  # semantic_one[i, y_b[i]] = 0
        sem_one_[i, y[a[i]] > 0] = 0
    alpha, alpha_ = _l2(_softmax(sem_mix - sem_one)) * count, _l2(_softmax(sem_mix - sem_one_)) * count
    beta, beta_ = unc[a] + unc[mixed], unc[b] + unc[mixed]
    in_a, in_b = np.exp(-alpha), np.exp(-alpha_)
    in_a_f, in_b_f = np.exp(-(beta + alpha)), np.exp(-(beta_ + alpha_))
    lam_a, lam_b = np.ones(count), np.ones(count)
    for i in range(count):
        pos_a, pos_b = y[a[i]] > 0, y[b[i]] > 0
        lam_a[i] = lam[i] * (in_a[i, pos_a].mean() if pos_a.any() else in_a[i].mean())
        lam_b[i] = (1 - lam[i]) * (in_b[i, pos_b].mean() if pos_b.any() else in_b[i].mean())
    lam_a = lam_a / (lam_a + lam_b)
    lam_b = 1 - lam_a
    ce_a, ce_b = _bce_sum_over_rows(logits[mixed], y[a]), _bce_sum_over_rows(logits[mixed], y[b])
    reg = np.mean(_bce_sum_over_rows(in_a_f, y[a]) * lam + _bce_sum_over_rows(in_b_f, y[b]) * (1 - lam))
    return np.mean(ce_a * lam_a + ce_b * lam_b) + 0.1 * reg, lam_a


@pytest.mark.parametrize("mixer", [CutMix(append=True, mix_ratio=0.5), MixUp(append=True, mix_ratio=0.5)])
def test_sumix_ratio_and_loss_equal_the_published_equations_on_fixed_logits(mixer):
    rng = np.random.default_rng(0)
    plan = mixer.plan(6, 32, rng)  # 6 regular + 3 mixed
    labels = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]],
                          dtype=torch.float32)
    targets = mix_targets(labels, plan)
    logits = torch.tensor(rng.normal(size=(plan.num_outputs, 4)) * 2, dtype=torch.float64)
    unc = torch.tensor(_l2(_softmax(rng.normal(size=(plan.num_outputs, 4)))), dtype=torch.float64)
    sumix = SUMix()
    loss = sumix(logits, targets, plan, unc)
    y = np.zeros((plan.num_outputs, 4))
    y[:6] = labels.numpy()
    expected, ratios = sumix_published(logits.numpy(), unc.numpy(), y, plan)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(sumix.last_ratio.numpy(), ratios, rtol=1e-5)


def test_sumix_trains_the_mixed_rows_and_the_uncertainty_layer_not_the_sources_semantics():
    rng = np.random.default_rng(3)
    plan = CutMix(append=True, mix_ratio=0.5).plan(4, 16, rng)
    targets = mix_targets(torch.eye(4)[:, :3], plan)
    logits = torch.tensor(rng.normal(size=(6, 3)), dtype=torch.float32, requires_grad=True)
    unc = torch.rand(6, 3, requires_grad=True)
    SUMix()(logits, targets, plan, unc).backward()
    assert logits.grad[4:].abs().sum() > 0 and logits.grad[:4].abs().sum() == 0  # semantics are detached
    assert unc.grad.abs().sum() > 0  # the regularizer trains the uncertainty layer


def test_sumix_needs_the_appended_layout():
    plan = CutMix().plan(4, 16, np.random.default_rng(0))  # in place: sources are not in the batch
    with pytest.raises(ValueError, match="append=True"):
        SUMix()(torch.zeros(4, 3), torch.zeros(4, 3), plan, torch.zeros(4, 3))
    identity = SpliceMix().plan(8, 32, np.random.default_rng(0))  # no mask mix: nothing to do, zero loss
    assert float(SUMix()(torch.zeros(10, 3), torch.zeros(10, 3), identity, torch.zeros(10, 3))) == 0.0

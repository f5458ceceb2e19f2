"""Losses of the multi-label recipes: BCE, ASL, AAM, the SpliceMix-CL consistency and SUMix.

All take logits (or cosines, for AAM) of shape (N, C) and targets in [0, 1] (mixed batches give soft
targets under the "area" rule), compute in float32 whatever the autocast dtype, and honour an
optional boolean ``ignore`` mask (VOC's "difficult" labels): ignored entries add nothing to the
loss and, for mean reductions, nothing to the count.

The asymmetric losses are written per term, ``y * L+ + (1 - y) * L-``, so a soft target weighs
the two terms linearly; for {0, 1} targets this is exactly the published form.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from mlic_pipe.mix.cells import CELL_FORMS, DROPPED_LOGIT, splice_cell_logits
from mlic_pipe.mix.plan import MASK_NONE, MixPlan
from mlic_pipe.registry import Registry

__all__ = ["AAMLoss", "AsymmetricLoss", "BCELoss", "LOSSES", "SUMix", "SpliceMixCL", "create_loss"]

REDUCTIONS = ("sum", "mean", "batch", "none")  # batch: sum over classes, mean over rows


def _reduce(loss: torch.Tensor, ignore: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if ignore is not None:
        if ignore.shape != loss.shape:
            raise ValueError(f"ignore must have the logits' shape {tuple(loss.shape)}, got {tuple(ignore.shape)}")
        loss = loss.masked_fill(ignore.to(device=loss.device, dtype=torch.bool), 0.0)
    if reduction == "sum":
        return loss.sum()
    if reduction == "batch":
        return loss.sum() / max(loss.shape[0], 1)
    if reduction == "mean":
        count = loss.numel() if ignore is None else int((~ignore.bool()).sum())
        return loss.sum() / max(count, 1)
    return loss


def _check(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same shape")
    return logits.float(), targets.to(device=logits.device, dtype=torch.float32)


class BCELoss(nn.Module):
    """Binary cross-entropy with logits; `reduction="mean"` averages over the counted entries."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits, targets, ignore=None):
        logits, targets = _check(logits, targets)
        return _reduce(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), ignore, self.reduction)


class AsymmetricLoss(nn.Module):
    """ASL (Ridnik et al., ICCV 2021): focusing that discards easy negatives, plus probability shifting.

    With p = sigmoid(x) and the shifted negative probability p_m = max(p - clip, 0):
    ``L+ = (1 - p)^gamma_pos * log(p)`` and ``L- = p_m^gamma_neg * log(1 - p_m)``; the loss is
    ``-sum(y L+ + (1 - y) L-)``. Logs are clamped at `eps`, so fp16 logits are safe. Defaults are the
    published training scripts' (gamma_neg 4, gamma_pos 0, clip 0.05); the published class's own
    default for gamma_pos is 1, which no published script uses.

    Args:
        detach_focus: compute the focusing weights without gradient (default), as both published
            training scripts (ASL's and ML-Decoder's ``train.py``) do with
            ``disable_torch_grad_focal_loss=True``; False differentiates through them too (the
            paper's equation read literally: about 3x larger gradients on negatives).
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8,
                 reduction: str = "sum", detach_focus: bool = True):
        super().__init__()
        if clip < 0 or clip >= 1:
            raise ValueError(f"clip must be in [0, 1), got {clip}")
        self.gamma_neg, self.gamma_pos, self.clip, self.eps, self.reduction = gamma_neg, gamma_pos, clip, eps, reduction
        self.detach_focus = detach_focus

    def forward(self, logits, targets, ignore=None):
        logits, targets = _check(logits, targets)
        prob = torch.sigmoid(logits)
        prob_neg = (1 - prob + self.clip).clamp(max=1.0)  # 1 - p_m
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.detach_focus):
            focus_pos = (1 - prob).pow(self.gamma_pos)
            focus_neg = (1 - prob_neg).pow(self.gamma_neg)
        positive = torch.log(prob.clamp(min=self.eps)) * focus_pos
        negative = torch.log(prob_neg.clamp(min=self.eps)) * focus_neg
        loss = -(targets * positive + (1 - targets) * negative)
        return _reduce(loss, ignore, self.reduction)


class AAMLoss(nn.Module):
    """Additive angular margin loss for multi-label cosine logits: deep-object-reid's ``AMBinaryLoss``.

    The final published form (torchreid/losses/asl.py at its last change, 2022-08-03, on the
    default and multilabel branches; an early 2022 revision averaged over rows and took the log of
    the unshifted ``p-``, and no published config needs it, so it is not kept). Input is the cosine
    between features and class weights (a head built with ``cosine=True``), in [-1, 1]. With
    ``p+ = sigmoid(s (cos - m))`` and ``p- = sigmoid(-s (cos + m))``:
    ``loss = -SUM[(k / s) y log p+ + ((1 - k) / s) (1 - y) log p-]`` over rows and classes, not
    divided by the batch size (``reduction="sum"``; the recipe's lr 0.007 is the published one, tuned
    for this sum). When a gamma > 0, ``p-`` is first shifted by the probability margin,
    ``p- = min(p- + margin, 1)`` (so its log is taken of the shifted value), and each term is weighted
    by ``pt^gamma`` (gradient flowing through it, as published), ``pt = p-`` for positives
    (gamma_pos) and ``pt = p+`` for negatives (gamma_neg). ``log p+`` (and ``log p-`` without a
    shift) come from `logsigmoid`, the same values as the published ``log(sigmoid)`` without its
    underflow to -inf, in float32, so the hardest errors keep their gradient under fp16/bf16 autocast.
    Defaults are the class's published defaults; the published configs live in the recipes.
    """

    def __init__(self, s: float = 30.0, m: float = 0.35, k: float = 0.8, gamma_pos: float = 0.0,
                 gamma_neg: float = 0.0, margin: float = 0.05, reduction: str = "sum"):
        super().__init__()
        if not 0 < k < 1:
            raise ValueError(f"k balances positives (k) and negatives (1 - k): it must be in (0, 1), got {k}")
        self.s, self.m, self.k, self.gamma_pos, self.gamma_neg = s, m, k, gamma_pos, gamma_neg
        self.margin, self.reduction = margin, reduction

    def forward(self, cosines, targets, ignore=None):
        cosines, targets = _check(cosines, targets)
        pos_logit = self.s * (cosines - self.m)
        neg_logit = -self.s * (cosines + self.m)
        focusing = self.gamma_pos > 0 or self.gamma_neg > 0
        if focusing and self.margin > 0:  # the published probability shift, whose log is then taken
            p_neg = (torch.sigmoid(neg_logit) + self.margin).clamp(max=1.0)
            log_neg = torch.log(p_neg)
        else:
            p_neg, log_neg = torch.sigmoid(neg_logit), F.logsigmoid(neg_logit)
        loss = (self.k / self.s) * targets * F.logsigmoid(pos_logit) + ((1 - self.k) / self.s) * (1 - targets) * log_neg
        if focusing:
            pt = targets * p_neg + (1 - targets) * torch.sigmoid(pos_logit)
            loss = loss * pt.pow(self.gamma_pos * targets + self.gamma_neg * (1 - targets))
        return _reduce(-loss, ignore, self.reduction)


# ------------------------------------------------------------------------------------ SpliceMix-CL

class SpliceMixCL(nn.Module):
    """SpliceMix's consistency loss: each cell of a spliced image should predict what its source did.

    ``form="published"`` (the default; zuiran/SpliceMix, models/SpliceMix_CL.py): the cells come
    from an even split of the resized feature map (`splice_cell_logits`); a dropped cell is set to
    `DROPPED_LOGIT` on both sides, so its terms are 0 but it counts in the mean; the loss is
    ``BCE(cell logits, sigmoid(source logits))`` averaged over all cells x classes, the teacher
    detached (``detach_teacher=False`` is the published VOC 2007 variant). Beside a mean base loss
    a CL entry then weighs N_out / K_all times a base entry; ``reduction="sum"`` (beside a summed
    base loss such as ASL) multiplies the mean by N_out x C, which keeps that published balance.

    ``form="exact"``: the exact partition, kept cells only, and the Bernoulli KL (the BCE minus the
    teacher's entropy: the same gradient, zero when cell and source agree), averaged (or summed)
    over the kept cells x classes.

    Call it as ``loss(head, features, plan, logits)`` with the model's head and the (N_out, D, h, w)
    feature maps, or as ``loss.from_cells(cell_logits, sources, logits)`` when the model already ran
    the cells (``MLICModel.forward(images, splice_plan=plan, cell_form=loss.form)`` does, which keeps
    DDP's one-forward rule).
    """

    def __init__(self, weight: float = 1.0, reduction: str = "mean", form: str = "published",
                 detach_teacher: bool = True):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if form not in CELL_FORMS:
            raise ValueError(f"form must be one of {CELL_FORMS}, got {form!r}")
        self.weight, self.reduction, self.form, self.detach_teacher = weight, reduction, form, detach_teacher

    def from_cells(self, cell_logits: torch.Tensor, sources: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if len(sources) == 0:
            return logits.sum() * 0.0  # no spliced cells in this batch; keeps the graph connected
        sources = sources.to(logits.device, non_blocking=True)
        teacher_logits = logits[sources.clamp_min(0)].float()
        if self.detach_teacher:
            teacher_logits = teacher_logits.detach()
        if self.form == "exact":
            teacher = torch.sigmoid(teacher_logits)
            cross = F.binary_cross_entropy_with_logits(cell_logits.float(), teacher, reduction="none")
            entropy = F.binary_cross_entropy_with_logits(teacher_logits.detach(), teacher.detach(), reduction="none")
            divergence = cross - entropy
            return self.weight * (divergence.sum() if self.reduction == "sum" else divergence.mean())
        dropped = (sources < 0)[:, None]
        teacher = torch.sigmoid(teacher_logits.masked_fill(dropped, DROPPED_LOGIT))
        cells = cell_logits.float().masked_fill(dropped, DROPPED_LOGIT)
        loss = F.binary_cross_entropy_with_logits(cells, teacher)
        if self.reduction == "sum":
            loss = loss * logits.numel()  # N_out x C: a CL entry weighs N_out / K_all summed base entries
        return self.weight * loss

    def forward(self, head: nn.Module, features: torch.Tensor, plan: MixPlan, logits: torch.Tensor) -> torch.Tensor:
        cell_logits, sources = splice_cell_logits(head, features, plan, form=self.form)
        return self.from_cells(cell_logits, sources, logits)


# --------------------------------------------------------------------------------------------- SUMix

def _l2_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.pow(2).sum(1).sqrt()[:, None]


class SUMix(nn.Module):
    """SUMix (Qin et al., ECCV 2024), ported from JinXins/SUMix ``ClsUncertainMixupHead.IN_loss``.

    For each mask-mixed output m with primary a, partner b and pixel fraction lam (CutMix / FMix /
    MixUp with ``append=True``: both sources are regular outputs of the same batch, so no second
    forward pass is needed), with N mixed outputs and softmaxes taken over classes:

    - ``s_a = softmax(logits_a)`` with the classes of b set to 0, ``s_b`` likewise (no gradient);
      ``alpha = N * l2norm(softmax(softmax(logits_m) - s_a))``, ``alpha' `` likewise with s_b;
    - ``beta = u_a + u_m``, ``beta' = u_b + u_m`` from the uncertainty layer
      (`mlic_pipe.models.uncertainty_vectors`, which `MLICModel` returns with ``with_uncertainty=True``);
    - ``lam_a = lam * w_a``, ``lam_b = (1 - lam) * w_b`` normalized to sum to 1, where w_a is
      ``exp(-alpha)`` at a's label;
    - ``loss = mean(L(logits_m, y_a) lam_a + L(logits_m, y_b) lam_b)
      + gamma * mean(L(exp(-(beta + alpha)), y_a) lam + L(exp(-(beta' + alpha')), y_b) (1 - lam))``.

    Changes forced by multi-hot targets, and the crash fixed (each also in the tests):

    - L is binary cross-entropy with logits summed over classes and averaged over the N outputs
      (the published cross-entropy with ``avg_factor=N``);
    - "a's label" is a's positive classes: w_a is the mean of ``exp(-alpha)`` over them (over all
      classes when a has none), and "the classes of b" are b's positive classes;
    - the published code returns an undefined name (``info``) and puts the weights on 'cuda'
      whatever the device; here the loss is returned and everything stays on the logits' device.

    Returns the loss of the mask-mixed outputs only; the regular outputs take the base loss.

    ``gamma`` defaults to 0.1, the published class's default; every published config sets it
    explicitly, to 0.5 (eight configs) or 1.0 (two): pass the one of the recipe you reproduce.
    """

    def __init__(self, gamma: float = 0.1, loss: nn.Module | None = None):
        super().__init__()
        self.gamma = gamma
        self.loss = loss if loss is not None else BCELoss("batch")
        self.last_ratio: torch.Tensor | None = None  # lam_a of the last call, for logging

    def _rows(self, plan: MixPlan, device) -> tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The mask-mixed outputs (a slice), their primary and partner rows and lam on `device`, or None.

        The layout is checked on the host plan; the rows are views of the plan's one upload, so
        nothing waits for the device.
        """
        regular, count = plan.num_regular, plan.num_outputs
        modes, cells, partner = plan.mask_mode.cpu(), plan.cells[:, 0].cpu(), plan.partner.cpu()
        if not bool((modes != MASK_NONE).any()):
            return None
        appended = (regular > 0 and bool((modes[:regular] == MASK_NONE).all())
                    and bool((modes[regular:] != MASK_NONE).all()) and bool((cells[regular:] < regular).all())
                    and bool((partner[regular:] < regular).all()))
        if not appended:
            raise ValueError("SUMix needs the appended layout, where both sources of every mixed image are regular "
                             "outputs of the batch: use CutMix/FMix/MixUp(append=True)")
        on_device = plan.on_device(device)
        mixed = slice(regular, count)
        return (mixed, on_device.cells[mixed, 0].long(), on_device.partner[mixed].long(),
                on_device.lam[mixed].float())

    @staticmethod
    def _at_labels(weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        positives = labels > 0
        count = positives.sum(1)
        at_labels = (weights * positives).sum(1) / count.clamp_min(1)
        return torch.where(count > 0, at_labels, weights.mean(1))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, plan: MixPlan,
                uncertainty: torch.Tensor) -> torch.Tensor:
        rows = self._rows(plan, logits.device)
        if rows is None:
            return logits.sum() * 0.0
        (mixed, a, b, lam), count = rows, plan.num_mixed
        logits, targets = logits.float(), targets.to(device=logits.device, dtype=torch.float32)
        y_a, y_b = targets[a], targets[b]
        with torch.no_grad():
            semantic_mix = torch.softmax(logits[mixed], -1)
            semantic_a = torch.softmax(logits[a], -1).masked_fill(y_b > 0, 0.0)
            semantic_b = torch.softmax(logits[b], -1).masked_fill(y_a > 0, 0.0)
        alpha = _l2_rows(torch.softmax(semantic_mix - semantic_a, -1)) * count
        alpha_b = _l2_rows(torch.softmax(semantic_mix - semantic_b, -1)) * count
        unc = uncertainty.float()
        in_a, in_b = torch.exp(-(unc[a] + unc[mixed] + alpha)), torch.exp(-(unc[b] + unc[mixed] + alpha_b))
        ratio_a = lam * self._at_labels(torch.exp(-alpha), y_a)
        ratio_b = (1 - lam) * self._at_labels(torch.exp(-alpha_b), y_b)
        ratio_a = ratio_a / (ratio_a + ratio_b)
        self.last_ratio = ratio_a.detach()
        mix_loss = (self.loss(logits[mixed], y_a) * ratio_a + self.loss(logits[mixed], y_b) * (1 - ratio_a)).mean()
        regularizer = (self.loss(in_a, y_a) * lam + self.loss(in_b, y_b) * (1 - lam)).mean()
        return mix_loss + self.gamma * regularizer


LOSSES: Registry[nn.Module] = Registry("loss")
LOSSES.register("asl", AsymmetricLoss, "ASL: asymmetric focusing and probability shifting (sum)")
LOSSES.register("aam", AAMLoss, "AAM: additive angular margin on cosine logits (needs a cosine head)")
LOSSES.register("bce", BCELoss, "binary cross-entropy (mean)")


def create_loss(name: str, **kwargs) -> nn.Module:
    """A base loss by its name in `LOSSES`."""
    return LOSSES.create(name, **kwargs)

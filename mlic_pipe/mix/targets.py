"""`mix_targets`: the labels of a mixed batch, derived from the same plan as its pixels."""
from __future__ import annotations

from dataclasses import replace

import torch

from mlic_pipe.mix.plan import MixPlan

__all__ = ["mix_targets", "TARGET_RULES"]

TARGET_RULES = ("union", "area")


def mix_targets(targets: torch.Tensor, plan: MixPlan, rule: str = "union") -> torch.Tensor:
    """(N_out, C) float32 labels of the outputs of `plan`, from the (N_in, C) labels of its inputs.

    A spliced image's label is the union (max) of its kept cells' labels (a dropped cell's labels
    are removed with its pixels). A mask mix then combines that with its partner's labels:
    ``rule="union"`` takes the max (both objects are visible), ``rule="area"`` the
    lambda-weighted sum ``lam * y_a + (1 - lam) * y_b`` with lam the realized primary fraction.
    Regular rows are their input's labels unchanged.
    """
    if rule not in TARGET_RULES:
        raise ValueError(f"rule must be one of {TARGET_RULES}, got {rule!r}")
    if targets.ndim != 2:
        raise ValueError(f"targets must be (N, C), got {tuple(targets.shape)}")
    plan = replace(plan, masks=None, indices=None).to(targets.device)  # the pixels' masks are not needed here
    labels = targets.float()
    cells = plan.cells.long()
    kept = (cells >= 0)[..., None]
    primary = torch.where(kept, labels[cells.clamp_min(0)], torch.zeros((), device=labels.device)).amax(1)
    partner = plan.partner.long()
    other = labels[partner.clamp_min(0)]
    if rule == "union":
        mixed = torch.maximum(primary, other)
    else:
        lam = plan.lam.float()[:, None]
        mixed = lam * primary + (1.0 - lam) * other
    return torch.where((partner >= 0)[:, None], mixed, primary)

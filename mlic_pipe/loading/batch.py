"""`Batch`: what MLICLoader yields, a drop-in for a DataLoader's ``(images, targets)``.

It *is* a tuple, ``(images, targets)`` (or ``(images, targets, plan)`` with ``return_plan=True``),
so ``for images, targets in loader`` keeps working, and it carries what multi-label training
needs besides: the plan, the dataset rows of its inputs, their ignore mask, and which inputs are
repeats this epoch (padding), which evaluation must count once.
"""
from __future__ import annotations

import torch

from mlic_pipe.mix import MixPlan

__all__ = ["Batch"]


class Batch(tuple):
    """``(images, targets)`` plus attributes.

    Attributes:
        images: (N_out, 3, S, S) rendered batch (a reused buffer: valid until two batches later).
        targets: (N_out, C) float targets, mixed with the plan.
        plan: the `MixPlan` the batch was rendered with (``plan.indices`` = `rows`).
        rows: (B,) int64 dataset rows of the B inputs, on the host.
        ignore: (B, C) bool "label unknown" mask of the inputs (VOC 'difficult'), or None.
        padded: (B,) bool, True for an input delivered a second time this epoch (padding for equal
            batches across ranks, or the top-up after a skipped file); count those once in metrics.
        index: the batch's position in its epoch.
    """

    images: torch.Tensor
    targets: torch.Tensor
    plan: MixPlan
    rows: torch.Tensor
    ignore: torch.Tensor | None
    padded: torch.Tensor
    index: int

    def __new__(cls, images: torch.Tensor, targets: torch.Tensor, plan: MixPlan, rows: torch.Tensor,
                ignore: torch.Tensor | None, padded: torch.Tensor, index: int, with_plan: bool = False):
        batch = super().__new__(cls, (images, targets, plan) if with_plan else (images, targets))
        batch.images, batch.targets, batch.plan = images, targets, plan
        batch.rows, batch.ignore, batch.padded, batch.index = rows, ignore, padded, index
        return batch

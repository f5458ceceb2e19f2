"""The training step's objective: the base loss, plus SpliceMix-CL or SUMix, from one forward's output."""
from __future__ import annotations

import torch

from mlic_pipe.losses import SUMix, SpliceMixCL, create_loss
from mlic_pipe.mix import MixPlan
from mlic_pipe.training.config import TrainConfig

__all__ = ["Objective"]


class Objective:
    """``loss(output, targets, plan)`` for the configured base loss and its optional additions.

    `output` is the logits, or ``(logits, cell_logits, cell_sources)`` when the model ran the
    spliced cells in its forward (SpliceMix-CL).
    """

    def __init__(self, config: TrainConfig):
        self.base = create_loss(config.loss, **config.loss_kwargs)
        reduction = getattr(self.base, "reduction", "mean")
        self.consistency = None if not config.splicemix_cl else SpliceMixCL(
            config.cl_weight, reduction=reduction, form=config.cl_form, detach_teacher=not config.cl_teacher_gradient)
        self.sumix = SUMix(config.sumix_gamma) if config.sumix else None
        self.cosine = config.loss == "aam"

    def wants_cells(self, plan: MixPlan) -> bool:
        """Whether the model should run the spliced cells through its head in this step's forward."""
        return self.consistency is not None and plan.num_mixed > 0

    def __call__(self, output, targets: torch.Tensor, plan: MixPlan, ignore: torch.Tensor | None = None) -> torch.Tensor:
        """The step's loss; `ignore` is the outputs' "label unknown" mask (`mix_ignore`), or None."""
        logits = output[0] if isinstance(output, tuple) else output
        if self.sumix is not None and plan.num_mixed > 0:
            regular = plan.num_regular
            known = None if ignore is None else ignore[:regular]
            loss = self.base(logits[:regular], targets[:regular], known) + \
                self.sumix(logits, targets, plan, uncertainty=output[1])
        else:
            loss = self.base(logits, targets, ignore)
        if self.consistency is not None and isinstance(output, tuple):
            loss = loss + self.consistency.from_cells(output[1], output[2], logits)
        return loss

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores for the metrics: sigmoid of the logits (of s * cosine, without the margin, for AAM)."""
        if self.cosine:
            return torch.sigmoid(self.base.s * logits.float())
        return torch.sigmoid(logits.float())

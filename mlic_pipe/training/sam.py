"""`SAM`: sharpness-aware minimization (Foret et al., ICLR 2021) around any base optimizer.

Each update takes two gradients: at the weights w (g1), and at the perturbed weights
``w + rho * g1 / ||g1||`` (the worst nearby point, to first order); the base optimizer then steps
from w with the second gradient. ``||g1||`` is the norm over all parameters together. Under DDP
both backward passes all-reduce as usual; under fp16 AMP the first gradient is unscaled by hand
(the scaler unscales the second) and a non-finite first gradient skips the perturbation.
"""
from __future__ import annotations

import torch

__all__ = ["SAM"]


class SAM(torch.optim.Optimizer):
    """Wraps `base` (built over the same parameter groups); call `perturb`, backward again, then `step`.

    Args:
        base: the optimizer that makes the update (SGD, AdamW, ...).
        rho: radius of the neighbourhood (0.05 in the paper).
    """

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05):
        if rho <= 0:
            raise ValueError(f"rho must be positive, got {rho}")
        self.base, self.rho = base, rho
        super().__init__(base.param_groups, dict(base.defaults, rho=rho))
        self.param_groups = base.param_groups  # one set of groups: schedules and the base see the same lr
        self._shift: dict[torch.Tensor, torch.Tensor] = {}

    @torch.no_grad()
    def perturb(self, grad_scale: float = 1.0) -> None:
        """Move to ``w + rho * g / ||g||`` using the current gradients (divided by `grad_scale`)."""
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])) / grad_scale
        if not torch.isfinite(norm) or norm == 0:
            return
        for p in params:
            shift = p.grad * (self.rho / (norm * grad_scale))
            p.add_(shift)
            self._shift[p] = shift

    @torch.no_grad()
    def step(self, closure=None):
        """Back to w, then the base optimizer's step with the gradient taken at the perturbed point."""
        for p, shift in self._shift.items():
            p.sub_(shift)
        self._shift.clear()
        return self.base.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"base": self.base.state_dict(), "rho": self.rho}

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state["base"])
        self.rho = state["rho"]

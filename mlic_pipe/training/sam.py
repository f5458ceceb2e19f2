"""`SAM`: sharpness-aware minimization (Foret et al., ICLR 2021) around any base optimizer.

Each update takes two gradients: at the weights w (g1), and at the perturbed weights
``w + rho * g1 / ||g1||`` (the worst nearby point, to first order); the base optimizer then steps
from w with the second gradient. ``||g1||`` is the norm over all parameters together. Under DDP
both backward passes all-reduce as usual.

Under fp16 AMP the gradients are scaled, but the shift ``rho * g / ||g||`` does not depend on the
scale, so the first gradient needs no unscaling; a non-finite first gradient (an overflow) gives no
shift. `restore` undoes the shift before `GradScaler.step`, which skips the base step when the second
gradient overflows: the weights must go back to w whether or not the step is taken. Nothing here
reads a value on the host (no `.item()`, no Python test of a tensor), so a step never waits for the GPU.
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
        self._origin: dict[torch.Tensor, torch.Tensor] = {}  # w, while the weights are perturbed

    @torch.no_grad()
    def perturb(self) -> None:
        """Move to ``w + rho * g / ||g||`` using the current gradients (scaled or not: the shift is the same).

        A zero or non-finite norm gives a zero shift, decided on the device.
        """
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        usable = torch.isfinite(norm) & (norm > 0)
        factor = torch.where(usable, self.rho / norm, torch.zeros_like(norm))
        for p in params:
            self._origin[p] = p.detach().clone()
            p.add_(torch.where(usable, p.grad * factor.to(p.grad.dtype), torch.zeros((), dtype=p.dtype,
                                                                                     device=p.device)))

    @torch.no_grad()
    def restore(self) -> None:
        """Back to w exactly (a no-op when not perturbed): call it before a step that may be skipped."""
        for p, origin in self._origin.items():
            p.copy_(origin)
        self._origin.clear()

    @torch.no_grad()
    def step(self, closure=None):
        """Back to w, then the base optimizer's step with the gradient taken at the perturbed point."""
        self.restore()
        return self.base.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"base": self.base.state_dict(), "rho": self.rho}

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state["base"])
        self.rho = state["rho"]

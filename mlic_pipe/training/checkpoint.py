"""Checkpoints: written atomically (a killed job never leaves half a ``last.pt``), read back to resume.

A checkpoint is always read onto the CPU: the modules, optimizers and schedules copy their state to
wherever their parameters live when they load it, and the random-number states must stay CPU byte
tensors (`torch.set_rng_state` refuses anything else, so mapping a checkpoint to the GPU broke every
resume there). The RNG state holds the CPU generator and, when CUDA is up, every GPU's generator, so a
resumed GPU run draws what the uninterrupted one would have.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from mlic_pipe.errors import ConfigError

__all__ = ["load_checkpoint", "restore_rng_state", "resume_path", "rng_state", "save_checkpoint"]


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` through a temporary file and an atomic rename."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def resume_path(resume: str | None, out_dir: Path) -> Path | None:
    """The checkpoint `resume` names ("auto": ``out_dir/last.pt``), or None; ConfigError if it is absent."""
    if not resume:
        return None
    path = out_dir / "last.pt" if resume == "auto" else Path(resume)
    if not path.is_file():
        raise ConfigError(f"{{resume}} {path}: no such checkpoint (runs write last.pt into {{out_dir}})")
    return path


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at `path`, every tensor on the CPU (see the module docstring for why)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    """The CPU generator's state and, when CUDA is initialized, each GPU's (saved in every checkpoint)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def restore_rng_state(state) -> None:
    """Restore what `rng_state` saved (or the bare CPU state older checkpoints hold)."""
    if state is None:
        return
    if isinstance(state, torch.Tensor):  # checkpoints written before the GPU states were saved
        state = {"cpu": state, "cuda": None}
    torch.set_rng_state(state["cpu"].cpu())
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])

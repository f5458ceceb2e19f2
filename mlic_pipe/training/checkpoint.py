"""Checkpoints: written atomically (a killed job never leaves half a ``last.pt``), read back to resume."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from mlic_pipe.errors import ConfigError

__all__ = ["load_checkpoint", "resume_path", "save_checkpoint"]


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


def load_checkpoint(path: Path, device: torch.device) -> dict:
    return torch.load(path, map_location=device, weights_only=False)

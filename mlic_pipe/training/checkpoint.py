"""Checkpoints: written atomically (a killed job never leaves half a ``last.pt``), read back to resume.

A checkpoint is always read onto the CPU: the modules, optimizers and schedules copy their state to
wherever their parameters live when they load it, and the random-number states must stay CPU byte
tensors (`torch.set_rng_state` refuses anything else, so mapping a checkpoint to the GPU broke every
resume there). The RNG state holds the CPU generator and, when CUDA is up, every GPU's generator, so a
resumed GPU run draws what the uninterrupted one would have.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from mlic_pipe.errors import ConfigError

__all__ = ["check_fits", "load_checkpoint", "restore_rng_state", "resume_path", "rng_state", "save_checkpoint", "write_log"]


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` through a temporary file and an atomic rename."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def write_log(path: Path, header: dict, history: list[dict], resumed: bool) -> None:
    """``log.jsonl`` as the run's header line and one line per finished epoch, replaced atomically.

    Written whole at the start of a run and of every resume, from the checkpoint's history: a job
    killed after appending an epoch's line but before saving ``last.pt`` would otherwise record that
    epoch twice (once before, once after the resume), and one killed mid-line would leave half a line.
    A resumed run keeps the header its log began with.
    """
    if resumed and path.is_file():
        with path.open(encoding="utf-8") as handle:
            try:
                first = json.loads(handle.readline())
                header = first if isinstance(first, dict) and "config" in first else header
            except json.JSONDecodeError:
                pass
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(record) + "\n" for record in [header, *history]), encoding="utf-8")
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
    """The checkpoint at `path`, every tensor on the CPU (see the module docstring for why).

    ConfigError naming {resume} if the file is not a checkpoint `train` wrote (any file can be named).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch.load raises whatever unpickling a foreign file raises
        raise ConfigError(f"{{resume}} {path} is not a checkpoint of `mlic-pipe train` ({type(error).__name__}: "
                          f"{str(error).splitlines()[0][:120] if str(error) else 'unreadable'})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "config", "epoch"} <= set(state):
        raise ConfigError(f"{{resume}} {path} is not a checkpoint of `mlic-pipe train` (it lacks the model, "
                          "optimizer, config or epoch)")
    return state


def check_fits(state: dict, config, classes: list[str], path: Path) -> None:
    """The checkpoint was saved by a run of the same model over the same classes as `config`'s."""
    saved = state["config"]
    for name in ("backbone", "head", "loss", "optimizer"):
        if saved.get(name) != getattr(config, name):
            raise ConfigError(f"{{resume}} {path} was saved with {{{name}:{saved.get(name)}}}, this run has "
                              f"{{{name}:{getattr(config, name)}}}: resume with the same settings, or start anew in "
                              "another {out_dir}")
    if state.get("classes") is not None and list(state["classes"]) != list(classes):
        raise ConfigError(f"{{resume}} {path} was saved over {len(state['classes'])} other classes than this "
                          f"dataset's {len(classes)}: resume with the dataset it was trained on")


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

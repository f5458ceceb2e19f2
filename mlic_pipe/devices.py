"""Which device a loader or a run uses, resolved once, and the CUDA calls made under it.

``"cuda"`` names no GPU: torch takes it as "the current one" wherever a tensor is made, while DALI
took it as GPU 0, and Triton launches on the current device whatever device its pointers are on.
On a machine with several GPUs that put decoding, rendering and the returned batch on different
cards. So a device is resolved to an explicit ``cuda:N`` once (`resolve_device`), DALI is given that
N (`dali_device_id`), and the loader runs each CUDA step under ``torch.cuda.device(N)``
(`device_scope`), which also makes the events it records belong to that card's current stream.
"""
from __future__ import annotations

import contextlib

import torch

from mlic_pipe.errors import ConfigError

__all__ = ["dali_device_id", "device_scope", "resolve_device"]


def resolve_device(device) -> torch.device:
    """`device` ("auto", "cpu", "cuda" or "cuda:N") as a torch.device with an explicit GPU index.

    "auto" and "cuda" are the current CUDA device (under torchrun or Lightning each process has set
    its own); "auto" is the CPU when there is no GPU.
    """
    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = "cuda"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{{device}} must be auto, cpu or cuda[:N], got {device!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{{device}} must be auto, cpu or cuda[:N], got {device}")
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"{{device:{device}}} was asked for, but no CUDA device is available: use {{device:cpu}} "
                          "or {device:auto}")
    if device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if device.index >= torch.cuda.device_count():
        raise ConfigError(f"{{device:{device}}}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                          f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return device


def dali_device_id(device: torch.device) -> int | None:
    """The `device_id` DALI's pipelines take: the GPU's index, or None for the CPU pipeline."""
    return None if device.type == "cpu" else device.index


def device_scope(device: torch.device):
    """``torch.cuda.device(device)`` for a GPU (launches, streams and events on that card), else nothing."""
    return torch.cuda.device(device.index) if device.type == "cuda" else contextlib.nullcontext()

"""Where this process stands in torch.distributed: the one place that asks.

torchrun/DDP is the distributed engine (nothing home-made); the loader, the metrics, the trainer
and the CLI only need to know whether a process group is up, this process's rank, and how many.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from mlic_pipe.errors import ConfigError

__all__ = ["all_gather_objects", "is_distributed", "is_main_process", "join_torchrun", "rank_and_world_size"]


def is_distributed() -> bool:
    """True inside an initialized process group."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world_size(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the given values, else the process group's, else (0, 1); validated."""
    if (rank is None or world_size is None) and is_distributed():
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    rank, world_size = (0 if rank is None else int(rank)), (1 if world_size is None else int(world_size))
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


def is_main_process() -> bool:
    """Rank 0, or not distributed: the process that logs, prints and writes files."""
    return rank_and_world_size()[0] == 0


def join_torchrun(device: str) -> tuple[bool, str]:
    """Join torchrun's process group when launched by torchrun; returns (distributed, device).

    Uses NCCL when the run is on CUDA, gloo otherwise. On CUDA each process takes the GPU of its
    LOCAL_RANK ("auto" or "cuda"); an explicit ``cuda:N`` is kept only when this machine runs one
    process (with several, it would put them all on one GPU: choose GPUs with CUDA_VISIBLE_DEVICES).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed(), device
    on_gpu = torch.cuda.is_available() and device != "cpu"
    if on_gpu:
        device = _local_gpu(device)
    if not is_distributed():
        dist.init_process_group("nccl" if on_gpu else "gloo")
    if on_gpu:
        torch.cuda.set_device(torch.device(device).index)
    return True, device


def _local_gpu(device: str) -> str:
    """The GPU of this torchrun process: ``cuda:LOCAL_RANK``, or an explicit ``cuda:N`` with one process here."""
    local, processes = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    index = torch.device("cuda" if device == "auto" else device).index
    if index is None or index == local:
        return f"cuda:{local}"
    if processes > 1:
        raise ConfigError(f"{{device:{device}}} under torchrun with {processes} processes on this machine puts them "
                          f"all on GPU {index}: use {{device:cuda}} (each process takes the GPU of its LOCAL_RANK), "
                          "and choose the GPUs with CUDA_VISIBLE_DEVICES")
    return f"cuda:{index}"


def all_gather_objects(value) -> list:
    """Every rank's `value`, in rank order (a collective under torch.distributed; [value] otherwise)."""
    if not is_distributed():
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered

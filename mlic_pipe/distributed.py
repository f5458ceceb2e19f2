"""Where this process stands in torch.distributed: the one place that asks.

torchrun/DDP is the distributed engine (nothing home-made); the loader, the metrics, the trainer
and the CLI only need to know whether a process group is up, this process's rank, and how many.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

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

    Uses NCCL when the run is on CUDA, gloo otherwise; on CUDA each process takes the GPU of its
    LOCAL_RANK.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed(), device
    if not is_distributed():
        dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")
    if torch.cuda.is_available() and device in ("auto", "cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return True, device


def all_gather_objects(value) -> list:
    """Every rank's `value`, in rank order (a collective under torch.distributed; [value] otherwise)."""
    if not is_distributed():
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered

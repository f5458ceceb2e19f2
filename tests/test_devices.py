"""Devices on machines with several GPUs, with the CUDA calls faked: "cuda" is the current GPU, everywhere.

Before, ``device="cuda"`` made DALI decode on GPU 0 while the buffers and targets went to the current
device, and ``--device cuda:0`` under torchrun put every rank on GPU 0.
"""
import contextlib

import pytest
import torch

from mlic_pipe import distributed
from mlic_pipe.devices import dali_device_id, device_scope, resolve_device
from mlic_pipe.errors import ConfigError


@pytest.fixture
def four_gpus(monkeypatch):
    """A machine with 4 GPUs whose current device is GPU 2; records set_device and device scopes."""
    calls = {"set_device": [], "scopes": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", calls["set_device"].append)

    @contextlib.contextmanager
    def scope(index):
        calls["scopes"].append(index)
        yield
    monkeypatch.setattr(torch.cuda, "device", scope)
    return calls


def test_cuda_and_auto_resolve_to_the_current_gpu_and_dali_gets_its_index(four_gpus):
    assert resolve_device("cuda") == resolve_device("auto") == torch.device("cuda", 2)
    assert resolve_device("cuda:3") == torch.device("cuda", 3)
    assert dali_device_id(resolve_device("cuda")) == 2  # not GPU 0
    assert dali_device_id(torch.device("cpu")) is None
    with pytest.raises(ValueError, match="4 CUDA device"):
        resolve_device("cuda:4")
    with pytest.raises(ValueError, match=r"device must be auto, cpu or cuda\[:N\], got mps"):
        resolve_device("mps")


def test_cuda_work_runs_under_the_loaders_gpu(four_gpus):
    with device_scope(torch.device("cuda", 3)):
        pass
    with device_scope(torch.device("cpu")):
        pass
    assert four_gpus["scopes"] == [3]


def test_without_a_gpu_cuda_is_refused_and_auto_is_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")


@pytest.mark.parametrize("device, local_rank, processes, expected", [
    ("auto", 1, 2, "cuda:1"), ("cuda", 3, 4, "cuda:3"), ("cuda:1", 1, 2, "cuda:1"),
    ("cuda:2", 0, 1, "cuda:2"),  # one process on this machine: an explicit GPU is kept
])
def test_torchrun_puts_each_process_on_the_gpu_of_its_local_rank(four_gpus, monkeypatch, device, local_rank,
                                                                  processes, expected):
    monkeypatch.setenv("WORLD_SIZE", str(max(processes, 2)))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    joined = []
    monkeypatch.setattr(distributed, "is_distributed", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", joined.append)
    assert distributed.join_torchrun(device) == (True, expected)
    assert joined == ["nccl"] and four_gpus["set_device"] == [int(expected[-1])]


def test_torchrun_refuses_one_explicit_gpu_for_several_processes(four_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "is_distributed", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: None)
    with pytest.raises(ConfigError, match="all on GPU 0.*CUDA_VISIBLE_DEVICES"):
        distributed.join_torchrun("cuda:0")

import os
import tempfile

from benchmarks import common

# Benchmarks build their data and caches in a scratch directory, never in the user's cache.
os.environ.setdefault("MLIC_PIPE_CACHE_DIR", tempfile.mkdtemp(prefix="mlic-pipe-bench-cache-"))

def pytest_addoption(parser):
    group = parser.getgroup("mlic-pipe benchmarks")
    group.addoption("--quick", action="store_const", dest="mlic_preset", const="quick",
                    help="the default: training shapes, few rounds (CPU suite < 10 min)")
    group.addoption("--full", action="store_const", dest="mlic_preset", const="full",
                    help="more batch/image sizes, bf16, larger models, more rounds")
    group.addoption("--tiny", action="store_const", dest="mlic_preset", const="tiny",
                    help="smallest shapes; with --benchmark-disable, checks every benchmark runs (CI)")

def pytest_configure(config):
    common.select(config.getoption("mlic_preset", default=None) or "quick")

def pytest_report_header(config):
    return f"mlic-pipe benchmark preset: {common.preset_name()}"


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what the numbers depend on: software versions, the GPU, the preset and the exact command."""
    import platform
    import sys
    from importlib import metadata

    import torch

    versions = {}
    for package in ("mlic-pipe", "torch", "torchvision", "triton", "timm", "nvidia-dali-cuda130", "numpy", "pillow",
                    "kornia"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    machine_info["software"] = versions
    machine_info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["preset"] = common.preset_name()
    machine_info["command"] = " ".join(["pytest", *sys.argv[1:]])
    machine_info["platform"] = platform.platform()

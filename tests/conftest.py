import os
import tempfile

import pytest

import torch

# Keep the demo data and annotation caches of a test run out of the user's cache directory.
os.environ.setdefault("MLIC_PIPE_CACHE_DIR", tempfile.mkdtemp(prefix="mlic-pipe-test-cache-"))
# Without a GPU the Triton kernels run in Triton's interpreter, on CPU tensors. Triton reads this
# when a kernel is defined, so it must be set before mlic_pipe.kernels is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# On a GPU the tests launch dozens of kernel variants once each: one fixed block config instead of autotuning
# every one (minutes of compiles and timings). The benchmarks and users keep autotuning.
os.environ.setdefault("MLIC_PIPE_RENDER_CONFIG", "8x64w4")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run `pytest -m gpu` on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_root():
    from mlic_pipe.datasets.demo import ensure_demo

    return ensure_demo(progress=False)


@pytest.fixture(scope="session")
def demo(demo_root):
    """The demo dataset's training split (a module may define its own `demo` instead)."""
    from mlic_pipe.datasets import load

    return load("demo")


KERNEL_RESOURCES = pytest.StashKey[str]()  # the register table tests/test_kernel_compile.py leaves


def pytest_terminal_summary(terminalreporter, config):
    """Print the register table of the render kernel's GPU builds when tests/test_kernel_compile.py ran."""
    table = config.stash.get(KERNEL_RESOURCES, None)
    if table:
        terminalreporter.section("render kernel: registers and spills per GPU build")
        terminalreporter.write_line(table)

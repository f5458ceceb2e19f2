import os
import tempfile

import pytest

# Keep the demo data and annotation caches of a test run out of the user's cache directory.
os.environ.setdefault("MLIC_PIPE_CACHE_DIR", tempfile.mkdtemp(prefix="mlic-pipe-test-cache-"))


def pytest_collection_modifyitems(config, items):
    import torch

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

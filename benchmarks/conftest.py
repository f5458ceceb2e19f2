import os
import tempfile

import pytest

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

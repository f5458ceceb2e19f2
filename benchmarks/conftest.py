import os
import tempfile

# Benchmarks build their data and caches in a scratch directory, never in the user's cache.
os.environ.setdefault("MLIC_PIPE_CACHE_DIR", tempfile.mkdtemp(prefix="mlic-pipe-bench-cache-"))

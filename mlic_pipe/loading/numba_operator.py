"""DALI's numba operator given per-sample C functions compiled once: the glue the CPU graph's compiled ops share.

Why: DALI's numba operator (``nvidia.dali.plugin.numba``) calls a C function for each sample on DALI's own
threads, without the GIL, but its wrapper compiles its C functions again whenever a pipeline is built (seconds,
and the loader builds one per epoch). The ops built on this (`mlic_pipe.loading.pil_resize`,
`mlic_pipe.loading.pil_randaugment`) compile theirs once with numba's disk cache and hand DALI the addresses
(`square_images`). Each op takes one
uint8 HWC image per sample, optionally a float64 vector of parameters (`vector_at`), and writes one uint8
``size x size x 3`` image.
"""
from __future__ import annotations

import functools
import time

import numpy as np

try:
    import numba
    from numba import carray, cfunc, njit
    from numba import types as nbt
    from nvidia.dali.plugin.numba import NumbaFunction
    IMPORT_ERROR: str | None = None
except Exception as error:  # noqa: BLE001 - any failure to import means the callers' DALI fallbacks
    numba = None
    IMPORT_ERROR = f"{type(error).__name__}: {error}"

__all__ = ["IMPORT_ERROR", "JIT", "RUN_SIGNATURE", "available", "compile_seconds", "image_at", "square_images",
           "vector_at"]

JIT = dict(cache=True, nogil=True)  # the compile options of the ops' numba functions
_compile_seconds: dict[str, float] = {}


def compile_seconds() -> dict[str, float]:
    """Seconds this process spent compiling or loading the operators' shape functions, by size."""
    return dict(_compile_seconds)


if numba is not None:
    @numba.extending.intrinsic
    def _pointer(typingctx, address):
        """An integer address as a void pointer, for `carray` over memory DALI owns."""
        from numba.core import cgutils

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)
        return nbt.voidptr(address), codegen

    # DALI's C signatures for the numba operator's per-sample run and its batch shape function
    RUN_SIGNATURE = nbt.void(nbt.uint64, nbt.uint64, nbt.uint64, nbt.int32, nbt.uint64, nbt.uint64, nbt.uint64,
                             nbt.int32)
    _SETUP_SIGNATURE = nbt.void(nbt.uint64, nbt.uint64, nbt.int32, nbt.uint64, nbt.uint64, nbt.int32, nbt.int32)

    @njit(**JIT)
    def image_at(data_ptr, shapes_ptr):
        """The first tensor of a per-sample call: its data address and its shape, read from DALI's arrays."""
        data = carray(_pointer(data_ptr), 1, dtype=np.int64)
        shape = carray(_pointer(carray(_pointer(shapes_ptr), 1, dtype=np.int64)[0]), 3, dtype=np.int64)
        return carray(_pointer(data[0]), (shape[0], shape[1], shape[2]), dtype=np.uint8)

    @njit(**JIT)
    def vector_at(data_ptr, shapes_ptr):
        """The second tensor of a per-sample call: a float64 vector."""
        data = carray(_pointer(data_ptr), 2, dtype=np.int64)
        shape = carray(_pointer(carray(_pointer(shapes_ptr), 2, dtype=np.int64)[1]), 1, dtype=np.int64)
        return carray(_pointer(data[1]), shape[0], dtype=np.float64)

    class _PrecompiledNumbaFunction(NumbaFunction):
        """DALI's numba operator given C functions compiled beforehand (its own constructor compiles them).

        Sets the attributes the plugin's ``__call__`` passes to the backend: a uint8 HWC input (and with
        `parameters` a float64 vector), one uint8 HWC output.
        """

        def __init__(self, run_address: int, setup_address: int, parameters: bool = False, **kwargs):
            from nvidia.dali import types

            super(NumbaFunction, self).__init__(device="cpu", **kwargs)
            self.run_fn, self.setup_fn = run_address, setup_address
            self.out_types, self.outs_ndim = [types.UINT8], [3]
            self.in_types, self.ins_ndim = [types.UINT8] + [types.FLOAT64] * parameters, [3] + [1] * parameters
            self.num_outputs, self.batch_processing, self._preserve = 1, False, True
            self.blocks = self.threads_per_block = None
else:
    RUN_SIGNATURE = None


@functools.lru_cache(maxsize=None)
def _setup_address(size: int) -> int:
    """The address of a shape function making every sample `size` x `size` x 3 (compiled once per size)."""
    started = time.perf_counter()

    @cfunc(_SETUP_SIGNATURE, nopython=True)
    def setup(out_shapes_ptr, out_ndims_ptr, num_outs, in_shapes_ptr, in_ndims_ptr, num_ins, num_samples):
        shapes = carray(_pointer(out_shapes_ptr), num_samples, dtype=np.int64)
        for sample in range(num_samples):
            shape = carray(_pointer(shapes[sample]), 3, dtype=np.int64)
            shape[0], shape[1], shape[2] = size, size, 3
    _compile_seconds[f"shape {size}"] = time.perf_counter() - started
    return setup.address


@functools.lru_cache(maxsize=None)
def available(run_address: int) -> str | None:
    """None when an operator of the C function at `run_address` can be built; else why not."""
    if IMPORT_ERROR is not None:
        return IMPORT_ERROR
    try:
        _PrecompiledNumbaFunction(run_address, _setup_address(1))
    except Exception as error:  # noqa: BLE001 - a DALI release whose numba plugin changed shape
        return f"{type(error).__name__}: {error}"
    return None


def square_images(run_address: int, images, size: int, parameters=None):
    """`images` (uint8 HWC CPU DataNodes) through the C function at `run_address`, each output `size` x `size` x 3;
    `parameters`, a float64 vector per sample, is its second input.

    The caller checks `available` first.
    """
    import nvidia.dali.fn as fn

    inputs = (images,) if parameters is None else (images, parameters)
    out = _PrecompiledNumbaFunction(run_address, _setup_address(size), parameters is not None)(*inputs)
    return fn.reshape(out, layout="HWC")  # the numba operator leaves the layout empty; DALI's ops name it

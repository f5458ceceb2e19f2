"""`render`: execute a `MixPlan` on a decoded batch with the fastest renderer that can run it.

CUDA tensors go to the fused Triton kernel (`mlic_pipe.kernels.render`), CPU tensors to its
compiled CPU twin (`mlic_pipe.mix.cpu_render`, numba); both take the same `RenderSettings` and
give the numbers of the torch reference (`render_reference`), which renders anything else and is
the fallback when a compiler is missing (said once, as a warning). The kernel package is imported
here, at the top, so the dependency is visible; a missing or broken triton leaves the other
renderers working and says so when the kernel is asked for.
"""
from __future__ import annotations

import warnings

import torch

from mlic_pipe.mix import cpu_render
from mlic_pipe.mix.plan import MixPlan
from mlic_pipe.mix.reference import render_reference
from mlic_pipe.mix.settings import RenderSettings

try:
    from mlic_pipe import kernels
    KERNEL_IMPORT_ERROR: str | None = None
except ImportError as error:  # triton missing or broken: the reference still works
    kernels = None
    KERNEL_IMPORT_ERROR = str(error)

__all__ = ["BACKENDS", "render"]

BACKENDS = ("auto", "reference", "triton", "cpu")
_warned: set[str] = set()


def _kernel_can_run(images: torch.Tensor) -> bool:
    return kernels is not None and (images.is_cuda or kernels.INTERPRETED)


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def render(images: torch.Tensor, plan: MixPlan, settings: RenderSettings | None = None, *,
           out: torch.Tensor | None = None, backend: str = "auto", threads: int | None = None,
           **options) -> torch.Tensor:
    """Render the (N_out, 3, S, S) batch that `plan` describes from decoded `images`.

    Args:
        images: uint8 (N, S, S, 3) straight from the decoder, or float (N, 3, S, S) in [0, 1]
            (pass mean=(0, 0, 0), std=(1, 1, 1) for an already-normalized float batch).
        plan: from a mixer's ``plan(N, S, rng)``.
        settings: a `RenderSettings`; `options` (its field names: mean, std, out_dtype, resample,
            align_corners, channels_last) override single fields, or give them when it is None.
        out: a preallocated output to write into (reused across batches by the loader).
        backend: "auto" (the Triton kernel for CUDA tensors, the compiled CPU renderer for CPU
            tensors, the reference where neither can run), "reference" to force the torch
            reference, "cpu" to force the compiled CPU renderer, or "triton" (also runs CPU tensors
            when ``TRITON_INTERPRET=1``, which is how the tests check the kernel without a GPU).
        threads: the compiled CPU renderer's thread count (default: torch's); the others ignore it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    settings = RenderSettings.resolve(settings, **options)
    use_kernel = backend == "triton" or (backend == "auto" and images.is_cuda)
    if use_kernel and _kernel_can_run(images):
        return kernels.render(images, plan, settings, out=out)
    if backend == "triton":
        why = f"triton cannot be imported ({KERNEL_IMPORT_ERROR})" if kernels is None else \
            "it needs CUDA tensors (or TRITON_INTERPRET=1)"
        raise RuntimeError(f"the Triton render kernel cannot run: {why}; use backend='reference' or 'auto'")
    if backend == "cpu" or (backend == "auto" and images.device.type == "cpu"):
        if cpu_render.AVAILABLE:
            return cpu_render.render_cpu(images, plan, settings, out=out, threads=threads)
        if backend == "cpu":
            raise RuntimeError(f"the compiled CPU renderer needs numba ({cpu_render.NUMBA_IMPORT_ERROR}): "
                               "pip install numba, or use backend='reference'")
        _warn_once("numba", f"numba cannot be imported ({cpu_render.NUMBA_IMPORT_ERROR}): rendering on the CPU "
                            "with the torch reference, several times slower; pip install numba for the compiled path")
    return render_reference(images, plan, settings, out=out)

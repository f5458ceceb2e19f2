"""Triton kernels of mlic-pipe, installed as ``mlic_pipe.kernels``.

`render` (module `fused_render`) executes a `MixPlan` in one launch; `mlic_pipe.mix.render`
dispatches to it for CUDA tensors. Import cost: triton only; nothing compiles until the first
call. `compile_check` builds every variant for a GPU target without a GPU (CI's spill check).
"""
from mlic_pipe.kernels.fused_render import CONFIGS, INTERPRETED, area_taps, index_bits, kernel_arguments, render
from mlic_pipe.mix.plan import pack_plan  # the kernel's input table; re-exported for kernel users

__all__ = ["CONFIGS", "INTERPRETED", "area_taps", "index_bits", "kernel_arguments", "pack_plan", "render"]

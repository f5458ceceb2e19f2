"""Triton kernels of mlic-pipe, installed as ``mlic_pipe.kernels``.

`render` executes a `MixPlan` in one launch; `mlic_pipe.mix.render` dispatches to it for CUDA
tensors. Import cost: triton only; nothing compiles until the first call.
"""
from mlic_pipe.kernels.render import INTERPRETED, area_taps, index_bits, pack_plan, render

__all__ = ["INTERPRETED", "area_taps", "index_bits", "pack_plan", "render"]

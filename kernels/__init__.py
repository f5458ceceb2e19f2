"""Triton kernels of mlic-pipe, installed as `mlic_pipe.kernels` (setup.py maps this directory).

The fused SpliceMix render kernel lands here with its own issue; until then `mlic_pipe.mix.render`
uses the torch reference renderer on every device.
"""
__all__: list[str] = []

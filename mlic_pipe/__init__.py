"""mlic-pipe: a GPU data pipeline for multi-label image classification.

DALI decodes, one fused Triton kernel renders the SpliceMixed batch, and a zero-copy adapter
hands (images, targets) to any PyTorch model. See README.md and DESIGN.md.
"""
from mlic_pipe.datasets import LabelIndex, load
from mlic_pipe.errors import MLICDataError

__version__ = "0.1.0"
__all__ = ["LabelIndex", "MLICDataError", "load", "__version__"]

"""Choices made inside a DALI graph from a sample's uniforms: an index into a list, a value from a table.

The crops and auto-augment turn each sample's (seed, epoch, row) uniforms into discrete choices in the graph
(a MultiScaleCrop window, an op, its probability and magnitude bin). Both need the same two steps, kept here:
DALI's `fn.cast` from float to int rounds to nearest, so an index is floored first.
"""
from __future__ import annotations

import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types

__all__ = ["table_lookup", "uniform_index"]


def uniform_index(u, count: int):
    """floor(u * count) as an int32 node, for u in [0, 1): each of `count` choices equally likely."""
    return fn.cast(dmath.floor(dmath.min(u * count, count - 1)), dtype=types.INT32)


def table_lookup(index, values):
    """``values[index]`` per sample (float32), `values` a fixed list."""
    return fn.lookup_table(index, keys=list(range(len(values))), values=[float(v) for v in values],
                           dtype=types.FLOAT)

"""The one exception every data problem raises.

A training job that dies three hours in on a bad annotation is the failure mode this package
exists to prevent, so data problems are never `KeyError`s or garbage tensors: they are
`MLICDataError`, whose message names the file, says what is wrong and what to do next.
"""
from __future__ import annotations

import os

__all__ = ["MLICDataError"]


class MLICDataError(ValueError):
    """A dataset, annotation or image file cannot be used as it is.

    Subclasses `ValueError` so that code catching bad-value errors keeps working.

    Attributes:
        path: the offending file or directory (may be None when no single file is at fault).
        reason: what is wrong, in words.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str, hint: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        self.hint = hint
        where = f"{self.path}: " if self.path is not None else ""
        message = f"{where}{reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)

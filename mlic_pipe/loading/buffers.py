"""`OutputBuffers`: two reused output batches, so rendering allocates nothing after the first step.

A batch's images stay valid until two batches later; the loader waits on `consumed` before DALI
may overwrite the buffer that the last render read (an event, not a device-wide sync).
"""
from __future__ import annotations

import torch

from mlic_pipe.mix import RenderSettings

__all__ = ["OutputBuffers"]


class OutputBuffers:
    """Alternating output batches of `settings`' dtype and layout on `device`, grown on demand."""

    def __init__(self, settings: RenderSettings, image_size: int, device: torch.device):
        self.settings, self.image_size, self.device = settings, image_size, device
        self._buffers: list[torch.Tensor] = []
        self._next = 0
        self._consumed: torch.cuda.Event | None = None

    def take(self, count: int) -> torch.Tensor:
        """The next buffer, cut to `count` images."""
        if not self._buffers or self._buffers[0].shape[0] < count:
            self._buffers = [self.settings.empty(count, self.image_size, self.device) for _ in range(2)]
        buffer = self._buffers[self._next]
        self._next = 1 - self._next
        return buffer[:count]

    def mark_consumed(self, result: torch.Tensor) -> None:
        """Record that the render that read DALI's buffer has been issued (CUDA only)."""
        if result.is_cuda:
            self._consumed = torch.cuda.Event()
            self._consumed.record()

    def wait_consumed(self) -> None:
        """Block until the last render is done reading, before DALI may reuse its buffer."""
        if self._consumed is not None:
            self._consumed.synchronize()

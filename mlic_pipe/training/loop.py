"""One epoch of training and one pass of evaluation: the two loops of the reference trainer.

`RunParts` bundles what a step touches (model, optimizer, schedule, AMP, EMA, objective), so the
loops take one value and the checkpoint saves and restores the same one.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from mlic_pipe.datasets import LabelIndex
from mlic_pipe.loader import MLICLoader
from mlic_pipe.metrics import MetricAccumulator, MetricReport
from mlic_pipe.training.objective import Objective

__all__ = ["LOG_EVERY", "RunParts", "evaluate", "train_one_epoch"]

LOG_EVERY = 10  # steps between host reads of the running loss (each is a device sync)
log = logging.getLogger(__name__)


@dataclass
class RunParts:
    """The stateful pieces of a run. `wrapped` is `model` or its DistributedDataParallel wrapper."""

    model: nn.Module
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    objective: Objective
    autocast: contextlib.AbstractContextManager
    scaler: torch.amp.GradScaler | None
    ema: nn.Module | None  # timm.utils.ModelEmaV3
    steps_per_epoch: int

    def state_dict(self) -> dict:
        return dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                    scheduler=self.scheduler.state_dict(),
                    scaler=self.scaler.state_dict() if self.scaler is not None else None,
                    ema=self.ema.state_dict() if self.ema is not None else None)

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])


def _step(parts: RunParts, images: torch.Tensor, targets: torch.Tensor, plan, global_step: int) -> torch.Tensor:
    """Forward, loss, backward and optimizer step on one batch; returns the detached loss."""
    with parts.autocast:
        splice = plan if parts.objective.wants_cells(plan) else None
        output = parts.wrapped(images, splice_plan=splice) if splice is not None else parts.wrapped(images)
        loss = parts.objective(output, targets, plan)
    parts.optimizer.zero_grad(set_to_none=True)
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        loss.backward()
        parts.optimizer.step()
    parts.scheduler.step()
    if parts.ema is not None:
        parts.ema.update(parts.model, step=global_step)
    return loss.detach().float()


def train_one_epoch(parts: RunParts, loader: MLICLoader, epoch: int, epochs: int, progress: bool = True) -> dict:
    """Train on `loader`'s epoch `epoch` (at most `parts.steps_per_epoch` steps); returns its log record.

    The running loss stays on the device and is read every `LOG_EVERY` steps; a non-finite value
    then raises `FloatingPointError` saying what to change.
    """
    loader.set_epoch(epoch)
    parts.wrapped.train()
    total = parts.steps_per_epoch
    start, loss_sum, images_seen, steps_done = time.perf_counter(), None, 0, 0
    bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, unit="step")
    for step, (images, targets, plan) in enumerate(loader):
        if step >= total:
            break
        loss = _step(parts, images, targets, plan, epoch * total + step)
        loss_sum = loss if loss_sum is None else loss_sum + loss  # no sync per step
        images_seen += len(images)
        steps_done = step + 1
        if steps_done % LOG_EVERY == 0 or steps_done == total:
            mean_loss = float(loss_sum) / steps_done
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"the loss became {mean_loss} in epoch {epoch + 1} by step {steps_done}: "
                                         "lower the learning rate, or use bf16 or no AMP instead of fp16")
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{parts.optimizer.param_groups[-1]['lr']:.2e}")
        bar.update()
    bar.close()
    seconds = time.perf_counter() - start
    mean = float(loss_sum) / steps_done if steps_done else float("nan")
    return {"epoch": epoch + 1, "train_loss": mean, "lr": parts.optimizer.param_groups[-1]["lr"],
            "seconds": seconds, "images_per_s": images_seen / seconds, "skipped": len(loader.skipped)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: MLICLoader, index: LabelIndex, objective: Objective,
             autocast: contextlib.AbstractContextManager, desc: str = "eval", progress: bool = True) -> MetricReport:
    """Metrics of `model` on the unmixed evaluation loader, gathered over ranks."""
    was_training = model.training
    model.eval()
    accumulator = MetricAccumulator(index.classes)
    ignore = torch.as_tensor(index.ignore) if index.ignore is not None else None
    for images, targets, plan in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        with autocast:
            logits = model(images)
        rows = plan.indices.cpu().long()
        accumulator.update(objective.probabilities(logits), targets, ignore[rows] if ignore is not None else None)
    model.train(was_training)
    return accumulator.compute(distributed=True)

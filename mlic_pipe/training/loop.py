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
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from mlic_pipe.datasets import LabelIndex
from mlic_pipe.loader import Batch, MLICLoader
from mlic_pipe.metrics import MetricAccumulator, MetricReport
from mlic_pipe.mix import mix_ignore
from mlic_pipe.training.objective import Objective
from mlic_pipe.training.sam import SAM

__all__ = ["LOG_EVERY", "EpochProgress", "RunParts", "evaluate", "train_one_epoch"]

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


@dataclass
class EpochProgress:
    """How far an epoch has come: saved in a mid-epoch checkpoint, so a resumed epoch's record is whole."""

    loss_sum: torch.Tensor | float = 0.0  # a device tensor while training: no sync per step
    steps: int = 0
    images: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"loss_sum": float(self.loss_sum), "steps": self.steps, "images": self.images,
                "seconds": self.seconds}


def _forward_loss(parts: RunParts, batch: Batch) -> torch.Tensor:
    plan = batch.plan
    with parts.autocast:
        if parts.objective.wants_cells(plan):
            output = parts.wrapped(batch.images, splice_plan=plan, cell_form=parts.objective.consistency.form)
        elif parts.objective.sumix is not None:
            output = parts.wrapped(batch.images, with_uncertainty=True)
        else:
            output = parts.wrapped(batch.images)
        return parts.objective(output, batch.targets, plan, mix_ignore(batch.ignore, plan, batch.targets))


def _backward(parts: RunParts, loss: torch.Tensor) -> None:
    (parts.scaler.scale(loss) if parts.scaler is not None else loss).backward()


def _step(parts: RunParts, batch: Batch, global_step: int) -> torch.Tensor:
    """Forward, loss, backward and optimizer step on one batch (two passes under SAM); the detached loss."""
    parts.optimizer.zero_grad(set_to_none=True)
    loss = _forward_loss(parts, batch)
    _backward(parts, loss)
    if isinstance(parts.optimizer, SAM):  # the second gradient, at the perturbed weights
        parts.optimizer.perturb()
        parts.optimizer.zero_grad(set_to_none=True)
        _backward(parts, _forward_loss(parts, batch))
        parts.optimizer.restore()  # back to w now: GradScaler.step skips SAM.step when the gradient overflows
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    parts.scheduler.step()
    if parts.ema is not None:
        parts.ema.update(parts.model, step=global_step)
    return loss.detach().float()


def _check_finite(tally: EpochProgress, epoch: int) -> float:
    mean_loss = float(tally.loss_sum) / tally.steps
    if not math.isfinite(mean_loss):
        raise FloatingPointError(f"the loss became {mean_loss} in epoch {epoch + 1} by step {tally.steps}: "
                                 "lower the learning rate, or use bf16 or no AMP instead of fp16")
    return mean_loss


def train_one_epoch(parts: RunParts, loader: MLICLoader, epoch: int, epochs: int, progress: bool = True, *,
                    resumed: EpochProgress | None = None, steps: int | None = None,
                    checkpoint_every: int | None = None,
                    checkpoint: Callable[[EpochProgress], None] | None = None) -> dict:
    """Train on `loader`'s epoch `epoch` (at most `steps`, default `parts.steps_per_epoch`); returns its record.

    With `resumed` (a mid-epoch checkpoint's progress; the loader already holds its state) the epoch
    continues where it stopped; `steps` then counts the epoch's steps on this world size, those
    before the checkpoint included. Every `checkpoint_every` steps `checkpoint(progress)` saves. The
    running loss stays on the device and is read every `LOG_EVERY` steps; a non-finite value then
    raises `FloatingPointError` saying what to change.
    """
    if resumed is None:
        loader.set_epoch(epoch)
    parts.wrapped.train()
    total, tally = steps or parts.steps_per_epoch, resumed or EpochProgress()
    start = time.perf_counter() - tally.seconds
    bar = tqdm(total=total, initial=tally.steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
               unit="step")
    for batch in loader:
        if batch.index >= total:
            break
        tally.loss_sum = tally.loss_sum + _step(parts, batch, epoch * total + batch.index)
        tally.images += len(batch.images)
        tally.steps = batch.index + 1
        if tally.steps % LOG_EVERY == 0 or tally.steps == total:
            bar.set_postfix(loss=f"{_check_finite(tally, epoch):.4f}", lr=f"{parts.optimizer.param_groups[-1]['lr']:.2e}")
        bar.update()
        if checkpoint is not None and checkpoint_every and tally.steps % checkpoint_every == 0 and tally.steps < total:
            tally.seconds = time.perf_counter() - start
            checkpoint(tally)
    bar.close()
    seconds = time.perf_counter() - start
    mean = float(tally.loss_sum) / tally.steps if tally.steps else float("nan")
    return {"epoch": epoch + 1, "train_loss": mean, "lr": parts.optimizer.param_groups[-1]["lr"],
            "seconds": seconds, "images_per_s": tally.images / seconds, "skipped": len(loader.skipped)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: MLICLoader, index: LabelIndex, objective: Objective,
             autocast: contextlib.AbstractContextManager, desc: str = "eval", progress: bool = True,
             tta: str = "none") -> MetricReport:
    """Metrics of `model` on the unmixed evaluation loader, gathered over ranks; padding counted once.

    ``tta="flip"`` scores each image as the mean of its own and its mirror image's probabilities.
    """
    was_training = model.training
    model.eval()
    accumulator = MetricAccumulator(index.classes)
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        with autocast:
            logits = model(batch.images)
            mirrored = model(batch.images.flip(-1)) if tta == "flip" else None
        scores = objective.probabilities(logits)
        if mirrored is not None:
            scores = (scores + objective.probabilities(mirrored)) / 2
        real = ~batch.padded.to(logits.device)
        ignore = None if batch.ignore is None else batch.ignore[real]
        accumulator.update(scores[real], batch.targets[real], ignore)
    model.train(was_training)
    return accumulator.compute(distributed=True)

"""Optimizers and learning-rate schedules by name, built from torch's own classes.

Two parameter groups: the backbone at ``lr * backbone_lr_mult`` and the head at ``lr``, as the
papers fine-tune pretrained backbones; with ``filter_bias_and_bn`` each is split again into a group
with weight decay and one without it for biases and 1-D weights (norms), as timm's
`param_groups_weight_decay` and ML-Decoder's / ASL's `add_weight_decay` do. Schedules are compositions of `torch.optim.lr_scheduler`
classes (a `LinearLR` warm-up chained by `SequentialLR` to `CosineAnnealingLR` or `MultiStepLR`; or
`OneCycleLR`), stepped once per optimizer step, so their state saves and resumes with torch's.
"""
from __future__ import annotations

import math
import warnings
from typing import Protocol

import torch
from torch import nn
from torch.optim import lr_scheduler

from mlic_pipe.registry import Registry
from mlic_pipe.training.sam import SAM

__all__ = ["BASE_OPTIMIZERS", "DEFAULT_LR", "OPTIMIZERS", "OptimSettings", "SCHEDULES", "build_optimizer",
           "build_scheduler", "scheduler_at"]

DEFAULT_LR = {"adamw": 1e-4, "adam": 1e-4, "sgd": 0.05}


class OptimSettings(Protocol):
    """The fields of `TrainConfig` the optimizers and schedules read: named here, so this module needs
    nothing from `training.config` (which imports this module's registries) and the two import no cycle."""

    optimizer: str
    lr: float | None
    momentum: float
    weight_decay: float
    sgd_nesterov: bool
    sam_base: str
    sam_rho: float
    backbone_lr_mult: float
    filter_bias_and_bn: bool
    warmup_from_zero: bool
    epochs: int
    schedule: str
    warmup_epochs: float
    step_epochs: str | None
    step_size: int
    step_gamma: float


def _sgd(groups, lr: float, config: OptimSettings) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov unless sgd_nesterov is off)"""
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.sgd_nesterov)


def _adam(groups, lr: float, config: OptimSettings) -> torch.optim.Optimizer:
    """Adam with L2 weight decay (ML-Decoder's published optimizer)"""
    return torch.optim.Adam(groups, lr=lr, weight_decay=config.weight_decay)


def _adamw(groups, lr: float, config: OptimSettings) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay)"""
    return torch.optim.AdamW(groups, lr=lr, weight_decay=config.weight_decay)


def _sam(groups, lr: float, config: OptimSettings) -> torch.optim.Optimizer:
    """SAM (sharpness-aware minimization) around sam_base, radius sam_rho"""
    base = OPTIMIZERS.create(config.sam_base, groups, lr, config)
    return SAM(base, rho=config.sam_rho)


OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
OPTIMIZERS.register("adamw", _adamw)
OPTIMIZERS.register("adam", _adam)
OPTIMIZERS.register("sgd", _sgd)
OPTIMIZERS.register("sam", _sam)
BASE_OPTIMIZERS = ("adamw", "adam", "sgd")  # what SAM may wrap


def build_optimizer(config: OptimSettings, model: nn.Module) -> torch.optim.Optimizer:
    """The configured optimizer over the model's backbone (scaled lr) and head parameter groups."""
    lr = config.lr if config.lr is not None else DEFAULT_LR[config.sam_base if config.optimizer == "sam" else config.optimizer]
    groups = []
    for part, part_lr in ((model.backbone, lr * config.backbone_lr_mult), (model.head, lr)):
        params = [(name, p) for name, p in part.named_parameters() if p.requires_grad]
        if not config.filter_bias_and_bn:
            groups.append({"params": [p for _, p in params], "lr": part_lr})
            continue
        exempt = [p for name, p in params if _no_decay(name, p)]
        groups.append({"params": [p for name, p in params if not _no_decay(name, p)], "lr": part_lr})
        groups.append({"params": exempt, "lr": part_lr, "weight_decay": 0.0})
    return OPTIMIZERS.create(config.optimizer, groups, lr, config)


def _no_decay(name: str, param: torch.Tensor) -> bool:
    """timm's and ML-Decoder's rule: biases and 1-D weights (norm scales and shifts) take no weight decay."""
    return param.ndim <= 1 or name.endswith(".bias")


def _after_warmup(optimizer, decay: lr_scheduler.LRScheduler, warmup: int,
                  from_zero: bool = False) -> lr_scheduler.LRScheduler:
    """`decay`, preceded by a linear warm-up over `warmup` steps when warmup > 0.

    The ramp goes from lr / warmup at the first step to lr at the last; `from_zero` is CSRA's WarmUpLR
    instead: lr x t / warmup at step t = 0 .. warmup - 1 (0 at the first step), lr from step `warmup` on.
    """
    if warmup <= 0:
        return decay
    if from_zero:
        ramp = lr_scheduler.LambdaLR(optimizer, lambda step: step / warmup)
    else:
        ramp = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0,
                                     total_iters=max(warmup - 1, 1))
    return lr_scheduler.SequentialLR(optimizer, [ramp, decay], milestones=[warmup])


def _cosine(optimizer, config: OptimSettings, steps_per_epoch: int, warmup: int):
    """linear warm-up, then cosine annealing to 0 at the last step"""
    total = config.epochs * steps_per_epoch
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1))


def _step(optimizer, config: OptimSettings, steps_per_epoch: int, warmup: int):
    """linear warm-up, then the lr times step_gamma after each epoch of step_epochs, or every step_size epochs"""
    if config.step_epochs:
        epochs = [int(e) for e in str(config.step_epochs).split(",") if e.strip()]
    else:
        epochs = list(range(config.step_size, config.epochs + 1, max(config.step_size, 1)))
    milestones = [e * steps_per_epoch - warmup for e in epochs if e * steps_per_epoch > warmup]
    return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.step_gamma)


def _onecycle(optimizer, config: OptimSettings, steps_per_epoch: int, warmup: int):
    """one-cycle (its own warm-up: warmup_epochs / epochs of the run, within 1% .. 50%)"""
    peaks = [group["lr"] for group in optimizer.param_groups]
    pct_start = min(0.5, max(config.warmup_epochs / config.epochs, 0.01))
    # OneCycleLR divides by its phase lengths: a run of a handful of steps gets a schedule a little longer
    total = max(config.epochs * steps_per_epoch, math.ceil(2 / pct_start) + 1)
    return lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total, pct_start=pct_start)


SCHEDULES: Registry[lr_scheduler.LRScheduler] = Registry("schedule")
SCHEDULES.register("cosine", _cosine)
SCHEDULES.register("onecycle", _onecycle)
SCHEDULES.register("step", _step)


def build_scheduler(config: OptimSettings, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int) -> lr_scheduler.LRScheduler:
    """The configured schedule, stepped once per optimizer step."""
    warmup = int(config.warmup_epochs * steps_per_epoch)
    schedule = SCHEDULES.create(config.schedule, optimizer, config, steps_per_epoch, warmup)
    if config.schedule == "onecycle":
        return schedule
    return _after_warmup(optimizer, schedule, warmup, config.warmup_from_zero)


def scheduler_at(config: OptimSettings, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                 position: int) -> lr_scheduler.LRScheduler:
    """The configured schedule for `steps_per_epoch`, as if `position` optimizer steps had been taken.

    A run resumed on another world size has another number of steps per epoch, so the saved schedule
    (counted in the old steps) would end early or step past its end (OneCycle raises). The trainer
    rebuilds it here at the position from which the steps left in the run end it exactly where the
    configured run ends. The learning rates restart from the configured values, and the new
    schedule is stepped `position` times (cheap: no optimizer step is taken).
    """
    for group in optimizer.param_groups:  # the configured rate: OneCycle keeps it as max_lr, the others as initial_lr
        group["lr"] = group.get("max_lr", group.get("initial_lr", group["lr"]))
    scheduler = build_scheduler(config, optimizer, steps_per_epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": none is due here
        for _ in range(position):
            scheduler.step()
    return scheduler

"""`train`: the reference trainer, MLICLoader -> model -> loss -> metrics, resumable and DDP-ready.

It is deliberately a readable sequence of stages, not a framework: what a paper's training script
does, with the package's pieces. Every epoch: `train_one_epoch` on the mixed batches, `evaluate` on
the unmixed validation set (and on the EMA weights when enabled), one JSON line appended to
``log.jsonl``, ``last.pt`` (and ``best.pt`` on a new best mAP) saved atomically. ``resume``
continues from ``last.pt`` exactly: the loader replays epochs from (seed, epoch), the schedules
and optimizers restore their state; on another world size the schedule is re-counted in the new
steps per epoch so it ends where the run was configured to end, and the log holds each epoch once
whenever the job was killed.

Under torchrun each process takes its rank's shard (`MLICLoader` reads torch.distributed), the model
is wrapped in DistributedDataParallel, and evaluation gathers every rank's scores.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn

from mlic_pipe.datasets import LabelIndex, load
from mlic_pipe.shards.index import ShardIndex
from mlic_pipe.distributed import all_gather_objects, is_main_process, join_torchrun
from mlic_pipe.errors import ConfigError
from mlic_pipe.loader import MLICLoader
from mlic_pipe.metrics import MetricReport
from mlic_pipe.mix import create_mixer
from mlic_pipe.mix.erasing import erasers
from mlic_pipe.models import build_model, cooccurrence_adjacency
from mlic_pipe.training import checkpoint
from mlic_pipe.training.config import MASK_MIXES, TrainConfig
from mlic_pipe.training.loop import EpochProgress, RunParts, evaluate, train_one_epoch
from mlic_pipe.training.objective import Objective
from mlic_pipe.training.optim import build_optimizer, build_scheduler, scheduler_at

__all__ = ["TrainResult", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced: one record per epoch, the best validation mAP and where the files are."""

    history: list[dict]
    best_map: float = -1.0
    best_epoch: int = -1
    out_dir: Path = Path(".")
    final: MetricReport | None = None
    start_epoch: int = field(default=0, repr=False)

    def add(self, record: dict) -> bool:
        """Append an epoch's record; True when it sets a new best mAP (model or EMA)."""
        self.history.append(record)
        score = max(record.get("mAP", -1.0), record.get("mAP_ema", -1.0))
        if score > self.best_map:
            self.best_map, self.best_epoch = score, record["epoch"]
            return True
        return False


# ---------------------------------------------------------------------------------------------- setup

def _load_data(config: TrainConfig) -> tuple[LabelIndex, LabelIndex | None]:
    options = {"image_dir": config.images} if config.images else {}
    if config.classes:
        options["classes"] = config.classes
    options["missing"] = config.missing
    if config.unverified != "negative":
        options["unverified"] = config.unverified
    if config.machine_threshold is not None:
        options["machine_threshold"] = config.machine_threshold
    train_index = load(config.data, split=config.train_split, **options)
    if config.val_data is None and isinstance(train_index, ShardIndex):
        log.info("a shard directory holds one split: pass --val-data for validation")
        return train_index, None
    if config.val_data is None and not (config.val_split and not os.path.isfile(config.data)):
        return train_index, None
    return train_index, load(config.val_data or config.data, split=config.val_split, **options)


def _mixer_options(config: TrainConfig, name: str) -> dict:
    options = {"append": config.mix_append} if name in MASK_MIXES else {}
    if name in ("cutmix", "fmix", "mixup"):
        options["alpha"] = 1.0  # ResizeMix draws a scale range and SaliencyMix's default is already 1.0
    return options


def _loaders(config: TrainConfig, train_index: LabelIndex, val_index: LabelIndex | None, device: str):
    mixers = [create_mixer(name, **_mixer_options(config, name)) for name in config.mix_names()]
    common = dict(image_size=config.image_size, device=device, num_threads=config.threads,
                  render_threads=config.render_threads, seed=config.seed,
                  channels_last=config.channels_last, on_error=config.on_error, normalize=config.normalize,
                  crop_pct=config.crop_pct)
    erase = erasers(config.cutout, config.reprob, config.remode, config.recount)
    loader = MLICLoader(train_index, config.batch_size, train=True, label_rule=config.label_rule,
                        mix=mixers, erase=erase, crop=config.crop, **config.mix_schedule(),
                        auto_augment=config.auto_augment,
                        scale=config.crop_scale_range(), flip_prob=config.hflip, **common)
    if len(loader) == 0:
        raise ConfigError(f"{len(train_index)} training images make no full batch of {config.batch_size} "
                          "(per rank): lower {batch_size}")
    val_loader = None if val_index is None else MLICLoader(val_index, config.batch_size, train=False,
                                                                   crop=config.eval_crop, **common)
    if val_loader is None:
        log.info("no validation set (DATA is a single annotation file and no validation dataset is given, or the "
                 "validation split is empty): training without evaluation; set val_data to get mAP each epoch")
    return loader, val_loader


def _model(config: TrainConfig, train_index: LabelIndex, device: torch.device) -> nn.Module:
    kwargs = dict(config.head_kwargs)
    if config.loss == "aam":
        kwargs["cosine"] = True
    if config.head == "graph" and "adjacency" not in kwargs:
        kwargs["adjacency"] = cooccurrence_adjacency(train_index.positives)
    model = build_model(config.backbone, config.head, train_index.num_classes, pretrained=config.pretrained,
                        image_size=config.image_size, uncertainty=config.sumix, **kwargs).to(device)
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


def _check_cells_fit(config: TrainConfig, model: nn.Module, loader: MLICLoader) -> None:
    """SpliceMix-CL cuts the feature map by the grid: fail before the first epoch if it is too small."""
    side = getattr(loader.mixer, "largest_side", None)
    if not config.splicemix_cl or side is None:
        return
    with torch.no_grad():
        height, width = model.features(torch.zeros(1, 3, config.image_size, config.image_size,
                                                   device=loader.device)).shape[-2:]
    if min(height, width) < side:
        raise ConfigError(f"SpliceMix-CL splits {config.backbone}'s {height}x{width} feature map at {{image_size:"
                          f"{config.image_size}}} into grids of up to {side} cells a side: use a larger "
                          "{image_size}, or a backbone with less downsampling")


def _autocast(config: TrainConfig, device: torch.device):
    mode = config.amp
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" else "off"
    if mode == "off":
        return torch.autocast(device.type, enabled=False), None
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None
    return torch.autocast(device.type, dtype=dtype), scaler


def _parts(config: TrainConfig, model: nn.Module, steps_per_epoch: int, distributed: bool) -> RunParts:
    device = next(model.parameters()).device
    optimizer = build_optimizer(config, model)
    autocast, scaler = _autocast(config, device)
    # timm's EMA, with its warm-up (decay ramps up as 1 - (1 + step)^(-2/3)) so early random weights fade
    ema = ModelEmaV3(model, decay=config.ema, use_warmup=True) if config.ema else None
    wrapped = model
    if distributed:
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return RunParts(model=model, wrapped=wrapped, optimizer=optimizer,
                    scheduler=build_scheduler(config, optimizer, steps_per_epoch), objective=Objective(config),
                    autocast=autocast, scaler=scaler, ema=ema, steps_per_epoch=steps_per_epoch)


# ----------------------------------------------------------------------------------- epochs and files

def _epoch_steps(config: TrainConfig, loader: MLICLoader) -> int:
    """Steps of the loader's coming epoch on this world size, at most --limit-train-batches."""
    return min(len(loader), config.limit_train_batches or len(loader))


def _resume(config: TrainConfig, parts: RunParts, result: TrainResult,
            loader: MLICLoader) -> tuple[EpochProgress | None, int | None]:
    """Restore a checkpoint; returns the progress and step count of the epoch it stopped in, if mid-epoch.

    On another world size the epochs have another number of steps: the loader deals the rest of the
    saved epoch over the new ranks, and the schedule is rebuilt (`scheduler_at`) so that it still
    ends where the configured run ends.
    """
    path = checkpoint.resume_path(config.resume, result.out_dir)
    if path is None:
        return None, None
    state = checkpoint.load_checkpoint(path)
    checkpoint.check_fits(state, config, loader.index.classes, path)
    try:
        parts.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as error:  # head options, or an edited checkpoint
        raise ConfigError(f"{{resume}} {path} does not fit this run's model or optimizer: "
                          f"{str(error).splitlines()[0][:160]}") from None
    checkpoint.restore_rng_state(state.get("rng"))
    result.history, result.best_map, result.best_epoch = state["history"], state["best_map"], state["best_epoch"]
    progress, epoch_steps = None, None
    if state.get("epoch_progress") is None:
        result.start_epoch = state["epoch"] + 1
        position = result.start_epoch * parts.steps_per_epoch
        log.info("resumed from %s at epoch %d/%d", path, result.start_epoch + 1, config.epochs)
    else:
        result.start_epoch = state["epoch"]
        loader.load_state_dict(state["loader"])  # every rank's loader state: any world size resumes
        progress = EpochProgress(**state["epoch_progress"])
        epoch_steps = _epoch_steps(config, loader)
        position = (state["epoch"] + 1) * parts.steps_per_epoch - (epoch_steps - progress.steps)
        log.info("resumed from %s in epoch %d/%d after step %d", path, state["epoch"] + 1, config.epochs,
                 progress.steps)
    saved_steps = state.get("steps_per_epoch", parts.steps_per_epoch)
    if saved_steps != parts.steps_per_epoch:
        parts.scheduler = scheduler_at(config, parts.optimizer, parts.steps_per_epoch, max(position, 0))
        log.info("epochs now take %d steps (%d when saved): the schedule continues at step %d of %d",
                 parts.steps_per_epoch, saved_steps, max(position, 0), config.epochs * parts.steps_per_epoch)
    return progress, epoch_steps


def _validate_epoch(parts: RunParts, val_loader, val_index, record: dict, progress: bool, tta: str) -> MetricReport:
    final = evaluate(parts.model, val_loader, val_index, parts.objective, parts.autocast, progress=progress, tta=tta)
    record.update(final.as_dict())
    if parts.ema is not None:
        record["mAP_ema"] = evaluate(parts.ema.module, val_loader, val_index, parts.objective, parts.autocast,
                                     desc="eval ema", progress=progress, tta=tta).mAP
    return final


def _state(config: TrainConfig, parts: RunParts, result: TrainResult, classes: list[str], epoch: int) -> dict:
    return dict(parts.state_dict(), epoch=epoch, config=asdict(config), classes=classes, history=result.history,
                best_map=result.best_map, best_epoch=result.best_epoch, rng=checkpoint.rng_state(),
                steps_per_epoch=parts.steps_per_epoch)


def _save_mid_epoch(config: TrainConfig, parts: RunParts, result: TrainResult, classes: list[str], epoch: int,
                    loader: MLICLoader, progress: EpochProgress) -> None:
    """``last.pt`` in the middle of `epoch`: the loaders' states of every rank make `resume` continue there."""
    loader_states = all_gather_objects(loader.state_dict())  # a collective: every rank is at this step
    if is_main_process():
        state = dict(_state(config, parts, result, classes, epoch), loader=loader_states,
                     epoch_progress=progress.as_dict())
        checkpoint.save_checkpoint(result.out_dir / "last.pt", state)


def _save_epoch(config: TrainConfig, parts: RunParts, result: TrainResult, classes: list[str], epoch: int,
                improved: bool, has_validation: bool) -> None:
    record = result.history[-1]
    with (result.out_dir / "log.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    state = _state(config, parts, result, classes, epoch)
    checkpoint.save_checkpoint(result.out_dir / "last.pt", state)
    if improved and has_validation:
        checkpoint.save_checkpoint(result.out_dir / "best.pt", state)
    summary = f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.4f}, {record['images_per_s']:.1f} images/s"
    if "mAP" in record:
        summary += f", mAP {100 * record['mAP']:.2f}"
    if "mAP_ema" in record:
        summary += f" (EMA {100 * record['mAP_ema']:.2f})"
    log.info(summary)


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Train as `config` says; returns the per-epoch history and the best validation mAP."""
    config.validate()
    distributed, device = join_torchrun(config.device)
    is_main = is_main_process()
    progress = progress and is_main
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    train_index, val_index = _load_data(config)
    loader, val_loader = _loaders(config, train_index, val_index, device)
    model = _model(config, train_index, loader.device)
    _check_cells_fit(config, model, loader)
    parts = _parts(config, model, _epoch_steps(config, loader), distributed)
    result = TrainResult(history=[], out_dir=Path(config.out_dir))
    if is_main:
        result.out_dir.mkdir(parents=True, exist_ok=True)
    resumed, resumed_steps = _resume(config, parts, result, loader)
    if is_main:
        checkpoint.write_log(result.out_dir / "log.jsonl", {"config": asdict(config), "classes": train_index.classes},
                             result.history, resumed=bool(config.resume))
    for epoch in range(result.start_epoch, config.epochs):
        def save(tally, epoch=epoch):
            _save_mid_epoch(config, parts, result, train_index.classes, epoch, loader, tally)
        record = train_one_epoch(parts, loader, epoch, config.epochs, progress=progress, resumed=resumed,
                                 steps=resumed_steps, checkpoint_every=config.checkpoint_every, checkpoint=save)
        resumed, resumed_steps = None, None
        if val_loader is not None:
            result.final = _validate_epoch(parts, val_loader, val_index, record, progress, config.tta)
        improved = result.add(record)
        if is_main:
            _save_epoch(config, parts, result, train_index.classes, epoch, improved, val_loader is not None)
        if config.early_stop and epoch + 1 - result.best_epoch >= config.early_stop:
            log.info("early stop after epoch %d: no better validation mAP for %d epochs (best %.2f at epoch %d)",
                     epoch + 1, config.early_stop, 100 * result.best_map, result.best_epoch)
            break
    return result

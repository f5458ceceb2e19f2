"""`mlic-pipe train`: the reference trainer, MLICLoader -> model -> loss -> metrics, resumable and DDP-ready.

It is deliberately one readable loop, not a framework: what a paper's training script does, with
the package's pieces. Every epoch: train on the mixed batches (optionally with SpliceMix-CL or
SUMix on top of the base loss), evaluate on the unmixed validation set with `multilabel_metrics`
(and on the EMA weights when enabled), append one JSON line to ``log.jsonl``, and write
``last.pt`` (and ``best.pt`` on a new best mAP). ``--resume`` continues from ``last.pt`` exactly:
the loader replays epochs from (seed, epoch), the schedules and optimizers restore their state.

Under torchrun each process takes its rank's shard (`MLICLoader` reads torch.distributed), the model
is wrapped in DistributedDataParallel, and evaluation gathers every rank's scores.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlic_pipe.datasets import LabelIndex, load
from mlic_pipe.loader import MLICLoader
from mlic_pipe.losses import SUMix, SpliceMixCL, create_loss
from mlic_pipe.metrics import MetricAccumulator, MetricReport
from mlic_pipe.mix import CutMix, FMix, MixUp, SpliceMix
from mlic_pipe.models import build_model, cooccurrence_adjacency

__all__ = ["ModelEma", "TrainConfig", "TrainResult", "train"]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "step")
DEFAULT_LR = {"adamw": 1e-4, "sgd": 0.05}
LOG_EVERY = 10  # steps between host reads of the running loss (each is a device sync)


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in every checkpoint and in the log's first line."""

    data: str = "demo"
    train_split: str = "train"
    val_split: str | None = "val"
    val_data: str | None = None  # a separate validation dataset (needed when `data` is a single file)
    backbone: str = "resnet50"
    head: str = "avg"
    head_kwargs: dict = field(default_factory=dict)
    pretrained: bool = False
    loss: str = "asl"
    mix: str = "splicemix"  # splicemix | cutmix | fmix | mixup | none
    mix_append: bool = False  # mask mixes: append M mixed images instead of mixing in place (SUMix needs it)
    splicemix_cl: bool = False
    cl_weight: float = 1.0
    sumix: bool = False
    sumix_gamma: float = 0.5
    epochs: int = 10
    batch_size: int = 32
    image_size: int = 448
    optimizer: str = "adamw"
    lr: float | None = None  # default: 1e-4 (adamw), 0.05 (sgd)
    weight_decay: float = 1e-4
    momentum: float = 0.9
    backbone_lr_mult: float = 0.1
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    step_size: int = 10  # step schedule: epochs between decays
    step_gamma: float = 0.1
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16
    ema: float | None = None  # EMA decay, e.g. 0.9997; None = off
    channels_last: bool = False
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    out_dir: str = "runs/mlic"
    resume: str | None = None  # a checkpoint path, or "auto" for out_dir/last.pt
    limit_train_batches: int | None = None  # for smoke tests: stop each epoch early
    on_error: str = "raise"

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ValueError(f"amp must be auto, off, bf16 or fp16, got {self.amp!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if self.splicemix_cl and self.mix != "splicemix":
            raise ValueError("--splicemix-cl needs --mix splicemix (it compares spliced cells with their sources)")
        if self.sumix and (self.mix not in ("cutmix", "fmix", "mixup") or not self.mix_append):
            raise ValueError("--sumix needs a mask mix in the appended layout: --mix cutmix|fmix|mixup --mix-append")
        if self.loss == "aam" and self.head == "csra":
            raise ValueError("AAM needs cosine logits; CSRA's attention logits are not cosines: use head avg, max, "
                             "mldecoder or graph")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema decay must be in (0, 1), got {self.ema}")


@dataclass
class TrainResult:
    history: list[dict]
    best_map: float
    best_epoch: int
    out_dir: Path
    final: MetricReport | None


class ModelEma:
    """Exponential moving average of a model's weights (buffers copied), evaluated next to the model.

    ``ema = decay * ema + (1 - decay) * weights`` after every optimizer step; the decay is warmed
    up as ``min(decay, (1 + step) / (10 + step))`` so that early, random weights are forgotten.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.steps = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for ema_value, value in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                ema_value.copy_(value)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.steps = state["steps"]


# ---------------------------------------------------------------------------------------------- setup

def _distributed_setup(device: str) -> tuple[bool, torch.device | str]:
    """Join the torchrun process group when launched by torchrun; returns (distributed, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return torch.distributed.is_available() and torch.distributed.is_initialized(), device
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.cuda.is_available() and device in ("auto", "cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return True, device


def _mixer(config: TrainConfig):
    if config.mix == "none":
        return None
    if config.mix == "splicemix":
        return SpliceMix()
    kinds = {"cutmix": CutMix, "fmix": FMix, "mixup": MixUp}
    if config.mix not in kinds:
        raise ValueError(f"mix must be splicemix, cutmix, fmix, mixup or none, got {config.mix!r}")
    return kinds[config.mix](1.0, append=config.mix_append)


def _head_kwargs(config: TrainConfig, train_index: LabelIndex) -> dict:
    kwargs = dict(config.head_kwargs)
    if config.loss == "aam":
        kwargs["cosine"] = True
    if config.head == "graph" and "adjacency" not in kwargs:
        kwargs["adjacency"] = cooccurrence_adjacency(train_index.targets)
    return kwargs


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    lr = config.lr if config.lr is not None else DEFAULT_LR[config.optimizer]
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    head = [p for p in model.head.parameters() if p.requires_grad]
    groups = [{"params": backbone, "lr": lr * config.backbone_lr_mult}, {"params": head, "lr": lr}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=config.weight_decay)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=max(total, 1),
                                                   pct_start=min(0.5, max(config.warmup_epochs / config.epochs, 0.01)))
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "step":
            return config.step_gamma ** ((step // max(steps_per_epoch, 1)) // config.step_size)
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _autocast(config: TrainConfig, device: torch.device):
    mode = config.amp
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" else "off"
    if mode == "off":
        return torch.autocast(device.type, enabled=False), None
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None
    return torch.autocast(device.type, dtype=dtype), scaler


# ---------------------------------------------------------------------------------------- train, eval

class _Objective:
    """The step's loss: the base loss, plus SpliceMix-CL or SUMix, from the model output and the plan."""

    def __init__(self, config: TrainConfig):
        self.base = create_loss(config.loss)
        reduction = getattr(self.base, "reduction", "mean")
        self.consistency = SpliceMixCL(config.cl_weight, reduction=reduction) if config.splicemix_cl else None
        self.sumix = SUMix(config.sumix_gamma, loss=self.base) if config.sumix else None

    def __call__(self, output, targets: torch.Tensor, plan) -> torch.Tensor:
        logits = output[0] if isinstance(output, tuple) else output
        if self.sumix is not None and plan.num_mixed > 0:
            regular = plan.num_regular
            loss = self.base(logits[:regular], targets[:regular]) + self.sumix(logits, targets, plan)
        else:
            loss = self.base(logits, targets)
        if self.consistency is not None and isinstance(output, tuple):
            loss = loss + self.consistency.from_cells(output[1], output[2], logits)
        return loss


def _probabilities(logits: torch.Tensor, config: TrainConfig, loss) -> torch.Tensor:
    if config.loss == "aam":  # cosines: the positive probability without the margin
        return torch.sigmoid(loss.s * logits.float())
    return torch.sigmoid(logits.float())


@torch.no_grad()
def evaluate(model: nn.Module, loader: MLICLoader, index: LabelIndex, config: TrainConfig, loss, autocast,
             desc: str = "eval", progress: bool = True) -> MetricReport:
    """Metrics of `model` on the unmixed evaluation loader, gathered over ranks."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    accumulator = MetricAccumulator(index.classes)
    ignore = torch.as_tensor(index.ignore) if index.ignore is not None else None
    for images, targets, plan in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        with autocast:
            logits = model(images)
        rows = plan.indices.cpu().long()
        accumulator.update(_probabilities(logits, config, loss), targets,
                           ignore[rows] if ignore is not None else None)
    model.train(was_training)
    return accumulator.compute(distributed=True)


def _checkpoint(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # never a half-written last.pt


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Train as `config` says; returns the per-epoch history and the best validation mAP."""
    from tqdm.auto import tqdm

    config.validate()
    distributed, device = _distributed_setup(config.device)
    rank = torch.distributed.get_rank() if distributed else 0
    is_main = rank == 0
    progress = progress and is_main
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    train_index = load(config.data, split=config.train_split)
    val_index = None
    if config.val_data is not None or (config.val_split and not os.path.isfile(config.data)):
        val_index = load(config.val_data or config.data, split=config.val_split)
    loader = MLICLoader(train_index, config.batch_size, image_size=config.image_size, train=True, mix=_mixer(config),
                        device=device, num_threads=config.threads, seed=config.seed, return_plan=True,
                        channels_last=config.channels_last, on_error=config.on_error)
    if len(loader) == 0:
        raise ValueError(f"{len(train_index)} training images make no full batch of {config.batch_size} "
                         f"(per rank): lower --batch-size")
    val_loader = None if val_index is None else MLICLoader(
        val_index, config.batch_size, image_size=config.image_size, train=False, device=device,
        num_threads=config.threads, seed=config.seed, return_plan=True, channels_last=config.channels_last,
        on_error=config.on_error)
    device = loader.device
    if val_loader is None and is_main:
        print("no validation set (DATA is a single annotation file and --val-data is not given, or --val-split is "
              "empty): training without evaluation; pass --val-data to get mAP each epoch", flush=True)

    model = build_model(config.backbone, config.head, train_index.num_classes, pretrained=config.pretrained,
                        image_size=config.image_size, **_head_kwargs(config, train_index)).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEma(model, config.ema) if config.ema else None
    steps_per_epoch = min(len(loader), config.limit_train_batches or len(loader))
    optimizer = _optimizer(config, model)
    scheduler = _scheduler(config, optimizer, steps_per_epoch)
    autocast, scaler = _autocast(config, device)
    objective = _Objective(config)
    wrapped = model
    if distributed:
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    out_dir = Path(config.out_dir)
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    best_map, best_epoch, start_epoch = -1.0, -1, 0
    resume = out_dir / "last.pt" if config.resume == "auto" else (Path(config.resume) if config.resume else None)
    if resume is not None:
        if not resume.is_file():
            raise FileNotFoundError(f"--resume {resume}: no such checkpoint (runs write <out-dir>/last.pt)")
        state = torch.load(resume, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        history, best_map, best_epoch = state["history"], state["best_map"], state["best_epoch"]
        start_epoch = state["epoch"] + 1
        if is_main:
            print(f"resumed from {resume} at epoch {start_epoch + 1}/{config.epochs}")
    log_path = out_dir / "log.jsonl"
    if is_main and start_epoch == 0:
        log_path.write_text(json.dumps({"config": asdict(config), "classes": train_index.classes}) + "\n")

    final = None
    for epoch in range(start_epoch, config.epochs):
        loader.set_epoch(epoch)
        wrapped.train()
        start, loss_sum, images_seen, steps_done = time.perf_counter(), torch.zeros((), device=device), 0, 0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   unit="step")
        for step, (images, targets, plan) in enumerate(loader):
            if step >= steps_per_epoch:
                break
            with autocast:
                splice = plan if objective.consistency is not None and plan.num_mixed > 0 else None
                output = wrapped(images, splice_plan=splice) if splice is not None else wrapped(images)
                loss = objective(output, targets, plan)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            loss_sum = loss_sum + loss.detach().float()  # stays on the device: no sync per step
            images_seen += len(images)
            if (step + 1) % LOG_EVERY == 0 or step + 1 == steps_per_epoch:
                mean_loss = float(loss_sum) / (step + 1)
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"the loss became {mean_loss} in epoch {epoch + 1} by step {step + 1}: "
                                             "lower --lr, or use --amp bf16/off instead of fp16")
                bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{optimizer.param_groups[-1]['lr']:.2e}")
            bar.update()
            steps_done = step + 1
        bar.close()
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, "train_loss": float(loss_sum) / max(steps_done, 1), "lr": optimizer.param_groups[-1]["lr"],
                  "seconds": seconds, "images_per_s": images_seen / seconds, "skipped": len(loader.skipped)}
        if val_loader is not None:
            final = evaluate(model, val_loader, val_index, config, objective.base, autocast, progress=progress)
            record.update(final.as_dict())
            if ema is not None:
                record["mAP_ema"] = evaluate(ema.module, val_loader, val_index, config, objective.base, autocast,
                                             desc="eval ema", progress=progress).mAP
        history.append(record)
        score = max(record.get("mAP", -1.0), record.get("mAP_ema", -1.0))
        improved = score > best_map
        if improved:
            best_map, best_epoch = score, epoch + 1
        if is_main:
            with log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")
            state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                         scaler=scaler.state_dict() if scaler is not None else None,
                         ema=ema.state_dict() if ema is not None else None, epoch=epoch, config=asdict(config),
                         classes=train_index.classes, history=history, best_map=best_map, best_epoch=best_epoch)
            _checkpoint(out_dir / "last.pt", **state)
            if improved and val_loader is not None:
                _checkpoint(out_dir / "best.pt", **state)
            summary = f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.4f}, " \
                      f"{record['images_per_s']:.1f} images/s"
            if "mAP" in record:
                summary += f", mAP {100 * record['mAP']:.2f}"
            if "mAP_ema" in record:
                summary += f" (EMA {100 * record['mAP_ema']:.2f})"
            print(summary, flush=True)
    return TrainResult(history=history, best_map=best_map, best_epoch=best_epoch, out_dir=out_dir, final=final)

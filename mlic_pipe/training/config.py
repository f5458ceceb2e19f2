"""`TrainConfig`: everything a training run depends on, each field with its help and its choices.

The command line is generated from these fields (`mlic_pipe.cli` reads `fields(TrainConfig)`), so
an option is declared once, here: its default, its help text, and its choices, which come from the
registries (mixers, heads, losses, optimizers, schedules) rather than from lists typed again.
`validate` raises `ConfigError` naming fields, which the CLI spells as flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlic_pipe.datasets.index import MISSING_FILES
from mlic_pipe.errors import ON_ERROR, ConfigError
from mlic_pipe.loading.auto_augment import parse_auto_augment
from mlic_pipe.loading.crops import CROPS
from mlic_pipe.losses import LOSSES
from mlic_pipe.mix.cells import CELL_FORMS
from mlic_pipe.mix.erasing import ERASE_MODES
from mlic_pipe.mix.schedule import check_schedule
from mlic_pipe.mix import MIXERS
from mlic_pipe.mix.targets import TARGET_RULES
from mlic_pipe.models import HEADS
from mlic_pipe.training.optim import BASE_OPTIMIZERS, OPTIMIZERS, SCHEDULES

__all__ = ["AMP_MODES", "EVAL_CROPS", "MASK_MIXES", "TTA_MODES", "TrainConfig"]

AMP_MODES = ("auto", "off", "bf16", "fp16")
EVAL_CROPS = ("squash", "center")
TTA_MODES = ("none", "flip")
# The mixers with a partner and a weight map: they take `append` and SUMix. ResizeMix and SaliencyMix were left out
# of this list when they were added, so `--mix-append` was silently ignored for them; keep it complete.
MASK_MIXES = ("cutmix", "fmix", "mixup", "resizemix", "saliencymix")


def option(default: Any, help: str, *, choices=None, flag: str | None = None, metavar: str | None = None,
           factory=None, many: bool = False):
    """A config field with what the CLI needs to offer it: help, choices (a registry or tuple), flag.

    `many`: the value is one of `choices` or several joined by commas.
    """
    metadata = {"help": help, "choices": choices, "flag": flag, "metavar": metavar, "many": many}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in every checkpoint and in the log's first line."""

    data: str = option("demo", "dataset: 'demo', a COCO .json or root, a VOCdevkit, a NUS-WIDE root or a .csv",
                       flag="positional")
    images: str | None = option(None, "image folder of a COCO-format .json outside COCO's own layout",
                                metavar="DIR")
    classes: str | None = option(None, "class names, one a line: a .txt list file's columns, or a CSV's order",
                                 metavar="FILE")
    unverified: str = option("negative", "Open Images: a class no human verified for an image is a negative, or "
                             "unknown ('ignore': left out of the loss and the metrics)", choices=("negative", "ignore"))
    machine_threshold: float | None = option(None, "Open Images: also train on machine-generated labels of at "
                                             "least this confidence", metavar="T")
    train_split: str = option("train", "training split (VOC: trainval)")
    val_split: str | None = option("val", "validation split (VOC: test); empty for none")
    val_data: str | None = option(None, "a separate validation dataset (needed when DATA is one annotation file)",
                                  metavar="DATA")
    backbone: str = option("resnet50", "any timm model")
    head: str = option("avg", "classification head", choices=HEADS)
    head_kwargs: dict = option(None, "head option, repeatable, e.g. --head-arg num_heads=4 --head-arg lam=0.1",
                               flag="--head-arg", metavar="KEY=VALUE", factory=dict)
    pretrained: bool = option(False, "start from timm's pretrained weights (needs them downloaded or cached)")
    loss: str = option("asl", "base loss", choices=LOSSES)
    loss_kwargs: dict = option(None, "loss option, repeatable, e.g. --loss-arg s=23 --loss-arg m=0",
                               flag="--loss-arg", metavar="KEY=VALUE", factory=dict)
    mix: str = option("splicemix", "augmentation; several joined by commas are chosen per batch (--mix-weights)",
                      choices=MIXERS, many=True)
    mix_weights: str | None = option(None, "odds of each --mix name, e.g. 0.5,0.5 (default equal)",
                                     metavar="W1,W2,...")
    mix_prob: float = option(1.0, "probability that a batch is mixed at all")
    mix_off_epoch: int | None = option(None, "no mixing from this epoch on (counted from 0, timm's mixup-off-epoch)",
                                       metavar="EPOCH")
    mix_append: bool = option(False, f"mask mixes ({', '.join(MASK_MIXES)}): append B/4 mixed images, keeping "
                                     "the sources (needed by SUMix); SpliceMix always appends")
    label_rule: str = option("union", "mask mixes' labels: union (max of the two sources; both objects count as "
                             "present) or area (lam * y_a + (1 - lam) * y_b with lam the primary's pixel fraction, "
                             "the published CutMix/FMix weighting); SpliceMix always takes the union of its cells",
                             choices=TARGET_RULES)
    crop: str = option("random", "training crop: random (area --crop-scale, aspect 3/4-4/3), multiscale (ML-GCN / "
                       "SpliceMix fixed-offset MultiScaleCrop), squash (the whole image, ML-Decoder / ASL) or center",
                       choices=CROPS)
    crop_scale: str = option("0.7,1.0", "random crop: area range as a fraction of the image (timm's scale)",
                             metavar="LOW,HIGH")
    eval_crop: str = option("squash", "evaluation crop: squash (the whole image resized) or center (timm's, "
                            "--crop-pct)", choices=EVAL_CROPS)
    crop_pct: float = option(0.875, "center crop: the crop's fraction of the resized shorter side")
    hflip: float = option(0.5, "probability of a horizontal flip of a training image")
    normalize: bool = option(True, "normalize with ImageNet's mean and std; --no-normalize hands over [0, 1] "
                             "images (ML-Decoder, ASL)")
    tta: str = option("none", "evaluation: flip averages the scores of each image and its mirror", choices=TTA_MODES)
    auto_augment: str | None = option(None, "auto-augment in the DALI graph: timm's RandAugment string (e.g. "
                                      "rand-m9-n2-mstd0.5, rand-m9-mstd0.5-inc1), trivial (TrivialAugment Wide), "
                                      "auto (AutoAugment ImageNet), randaugment-pypi (the randaugment package's, "
                                      "as PIL computes it) or mldecoder (ML-Decoder's CutoutPIL(0.5) then that)",
                                      metavar="POLICY")
    cutout: float = option(0.0, "ML-Decoder's Cutout: one box of side FACTOR x S of a random colour per training image "
                           "(0.5 as published; 0 = off)", metavar="FACTOR")
    reprob: float = option(0.0, "timm's random erasing: probability per training image (0 = off)")
    remode: str = option("const", "random erasing fill: const (0), rand (a normal per channel), pixel (normal noise)",
                         choices=ERASE_MODES)
    recount: int = option(1, "random erasing: up to this many boxes per image")
    splicemix_cl: bool = option(False, "add the SpliceMix-CL consistency loss")
    cl_weight: float = option(1.0, "weight of SpliceMix-CL")
    cl_form: str = option("published", "SpliceMix-CL cells: published (resized feature map split evenly, dropped "
                          "cells counted in the mean) or exact (the pixels' exact partition, kept cells only)",
                          choices=CELL_FORMS)
    cl_teacher_gradient: bool = option(False, "SpliceMix-CL: let the gradient reach the source predictions too "
                                       "(the published VOC 2007 variant)")
    sumix: bool = option(False, "SUMix learned mix ratio for mask mixes (with mix_append)")
    sumix_gamma: float = option(0.1, "SUMix's weight of its uncertainty regularizer (0.1, the class default; the "
                                "published configs use 0.5 or 1.0)")
    epochs: int = option(10, "epochs")
    batch_size: int = option(32, "images read per step per rank")
    image_size: int = option(448, "image size S")
    optimizer: str = option("adamw", "optimizer", choices=OPTIMIZERS)
    sam_base: str = option("sgd", "the optimizer SAM wraps (with --optimizer sam)", choices=BASE_OPTIMIZERS)
    sam_rho: float = option(0.05, "SAM's neighbourhood radius")
    lr: float | None = option(None, "head learning rate (default: the optimizer's, 1e-4 adamw, 0.05 sgd)")
    weight_decay: float = option(1e-4, "weight decay")
    momentum: float = option(0.9, "SGD momentum")
    sgd_nesterov: bool = option(True, "Nesterov momentum for SGD")
    backbone_lr_mult: float = option(0.1, "backbone lr = lr x this")
    filter_bias_and_bn: bool = option(False, "no weight decay on biases and norm weights (timm's parameter groups; "
                                      "ML-Decoder's and ASL's add_weight_decay)")
    schedule: str = option("cosine", "lr schedule after the warmup", choices=SCHEDULES)
    warmup_epochs: float = option(1.0, "linear warmup, in epochs")
    warmup_from_zero: bool = option(False, "warm up per step from lr 0 (CSRA's WarmUpLR: lr x t / T) rather than "
                                    "from lr / T")
    step_size: int = option(10, "step schedule: epochs between decays")
    step_epochs: str | None = option(None, "step schedule: decay after these epochs instead, e.g. 39,59",
                                     metavar="E1,E2")
    step_gamma: float = option(0.1, "step schedule: factor of each decay")
    amp: str = option("auto", "mixed precision (auto: bf16 on CUDA, off on CPU)", choices=AMP_MODES)
    ema: float | None = option(None, "keep EMA weights with this decay (e.g. 0.9997) and evaluate them too",
                               metavar="DECAY")
    channels_last: bool = option(False, "channels_last images and model")
    device: str = option("auto", "auto (CUDA when present), cpu or cuda[:N]")
    threads: int | None = option(None, "DALI CPU threads (default: CPU count, at most 8)")
    render_threads: int | None = option(None, "CPU render (and plan) threads (default: torch's thread count)",
                                       metavar="N")
    seed: int = option(0, "fixes init, order, crops and plans")
    out_dir: str = option("runs/mlic", "where log.jsonl, last.pt and best.pt go", metavar="DIR")
    resume: str | None = option(None, "continue from a checkpoint, or 'auto' for OUT_DIR/last.pt (mid-epoch too)",
                                metavar="PATH")
    early_stop: int | None = option(None, "stop when validation mAP has not improved for this many epochs",
                                    metavar="PATIENCE")
    checkpoint_every: int | None = option(None, "also write last.pt every N steps, so a resume continues mid-epoch",
                                          metavar="N")
    limit_train_batches: int | None = option(None, "stop every epoch after this many steps (smoke runs)")
    on_error: str = option("raise", "undecodable images: raise, or skip and report", choices=ON_ERROR)
    missing: str = option("raise", "image files missing on disk: raise, or drop them with a warning",
                          choices=MISSING_FILES)

    def _check_ranges(self) -> None:
        """Each number within what can work (a flag of 0 or -1 is refused here, not deep in a library)."""
        least = {"epochs": 1, "batch_size": 1, "image_size": 16, "threads": 1, "render_threads": 1, "step_size": 1,
                 "limit_train_batches": 1, "weight_decay": 0, "warmup_epochs": 0, "cl_weight": 0, "sumix_gamma": 0,
                 "backbone_lr_mult": 0, "momentum": 0, "step_gamma": 0, "cutout": 0, "reprob": 0, "recount": 1,
                 "hflip": 0, "crop_pct": 0.05}
        for name, low in least.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"{{{name}}} must be at least {low}, got {value}")
        if self.lr is not None and self.lr < 0:  # 0 is allowed: it freezes the weights (a baseline, a test)
            raise ConfigError(f"{{lr}} must be at least 0, got {self.lr}")
        if self.momentum >= 1:
            raise ConfigError(f"{{momentum}} must be below 1, got {self.momentum}")
        for name in ("cutout", "reprob", "hflip", "crop_pct"):
            if getattr(self, name) > 1:
                raise ConfigError(f"{{{name}}} must be at most 1, got {getattr(self, name)}")

    def mix_names(self) -> list[str]:
        """`mix` as its list of names, each refused unless registered."""
        names = [name.strip() for name in self.mix.split(",")]
        for name in names:
            if name not in MIXERS:
                raise ConfigError(f"{{mix}} must be one of {', '.join(MIXERS)} (or several joined by commas), "
                                  f"got {name!r}")
        return names

    def mix_schedule(self) -> dict:
        """The loader's schedule arguments (mix_weights, mix_prob, mix_off_epoch), refused unless they can work."""
        weights = None
        if self.mix_weights:
            try:
                weights = [float(w) for w in self.mix_weights.split(",")]
            except ValueError:
                raise ConfigError(f"{{mix_weights}} takes numbers joined by commas, got {self.mix_weights!r}") from None
        check_schedule(len(self.mix_names()), weights, self.mix_prob, self.mix_off_epoch)
        return {"mix_weights": weights, "mix_prob": self.mix_prob, "mix_off_epoch": self.mix_off_epoch}

    def crop_scale_range(self) -> tuple[float, float]:
        """`crop_scale` as (low, high), refused unless 0 < low <= high <= 1."""
        try:
            low, high = (float(part) for part in self.crop_scale.split(","))
        except ValueError:
            raise ConfigError(f"{{crop_scale}} takes two numbers LOW,HIGH, got {self.crop_scale!r}") from None
        if not 0 < low <= high <= 1:
            raise ConfigError(f"{{crop_scale}} must satisfy 0 < LOW <= HIGH <= 1, got {self.crop_scale!r}")
        return low, high

    def validate(self) -> None:
        """Raise `ConfigError` for a value or a combination that cannot work, before any work is done."""
        for name in ("head", "loss", "optimizer", "schedule"):
            registry = type(self).__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in registry:
                raise ConfigError(f"{{{name}}} must be one of {', '.join(registry)}, got {getattr(self, name)!r}")
        for name, allowed in (("amp", AMP_MODES), ("on_error", ON_ERROR), ("missing", MISSING_FILES),
                              ("cl_form", CELL_FORMS), ("sam_base", BASE_OPTIMIZERS), ("label_rule", TARGET_RULES),
                              ("remode", ERASE_MODES), ("crop", CROPS), ("eval_crop", EVAL_CROPS),
                              ("tta", TTA_MODES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{{{name}}} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        self._check_ranges()
        self.crop_scale_range()
        self.mix_names()
        self.mix_schedule()
        parse_auto_augment(self.auto_augment)
        if self.splicemix_cl and self.mix_names() != ["splicemix"]:
            raise ConfigError("{splicemix_cl} needs {mix:splicemix} (it compares spliced cells with their sources)")
        if self.sumix and (not set(self.mix_names()) <= set(MASK_MIXES) or not self.mix_append):
            raise ConfigError(f"{{sumix}} needs a mask mix in the appended layout: {{mix:{'|'.join(MASK_MIXES)}}} "
                              "and {mix_append}")
        if self.loss == "aam" and self.head == "csra":
            raise ConfigError("{loss:aam} needs cosine logits; CSRA's attention logits are not cosines: use "
                              "{head:avg}, max, mldecoder or graph")
        if self.sam_rho <= 0:
            raise ConfigError(f"{{sam_rho}} must be positive, got {self.sam_rho}")
        if self.early_stop is not None and (self.early_stop < 1 or not self.val_split and not self.val_data):
            raise ConfigError("{early_stop} needs a patience of at least 1 epoch and a validation set "
                              "({val_split} or {val_data})")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"{{checkpoint_every}} must be at least 1, got {self.checkpoint_every}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"{{ema}} decay must be in (0, 1), got {self.ema}")

"""Recipes: each paper's published training settings as `TrainConfig` values (``mlic-pipe train --recipe``).

A recipe sets what the paper's public training script sets (backbone, image size, batch, optimizer,
learning rate and schedule, epochs, head and loss arguments, mix, EMA, strategy); any flag given
on the command line overrides it. `source` says where each value was read. What the package does
not reproduce is named in `differences`, so a user knows.

Batch sizes are per rank, as `TrainConfig.batch_size`: SpliceMix's 32 is the total over its GPUs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlic_pipe.registry import Registry

__all__ = ["RECIPES", "Recipe", "recipe_settings"]


@dataclass(frozen=True)
class Recipe:
    """A paper's published settings (TrainConfig fields), where they come from, and what differs."""

    settings: dict
    source: str
    differences: str = ""
    paper: str = field(default="")


_COCO_SPLICEMIX = dict(
    backbone="resnet101", pretrained=True, image_size=448, head="max", loss="bce", mix="splicemix",
    epochs=80, batch_size=32, optimizer="sgd", sgd_nesterov=False, momentum=0.9, weight_decay=1e-4, lr=0.05,
    backbone_lr_mult=0.1, schedule="step", step_epochs="39,59", step_gamma=0.1, warmup_epochs=0.0, amp="fp16",
    seed=95, crop="multiscale", eval_crop="squash",
)
_SPLICEMIX_SOURCE = ("zuiran/SpliceMix: main.py (lr 0.05, batch 32, S 448, SGD momentum 0.9, wd 1e-4, lrp 0.1, "
                     "80 epochs, steps [40, 60] as MultiStepLR milestones 39, 59, lr x0.1, AMP, seed 95), "
                     "utilities/utils.py (optimizer, scheduler; training images Resize(S + S // 7) + "
                     "MultiScaleCrop(S, scales (1, .875, .75, .66, .5), max_distort 2) + flip, evaluation "
                     "Resize((S, S)), ImageNet normalization), models/loss_fns.py (MultiLabelSoftMarginLoss = "
                     "BCE mean), models/SpliceMix_CL.py (global max pooling + linear)")
_SPLICEMIX_DIFFERENCES = ("batch 32 is the total over the published run's GPUs (ours is per rank); "
                          "gradient clipping at 10 (published without AMP only) is not applied")

RECIPES: Registry[Recipe] = Registry("recipe")
RECIPES.register("splicemix-coco", lambda: Recipe(
    dict(_COCO_SPLICEMIX), _SPLICEMIX_SOURCE, _SPLICEMIX_DIFFERENCES, "SpliceMix (Lu et al.), ResNet-101 on COCO"),
    "SpliceMix, default mode, ResNet-101 at 448 on MS-COCO")
RECIPES.register("splicemix-cl-coco", lambda: Recipe(
    dict(_COCO_SPLICEMIX, splicemix_cl=True, cl_form="published", cl_weight=1.0),
    _SPLICEMIX_SOURCE + "; the CL loss as models/SpliceMix_CL.py Loss_fn (BCE + CL, teacher detached on COCO)",
    _SPLICEMIX_DIFFERENCES, "SpliceMix-CL (Lu et al.), ResNet-101 on COCO"),
    "SpliceMix + its consistency loss, ResNet-101 at 448 on MS-COCO")
RECIPES.register("csra-coco", lambda: Recipe(
    dict(backbone="resnet101", pretrained=True, image_size=448, head="csra", head_kwargs={"num_heads": 6, "lam": 0.5},
         loss="bce", mix="none", epochs=30, batch_size=16, optimizer="sgd", sgd_nesterov=False, momentum=0.9,
         weight_decay=1e-4, lr=0.1, backbone_lr_mult=0.1, schedule="step", step_size=5, step_gamma=0.1,
         warmup_epochs=2.0, warmup_from_zero=True, amp="off", crop="random", crop_scale="0.7,1.0", normalize=False,
         eval_crop="squash"),
    "Kevinz-code/CSRA: main.py (batch 16, SGD momentum 0.9, wd 1e-4, backbone lr 0.01 and classifier lr 0.1, "
    "StepLR every 5 epochs on COCO x0.1, 2 warm-up epochs, 30 epochs, S 448), README (COCO ResNet-101: 6 heads, "
    "lambda 0.5), pipeline/resnet_csra.py (BCE mean), utils/warmUpLR.py (per-iteration linear warm-up from 0), "
    "pipeline/resnet_dataset.py (flip + RandomResizedCrop(S, scale (0.7, 1)) for training, Resize((S, S)) for "
    "evaluation, images in [0, 1]: mean 0, std 1)",
    "", "CSRA (Zhu & Wu)"),
    "CSRA, 6 heads, ResNet-101 at 448 on MS-COCO")
_MLDECODER = dict(backbone="tresnet_l", pretrained=True, image_size=448, head="mldecoder",
                  head_kwargs={"embed_dim": 768}, mix="none",  # queries: min(C, 100), one per COCO class weight_decay=1e-4,
                  backbone_lr_mult=1.0, schedule="onecycle", ema=0.9997,
                  # CutoutPIL(cutout_factor=0.5) + the randaugment package's RandAugment(), in that order
                  crop="squash", eval_crop="squash", hflip=0.0, normalize=False, auto_augment="mldecoder")
RECIPES.register("mldecoder-asl-coco", lambda: Recipe(
    dict(_MLDECODER, loss="asl", loss_kwargs={"gamma_neg": 4, "gamma_pos": 0, "clip": 0.05}, epochs=40,
         filter_bias_and_bn=True,
         batch_size=56, optimizer="adam", lr=1e-4, warmup_epochs=8.0, amp="fp16"),
    "Alibaba-MIIL/ML_Decoder: train.py (TResNet-L, S 448, batch 56, full decoding: one query per class, embedding "
    "768, Adam lr 1e-4 with wd 1e-4, OneCycleLR pct_start 0.2 over 40 epochs, EMA 0.9997, ASL gamma_neg 4 "
    "gamma_pos 0 clip 0.05 with the focusing weight detached, AMP; training images Resize((448, 448)) + "
    "CutoutPIL(cutout_factor=0.5) + RandAugment() of the PyPI randaugment 1.0.2 package "
    "(jizongFox/pytorch-randaugment), no flip, no normalization; add_weight_decay: no decay on biases and 1-D "
    "weights)",
    "",
    "ML-Decoder (Ridnik et al.)"),
    "ML-Decoder with ASL, TResNet-L at 448 on MS-COCO")
RECIPES.register("mldecoder-aam-coco", lambda: Recipe(
    dict(_MLDECODER, loss="aam", loss_kwargs={"s": 23.0, "m": 0.0, "k": 0.7, "gamma_pos": 0.0, "gamma_neg": 0.0},
         epochs=80, batch_size=48, optimizer="sam", sam_base="sgd", sam_rho=0.05, lr=0.007, warmup_epochs=8.0,
         early_stop=5, amp="off"),
    "deep-object-reid (tosfaq fork, multilabel branch): torchreid/losses/asl.py AMBinaryLoss at its last change "
    "(2022-08-03: a plain sum over the batch, the lr below tuned for it); the COCO ML-Decoder "
    "loss setting s 23, m 0, k 0.7, gammas 0; configs/ote_custom_classification/*/main_model_multilabel.yaml "
    "(SAM rho 0.05, lr 0.007, OneCycle pct_start 0.1, 80 epochs, early stopping patience 5, EMA 0.9997, wd 1e-4, "
    "batch 48, no mixed precision); training images as ML-Decoder's train.py (CutoutPIL(0.5) + the randaugment "
    "package's RandAugment())",
    "SAM's base is our SGD (momentum 0.9, Nesterov)",
    "Combining Metric Learning and Attention Heads (Prokofiev & Sovrasov), ML-Decoder + AAM"),
    "ML-Decoder with the AAM loss, SAM and early stopping, TResNet-L at 448 on MS-COCO")


def recipe_settings(name: str) -> dict:
    """The TrainConfig fields recipe `name` sets (a fresh dict: head and loss options copied)."""
    settings = RECIPES.create(name).settings
    return {key: dict(value) if isinstance(value, dict) else value for key, value in settings.items()}

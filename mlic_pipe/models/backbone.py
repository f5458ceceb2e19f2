"""`TimmBackbone`: any timm model as a spatial feature map (B, D, h, w).

The multi-label heads all read a feature map, not a pooled vector: CSRA attends over positions,
ML-Decoder's queries attend over tokens, SpliceMix-CL cuts the map into grid cells. timm gives
CNN maps from `forward_features` directly; ViT-style models give tokens (B, N, D), whose prefix
tokens (class, register, distillation) are dropped and whose patch tokens are laid back on their
grid; NHWC models (Swin, ConvNeXt-V2 variants) are permuted.
"""
from __future__ import annotations

import math
import os
import socket

import torch
from torch import nn

from mlic_pipe.errors import ConfigError

__all__ = ["TimmBackbone", "create_timm_model"]

HUB_HOST = "huggingface.co"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the weights host answers at all (a DNS failure returns at once, a firewall in `timeout`)."""
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_hint(name: str) -> str:
    return (f"could not load pretrained weights for '{name}'. Without network access: put the weights in the "
            "Hugging Face cache on a connected machine (HF_HOME) and set HF_HUB_OFFLINE=1, pass "
            "pretrained_cfg_overlay=dict(file='/path/to/weights.pth') to use a local file, or train from scratch "
            "(pretrained=False; the trainer's default)")


def create_timm_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """`timm.create_model` without a classifier or pooling, failing fast and clearly when weights are out of reach.

    Pretrained weights load through timm's normal path (Hugging Face hub, its cache, or a
    `pretrained_cfg_overlay` file). Offline, the hub client would retry for about a minute before
    failing; we check the host first, unless HF_HUB_OFFLINE=1 or a local file is given.
    """
    import timm

    if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:8]
        raise ConfigError(f"{{backbone}}: timm has no model {name!r}" + (f"; similar: {', '.join(close)}" if close
                                                                          else "; `timm.list_models()` lists them"))
    kwargs = {"num_classes": 0, "global_pool": "", **kwargs}
    local_file = "file" in (kwargs.get("pretrained_cfg_overlay") or {})
    if pretrained and not local_file and os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "") and not _hub_reachable():
        raise RuntimeError(f"{_offline_hint(name)} ({HUB_HOST} is unreachable)")
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, ConnectionError) as error:  # huggingface_hub's not-found / offline errors are OSErrors
        if not pretrained:
            raise
        raise RuntimeError(f"{_offline_hint(name)}: {error}") from error


class TimmBackbone(nn.Module):
    """A timm model whose `forward` returns the (B, D, h, w) feature map; `num_features` is D.

    Args:
        name: any timm model name, e.g. "resnet50", "tresnet_m", "vit_base_patch16_224".
        pretrained: load timm's default pretrained weights (see `create_timm_model`).
        image_size: for models whose size is fixed at build time (ViTs), the input size to build for.
        **kwargs: passed to `timm.create_model`.
    """

    def __init__(self, name: str, pretrained: bool = False, image_size: int | None = None, **kwargs):
        super().__init__()
        if image_size is not None:
            try:
                self.model = create_timm_model(name, pretrained, img_size=image_size, **kwargs)
            except TypeError:  # CNNs take any size and have no img_size argument
                self.model = create_timm_model(name, pretrained, **kwargs)
        else:
            self.model = create_timm_model(name, pretrained, **kwargs)
        self.name = name
        self.num_features = int(self.model.num_features)
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0))
        self.output_fmt = str(getattr(self.model, "output_fmt", "NCHW"))

    def _token_grid(self, count: int, image: torch.Tensor) -> tuple[int, int]:
        patch = getattr(getattr(self.model, "patch_embed", None), "patch_size", None)
        if patch is not None:
            height, width = image.shape[-2] // patch[0], image.shape[-1] // patch[1]
            if height * width == count:
                return height, width
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(f"{self.name} returned {count} patch tokens, which do not form a grid; "
                             "use a square input whose side is a multiple of the patch size")
        return side, side

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model.forward_features(images)
        if out.ndim == 3:  # tokens (B, N, D)
            tokens = out[:, self.num_prefix_tokens:]
            height, width = self._token_grid(tokens.shape[1], images)
            return tokens.transpose(1, 2).reshape(out.shape[0], -1, height, width)
        if out.ndim == 4 and self.output_fmt == "NHWC":
            return out.permute(0, 3, 1, 2)
        if out.ndim != 4:
            raise ValueError(f"{self.name}.forward_features gave a {out.ndim}-d output; a spatial map is needed")
        return out

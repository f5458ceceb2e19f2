"""The training step never waits for the device: no blocking host-to-device copy, no host read of a device value.

A blocking copy (``non_blocking=False``) is a ``cudaStreamSynchronize``: the host waits for the step
before, and the GPU then idles while the host prepares the next. The step is run here on the "meta"
device, which stands in for a GPU without one: copies onto it are counted (a `TorchDispatchMode`
over ``aten._to_copy`` and ``aten.copy_``), and any host read of a device value (``.item()``,
``bool(tensor)``, ``.tolist()``, ``.cpu()``) raises there, as it would stall on a GPU. On a GPU,
`test_gpu_training_steps_make_no_synchronizing_call` checks the same with torch's sync debug mode.
"""
import contextlib

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mlic_pipe.mix import MIXERS, create_mixer, mix_ignore, mix_targets, plan_batch
from mlic_pipe.mix.settings import RenderSettings
from mlic_pipe.models import build_model
from mlic_pipe.training import TrainConfig
from mlic_pipe.training.loop import RunParts, _step
from mlic_pipe.training.objective import Objective
from mlic_pipe.training.optim import build_optimizer
from mlic_pipe.training.sam import SAM

META = torch.device("meta")
CLASSES, BATCH, SIZE = 5, 8, 64


class HostToDeviceCopies(TorchDispatchMode):
    """Records every copy from the CPU onto `device`, blocking or not."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device, self.blocking, self.non_blocking = device, [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default:
            source, target, asynchronous = args[0], kwargs.get("device"), kwargs.get("non_blocking", False)
        elif func is torch.ops.aten.copy_.default:
            target, source = args[0].device, args[1]
            asynchronous = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
        else:
            return func(*args, **kwargs)
        if target is not None and source.device.type == "cpu" and torch.device(target) == self.device:
            (self.non_blocking if asynchronous else self.blocking).append((str(func), tuple(source.shape)))
        return func(*args, **kwargs)


def _meta_plan(name: str, images: torch.Tensor, rng, **options):
    """The plan the loader draws for `images` on the device (meta)."""
    mixer, size = create_mixer(name, **options), images.shape[1]
    if name == "fmix":  # a torch.Generator cannot live on meta: make the masks on the host, then place them
        plan = plan_batch(mixer, torch.zeros(images.shape, dtype=torch.uint8), size, rng)
        plan.masks, plan.lam = plan.masks.to(META), plan.lam.to(META)  # where the GPU path makes them
        return plan
    return plan_batch(mixer, images, size, rng, device=META)


@pytest.mark.parametrize("name", [n for n in MIXERS if n not in ("none", "saliencymix")])
def test_a_batch_uploads_its_plan_once_without_waiting(name):
    """Plan upload, targets, ignore mask: one non-blocking copy of the packed table, no blocking one.

    SaliencyMix is left out: its plan reads the decoded pixels on the host, by design.
    """
    from mlic_pipe.kernels import kernel_arguments

    images = torch.empty((BATCH, SIZE, SIZE, 3), dtype=torch.uint8, device=META)
    table = torch.empty((100, CLASSES), device=META)
    unknown = torch.empty((100, CLASSES), dtype=torch.bool, device=META)
    rows = torch.arange(BATCH) * 3
    settings = RenderSettings(out_dtype=torch.bfloat16)
    options = {"append": True} if name in ("cutmix", "fmix", "mixup", "resizemix") else {}
    plan = _meta_plan(name, images, np.random.default_rng(0), **options).with_indices(rows)
    out = settings.empty(plan.num_outputs, SIZE, META)
    with HostToDeviceCopies(META) as copies:
        kernel_arguments(images, plan, settings, out)  # what the kernel launch uploads
        on_device = rows.to(META, non_blocking=True)  # the loader's gather of the rows' labels
        targets = mix_targets(table[on_device], plan)
        mix_ignore(unknown[on_device], plan, targets)
        mix_targets(table[on_device], plan, rule="area")
    assert copies.blocking == []
    uploads = [shape for _, shape in copies.non_blocking if shape != (BATCH,)]  # the rows, above
    assert len(uploads) == 1 and uploads[0][0] == plan.num_outputs, copies.non_blocking  # the table, once


@pytest.mark.parametrize("options", [
    dict(mix="splicemix", splicemix_cl=True),
    dict(mix="splicemix", splicemix_cl=True, cl_form="exact", optimizer="sam"),
    dict(mix="cutmix", mix_append=True, sumix=True),
    dict(mix="fmix", mix_append=True, sumix=True, loss="bce"),
    dict(mix="mixup", loss="aam", head="mldecoder", head_kwargs={"embed_dim": 16, "num_heads": 2,
                                                                  "dim_feedforward": 16}),
    dict(mix="splicemix", head="csra", head_kwargs={"num_heads": 2}, optimizer="sgd"),
])
def test_a_training_step_makes_no_blocking_copy_and_reads_nothing_back(options):
    """Forward (with SpliceMix-CL's cells or SUMix's vectors), loss, backward, optimizer (and SAM) step."""
    config = TrainConfig(backbone="resnet18", image_size=96, batch_size=BATCH, **options)
    config.validate()
    kwargs = dict(config.head_kwargs, **({"cosine": True} if config.loss == "aam" else {}))
    model = build_model("resnet18", config.head, CLASSES, image_size=96, uncertainty=config.sumix, **kwargs).to(META)
    optimizer = build_optimizer(config, model)
    parts = RunParts(model=model, wrapped=model, optimizer=optimizer,
                     scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                     objective=Objective(config), autocast=contextlib.nullcontext(), scaler=None, ema=None,
                     steps_per_epoch=1)
    images = torch.empty((BATCH, 96, 96, 3), dtype=torch.uint8, device=META)
    options = {"append": True} if config.mix_append else {}
    plan = _meta_plan(config.mix, images, np.random.default_rng(3), **options).with_indices(torch.arange(BATCH))

    class Batch:  # what the loader hands over: images rendered on the device, targets mixed there
        pass
    batch = Batch()
    batch.plan, batch.ignore = plan, None
    batch.images = torch.empty((plan.num_outputs, 3, 96, 96), device=META)
    batch.targets = mix_targets(torch.empty((BATCH, CLASSES), device=META), plan)
    with HostToDeviceCopies(META) as copies:
        _step(parts, batch, 0)
    assert copies.blocking == [], copies.blocking
    assert isinstance(parts.optimizer, SAM) == (config.optimizer == "sam")


@pytest.mark.gpu
def test_gpu_training_steps_make_no_synchronizing_call():
    """On a GPU: loader batches and SpliceMix-CL training steps under torch's sync debug mode set to "error"."""
    from mlic_pipe.datasets import load
    from mlic_pipe.loader import MLICLoader

    index = load("demo")
    index = index.subset(np.arange(len(index)) < 48)
    loader = MLICLoader(index, 8, image_size=96, mix="splicemix", device="cuda", dtype=torch.bfloat16)
    config = TrainConfig(backbone="resnet18", image_size=96, batch_size=8, splicemix_cl=True)
    model = build_model("resnet18", "avg", index.num_classes, image_size=96).cuda()
    optimizer = build_optimizer(config, model)
    parts = RunParts(model=model, wrapped=model, optimizer=optimizer,
                     scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                     objective=Objective(config), autocast=torch.autocast("cuda", dtype=torch.bfloat16), scaler=None,
                     ema=None, steps_per_epoch=6)
    batches = iter(loader)
    _step(parts, next(batches), 0)  # warm-up: kernel compile, allocator, cuDNN's choices
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(1, 4):
            _step(parts, next(batches), step)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()

"""Step share: the augmentation's share of a training step of a timm ResNet.

For each model and (B, S), three contenders on the same batch, in one run:

- ``model-step`` (the baseline): `mlic_pipe.profile.model_train_step` (what `mlic-pipe profile
  --model` times): forward + backward + SGD step on the rendered batch, bf16 autocast on CUDA, fp32
  on the CPU, BCE on random multi-hot targets.
- ``mlic-pipe``: the SpliceMix render of that batch from uint8 (kernel on CUDA, reference on CPU)
  plus its targets: what MLICLoader adds after decoding.
- ``published``: the published SpliceMix op sequence and target union on the same batch.

extra_info ``share_of_step`` = augmentation time / (augmentation time + model step time): the
fraction of a step's wall time the augmentation would take if it ran in series with the model.

Run: pytest benchmarks/test_bench_step.py --benchmark-only [--full for resnet101 and S=448]
"""
import numpy as np
import pytest
import torch

from mlic_pipe.mix import SpliceMix, mix_targets, render
from mlic_pipe.profile import model_train_step

from benchmarks.baselines import NUM_CLASSES
from benchmarks.common import devices, measured, preset, record, synchronizer
from benchmarks.baselines import published_op_sequence



def _cases():
    batch, size = preset()["step"]
    return [(m, batch, size, d) for m in preset()["step_models"] for d in devices()]


@pytest.mark.parametrize("name", ["model-step", "mlic-pipe", "published"])
@pytest.mark.parametrize("model_name, batch, size, device", _cases())
def test_step_share(benchmark, name, model_name, batch, size, device):
    benchmark.group = f"step-share {model_name} B={batch} S={size} {device}"
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator).to(device)
    targets = (torch.rand(batch, NUM_CLASSES, generator=generator) < 0.05).float().to(device)
    plan = SpliceMix().plan(batch, size, np.random.default_rng(0))
    sync = synchronizer(device)
    if name == "model-step":
        torch.manual_seed(0)
        step = model_train_step(model_name, NUM_CLASSES, torch.device(device))
        batch_in = render(images, plan, out_dtype=torch.float32)
        batch_targets = mix_targets(targets, plan)

        def run():
            step(batch_in, batch_targets)
    elif name == "mlic-pipe":
        out = torch.empty((plan.num_outputs, 3, size, size), device=device)

        def run():
            render(images, plan, out=out)
            mix_targets(targets, plan)
    else:
        def run():
            published_op_sequence(images, plan)
            mix_targets(targets, plan)
    run(), sync()
    benchmark.pedantic(lambda: (run(), sync()), rounds=preset()["rounds"], warmup_rounds=0, iterations=1)
    record(benchmark, baseline=name == "model-step", images=plan.num_outputs, device=device, batch=batch,
           image_size=size, model=model_name, contender=name)
    model_mean = measured(benchmark.group, "model-step")
    if benchmark.stats is not None and name != "model-step" and model_mean is not None:
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["share_of_step"] = round(mean / (mean + model_mean), 4)

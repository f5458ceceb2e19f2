"""Mixer schedules: several mixers per batch by weight, a mixing probability, an off epoch; all replayable."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mlic_pipe.errors import ConfigError
from mlic_pipe.loader import MLICLoader
from mlic_pipe.mix import CutMix, MixSchedule, MixUp, SpliceMix
from mlic_pipe.mix.plan import MASK_BOX, MASK_CONSTANT


def _kind(plan) -> str:
    modes = set(plan.mask_mode.tolist())
    if plan.num_mixed == 0:
        return "none"
    if MASK_BOX in modes:
        return "cutmix"
    if MASK_CONSTANT in modes:
        return "mixup"
    return "splicemix" if plan.num_outputs > plan.num_regular else "?"


def test_choices_follow_the_weights_and_the_probability():
    schedule = MixSchedule([CutMix(), MixUp()], weights=[3, 1], prob=0.6)
    kinds = [_kind(schedule.plan(8, 32, np.random.default_rng([7, b]))) for b in range(4000)]
    counts = {k: kinds.count(k) / len(kinds) for k in ("none", "cutmix", "mixup")}
    # binomial standard deviations at n = 4000 are under 0.008: 4 of them either way
    assert counts["none"] == pytest.approx(0.4, abs=0.032)
    assert counts["cutmix"] == pytest.approx(0.6 * 0.75, abs=0.032)
    assert counts["mixup"] == pytest.approx(0.6 * 0.25, abs=0.032)


def test_a_single_mixer_at_probability_one_draws_the_plain_mixers_plans():
    """The schedule wrapper draws nothing for what is not random, so existing seeds keep their plans."""
    plain = CutMix().plan(8, 32, np.random.default_rng(3))
    wrapped = MixSchedule([CutMix()]).plan(8, 32, np.random.default_rng(3))
    torch.testing.assert_close(plain.box, wrapped.box)


def _plans(loader, epoch, limit=None):
    loader.set_epoch(epoch)
    out = []
    for step, batch in enumerate(loader):
        out.append((_kind(batch.plan), batch.plan.lam.tolist(), batch.rows.tolist()))
        if limit is not None and step + 1 == limit:
            break
    return out


def test_loader_schedules_replay_after_a_resume_and_switch_off_at_the_off_epoch(demo):
    make = lambda: MLICLoader(demo, 6, image_size=32, mix="cutmix,mixup,splicemix", mix_weights=[1, 1, 2],
                              mix_prob=0.7, mix_off_epoch=1, seed=11, num_threads=1)
    assert isinstance(make().mixer, MixSchedule)
    assert isinstance(MLICLoader(demo, 4, image_size=32, mix="cutmix").mixer, CutMix)
    whole = _plans(make(), 0)
    assert {kind for kind, _, _ in whole} >= {"none", "cutmix", "mixup", "splicemix"}
    first = make()
    head = _plans(first, 0, limit=2)
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert head + [p for p in _plans(resumed, 0)] == whole  # the same choices, lams and rows
    assert {kind for kind, _, _ in _plans(make(), 1)} == {"none"}  # off from epoch 1


def test_bad_schedules_are_refused_with_the_flag_named():
    with pytest.raises(ConfigError, match="mix_weights"):
        MixSchedule([CutMix(), MixUp()], weights=[1])
    with pytest.raises(ConfigError, match="mix_prob"):
        MixSchedule([CutMix()], prob=1.5)
    with pytest.raises(ConfigError, match="mix_off_epoch"):
        MixSchedule([CutMix()], off_epoch=-1)
    assert MixSchedule([SpliceMix(), CutMix()]).min_batch_size == SpliceMix().min_batch_size


def test_train_flags_build_the_schedule(tmp_path):
    from mlic_pipe.cli import build_parser
    from mlic_pipe.datasets import load
    from mlic_pipe.training import TrainConfig
    from mlic_pipe.training.trainer import _loaders

    config = TrainConfig(mix="cutmix,mixup", mix_weights="1,0", mix_prob=1.0, batch_size=8, image_size=32,
                         out_dir=str(tmp_path))
    config.validate()
    loader, _ = _loaders(config, load("demo"), None, "cpu")
    kinds = {_kind(batch.plan) for batch in loader}
    assert kinds == {"cutmix"}  # MixUp's weight is 0
    args = build_parser().parse_args(["train", "--mix", "cutmix,mixup", "--mix-weights", "0.5,0.5",
                                      "--mix-prob", "0.8", "--mix-off-epoch", "3"])
    assert (args.mix, args.mix_weights, args.mix_prob, args.mix_off_epoch) == ("cutmix,mixup", "0.5,0.5", 0.8, 3)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--mix", "cutmix,bogus"])
    for bad in (dict(mix="cutmix,mixup", mix_weights="1"), dict(mix_prob=2.0), dict(mix="cutmix,bogus"),
                dict(mix="splicemix,cutmix", splicemix_cl=True)):
        with pytest.raises(ConfigError):
            TrainConfig(**bad).validate()

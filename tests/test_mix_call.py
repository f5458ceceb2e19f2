"""``mixer(images, targets)``: the one-call form, against the plan / render / mix_targets route it stands for."""
import numpy as np
import pytest
import torch

from mlic_pipe.mix import MixUp, SaliencyMix, SpliceMix, render_reference

from render_cases import MIXERS, random_images


def labels(n, classes=6, seed=0):
    return (torch.rand((n, classes), generator=torch.Generator().manual_seed(seed)) > 0.6).float()


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_a_call_is_the_plan_rendered_and_the_labels_mixed_by_it(name):
    mixer, images, targets = MIXERS[name], random_images(10, 37, seed=1, device="cpu"), labels(10)
    got_images, got_targets = mixer(images, targets, rng=np.random.default_rng(7))
    plan = mixer.plan(10, 37, np.random.default_rng(7))
    torch.testing.assert_close(got_images, render_reference(images, plan), atol=1e-5, rtol=0)
    # the labels by hand: the max over each output's kept cells, then (union) the max with its partner's
    for n in range(plan.num_outputs):
        cells = [int(c) for c in plan.cells[n, : int(plan.grid[n].prod())] if c >= 0]
        expected = targets[cells].amax(0) if cells else torch.zeros(6)
        if plan.partner[n] >= 0:
            expected = torch.maximum(expected, targets[int(plan.partner[n])])
        assert torch.equal(got_targets[n], expected), (name, n)


def test_float_input_area_rule_and_a_generator_of_its_own():
    images, targets = random_images(8, 24, seed=2, device="cpu"), labels(8, seed=3)
    mixer = MixUp()
    uint8_out, _ = mixer(images, targets, rng=np.random.default_rng(0))
    float_out, soft = mixer(images.permute(0, 3, 1, 2).float() / 255, targets, rng=np.random.default_rng(0),
                            rule="area")
    torch.testing.assert_close(float_out, uint8_out, atol=1e-5, rtol=0)
    plan = mixer.plan(8, 24, np.random.default_rng(0))
    lam = plan.lam[:, None]
    torch.testing.assert_close(soft, lam * targets[plan.cells[:, 0].long()] + (1 - lam) * targets[plan.partner.long()])
    first, second = mixer(images, targets)[0], mixer(images, targets)[0]  # its own generator moves on
    assert not torch.equal(first, second)
    bf16, _ = SpliceMix()(images, targets, out_dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16 and bf16.shape == (10, 3, 24, 24)


def test_pixel_reading_mixers_get_the_images_and_bad_targets_are_refused():
    images, targets = random_images(6, 40, seed=4, device="cpu"), labels(6)
    out, mixed = SaliencyMix()(images, targets, rng=np.random.default_rng(1))
    assert out.shape == (6, 3, 40, 40) and mixed.shape == (6, 6)
    with pytest.raises(ValueError, match=r"targets must be \(N, C\) with N = 6"):
        MixUp()(images, targets[:5])

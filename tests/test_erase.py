"""Erase boxes in the render pass (Cutout, random erasing): the reference against values computed by hand,
and the shared noise against its definition written another way (plain Python integers and math)."""
import math

import numpy as np
import pytest
import torch

from mlic_pipe.mix import MixPlan, SpliceMix, render_reference
from mlic_pipe.mix.noise import erase_noise
from mlic_pipe.mix.plan import ERASE_COLOUR, ERASE_NOISE, ERASE_NONE, ERASE_VALUE

from render_cases import random_images

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _lowbias32(x):
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_the_noise_is_its_definition_and_standard_normal():
    seed, size = 123456789, 9
    noise = erase_noise(seed, size)
    key = _lowbias32(seed)
    for c, y, x in [(0, 0, 0), (1, 4, 7), (2, 8, 8)]:
        n = (c * size + y) * size + x
        u1 = ((_lowbias32((2 * n) ^ key) >> 8) + 1) / 2**24
        u2 = (_lowbias32((2 * n + 1) ^ key) >> 8) / 2**24
        assert noise[c, y, x].item() == pytest.approx(math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2),
                                                      abs=2e-6)
    big = erase_noise(7, 256)
    assert abs(big.mean().item()) < 0.01 and abs(big.std().item() - 1) < 0.01
    assert not torch.equal(erase_noise(8, 16), erase_noise(7, 16))


def test_erase_boxes_paint_over_the_mixed_output_in_order():
    images = random_images(8, 24, seed=3, device="cpu")
    plan = SpliceMix().plan(8, 24, np.random.default_rng(0))
    n = plan.num_outputs
    boxes, kinds = np.zeros((n, 3, 4)), np.full((n, 3), ERASE_NONE)
    values, seeds = np.zeros((n, 3, 3)), np.zeros((n, 3))
    boxes[0] = [[2, 3, 10, 12], [5, 5, 8, 20], [0, 0, 0, 0]]  # the second box covers part of the first
    kinds[0] = [ERASE_VALUE, ERASE_COLOUR, ERASE_VALUE]  # the third is empty
    values[0, 0], values[0, 1] = [0.5, -1.0, 2.0], [255, 0, 128]
    boxes[9], kinds[9], seeds[9] = [[20, 0, 24, 24], [0] * 4, [0] * 4], [ERASE_NOISE, 0, 0], [42, 0, 0]
    plain = render_reference(images, plan)
    got = render_reference(images, plan.with_erase(boxes, kinds, values, seeds))
    expected = plain.clone()
    expected[0, :, 2:10, 3:12] = torch.tensor([0.5, -1.0, 2.0])[:, None, None]
    colour = (torch.tensor([255.0, 0.0, 128.0]) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    expected[0, :, 5:8, 5:20] = colour[:, None, None]
    expected[9, :, 20:24, :] = erase_noise(42, 24)[:, 20:24, :]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_bad_erase_tables_are_refused():
    plan = MixPlan.identity(2)
    with pytest.raises(ValueError, match="erase boxes must lie within 0..16"):
        plan.with_erase([[[0, 0, 17, 4]], [[0] * 4]], [[ERASE_VALUE], [0]]).validate(2, 16)
    with pytest.raises(ValueError, match="erase kinds"):
        plan.with_erase([[[0, 0, 1, 1]], [[0] * 4]], [[7], [0]]).validate(2, 16)

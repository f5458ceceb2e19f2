"""Cutout and random erasing: the boxes against the published code run on the same draws, and in the loader."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mlic_pipe.datasets import load
from mlic_pipe.loader import MLICLoader
from mlic_pipe.mix import MixPlan, render_reference
from mlic_pipe.mix.erasing import ATTEMPTS, Cutout, RandomErasing, erase_plan
from mlic_pipe.mix.plan import ERASE_COLOUR, ERASE_NONE, ERASE_VALUE


def _painted(plan, size):
    """Which pixels the erase boxes of each output cover (from the plan's table)."""
    erase = plan.erase
    masks = torch.zeros((len(erase), size, size), dtype=torch.bool)
    for n in range(len(erase)):
        for y0, x0, y1, x1, kind in erase[n, :, :5].tolist():
            if kind != ERASE_NONE:
                masks[n, y0:y1, x0:x1] = True
    return masks


@pytest.mark.parametrize("factor, size", [(0.5, 448), (0.5, 37), (0.3, 64), (1.0, 20)])
def test_cutout_covers_what_ml_decoders_cutoutpil_paints(factor, size):
    uniforms = np.random.default_rng(size).random((200, Cutout.columns))
    uniforms[:4, :2] = [[0, 0], [0.9999, 0.9999], [0, 0.9999], [0.5, 0.5]]  # corners and the centre
    plan = erase_plan(MixPlan.identity(200), [Cutout(factor)], size, lambda columns: uniforms)
    painted = _painted(plan, size)
    for n in range(200):
        # CutoutPIL's lines, with np.random.randint(h) and random.randint(0, 255) read from the same uniforms
        image = Image.new("RGB", (size, size))
        h_cutout = w_cutout = int(factor * size + 0.5)
        y_c, x_c = int(uniforms[n, 0] * size), int(uniforms[n, 1] * size)
        y1, y2 = np.clip(y_c - h_cutout // 2, 0, size), np.clip(y_c + h_cutout // 2, 0, size)
        x1, x2 = np.clip(x_c - w_cutout // 2, 0, size), np.clip(x_c + w_cutout // 2, 0, size)
        colour = tuple(int(u * 256) for u in uniforms[n, 2:5])
        ImageDraw.Draw(image).rectangle([x1, y1, x2, y2], fill=(255, 255, 255))
        assert torch.equal(painted[n], torch.from_numpy(np.asarray(image)[..., 0] > 0)), n
        assert plan.erase[n, 0, 4] == ERASE_COLOUR
        assert plan.erase[n, 0, 5:8].view(torch.float32).tolist() == list(colour)


class _Draws:
    """Python's `random` for timm's RandomErasing, answering from one output's uniforms in our column layout."""

    def __init__(self, row, max_count):
        self.row, self.max_count, self.box, self.calls, self.placed = row, max_count, 0, 0, 0
        self.per_box = (RandomErasing(max_count=max_count).columns - 2) // max_count

    def random(self):
        return self.row[0]

    def randint(self, low, high):
        if low == 1 and high == self.max_count and self.calls == 0 and self.box == 0 and self.placed == 0:
            return 1 + int(self.row[1] * self.max_count)  # the box count
        u = self.row[2 + self.box * self.per_box + 2 * ATTEMPTS + self.placed]
        self.placed += 1
        if self.placed == 2:  # top, then left: the box is done
            self.box, self.calls, self.placed = self.box + 1, 0, 0
        return low + int(u * (high - low + 1))

    def uniform(self, low, high):
        if self.calls == 2 * ATTEMPTS:  # ten failed attempts: timm goes on to the next box
            self.box, self.calls = self.box + 1, 0
        u = self.row[2 + self.box * self.per_box + self.calls]
        self.calls += 1
        return low + (high - low) * u


@pytest.mark.parametrize("max_count, size", [(1, 448), (3, 224), (2, 16)])
def test_random_erasing_erases_where_timm_does_on_the_same_draws(monkeypatch, max_count, size):
    from timm.data import random_erasing

    eraser = RandomErasing(prob=0.6, mode="const", max_count=max_count)
    uniforms = np.random.default_rng(max_count).random((150, eraser.columns))
    plan = erase_plan(MixPlan.identity(150), [eraser], size, lambda columns: uniforms)
    painted = _painted(plan, size)
    for n in range(150):
        monkeypatch.setattr(random_erasing, "random", _Draws(uniforms[n], max_count))
        image = torch.ones((3, size, size))
        random_erasing.RandomErasing(0.6, mode="const", max_count=max_count, device="cpu")(image)
        assert torch.equal(painted[n], image[0] == 0), n
    assert 0.4 < painted.flatten(1).any(1).float().mean() < 0.8  # about prob of the images


def test_rand_and_pixel_modes_fill_with_normals_and_render_as_planned():
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(3)
    rand = erase_plan(MixPlan.identity(4), [RandomErasing(1.0, "rand", 2)], 32, lambda c: rng.random((4, c)))
    values = rand.erase[..., 5:8].contiguous().view(torch.float32)[rand.erase[..., 4] == ERASE_VALUE]
    assert values.abs().max() < 6 and values.std() > 0.3  # standard normals, not zeros
    pixel = erase_plan(MixPlan.identity(4), [RandomErasing(1.0, "pixel", 1)], 32, lambda c: rng.random((4, c)))
    out = render_reference(images, pixel)
    box = pixel.erase[0, 0, :4].tolist()
    region = out[0, :, box[0]:box[2], box[1]:box[3]]
    assert region.numel() and abs(region.mean().item()) < 0.5  # noise, not the image


@pytest.mark.slow  # ~9 s: two loaders over a whole epoch (the default run stays under 6 minutes; CI runs it)
def test_the_loader_erases_a_row_alike_whatever_its_batch(tmp_path):
    demo = load("demo")
    index = demo.subset(np.arange(len(demo)) < 24)
    plans = {}
    for batch_size in (4, 6):
        loader = MLICLoader(index, batch_size, image_size=32, device="cpu", mix=None, seed=5, num_threads=1,
                            erase=[Cutout(0.5), RandomErasing(1.0, "pixel")], return_plan=True)
        for batch in loader:  # the whole epoch: most rows sit at another place in a batch of 4 than of 6
            for k, row in enumerate(batch.rows.tolist()):
                plans.setdefault(row, []).append(batch.plan.erase[k])
        with pytest.raises(Exception, match="Cutout / RandomErasing"):
            MLICLoader(index, 4, image_size=32, device="cpu", erase=["cutout"])
    assert len(plans) == 24 and all(len(found) == 2 and torch.equal(*found) for found in plans.values())
    assert len({tuple(found[0].flatten().tolist()) for found in plans.values()}) == 24  # and rows differ


@pytest.mark.slow  # ~10 s: three loaders over a whole epoch (the default run stays under 6 minutes; CI runs it)
def test_a_rows_pixels_are_the_same_on_one_rank_and_on_two():
    """Crop, flip and erase boxes are functions of (seed, epoch, row): the rendered image of a row is bitwise the
    same whichever rank of how many ranks delivers it, in whichever batch position."""
    demo = load("demo")
    index = demo.subset(np.arange(len(demo)) < 24)
    seen = {}
    for world_size in (1, 2):
        for rank in range(world_size):
            loader = MLICLoader(index, 4, image_size=32, device="cpu", mix=None, seed=7, num_threads=1,
                                rank=rank, world_size=world_size,
                                erase=[Cutout(0.5), RandomErasing(1.0, "pixel", 2)])
            for batch in loader:
                for k, row in enumerate(batch.rows.tolist()):
                    seen.setdefault(row, []).append(batch.images[k].clone())
    assert sorted(seen) == list(range(24))
    assert all(len(images) == 2 and torch.equal(*images) for images in seen.values())

import math

import numpy as np
import pytest
import torch

from mlic_pipe.mix import CutMix, FMix, MixUp, SpliceMix, create_mixer, parse_grid


def within_3_sigma(count, n, p):
    return abs(count / n - p) <= 3 * math.sqrt(p * (1 - p) / n)


def test_default_mode_statistics_match_the_paper():
    rng = np.random.default_rng(0)
    n, batch = 2000, 16
    families, transposed, dropped, drops_by_grid = {}, 0, 0, {(1, 2): [], (2, 2): [], (2, 3): []}
    for _ in range(n):
        plan = SpliceMix().plan(batch, 64, rng)
        assert plan.num_regular == batch and plan.num_mixed == batch // 4
        grids = {tuple(g) for g in plan.grid[batch:].tolist()}
        assert len(grids) == 1  # decided once per batch
        rows, cols = grids.pop()
        family = (min(rows, cols), max(rows, cols))
        families[family] = families.get(family, 0) + 1
        transposed += rows > cols
        k = (plan.cells[batch:, : rows * cols] < 0).sum(1)
        assert len(set(k.tolist())) == 1  # the same number of drops in every mixed image of the batch
        dropped += int(k[0]) > 0
        if k[0] > 0:
            drops_by_grid[family].append(int(k[0]))
    for family, p in (((1, 2), 0.3), ((2, 2), 0.4), ((2, 3), 0.3)):
        assert within_3_sigma(families[family], n, p), (family, families)
    non_square = families[(1, 2)] + families[(2, 3)]
    assert within_3_sigma(transposed, non_square, 0.5)
    assert within_3_sigma(dropped, n, 0.3)
    assert set(drops_by_grid[(1, 2)]) == {1}
    for family, k_max in (((2, 2), 3), ((2, 3), 5)):
        ks = drops_by_grid[family]
        assert set(ks) == set(range(1, k_max + 1))
        for k in range(1, k_max + 1):
            assert within_3_sigma(ks.count(k), len(ks), 1 / k_max), (family, k)


def test_every_image_is_used_once_before_any_is_reused():
    batch = 8
    plan = SpliceMix(["2x3", "1x2"], counts=[3, 2]).plan(batch, 32, np.random.default_rng(1))
    rows = plan.grid[batch:].prod(1).tolist()
    order = np.concatenate([plan.cells[batch + i, :r].numpy() for i, r in enumerate(rows)])
    assert len(order) == 3 * 6 + 2 * 2
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        assert len(set(chunk.tolist())) == len(chunk), chunk  # each block of B is without repeats


def test_same_seed_same_plan_different_seed_different_plan():
    def plan(seed):
        return SpliceMix().plan(32, 448, np.random.default_rng(seed))

    a, b, c = plan(5), plan(5), plan(6)
    assert torch.equal(a.cells, b.cells) and torch.equal(a.grid, b.grid)
    assert not (a.cells.shape == c.cells.shape and torch.equal(a.cells, c.cells))
    for mixer in (CutMix(), MixUp(), FMix()):
        first, second = (mixer.plan(8, 32, np.random.default_rng(9)) for _ in range(2))
        assert torch.equal(first.partner, second.partner) and torch.equal(first.lam, second.lam)
        if first.masks is not None:
            assert torch.equal(first.masks, second.masks)


def test_custom_groups_counts_drops_and_mix_ratio():
    plan = SpliceMix(["1x2", "2x3-2"], counts=[2, 3], transpose_prob=0.0).plan(10, 60, np.random.default_rng(0))
    assert plan.num_regular == 10 and plan.num_mixed == 5
    assert plan.grid[10:].tolist() == [[1, 2]] * 2 + [[2, 3]] * 3
    assert ((plan.cells[13:, :6] < 0).sum(1) == 2).all()
    assert (plan.cells[10:12, :2] >= 0).all() and (plan.cells[10:12, 2:] == -1).all()
    assert SpliceMix(["2x2"], mix_ratio=0.5).plan(12, 60, np.random.default_rng(0)).num_mixed == 6
    split = SpliceMix(["1x2", "2x2"], mix_ratio=0.5).plan(10, 60, np.random.default_rng(0))
    assert split.num_mixed == 5 and split.grid[10:].prod(1).tolist().count(2) == 3


def test_fixed_batch_keeps_the_batch_size():
    plan = SpliceMix(fixed_batch=True).plan(16, 64, np.random.default_rng(0))
    assert plan.num_outputs == 16 and plan.num_regular == 12
    assert plan.cells[:12, 0].tolist() == list(range(12))


def test_mask_mix_layouts():
    inplace = CutMix().plan(6, 32, np.random.default_rng(0))
    assert inplace.num_regular == 0 and inplace.num_outputs == 6
    assert sorted(inplace.partner.tolist()) == list(range(6))  # each input is one output's partner
    assert (inplace.partner != inplace.cells[:, 0]).all()
    appended = MixUp(append=True, mix_ratio=0.5).plan(6, 32, np.random.default_rng(0))
    assert appended.num_regular == 6 and appended.num_outputs == 9
    assert (appended.partner[:6] == -1).all() and (appended.partner[6:] != appended.cells[6:, 0]).all()


@pytest.mark.parametrize("make, message", [
    (lambda: SpliceMix(["2x2"]).plan(3, 64, np.random.default_rng(0)), "needs 4 distinct images"),
    (lambda: SpliceMix(["1x3"]).plan(8, 2, np.random.default_rng(0)), "does not fit a 2-pixel image"),
    (lambda: SpliceMix(["3by3"]), "not of the form 'RxC'"),
    (lambda: SpliceMix(["2x2-4"]), "at most 3 may be dropped"),
    (lambda: SpliceMix(["1x1"]), "at least 2 cells"),
    (lambda: SpliceMix(mix_ratio=0.0), r"mix_ratio must be in \(0, 1\]"),
    (lambda: SpliceMix(mix_ratio=1.5), r"mix_ratio must be in \(0, 1\]"),
    (lambda: SpliceMix(["2x2"], counts=[1, 2]), "one non-negative number per grid"),
    (lambda: CutMix(alpha=0), "alpha must be positive"),
    (lambda: FMix(max_soft=0.9), "max_soft"),
    (lambda: create_mixer("gridmix"), "one of"),
])
def test_bad_arguments_say_what_is_allowed(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_parse_grid_and_create_mixer():
    assert parse_grid("2x3-4").rows == 2 and parse_grid("2x3-4").cols == 3 and parse_grid("2x3-4").drop == 4
    assert isinstance(create_mixer("SpliceMix"), SpliceMix) and create_mixer(None) is None
    mixer = CutMix()
    assert create_mixer(mixer) is mixer


def test_appended_mask_mix_with_no_mixed_image_is_the_identity():
    plan = CutMix(append=True).plan(3, 32, np.random.default_rng(0))  # int(3 * 0.25) = 0 mixed images
    assert plan.num_outputs == 3 and plan.num_regular == 3 and (plan.partner == -1).all()


def _good(**change):
    """A valid plan on 4 inputs of 8 x 8 (a regular row, a 1x2 grid, a box mix, a dense mask, a resized box), with
    `change` applied to its fields: one bad value each in the test below."""
    from dataclasses import replace

    from mlic_pipe.mix import MixPlan

    plan = MixPlan.build(num_regular=1, cells=[[0, -1], [1, 2], [3, -1], [2, -1], [1, -1]],
                         grid=[[1, 1], [1, 2], [1, 1], [1, 1], [1, 1]], partner=[-1, -1, 0, 1, 2],
                         mask_mode=[0, 0, 1, 2, 4], box=[[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 4, 4], [0, 0, 0, 0],
                                                         [2, 2, 6, 5]],
                         mask_index=[-1, -1, -1, 0, -1], masks=torch.full((1, 8, 8), 0.5, dtype=torch.float16))
    plan = plan.with_erase(boxes=np.zeros((5, 1, 4)) + [0, 0, 2, 2], kinds=np.ones((5, 1)))
    return replace(plan, **{name: value(plan) for name, value in change.items()})


@pytest.mark.parametrize("change, message", [
    (dict(grid=lambda p: p.grid[:4]), "plan tensors disagree"),
    (dict(num_regular=lambda p: 6), "num_regular=6 is outside"),
    (dict(grid=lambda p: p.grid * 0), "grid sizes must be within 1..8"),
    (dict(grid=lambda p: p.grid * 9), "grid sizes must be within 1..8"),
    (dict(grid=lambda p: p.grid + 1), "more cells than"),
    (dict(cells=lambda p: p.cells + 4 * (p.cells >= 3)), "cells refers to input rows outside 0..3"),
    (dict(cells=lambda p: p.cells - 2 * (p.cells < 0)), "cells refers to input rows"),
    (dict(partner=lambda p: p.partner.clone().index_fill_(0, torch.tensor([2]), 4)), "partner refers"),
    (dict(mask_mode=lambda p: p.mask_mode.clone().index_fill_(0, torch.tensor([2]), 7)), "mask_mode must be"),
    (dict(partner=lambda p: p.partner.clone().index_fill_(0, torch.tensor([2]), -1)), "needs a partner"),
    (dict(box=lambda p: p.box.clone().index_fill_(0, torch.tensor([4]), 3)), "non-empty box"),
    (dict(masks=lambda p: p.masks[:, :4]), "dense-mask outputs need masks"),
    (dict(mask_index=lambda p: p.mask_index + 1), "mask_index refers"),
    (dict(erase=lambda p: p.erase.long()), "erase must be int32"),
    (dict(erase=lambda p: p.erase.clone().index_fill_(2, torch.tensor([4]), 9)), "erase kinds must be"),
    (dict(erase=lambda p: p.erase.clone().index_fill_(2, torch.tensor([3]), 9)), "erase boxes must lie"),
    (dict(erase=lambda p: p.erase.clone().index_fill_(2, torch.tensor([8]), -3)), "erase seeds"),
])
def test_validate_names_each_bad_plan(change, message):
    _good().validate(4, 8)  # the plan before the change passes
    with pytest.raises(ValueError, match=message):
        _good(**change).validate(4, 8)


@pytest.mark.parametrize("name", ["splicemix", "cutmix", "fmix", "resizemix", "mixup"])
@pytest.mark.parametrize("erased", [False, True])
def test_a_host_plan_packs_in_numpy_to_the_table_torch_s_ops_pack(name, erased):
    """The host packs a plan's table with numpy (cheaper cache-cold); the torch route a device plan takes is the
    reference, and the table's columns read back as the plan's fields."""
    from mlic_pipe.mix.plan import COL_CELLS, COL_LAM, COL_MODE, COL_PARTNER, _pack

    rng = np.random.default_rng(5)
    options = {} if name == "splicemix" else {"append": True}
    plan = create_mixer(name, **options).plan(8, 32, rng)
    if erased:
        boxes = rng.integers(0, 32, (plan.num_outputs, 2, 4))
        plan = plan.with_erase(boxes, rng.integers(0, 3, (plan.num_outputs, 2)), rng.random((plan.num_outputs, 2, 3)),
                               rng.integers(0, 2**31, (plan.num_outputs, 2)))
    table = _pack(plan, torch.device("cpu"))
    assert table.dtype == torch.int32 and table.is_contiguous()
    assert torch.equal(table, _pack(plan, torch.device("cpu"), numpy_on_host=False))
    cells = plan.cells.shape[1]
    assert torch.equal(table[:, COL_CELLS:COL_CELLS + cells], plan.cells)
    assert torch.equal(table[:, COL_LAM].contiguous().view(torch.float32), plan.lam)
    assert table[:, COL_PARTNER].tolist() == plan.partner.tolist()
    assert table[:, COL_MODE].tolist() == plan.mask_mode.tolist()
    assert table.shape[1] == COL_CELLS + cells + (plan.erase.shape[1] * plan.erase.shape[2] if erased else 0)

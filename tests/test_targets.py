import numpy as np
import pytest
import torch

from mlic_pipe.mix import CutMix, FMix, MixUp, SpliceMix, mix_targets


def union_by_hand(targets, plan):
    """Independent reference: loop over outputs and cells in numpy."""
    y = targets.numpy().astype(np.float32)
    out = []
    for n in range(plan.num_outputs):
        rows, cols = plan.grid[n].tolist()
        label = np.zeros(y.shape[1], np.float32)
        for k in range(rows * cols):
            source = int(plan.cells[n, k])
            if source >= 0:
                label = np.maximum(label, y[source])
        partner = int(plan.partner[n])
        if partner >= 0:
            label = np.maximum(label, y[partner])
        out.append(label)
    return np.stack(out)


@pytest.mark.parametrize("mixer", [SpliceMix(), SpliceMix(["2x3-3", "1x2-1"]), SpliceMix(fixed_batch=True),
                                   CutMix(), CutMix(append=True), MixUp(append=True), FMix()])
def test_union_labels_equal_the_hand_computed_union(mixer):
    rng = np.random.default_rng(0)
    targets = torch.from_numpy((rng.random((12, 7)) < 0.3).astype(np.uint8))
    for _ in range(5):
        plan = mixer.plan(12, 32, rng)
        mixed = mix_targets(targets, plan)
        assert mixed.dtype == torch.float32 and mixed.shape == (plan.num_outputs, 7)
        np.testing.assert_array_equal(mixed.numpy(), union_by_hand(targets, plan))
        np.testing.assert_array_equal(mixed[:plan.num_regular].numpy(), targets[:plan.num_regular].float().numpy())


def test_area_rule_weights_by_the_realized_lambda():
    rng = np.random.default_rng(1)
    targets = torch.from_numpy((rng.random((8, 5)) < 0.5).astype(np.float32))
    plan = CutMix(append=True, mix_ratio=0.5).plan(8, 32, rng)
    mixed = mix_targets(targets, plan, rule="area").numpy()
    y = targets.numpy()
    for n in range(8, 12):
        lam = float(plan.lam[n])
        expected = lam * y[int(plan.cells[n, 0])] + (1 - lam) * y[int(plan.partner[n])]
        np.testing.assert_allclose(mixed[n], expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mixed[:8], y)


def test_dropped_cells_lose_their_labels():
    targets = torch.eye(4)
    from mlic_pipe.mix import MixPlan

    plan = MixPlan.build(num_regular=0, cells=[[0, -1, 2, -1]], grid=[[2, 2]])
    assert mix_targets(targets, plan).tolist() == [[1.0, 0.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="rule"):
        mix_targets(targets, plan, rule="max")


@pytest.mark.parametrize("rule", ["union", "area"])
@pytest.mark.parametrize("mixer", [SpliceMix(["2x3-3", "1x2-1"]), CutMix(append=True), MixUp(), FMix(append=True)])
def test_cpu_labels_mix_in_numpy_to_the_same_bits_as_torch_s_ops(mixer, rule):
    """CPU labels take a numpy path (cheaper cache-cold); labels that need gradients keep the torch ops."""
    rng = np.random.default_rng(4)
    targets = torch.from_numpy(rng.random((12, 9), dtype=np.float32))  # soft labels: every float op shows
    for _ in range(4):
        plan = mixer.plan(12, 32, rng)
        host = mix_targets(targets, plan, rule=rule)
        traced = mix_targets(targets.clone().requires_grad_(True), plan, rule=rule)
        assert traced.requires_grad and not host.requires_grad
        assert host.dtype == torch.float32 and host.is_contiguous()
        assert torch.equal(host, traced.detach())

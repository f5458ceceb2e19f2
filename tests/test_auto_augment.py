"""Auto-augment in the DALI graph: timm's policy strings, decisions from (seed, epoch, row), pixels alike anywhere."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mlic_pipe.datasets import load
from mlic_pipe.errors import ConfigError
from mlic_pipe.loader import MLICLoader
from mlic_pipe.loading.auto_augment import AutoAugment, parse_auto_augment
from mlic_pipe.loading.order import sample_uniforms
from mlic_pipe.pipeline import AUTO_AUGMENT_STREAM


def test_timm_policy_strings_parse_to_their_settings():
    policy = parse_auto_augment("rand-m9-n2-mstd0.5")
    assert (policy.kind, policy.num_ops, policy.magnitude, policy.magnitude_std, policy.increasing, policy.prob) == \
        ("rand", 2, 9.0, 0.5, False, 0.5)
    inc = parse_auto_augment("rand-m9-mstd0.5-inc1")
    assert inc.increasing and inc.num_ops == 2 and str(inc) == "rand-m9-n2-mstd0.5-inc1"
    assert parse_auto_augment("rand-m7-n3-mmax8-p1").magnitude_max == 8 and parse_auto_augment("rand-m7-n3-p1").prob == 1
    assert parse_auto_augment("trivial") == AutoAugment("trivial") and parse_auto_augment("auto").layers == 2
    assert parse_auto_augment(None) is None and parse_auto_augment("none") is None
    mldecoder = parse_auto_augment("mldecoder")
    assert (mldecoder.kind, mldecoder.cutout, mldecoder.layers, str(mldecoder)) == \
        ("pypi", 0.5, 2, "randaugment-pypi-cutout0.5")
    assert parse_auto_augment(str(mldecoder)) == mldecoder and parse_auto_augment("randaugment-pypi").cutout == 0
    assert parse_auto_augment("randaugment-pypi").draws == 12 and mldecoder.draws == 17
    for bad in ("randaug", "rand-q9", "rand-m12", "rand-n0", "augmix-m5", "randaugment-pypi-cutout0",
                "randaugment-pypi-cutout1.5", "randaugment-pypi-m9"):
        with pytest.raises(ConfigError, match="auto_augment"):
            parse_auto_augment(bad)


def _subset(n):
    demo = load("demo")
    return demo.subset(np.arange(len(demo)) < n)


def _pixels(loader) -> dict[int, torch.Tensor]:
    seen = {}
    for batch in loader:
        for k, row in enumerate(batch.rows.tolist()):
            seen.setdefault(row, []).append(batch.images[k].clone())
    return seen


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_rows_left_unaugmented_by_their_draws_are_the_plain_pixels_and_the_others_are_not(demo_root, device):
    """The decisions recomputed here from the row's uniforms (an op applies where u1 < p): with p = 0.5 and one
    op, rows whose op does not apply decode to exactly the plain loader's pixels; most others differ. On CUDA the
    ops run on the GPU after 'mixed' decoding."""
    index = _subset(24)
    policy = parse_auto_augment("rand-m9-n1-p0.5")
    common = dict(image_size=32, device=device, mix=None, seed=3, num_threads=1)
    plain = _pixels(MLICLoader(index, 8, **common))
    augmented = _pixels(MLICLoader(index, 8, auto_augment=policy, **common))
    rows = np.array(sorted(augmented))
    draws = sample_uniforms(3 ^ AUTO_AUGMENT_STREAM, 0, rows, policy.draws)
    applied = draws[:, 1] < policy.prob
    assert 4 <= applied.sum() <= 20
    for row, applies in zip(rows, applied):
        if not applies:
            assert torch.equal(augmented[row][0], plain[row][0]), row
    differs = [not torch.equal(augmented[row][0], plain[row][0]) for row in rows[applied]]
    assert sum(differs) >= len(differs) - 2  # an op may be a no-op at its magnitude (e.g. equalize a flat image)


@pytest.mark.slow  # ~6 s (CI runs it)
def test_a_resumed_epoch_augments_its_rest_as_the_uninterrupted_one():
    index = _subset(24)
    make = lambda: MLICLoader(index, 4, image_size=32, device="cpu", mix="cutmix", seed=4, num_threads=1,
                              auto_augment="rand-m9-n2-mstd0.5")
    whole = [batch.images.clone() for batch in make()]
    first = make()
    stream = iter(first)
    head = [next(stream).images.clone() for _ in range(2)]
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    rest = [batch.images.clone() for batch in resumed]
    assert len(head + rest) == len(whole) and all(torch.equal(a, b) for a, b in zip(head + rest, whole))


@pytest.mark.slow  # ~35 s: eight loaders' graphs with conditionals (CI runs it)
@pytest.mark.parametrize("policy", ["rand-m9-n2-mstd0.5", "trivial", "auto", "mldecoder"])
def test_a_rows_augmented_pixels_are_the_same_on_one_rank_and_in_another_process_on_two(policy, tmp_path):
    """One rank here; ranks 0 and 1 of 2 in a separate process (another pipeline, other batch positions)."""
    index = _subset(16)
    here = _pixels(MLICLoader(index, 4, image_size=32, device="cpu", mix=None, seed=9, num_threads=1,
                              auto_augment=policy))
    script = textwrap.dedent(f"""
        import numpy as np, torch
        from mlic_pipe.datasets import load
        from mlic_pipe.loader import MLICLoader
        demo = load("demo")
        index = demo.subset(np.arange(len(demo)) < 16)
        out = {{}}
        for rank in range(2):
            loader = MLICLoader(index, 4, image_size=32, device="cpu", mix=None, seed=9, num_threads=1,
                                auto_augment={policy!r}, rank=rank, world_size=2)
            for batch in loader:
                for k, row in enumerate(batch.rows.tolist()):
                    out[row] = batch.images[k].clone()
        torch.save(out, {str(tmp_path / "ranks.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, env=os.environ.copy())
    there = torch.load(tmp_path / "ranks.pt")
    assert sorted(there) == sorted(here) == list(range(16))
    assert all(torch.equal(here[row][0], there[row]) for row in there)

"""Elastic shard resume: an epoch of shards saved on W ranks resumes on W' ranks, each undelivered sample once.

The reference is set arithmetic on the rows the ranks actually delivered (`batch.rows`, `batch.padded`): what the
first ranks delivered plus what the new ranks deliver is every usable sample exactly once, and the labels of each
delivered row equal the hand-built annotation file's.
"""
from __future__ import annotations

import itertools
import json
import os
import warnings

import pytest
import torch
import torch.multiprocessing as mp

from mlic_pipe.errors import LoaderStateError
from mlic_pipe.loader import MLICLoader
from mlic_pipe.loading.shard_stream import stream_rows
from mlic_pipe.shards import load_shards, write_shards
from test_shards import _index

OPTIONS = dict(image_size=16, device="cpu", num_threads=1, seed=4, drop_last=False, on_error="skip")


def _shards(tmp_path, num_images=29, bad=()):
    index, truth = _index(tmp_path, num_images, 5, bad=set(bad))
    write_shards(index, tmp_path / "out", samples_per_shard=4, progress=False)
    return load_shards(tmp_path / "out"), truth


def _take(loader, count):
    """`count` batches of the loader's epoch, without reaching its end (whose skip agreement is a collective)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(b.rows.clone(), b.padded.clone(), b.targets.clone()) for b in itertools.islice(iter(loader), count)]


def _real(batches):
    return [r for rows, padded, _ in batches for r in rows[~padded].tolist()]


def test_the_row_only_reader_recovers_each_ranks_stream_order(tmp_path):
    shards, _ = _shards(tmp_path)
    for rank in range(2):
        loader = MLICLoader(shards, 4, rank=rank, world_size=2, **OPTIONS)
        delivered = [r for rows, _, _ in _take(loader, len(loader)) for r in rows.tolist()]
        assert stream_rows(shards, 4, 0, True, rank, 2, 4, False).tolist() == delivered


@pytest.mark.parametrize("old, new, taken", [(2, 3, 1), (3, 2, 2), (2, 1, 2), (1, 2, 3)])
def test_a_shard_epoch_saved_on_w_ranks_resumes_on_another_world_size_each_sample_once(tmp_path, old, new, taken):
    shards, truth = _shards(tmp_path, bad={7})
    first = [MLICLoader(shards, 4, rank=r, world_size=old, **OPTIONS) for r in range(old)]
    before = [_take(loader, taken) for loader in first]
    states = json.loads(json.dumps([loader.state_dict() for loader in first]))
    resumed = [MLICLoader(shards, 4, rank=r, world_size=new, **OPTIONS) for r in range(new)]
    for loader in resumed:
        loader.load_state_dict(states)
    after = [_take(loader, len(loader) - taken) for loader in resumed]
    assert len({len(loader) for loader in resumed}) == 1  # every new rank the same number of batches
    delivered = [r for part in before + after for r in _real(part)]
    usable = [r for r in range(29) if r != 7]
    assert sorted(delivered) == usable, "each usable sample exactly once"
    for rows, _, targets in [b for part in before + after for b in part]:
        assert torch.equal(targets, torch.from_numpy(truth[rows.numpy()]).float())
    found = {row for state in states for row, _, _ in state["found"]}
    if found:  # a rank had met the bad sample before the save: every new rank knows it
        assert all(loader.skipped == {shards.name(7): next(iter(loader.skipped.values()))} for loader in resumed)


def test_a_resharded_rest_saved_again_resumes_on_its_own_and_on_yet_another_world_size(tmp_path):
    shards, _ = _shards(tmp_path)
    first = [MLICLoader(shards, 3, rank=r, world_size=2, **OPTIONS) for r in range(2)]
    before = [_take(loader, 1) for loader in first]
    states = [loader.state_dict() for loader in first]
    middle = [MLICLoader(shards, 3, rank=r, world_size=3, **OPTIONS) for r in range(3)]
    for loader in middle:
        loader.load_state_dict(states)
    between = [_take(loader, 1) for loader in middle]
    saved = [loader.state_dict() for loader in middle]
    assert all(state["rows"] is not None and state["checkpoint"] is None for state in saved)
    same = MLICLoader(shards, 3, rank=1, world_size=3, **OPTIONS)
    same.load_state_dict(saved[1])  # its own state, on its own world size: the rest of its share, as it was
    reference = MLICLoader(shards, 3, rank=1, world_size=3, **OPTIONS)
    reference.load_state_dict(states)
    whole = _take(reference, len(reference) - 1)
    assert [b[0].tolist() for b in _take(same, len(same) - 2)] == [b[0].tolist() for b in whole[1:]]
    last = [MLICLoader(shards, 3, rank=r, world_size=2, **OPTIONS) for r in range(2)]
    for loader in last:
        loader.load_state_dict(saved)
    after = [_take(loader, len(loader) - 2) for loader in last]
    delivered = [r for part in before + between + after for r in _real(part)]
    assert sorted(delivered) == list(range(29))


def test_remote_shards_still_refuse_another_world_size(tmp_path, monkeypatch):
    shards, _ = _shards(tmp_path)
    first = [MLICLoader(shards, 4, rank=r, world_size=2, **OPTIONS) for r in range(2)]
    for loader in first:
        _take(loader, 1)
    states = [loader.state_dict() for loader in first]
    monkeypatch.setattr(type(shards), "remote", property(lambda self: True))
    with pytest.raises(LoaderStateError, match="remote storage resume on the world size they were saved on"):
        MLICLoader(shards, 4, rank=0, world_size=3, **OPTIONS).load_state_dict(states)


def _elastic_worker(rank, world_size, init_file, root, phase):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    try:
        loader = MLICLoader(load_shards(os.path.join(root, "out")), 3, mix="cutmix", **OPTIONS)
        log = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if phase == "save":
                log["batches"] = [(b.rows.tolist(), b.padded.tolist()) for b in itertools.islice(iter(loader), 2)]
                log["state"] = loader.state_dict()
            else:
                states = [json.loads(open(os.path.join(root, f"save{r}.json")).read())["state"] for r in range(2)]
                loader.load_state_dict(states)
                log["len"] = len(loader)
                log["batches"] = [(b.rows.tolist(), b.padded.tolist()) for b in loader]
                log["next"] = [(b.rows.tolist(), b.padded.tolist()) for b in loader]  # a whole stream epoch after
                log["skipped"] = sorted(loader.skipped)
        with open(os.path.join(root, f"{phase}{rank}.json"), "w") as handle:
            json.dump(log, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawns of gloo ranks, ~15 s
def test_gloo_ranks_save_a_shard_epoch_on_two_and_finish_it_on_three(tmp_path):
    shards, _ = _shards(tmp_path, bad={11})
    mp.spawn(_elastic_worker, args=(2, str(tmp_path / "init-a"), str(tmp_path), "save"), nprocs=2, join=True)
    mp.spawn(_elastic_worker, args=(3, str(tmp_path / "init-b"), str(tmp_path), "resume"), nprocs=3, join=True)
    saved = [json.loads((tmp_path / f"save{r}.json").read_text()) for r in range(2)]
    resumed = [json.loads((tmp_path / f"resume{r}.json").read_text()) for r in range(3)]
    real = [r for log in saved + resumed for rows, padded in log["batches"] for r, p in zip(rows, padded) if not p]
    assert sorted(real) == [r for r in range(29) if r != 11]
    assert len({log["len"] for log in resumed}) == 1 == len({len(log["batches"]) for log in resumed})
    assert all(log["skipped"] == [shards.name(11)] for log in resumed)
    nxt = [r for log in resumed for rows, padded in log["next"] for r, p in zip(rows, padded) if not p]
    assert sorted(nxt) == [r for r in range(29) if r != 11]  # the following epoch: the whole set once, again

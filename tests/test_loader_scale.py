"""MLICLoader at scale: equal steps on every rank with bad files, skips agreed, exact-once, mid-epoch resume.

Multi-rank behaviour runs in real processes over gloo (torch.distributed), on a COCO-format set
built here: 15 images of which 3 cannot be decoded (zero bytes, truncated, text named .jpg).
References are independent: set arithmetic over the rows each rank delivered, and the batches an
uninterrupted loader delivered.
"""
import json
import os
import warnings

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from builders import write_coco
from mlic_pipe.datasets import load_coco
from mlic_pipe.errors import LoaderStateError
from mlic_pipe.loader import MLICLoader
from mlic_pipe.loading.order import epoch_order, shard, without_bad

NUM_IMAGES, BAD = 15, {3: b"", 8: None, 12: b"not a jpeg at all\n"}  # None: truncated


def _gradient(seed, height=40, width=52):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * rng.integers(2, 5)) % 256, (y * rng.integers(2, 5)) % 256,
                     np.full_like(x, rng.integers(0, 256))], -1).astype(np.uint8)


def build_set(root) -> str:
    """A COCO-format .json over 15 JPEGs, 3 of them undecodable; returns the annotation path."""
    from PIL import Image

    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(NUM_IMAGES):
        path = images / f"{i:02d}.jpg"
        Image.fromarray(_gradient(i)).save(path, quality=90)
        if i in BAD:
            data = BAD[i] if BAD[i] is not None else path.read_bytes()[:200]
            path.write_bytes(data)
    annotations = [(i + 1, 1 + i % 3, 0) for i in range(NUM_IMAGES)] + [(i + 1, 1 + (i + 1) % 3, 0)
                                                                         for i in range(0, NUM_IMAGES, 2)]
    return write_coco(root / "labels.json", [(i + 1, f"{i:02d}.jpg") for i in range(NUM_IMAGES)],
                      [(1, "a"), (2, "b"), (3, "c")], annotations)


def _loader(annotations, images, batch_size=2, **kw):
    index = load_coco(annotations, images, use_cache=False)
    options = dict(image_size=16, mix=None, on_error="skip", num_threads=1, seed=3)
    return MLICLoader(index, batch_size, **{**options, **kw})


def _rank_worker(rank, world_size, init_file, root, epochs, drop_last):
    import warnings

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    try:
        loader = _loader(os.path.join(root, "labels.json"), os.path.join(root, "images"), drop_last=drop_last)
        log = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(epochs):
                expected = len(loader)
                batches = [(b.rows.tolist(), b.padded.tolist()) for b in loader]
                log.append({"len": expected, "batches": batches, "skipped": sorted(loader.skipped)})
        with open(os.path.join(root, f"rank{rank}.json"), "w") as handle:
            json.dump(log, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world_size, drop_last", [(2, True), pytest.param(3, True, marks=pytest.mark.slow),
                                                   pytest.param(3, False, marks=pytest.mark.slow)])
def test_ranks_take_equal_steps_agree_on_skips_and_deliver_every_loadable_row_once(tmp_path, world_size,
                                                                                   drop_last):
    build_set(tmp_path)
    epochs = 4
    mp.spawn(_rank_worker, args=(world_size, str(tmp_path / "init"), str(tmp_path), epochs, drop_last),
             nprocs=world_size, join=True)
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world_size)]
    loadable = sorted(set(range(NUM_IMAGES)) - set(BAD))
    clean_epochs = 0
    for epoch in range(epochs):
        steps = [len(log[epoch]["batches"]) for log in logs]
        # every rank yields the same number of batches, skips included, and len() said so beforehand
        assert steps == [log[epoch]["len"] for log in logs] == [steps[0]] * world_size, (epoch, steps)
        # the ranks agree on the skips at every epoch's end
        assert len({tuple(log[epoch]["skipped"]) for log in logs}) == 1
        real = [row for log in logs for rows, padded in log[epoch]["batches"]
                for row, pad in zip(rows, padded) if not pad]
        assert len(real) == len(set(real))  # never twice, in any epoch
        known_before = len(logs[0][epoch - 1]["skipped"]) if epoch else 0
        if known_before == len(BAD):  # from the epoch after the last skip was found: each loadable row once
            assert sorted(real) == loadable, (epoch, sorted(real))
            clean_epochs += 1
    assert clean_epochs >= 1 and len(logs[0][-1]["skipped"]) == len(BAD)


def test_epoch_share_tops_up_a_skip_without_changing_what_was_delivered():
    order = epoch_order(12, set(), seed=0, epoch=0, shuffle=True)
    share = shard(order, 1, 2, 2, drop_last=True)
    bad = {int(share.rows[3]), int(share.rows[4])}
    fixed = without_bad(share, bad, "test")
    assert len(fixed) == len(share) and fixed.rows[:3].tolist() == share.rows[:3].tolist()
    assert not bad & set(fixed.rows.tolist()) and fixed.padded.tolist() == [False] * 4 + [True] * 2
    assert fixed.rows[4:].tolist() == fixed.rows[:2].tolist()  # repeats come from the start of the share


def _collect(loader, count=None):
    out = []
    for batch in loader:
        out.append((batch.images.clone(), batch.targets.clone(), batch.plan.cells.clone(), batch.rows.clone(),
                    batch.padded.clone()))
        if count is not None and len(out) == count:
            break
    return out


@pytest.mark.parametrize("mix", ["splicemix", "fmix"])
def test_a_fresh_loader_resumes_mid_epoch_bitwise_without_decoding_what_was_delivered(tmp_path, monkeypatch, mix):
    import warnings

    import mlic_pipe.loading.stream as stream_module

    annotations = build_set(tmp_path)
    make = lambda: _loader(annotations, str(tmp_path / "images"), image_size=32, mix=mix, batch_size=6,  # noqa
                           return_plan=True)
    warnings.simplefilter("ignore")
    reference = make()
    _collect(reference)  # epoch 0 finds and agrees the bad files
    expected = _collect(reference)  # epoch 1, whole
    interrupted = make()
    _collect(interrupted)
    done = _collect(interrupted, count=1)
    state = json.loads(json.dumps(interrupted.state_dict()))  # small and JSON-serializable
    assert state["version"] == 2 and state["epoch"] == 1 and state["batches"] == 1 and len(json.dumps(state)) < 2000

    resumed = make()
    resumed.load_state_dict(state)
    assert len(resumed) == len(expected)
    share = resumed.epoch_rows(1)
    decoded = []
    real_build = stream_module.build_pipeline
    monkeypatch.setattr(stream_module, "build_pipeline",
                        lambda files, rows, *a, **k: decoded.append(list(rows)) or real_build(files, rows, *a, **k))
    rest = _collect(resumed)
    # the first pipeline reads the share from the second batch on: the delivered batch is not decoded again
    assert decoded[0] == share[6:].tolist()
    for got, want in zip(done + rest, expected, strict=True):
        for a, b in zip(got, want):
            assert torch.equal(a, b)


def test_a_skip_found_before_the_save_is_part_of_the_resumed_epoch(tmp_path):
    import warnings

    annotations = build_set(tmp_path)
    make = lambda: _loader(annotations, str(tmp_path / "images"), image_size=16, shuffle=False)  # noqa
    warnings.simplefilter("ignore")
    expected = _collect(make())  # epoch 0 in order: the skip of row 3 is found in the second batch
    interrupted = make()
    done = _collect(interrupted, count=3)
    state = interrupted.state_dict()
    assert [row for row, _, _ in state["found"]] == [3]
    resumed = make()
    resumed.load_state_dict(state)
    rest = _collect(resumed)
    assert len(done) + len(rest) == len(expected)
    for got, want in zip(done + rest, expected, strict=True):
        assert torch.equal(got[0], want[0]) and torch.equal(got[3], want[3]) and torch.equal(got[4], want[4])


@pytest.mark.parametrize("new_world", [1, 3])
def test_a_state_saved_on_two_ranks_resumes_on_one_or_three_delivering_exactly_the_rest(tmp_path, new_world):
    import warnings

    annotations = build_set(tmp_path)
    images = str(tmp_path / "images")
    warnings.simplefilter("ignore")
    index = load_coco(annotations, images, use_cache=False)  # without the bad files: two in-process ranks
    # cannot agree on skips (no process group), and this test is about the rest of an epoch
    good = index.subset(np.isin(np.arange(NUM_IMAGES), list(BAD), invert=True))
    old = [MLICLoader(good, 2, image_size=16, num_threads=1, seed=3, rank=r, world_size=2) for r in range(2)]
    epoch_rows = set(np.concatenate([loader.epoch_rows(0) for loader in old]).tolist())
    before = [_collect(loader, count=1) for loader in old]
    states = [json.loads(json.dumps(loader.state_dict())) for loader in old]
    delivered = [row for rank in before for batch in rank for row in batch[3].tolist()]

    new = [MLICLoader(good, 2, image_size=16, num_threads=1, seed=3, rank=r, world_size=new_world)
           for r in range(new_world)]
    for loader in new:
        loader.load_state_dict(states)
    lengths = [len(loader) for loader in new]
    after = [_collect(loader) for loader in new]
    assert len({len(batches) for batches in after}) == 1  # equal steps on the new ranks too
    assert lengths == [1 + len(batches) for batches in after]  # len counts the batch delivered before
    real = [row for rank in after for batch in rank for row, pad in zip(batch[3].tolist(), batch[4].tolist())
            if not pad]
    assert sorted(real + delivered) == sorted(epoch_rows)  # the rest, each once, nothing delivered twice


def test_states_that_do_not_fit_are_refused(tmp_path):
    annotations = build_set(tmp_path)
    images = str(tmp_path / "images")
    state = _loader(annotations, images, rank=0, world_size=2).state_dict()
    with pytest.raises(ValueError, match="list of all 2 states"):
        _loader(annotations, images).load_state_dict(state)
    with pytest.raises(LoaderStateError, match="seed=3, this loader has 4"):
        _loader(annotations, images, rank=0, world_size=2, seed=4).load_state_dict(state)
    with pytest.raises(LoaderStateError, match="version: 0"):
        _loader(annotations, images, rank=0, world_size=2).load_state_dict({**state, "version": 0})


def _edited(state, **changes):
    edited = json.loads(json.dumps(state))
    for key, value in changes.items():
        if value is _DROP:
            edited.pop(key)
        else:
            edited[key] = value
    return edited


_DROP = object()
STATE_ATTACKS = [  # (changes to a state saved 2 batches into epoch 1, the field named, words of the reason)
    (dict(batches=999), "batches", "is 999, but rank 0's epoch 1 has"),
    (dict(offset=-1), "offset", "is -1, below 0"),
    (dict(offset=3), "offset", "is 3, more than the 2 batches delivered"),
    (dict(rows=[0, "x", 3], padded=[False, False, False]), "rows[1]", "is 'x', not a row"),
    (dict(rows=[0, 10 ** 12], padded=[False, False]), "rows[1]", "not a row of the dataset's 0..14"),
    (dict(rows=[0, 1], padded=None), "padded", "is missing while its partner is set"),
    (dict(batches="2"), "batches", "is '2' (str), not int"),
    (dict(shuffle=1), "shuffle", "is 1 (int), not bool"),
    (dict(extra=1), "extra", "is not a field of a version-2 loader state"),
    (dict(seed=_DROP), "seed", "is missing"),
    (dict(rank=5), "rank", "is 5, outside 0..0"),
    (dict(source="shards"), "source", "the state is of a shards loader; this one reads files"),
    (dict(source="tape"), "source", "is 'tape', not one of"),
    (dict(fingerprint="0123456789abcdef"), "fingerprint", "saved with another dataset"),
    (dict(num_rows=16), "num_rows", "has 16 rows, this one 15"),
    (dict(checkpoint="AAAA"), "checkpoint", "a state read by row has no DALI reader state"),
    (dict(skipped=[[3, "elsewhere.jpg", "bad"]]), "skipped[0]", "names elsewhere.jpg as row 3"),
    (dict(skipped=[[99, "03.jpg", "bad"]]), "skipped[0]", "row 99 is outside"),
    (dict(found=[["3", "03.jpg", "bad"]]), "found[0]", "not [row, path, reason]"),
]


@pytest.mark.parametrize("changes, field, reason", STATE_ATTACKS, ids=[a[1] + ":" + a[2][:20] for a in STATE_ATTACKS])
def test_every_edited_state_is_refused_naming_the_field(tmp_path, changes, field, reason):
    annotations = build_set(tmp_path)
    images = str(tmp_path / "images")
    loader = _loader(annotations, images, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(loader)
        _first(loader, 2)
    state = loader.state_dict()
    fresh = _loader(annotations, images, shuffle=False)
    with pytest.raises(LoaderStateError) as caught:
        fresh.load_state_dict(_edited(state, **changes))
    assert caught.value.field == field and reason in caught.value.reason, str(caught.value)
    fresh.load_state_dict(state)  # the unedited state still resumes
    assert len(fresh) == len(loader)


def _resume_worker(rank, world_size, init_file, root, phase):
    import torch.distributed as dist

    from mlic_pipe.distributed import all_gather_objects

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    try:
        index = load_coco(os.path.join(root, "labels.json"), os.path.join(root, "images"), use_cache=False)
        good = index.subset(np.isin(np.arange(NUM_IMAGES), list(BAD), invert=True))
        loader = MLICLoader(good, 2, image_size=16, num_threads=1, seed=3)
        if phase == "before":  # two batches, then every rank's state is gathered, as the trainer does
            rows = [b.rows.tolist() for b in _first(loader, 2)]
            states = all_gather_objects(loader.state_dict())
            share = loader.epoch_rows(0).tolist()
            out = {"rows": rows, "share": share, "states": states}
        else:
            with open(os.path.join(root, "states.json")) as handle:
                loader.load_state_dict(json.load(handle))
            expected = len(loader)
            batches = list(loader)
            out = {"len": expected, "rows": [b.rows.tolist() for b in batches],
                   "padded": [b.padded.tolist() for b in batches]}
        with open(os.path.join(root, f"{phase}{rank}.json"), "w") as handle:
            json.dump(out, handle)
    finally:
        dist.destroy_process_group()


def _first(loader, count):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            break
    return out


@pytest.mark.slow
def test_processes_resume_an_epoch_saved_on_two_ranks_on_three_delivering_exactly_the_rest(tmp_path):
    build_set(tmp_path)
    mp.spawn(_resume_worker, args=(2, str(tmp_path / "init1"), str(tmp_path), "before"), nprocs=2, join=True)
    before = [json.loads((tmp_path / f"before{r}.json").read_text()) for r in range(2)]
    (tmp_path / "states.json").write_text(json.dumps(before[0]["states"]))
    mp.spawn(_resume_worker, args=(3, str(tmp_path / "init2"), str(tmp_path), "after"), nprocs=3, join=True)
    after = [json.loads((tmp_path / f"after{r}.json").read_text()) for r in range(3)]
    assert len({len(a["rows"]) for a in after}) == 1 and all(a["len"] == 2 + len(a["rows"]) for a in after)
    delivered = [row for b in before for batch in b["rows"] for row in batch]
    rest = [row for a in after for rows, pads in zip(a["rows"], a["padded"]) for row, pad in zip(rows, pads)
            if not pad]
    epoch = sorted(row for b in before for row in b["share"])
    assert sorted(delivered + rest) == epoch  # the rest of the epoch, each row once, none delivered twice


def _skip_resume_worker(rank, world_size, init_file, root, phase):
    """Ranks over the whole set (bad files included): save after skips, or resume the saved states."""
    import warnings

    import torch.distributed as dist

    from mlic_pipe.distributed import all_gather_objects

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    annotations, images = os.path.join(root, "labels.json"), os.path.join(root, "images")
    make = lambda: _loader(annotations, images, drop_last=False)  # noqa: E731 (every row is in every epoch)
    pairs = lambda batches: [[r, p] for b in batches for r, p in zip(b.rows.tolist(), b.padded.tolist())]
    out = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if phase == "save":  # found: 3 of 4 batches of epoch 0; skipped: epoch 0 whole, 1 batch of epoch 1
                loader = make()
                out["found"] = pairs(_first(loader, 3))
                out["found_states"] = all_gather_objects(loader.state_dict())
                loader = make()
                list(loader)
                out["skipped"] = pairs(_first(loader, 1))
                out["skipped_states"] = all_gather_objects(loader.state_dict())
                if world_size == 1:  # and one lone rank's own state, as a single-GPU run saves it
                    out["lone_state"] = out["found_states"][0]
            else:
                for name in ("found", "skipped", "lone"):
                    with open(os.path.join(root, f"{name}_states.json")) as handle:
                        states = json.load(handle)
                    loader = make()
                    loader.load_state_dict(states)
                    expected = len(loader)
                    rest = pairs(list(loader))
                    out[name] = {"len": expected, "rest": rest, "skipped": sorted(loader.skipped)}
        with open(os.path.join(root, f"{phase}{world_size}_{rank}.json"), "w") as handle:
            json.dump(out, handle)
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path, world_size, phase):
    init = tmp_path / f"init_{phase}{world_size}"
    mp.spawn(_skip_resume_worker, args=(world_size, str(init), str(tmp_path), phase), nprocs=world_size, join=True)
    return [json.loads((tmp_path / f"{phase}{world_size}_{r}.json").read_text()) for r in range(world_size)]


@pytest.mark.slow
def test_processes_resume_after_skips_on_another_world_size_never_redelivering_a_bad_file(tmp_path):
    build_set(tmp_path)
    saved = _spawn(tmp_path, 2, "save")
    lone = _spawn(tmp_path, 1, "save")[0]
    for name in ("found", "skipped"):
        (tmp_path / f"{name}_states.json").write_text(json.dumps(saved[0][f"{name}_states"]))
    assert any(s["found"] for s in saved[0]["found_states"])  # the save came after a rank found a bad file
    assert all(s["skipped"] for s in saved[0]["skipped_states"])  # and after an agreed skip
    (tmp_path / "lone_states.json").write_text(json.dumps(lone["lone_state"]))  # a lone dict, not a list
    good = sorted(set(range(NUM_IMAGES)) - set(BAD))
    bad_names = sorted(f"{i:02d}.jpg" for i in BAD)
    for world_size in (1, 3, 2):
        after = _spawn(tmp_path, world_size, "resume")
        for name in ("found", "skipped", "lone"):
            before = [pair for rank in ([lone] if name == "lone" else saved) for pair in rank[name if name != "lone" else "found"]]
            rests = [rank[name] for rank in after]
            rest = [pair for r in rests for pair in r["rest"]]
            assert len({len(r["rest"]) for r in rests}) == 1  # equal steps on the new ranks
            assert len({r["len"] for r in rests}) == 1  # and len() agrees
            delivered = sorted(row for row, pad in before + rest if not pad)
            assert delivered == good, (name, world_size)  # every good row once, no bad file re-delivered
            assert not {row for row, _ in rest} & set(BAD)
            assert all(sorted(os.path.basename(p) for p in r["skipped"]) == bad_names for r in rests)

"""Shards: `mlic-pipe shard` writes what DALI's WebDataset reader takes, and `MLICLoader` reads it back exactly.

References: the hand-built COCO annotation (labels), the image files (bytes), DALI's own `wds2idx`
(index files), the file-list loader (pixels in evaluation), tarfile's header bytes (GNU format).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import warnings

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from builders import write_coco
from mlic_pipe.datasets import load, load_coco
from mlic_pipe.errors import MLICDataError
from mlic_pipe.loader import MLICLoader
from mlic_pipe.shards import load_shards, verify_shards, write_shards


def _picture(seed, height, width):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * rng.integers(2, 6)) % 256, (y * rng.integers(2, 6)) % 256,
                     np.full_like(x, rng.integers(0, 256))], -1).astype(np.uint8)


def build_coco(root, num_images, num_classes, seed=0, bad=()):
    """A COCO .json over `num_images` JPEGs/PNGs with random label sets; returns (path, the (N, C) truth)."""
    rng = np.random.default_rng(seed)
    for folder in ("sub.dir", "other.dir"):
        (root / "img" / folder).mkdir(parents=True, exist_ok=True)
    names, truth = [], np.zeros((num_images, num_classes), dtype=np.uint8)
    annotations = []
    for i in range(num_images):
        name = f"other.dir/im.{i:03d}.png" if i % 5 == 4 else f"sub.dir/{i:03d}.jpg"
        Image.fromarray(_picture(i, 30 + 3 * (i % 4), 40 + 2 * (i % 3))).save(root / "img" / name)
        if i in bad:
            (root / "img" / name).write_bytes(b"this is not an image\n")
        names.append(name)
        for c in rng.choice(num_classes, size=int(rng.integers(0, min(4, num_classes) + 1)), replace=False):
            truth[i, c] = 1
            annotations.append((i + 1, int(c) + 1, 0))
    path = write_coco(root / "labels.json", [(i + 1, n) for i, n in enumerate(names)],
                      [(c + 1, f"class{c}") for c in range(num_classes)], annotations)
    return path, truth


def _index(tmp_path, num_images, num_classes, **kw):
    path, truth = build_coco(tmp_path, num_images, num_classes, **kw)
    return load_coco(path, tmp_path / "img", use_cache=False), truth


@pytest.mark.parametrize("num_classes", [1, 9, 80, 9605])
def test_shards_hold_the_original_bytes_packed_labels_and_dali_index_files(tmp_path, num_classes):
    index, truth = _index(tmp_path, 11, num_classes)
    manifest = write_shards(index, tmp_path / "out", samples_per_shard=4, progress=False)
    assert [s["samples"] for s in manifest["shards"]] == [4, 4, 3]
    assert manifest["classes"] == [f"class{c}" for c in range(num_classes)]
    rows = 0
    for shard in manifest["shards"]:
        tar_path = tmp_path / "out" / shard["tar"]
        raw = tar_path.read_bytes()
        assert raw[257:265] == b"ustar  \x00"  # GNU magic, not POSIX/PAX's "ustar\x0000"
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            assert all(m.type == tarfile.REGTYPE for m in members)  # no PAX extended headers
            for start in range(0, len(members), 4):
                image, lbl, labels_json, row = members[start:start + 4]
                number = int(np.frombuffer(tar.extractfile(row).read(), "<i8")[0])
                assert number == rows
                positive = np.flatnonzero(truth[number]).tolist()  # the labels as other readers see them
                assert json.loads(tar.extractfile(labels_json).read()) == {
                    "row": number, "labels": positive, "classes": [f"class{c}" for c in positive]}
                assert tar.extractfile(image).read() == open(index.files[number], "rb").read()
                bits = np.frombuffer(tar.extractfile(lbl).read(), np.uint8)
                assert np.array_equal(np.unpackbits(bits)[:num_classes], truth[number])
                assert image.name.rsplit(".", 1)[0] == os.path.relpath(index.files[number], tmp_path / "img") \
                    .rsplit(".", 1)[0].replace("im.", "im_")  # the key: the path below the root, dots in the stem as _
                rows += 1
        reference = tmp_path / "reference.idx"  # DALI's own indexer over the same tar
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "wds2idx"), str(tar_path), str(reference)],
                       check=True, capture_output=True)
        assert (tmp_path / "out" / shard["index"]).read_text() == reference.read_text()
    assert rows == 11
    assert verify_shards(str(tmp_path / "out"), index, progress=False) == 11


@pytest.mark.parametrize("num_classes", [1, 9, 80, 9605])
def test_one_rank_reads_every_sample_once_per_epoch_with_its_exact_labels(tmp_path, num_classes):
    index, truth = _index(tmp_path, 13, num_classes)
    write_shards(index, tmp_path / "out", samples_per_shard=5, progress=False)
    shards = load(str(tmp_path / "out"))
    assert np.array_equal(shards.targets, truth)
    loader = MLICLoader(shards, 4, image_size=16, device="cpu", num_threads=1, drop_last=False, seed=1)
    orders = []
    for _ in range(2):
        rows = []
        for batch in loader:
            assert torch.equal(batch.targets, torch.from_numpy(truth[batch.rows.numpy()]).float())
            rows += batch.rows[~batch.padded].tolist()
        assert sorted(rows) == list(range(13))
        orders.append(rows)
    assert orders[0] != orders[1]  # shuffled anew each epoch


def test_an_epoch_of_shards_runs_dali_once_per_batch(tmp_path, monkeypatch):
    """No batch decoded past the epoch (`ScheduledBatches`): DALI calls the bad-row feed once per run."""
    from mlic_pipe.loading.shard_stream import ShardStream

    calls = []
    real_feed = ShardStream._feed
    monkeypatch.setattr(ShardStream, "_feed", lambda self: calls.append(1) or real_feed(self))
    index, _ = _index(tmp_path, 13, 3)
    write_shards(index, tmp_path / "out", samples_per_shard=5, progress=False)
    loader = MLICLoader(load(str(tmp_path / "out")), 4, image_size=16, device="cpu", num_threads=1, drop_last=False)
    batches = sum(1 for _ in loader)
    assert batches == len(loader) == 4 and len(calls) == batches


def test_the_demo_data_shards_and_reads_back_once_per_epoch_on_one_and_on_two_ranks(tmp_path):
    index = load("demo")
    write_shards(index, tmp_path / "out", shard_bytes="2M", progress=False)
    shards = load(str(tmp_path / "out"))
    assert len(shards.shards) > 2 and np.array_equal(shards.targets, index.targets)
    for world_size in (1, 2):  # ranks in one process (rank=, world_size=): the same cut as under gloo
        rows = []
        for rank in range(world_size):
            loader = MLICLoader(shards, 32, image_size=16, device="cpu", drop_last=False, rank=rank,
                                world_size=world_size, seed=4, mix=None)
            for batch in loader:
                assert torch.equal(batch.targets, torch.from_numpy(index.targets[batch.rows.numpy()]).float())
                rows += batch.rows[~batch.padded].tolist()
        assert sorted(rows) == list(range(len(index)))


def test_evaluation_pixels_equal_the_file_list_loaders(tmp_path):
    index, _ = _index(tmp_path, 9, 3)
    write_shards(index, tmp_path / "out", samples_per_shard=4, progress=False)
    common = dict(image_size=24, device="cpu", num_threads=1, train=False)
    by_row = {}
    for batch in MLICLoader(index, 3, **common):
        for row, image in zip(batch.rows.tolist(), batch.images):
            by_row[row] = image.clone()
    seen = 0
    for batch in MLICLoader(load_shards(tmp_path / "out"), 3, **common):
        for row, image in zip(batch.rows.tolist(), batch.images):
            assert torch.equal(image, by_row[row])
            seen += 1
    assert seen == 9


def _rank_worker(rank, world_size, init_file, root, drop_last):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    try:
        loader = MLICLoader(load_shards(os.path.join(root, "out")), 3, image_size=16, device="cpu", num_threads=1,
                            drop_last=drop_last, seed=5, mix="cutmix", on_error="skip")
        log = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(3):
                batches = [(b.rows.tolist(), b.padded.tolist()) for b in loader]
                log.append({"len": len(loader), "batches": batches, "skipped": sorted(loader.skipped)})
        with open(os.path.join(root, f"rank{rank}.json"), "w") as handle:
            json.dump(log, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("samples_per_shard, drop_last", [  # ~6 s each: two of three in the slow set, run by CI
    (4, False), pytest.param(4, True, marks=pytest.mark.slow), pytest.param(30, False, marks=pytest.mark.slow)])
def test_two_gloo_ranks_split_the_shards_and_deliver_every_sample_once(tmp_path, samples_per_shard, drop_last):
    """(30, False): one tar for two ranks, the documented rule (each reads its half of it). Sample 5 is undecodable."""
    index, truth = _index(tmp_path, 17, 5, bad={5})
    write_shards(index, tmp_path / "out", samples_per_shard=samples_per_shard, progress=False)
    mp.spawn(_rank_worker, args=(2, str(tmp_path / "init"), str(tmp_path), drop_last), nprocs=2, join=True)
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for epoch in range(3):
        steps = [len(log[epoch]["batches"]) for log in logs]
        assert steps == [log[epoch]["len"] for log in logs] == [steps[0]] * 2
        real = [row for log in logs for rows, padded in log[epoch]["batches"] for row, p in zip(rows, padded) if not p]
        # the ranks agree on the skip at the epoch's end, and the bad sample is never delivered
        assert logs[0][epoch]["skipped"] == logs[1][epoch]["skipped"] and 5 not in real
        if drop_last:  # 17 samples, 2 ranks, batches of 3: 6 each, no repeats (one fewer if the bad one fell in)
            assert len(real) == len(set(real)) and len(real) in (11, 12) and steps[0] == 2
        else:
            assert sorted(real) == [r for r in range(17) if r != 5]
    assert logs[0][-1]["skipped"] == [load_shards(tmp_path / "out").name(5)]


def test_a_truncated_tar_is_refused_naming_the_shard_and_the_key(tmp_path):
    index, _ = _index(tmp_path, 8, 3)
    write_shards(index, tmp_path / "out", samples_per_shard=4, progress=False)
    tar = tmp_path / "out" / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:3000])
    with pytest.raises(MLICDataError, match=r"shard-000001\.tar.*truncated.*sample (other\.dir/im_004|sub\.dir/00[5-7])"):
        load(str(tmp_path / "out"))
    (tmp_path / "out" / "shard-000001.idx").unlink()  # without the index, the tar's own headers are read
    with pytest.raises(MLICDataError, match=r"shard-000001\.tar.*(sub\.dir/00[4-7]|other\.dir/im_004)"):
        load(str(tmp_path / "out"))


def test_a_tar_with_a_missing_lbl_is_refused_naming_the_shard_and_the_key(tmp_path):
    index, _ = _index(tmp_path, 8, 3)
    write_shards(index, tmp_path / "out", samples_per_shard=4, progress=False)
    path = tmp_path / "out" / "shard-000000.tar"
    with tarfile.open(path) as source:
        members = [(m, source.extractfile(m).read()) for m in source.getmembers()]
    path.unlink()
    (tmp_path / "out" / "shard-000000.idx").unlink()
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for member, data in members:
            if member.name != "sub.dir/002.lbl":
                tar.addfile(member, __import__("io").BytesIO(data))
    with pytest.raises(MLICDataError, match=r"shard-000000\.tar.*sample sub\.dir/002 has no \.lbl"):
        load(str(tmp_path / "out"))


def test_a_bad_image_inside_a_shard_is_skipped_counted_and_named_or_raised(tmp_path):
    index, truth = _index(tmp_path, 14, 4, bad={6})
    write_shards(index, tmp_path / "out", samples_per_shard=5, progress=False)
    shards = load_shards(tmp_path / "out")
    options = dict(image_size=16, device="cpu", num_threads=1, drop_last=False, seed=2)
    with pytest.raises(MLICDataError, match=r"shard-000001\.tar: sub\.dir/006.*cannot be decoded"):
        list(MLICLoader(shards, 4, **options))
    loader = MLICLoader(shards, 4, on_error="skip", **options)
    for epoch in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batches = list(loader)
        assert len(batches) == 4  # the number of batches never changes, nor their size (the source protocol's rule)
        assert [len(b.rows) for b in batches] == [4, 4, 4, 2]
        rows = [r for b in batches for r in b.rows[~b.padded].tolist()]
        assert sorted(rows) == [r for r in range(14) if r != 6]
        assert 6 not in [r for b in batches for r in b.rows.tolist()]  # its place holds a repeat, marked padded
        for batch in batches:
            assert torch.equal(batch.targets, torch.from_numpy(truth[batch.rows.numpy()]).float())
        assert len([w for w in caught if "skipped" in str(w.message)]) == (1 if epoch == 0 else 0)
    assert list(loader.skipped) == [shards.name(6)]


@pytest.mark.parametrize("mix,auto_augment", [(None, None), ("splicemix", None), (None, "trivial")])
def test_a_fresh_loader_resumes_mid_epoch_bitwise(tmp_path, mix, auto_augment):
    index, _ = _index(tmp_path, 37, 4)
    write_shards(index, tmp_path / "out", samples_per_shard=6, progress=False)
    shards = load_shards(tmp_path / "out")
    options = dict(image_size=16, device="cpu", num_threads=1, seed=9, mix=mix, auto_augment=auto_augment)
    whole = MLICLoader(shards, 8, **options)
    list(whole)  # epoch 0
    expected = [(b.rows.clone(), b.images.clone(), b.targets.clone()) for b in whole]
    first = MLICLoader(shards, 8, **options)
    list(first)
    iterator = iter(first)
    for _ in range(2):
        next(iterator)
    state = json.loads(json.dumps(first.state_dict()))
    assert state["epoch"] == 1 and state["batches"] == 2 and state["checkpoint"]
    fresh = MLICLoader(shards, 8, **options)
    fresh.load_state_dict(state)
    rest = [(b.rows.clone(), b.images.clone(), b.targets.clone()) for b in fresh]
    assert len(expected) == 4 and len(rest) == 2
    for got, want in zip(rest, expected[2:]):
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_the_commands_take_a_shard_directory_like_any_dataset(tmp_path, capsys):
    from mlic_pipe.cli import main

    index, truth = _index(tmp_path, 12, 9)
    out = tmp_path / "out"
    assert main(["shard", str(tmp_path / "labels.json"), str(out), "--images", str(tmp_path / "img"),
                 "--shard-bytes", "8K", "--verify", "-q"]) == 0
    said = capsys.readouterr().out
    assert "verified: all 12 samples" in said
    assert len(json.loads((out / "dataset.json").read_text())["shards"]) > 1  # 8 KiB tars: several
    assert main(["profile", str(out), "--batch-size", "4", "--image-size", "32", "--steps", "2", "--warmup", "1",
                 "--mix", "cutmix", "--device", "cpu", "-q"]) == 0
    assert "12 images, 9 classes" in capsys.readouterr().out
    assert main(["check", str(out), "-q"]) == 0
    report = capsys.readouterr().out
    for column, name in enumerate(index.classes):  # class frequencies read from the tars' .lbl
        assert any(line.split()[:2] == [name, str(int(truth[:, column].sum()))] for line in report.splitlines())
    assert main(["preview", str(out), "--out", str(tmp_path / "p.png"), "--batch-size", "8", "--size", "32"]) == 0
    assert Image.open(tmp_path / "p.png").size[0] > 0
    assert main(["profile", str(tmp_path / "nowhere"), "-q"]) == 2  # a clear error, no traceback


@pytest.mark.gpu
def test_gpu_reads_shards_with_the_mixed_decoder_and_unpacks_labels_on_the_device(tmp_path):
    index, truth = _index(tmp_path, 23, 80)
    write_shards(index, tmp_path / "out", samples_per_shard=6, progress=False)
    shards = load_shards(tmp_path / "out")
    evaluation = {}
    for batch in MLICLoader(index, 5, image_size=32, train=False, device="cpu"):
        for row, image in zip(batch.rows.tolist(), batch.images):
            evaluation[row] = image.clone()
    rows = []
    for batch in MLICLoader(shards, 5, image_size=32, train=False, device="cuda"):
        assert batch.images.is_cuda and batch.targets.is_cuda
        assert torch.equal(batch.targets.cpu(), torch.from_numpy(truth[batch.rows.numpy()]).float())
        for row, image in zip(batch.rows.tolist(), batch.images.cpu()):
            assert (image - evaluation[row]).abs().mean().item() < 0.1  # GPU and CPU decoders, normalized scale
        rows += batch.rows[~batch.padded].tolist()
    assert sorted(rows) == list(range(23))
    loader = MLICLoader(shards, 8, image_size=64, device="cuda", mix="splicemix")
    assert sum(len(b.rows) for b in loader) == len(loader) * 8  # the training path (crop on 'mixed') runs


def test_each_stage_is_reported_once_per_batch(tmp_path):
    """`profile` averages each stage's times per call: a stage timed twice per batch would halve its row."""
    index, _ = _index(tmp_path, 9, 3)
    write_shards(index, tmp_path / "out", samples_per_shard=4, progress=False)
    loader = MLICLoader(load_shards(tmp_path / "out"), 3, image_size=16, device="cpu", num_threads=1)
    seen = []
    loader.stage_hook = lambda stage, start: seen.append(stage)
    steps = len(list(loader))
    assert sorted(seen) == sorted(["dali", "plan", "render", "targets"] * steps)


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT])
def test_dali_reads_pax_ustar_and_gnu_tars_indexed_from_their_headers(tmp_path, tar_format):
    """We write GNU tars, but DALI does not need them: a PAX tar (extended headers before each member) is read
    alike once `scan_tar` has indexed it, and without an index too."""
    import io

    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from mlic_pipe.shards.format import write_index
    from mlic_pipe.shards.index import scan_tar

    images = [Image.fromarray(_picture(i, 20, 24)) for i in range(3)]
    path = tmp_path / "samples.tar"
    with tarfile.open(path, "w", format=tar_format) as tar:
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            for ext, data in (("png", buffer.getvalue()), ("cls", str(i).encode())):
                info = tarfile.TarInfo(f"sample{i}.{ext}")
                info.size = len(data)
                if tar_format == tarfile.PAX_FORMAT:
                    info.pax_headers = {"comment": "extended header"}
                tar.addfile(info, io.BytesIO(data))
    write_index(tmp_path / "samples.idx", scan_tar(str(path)))
    for index_paths in ([str(tmp_path / "samples.idx")], None):
        @pipeline_def(batch_size=3, num_threads=1, device_id=None)
        def read():
            kw = {"index_paths": index_paths} if index_paths else {}
            image, label = fn.readers.webdataset(paths=[str(path)], ext=["png", "cls"], **kw)
            return fn.decoders.image(image, device="cpu"), label
        pipe = read()
        pipe.build()
        decoded, labels = pipe.run()
        for i in range(3):
            assert np.asarray(labels[i]).tobytes() == str(i).encode()
            assert np.array_equal(np.asarray(decoded[i]), np.asarray(images[i]))


def test_other_readers_see_our_labels_and_verify_holds_the_json_to_the_bits(tmp_path):
    """The `webdataset` library (the format's reference reader) reads each sample's labels from its .json."""
    webdataset = pytest.importorskip("webdataset")
    index, truth = _index(tmp_path, 9, 12)
    manifest = write_shards(index, tmp_path / "out", samples_per_shard=4, progress=False)
    urls = [str(tmp_path / "out" / shard["tar"]) for shard in manifest["shards"]]
    seen = {}
    for sample in webdataset.WebDataset(urls, shardshuffle=False).decode():
        record = sample["json"]
        seen[record["row"]] = record
        assert sample["__key__"] + ".json"  # keyed as we named it; the image rides alongside
    assert sorted(seen) == list(range(9))
    for row, record in seen.items():
        assert record["labels"] == np.flatnonzero(truth[row]).tolist()
        assert record["classes"] == [index.classes[k] for k in record["labels"]]
    # a .json that says another row, edited in place (same length): load passes it, verify names it
    tar = tmp_path / "out" / "shard-000000.tar"
    raw = tar.read_bytes()
    tar.write_bytes(raw.replace(b'{"row":1,', b'{"row":7,', 1))
    assert load_shards(tmp_path / "out") is not None
    with pytest.raises(MLICDataError, match=r"shard-000000\.tar.*\.json disagrees with \.lbl/\.ign/\.row in row"):
        verify_shards(str(tmp_path / "out"), progress=False)


def test_a_set_written_before_the_json_member_still_loads_and_verifies(tmp_path, monkeypatch):
    from mlic_pipe.shards import write

    index, truth = _index(tmp_path, 7, 5)
    add = write.ShardWriter.add
    monkeypatch.setattr(write.ShardWriter, "add", lambda self, key, parts: add(self, key, [p for p in parts
                                                                                      if p[0] != "json"]))
    write_shards(index, tmp_path / "out", samples_per_shard=3, progress=False)
    manifest_path = tmp_path / "out" / "dataset.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["json_labels"]  # as the set was written then
    manifest_path.write_text(json.dumps(manifest))
    shards = load(str(tmp_path / "out"))
    assert np.array_equal(shards.targets, truth) and not shards.json_labels
    assert verify_shards(str(tmp_path / "out"), index, progress=False) == 7
    manifest["json_labels"] = "yes"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(MLICDataError, match="field 'json_labels' is 'yes', not a bool"):
        load(str(tmp_path / "out"))

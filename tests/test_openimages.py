"""Open Images (V6/V7 layouts) against hand-built label files and a csv-module reading of the same files."""
import csv
import os

import numpy as np
import pytest
import torch

from builders import encoded_image
from mlic_pipe.datasets import load, load_openimages
from mlic_pipe.datasets.detect import detect_format
from mlic_pipe.errors import MLICDataError

# the reader reports rows of classes that are not columns; the tests that mean to check it use pytest.warns
pytestmark = pytest.mark.filterwarnings("ignore:.*label rows name a class outside")

HEADER = "ImageID,Source,LabelName,Confidence\n"
IDS = ["000a1249af2bc5f0", "0b1e4f2a9c3d7e15", "1f00c0ffee00beef", "ffffffffffffff00"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLIC_PIPE_CACHE_DIR", str(tmp_path / "cache"))


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return str(path)


def _v7(root, rows, split="val", trainable=("/m/cat", "/m/dog", "/m/car"), machine=None, images=False):
    _write(root / "oidv7-class-descriptions.csv", "LabelName,DisplayName\n/m/cat,Cat\n/m/dog,Dog\n/m/car,Car\n"
           "/m/tree,Tree\n/m/bat1,Bat\n/m/bat2,Bat\n")
    if trainable is not None:
        _write(root / "oidv7-classes-trainable.txt", "".join(f"{mid}\n" for mid in trainable))
    _write(root / f"oidv7-{split}-annotations-human-imagelabels.csv", HEADER + rows)
    if machine is not None:
        _write(root / f"oidv7-{split}-annotations-machine-imagelabels.csv", HEADER + machine)
    if images:
        folder = {"val": "validation"}.get(split, split)
        for k, image_id in enumerate(IDS):
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / f"{image_id}.jpg").write_bytes(encoded_image(k))
    return root


HAND_ROWS = (
    f"{IDS[0]},verification,/m/cat,1\n"
    f"{IDS[0]},crowdsource-verification,/m/cat,1\n"  # the same pair from two sources: one positive
    f"{IDS[0]},verification,/m/dog,0\n"
    f"{IDS[0]},verification,/m/tree,1\n"  # not a column: counted, reported, left out
    f"{IDS[1]},verification,/m/car,0\n"
    f"{IDS[1]},crowdsource-verification,/m/car,1\n"  # the sources disagree: the positive wins
    f"{IDS[2]},verification,/m/dog,0\n"  # an image with a verified negative only
    f"{IDS[3]},verification,/m/dog,1\n"
    f"{IDS[3]},verification,/m/cat,0"  # no newline after the last line
)
# columns cat, dog, car (the trainable list's order)
HAND_POSITIVE = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=np.uint8)
HAND_KNOWN = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=bool)


def test_hand_built_v7_split_positives_negatives_and_columns(tmp_path):
    root = _v7(tmp_path / "oi", HAND_ROWS, images=True)
    assert detect_format(root) == "openimages"
    with pytest.warns(UserWarning, match=r"1 of 9 label rows name a class outside the 3 columns \(e.g. /m/tree\)"):
        index = load(root, split="val")
    assert index.classes == ["Cat", "Dog", "Car"] and index.class_ids == ["/m/cat", "/m/dog", "/m/car"]
    assert index.files == [str(tmp_path / "oi" / "validation" / f"{image_id}.jpg") for image_id in IDS]
    assert np.array_equal(index.targets, HAND_POSITIVE) and index.ignored is None
    partial = load_openimages(root, "validation", unverified="ignore", use_cache=False)
    assert np.array_equal(partial.targets, HAND_POSITIVE)
    assert np.array_equal(partial.ignore, ~HAND_KNOWN)
    assert partial.ignored.complement  # stored as the known entries: O(labels), not O(N x C)


def test_crlf_empty_lines_and_a_cached_restart_give_the_same_index(tmp_path):
    crlf = HAND_ROWS.replace("\n", "\r\n").replace(f"{IDS[2]},", f"\r\n{IDS[2]},", 1)
    root = _v7(tmp_path / "oi", crlf)
    with pytest.warns(UserWarning):
        index = load_openimages(root, "validation", missing="keep")
    assert np.array_equal(index.targets, HAND_POSITIVE)
    with pytest.warns(UserWarning, match="1 of 9 label rows name a class outside"):  # reported again from the cache
        again = load_openimages(root, "validation", missing="keep")
    assert again.positives == index.positives and again.files == index.files and again.class_ids == index.class_ids


def test_v6_names_classes_by_name_or_mid_and_no_trainable_list(tmp_path):
    root = tmp_path / "v6"
    _write(root / "oidv6-class-descriptions.csv", "LabelName,DisplayName\n/m/cat,Cat\n/m/dog,Dog\n/m/bat1,Bat\n"
           "/m/bat2,Bat\n")
    _write(root / "validation-annotations-human-imagelabels.csv",
           HEADER + f"{IDS[1]},verification,/m/bat2,1\n{IDS[0]},verification,/m/dog,1\n{IDS[0]},verification,/m/bat1,1\n")
    index = load(root, split="validation", missing="keep")  # every class, in the descriptions' order
    assert index.classes == ["Cat", "Dog", "Bat (/m/bat1)", "Bat (/m/bat2)"]
    assert index.files[0].endswith(f"validation/{IDS[0]}.jpg")  # rows sorted by ImageID whatever the file order
    assert np.array_equal(index.targets, [[0, 1, 1, 0], [0, 0, 0, 1]])
    chosen = load_openimages(root, "validation", classes=["Dog", "/m/bat2"], missing="keep")
    assert chosen.class_ids == ["/m/dog", "/m/bat2"] and np.array_equal(chosen.targets, [[1, 0], [0, 1]])
    with pytest.raises(MLICDataError, match="'Bat' belongs to several classes"):
        load_openimages(root, "validation", classes=["Bat"], missing="keep")
    (root / "classes.txt").write_text("/m/cat\nDog\n")
    from_file = load_openimages(root, "validation", classes=str(root / "classes.txt"), missing="keep")
    assert from_file.classes == ["Cat", "Dog"]


def _reference(path, columns, image_ids):
    """The same merge rules read with the csv module, one row at a time."""
    positive, negative = set(), set()
    with open(path, newline="") as handle:
        for row in list(csv.DictReader(handle)):
            if row["LabelName"] in columns:
                key = (image_ids.index(row["ImageID"]), columns.index(row["LabelName"]))
                (positive if float(row["Confidence"]) >= 0.5 else negative).add(key)
    return positive, negative - positive


@pytest.mark.parametrize("seed, piece_bytes", [(0, 8 << 20), (1, 100)])
def test_random_files_equal_a_csv_module_reading(tmp_path, monkeypatch, seed, piece_bytes):
    """Also cut into 100-byte pieces: lines, runs of an image and empty lines across the threads' pieces."""
    import mlic_pipe.datasets.openimages as openimages

    monkeypatch.setattr(openimages, "PIECE_BYTES", piece_bytes)
    rng = np.random.default_rng(seed)
    mids = ["/m/cat", "/m/dog", "/m/car", "/m/tree", "/m/bat1", "/m/bat2"]
    ids = sorted({f"{value:016x}" for value in rng.integers(0, 2**62, 300).tolist()})
    lines = [f"{image_id},{rng.choice(['verification', 'crowdsource-verification'])},{rng.choice(mids)},"
             f"{rng.integers(0, 2)}\n" + ("\n" if rng.random() < 0.05 else "")
             for image_id in ids for _ in range(rng.integers(1, 6))]
    machine = [f"{image_id},machine,{rng.choice(mids)},{rng.integers(0, 11) / 10:.1f}\n"
               for image_id in ids[::2] + [f"{7:016x}"] for _ in range(3)]
    root = _v7(tmp_path / "oi", "".join(lines), split="train", trainable=mids[:4], machine="".join(machine))
    with pytest.warns(UserWarning):
        index = load_openimages(root, unverified="ignore", missing="keep", use_cache=False)
    positive, negative = _reference(root / "oidv7-train-annotations-human-imagelabels.csv", mids[:4], ids)
    expected = np.zeros((len(ids), 4), dtype=np.uint8)
    known = np.zeros((len(ids), 4), dtype=bool)
    for r, c in positive:
        expected[r, c] = known[r, c] = 1
    for r, c in negative:
        known[r, c] = True
    assert np.array_equal(index.targets, expected) and np.array_equal(index.ignore, ~known)
    # machine labels: confidence >= 0.7 joins the positives unless a human said no; their images join the rows
    with pytest.warns(UserWarning):
        mixed = load_openimages(root, machine_threshold=0.7, missing="keep", use_cache=False)
    all_ids = sorted(set(ids) | {f"{7:016x}"})
    assert [os.path.basename(f)[:-4] for f in mixed.files] == all_ids
    want = np.zeros((len(all_ids), 4), dtype=np.uint8)
    for r, c in positive:
        want[all_ids.index(ids[r]), c] = 1
    for line in machine:
        image_id, _, mid, confidence = line.strip().split(",")
        human_no = mid in mids[:4] and image_id in ids and (ids.index(image_id), mids.index(mid)) in negative
        if mid in mids[:4] and float(confidence) >= 0.7 and not human_no:
            want[all_ids.index(image_id), mids.index(mid)] = 1
    assert np.array_equal(mixed.targets, want)


@pytest.mark.parametrize("text, message", [
    ("ImageID,LabelName,Confidence\nab,/m/cat,1\n", "has the columns"),
    (HEADER + f"{IDS[0]},verification,/m/cat,1\n{IDS[1]},verification,/m/cat,1,extra\n", "has 5 fields"),
    (HEADER + f"{IDS[0]},verification,/m/cat,2\n", r"Confidence is 2\.0; it must lie in \[0, 1\]"),
    (HEADER + f"{IDS[0]},verification,/m/cat,high\n", "not a number"),
    (HEADER + f'{IDS[0]},"verification",/m/cat,1\n', "quoted fields"),
    (HEADER + f"{IDS[0]}{IDS[0]},verification,/m/cat,1\n", "ImageID field is 32 bytes \\('000a1249"),
    (HEADER + "\n\n", "lists no image"),
])
def test_malformed_label_files_name_the_file(tmp_path, text, message):
    root = _v7(tmp_path / "oi", "")
    path = _write(root / "oidv7-val-annotations-human-imagelabels.csv", text)
    with pytest.raises(MLICDataError, match=message) as error:
        load_openimages(root, "validation", missing="keep", use_cache=False)
    assert path in str(error.value)


def test_missing_splits_images_and_machine_files_are_clear(tmp_path):
    root = _v7(tmp_path / "oi", HAND_ROWS)
    with pytest.raises(MLICDataError, match="no human image-level labels for train.*its splits here: validation"):
        load_openimages(root, "train")
    with pytest.raises(MLICDataError, match="no machine-generated labels"):
        load_openimages(root, "validation", machine_threshold=0.5)
    with pytest.raises(MLICDataError, match="none of its 4 image files exist"), pytest.warns(UserWarning):
        load_openimages(root, "validation", missing="drop")
    (root / "validation").mkdir()
    (root / "validation" / f"{IDS[1]}.jpg").write_bytes(encoded_image(1))
    with pytest.warns(UserWarning, match="dropping 3 of 4 image files"):
        kept = load_openimages(root, "validation", missing="drop")
    assert len(kept) == 1 and np.array_equal(kept.targets, HAND_POSITIVE[[1]])


def test_the_loader_hands_out_open_images_targets_and_unknowns_per_batch(tmp_path):
    from mlic_pipe.loader import MLICLoader

    root = _v7(tmp_path / "oi", HAND_ROWS, images=True)
    with pytest.warns(UserWarning):
        index = load_openimages(root, "validation", unverified="ignore")
    loader = MLICLoader(index, 3, image_size=16, train=False, device="cpu", num_threads=1)
    seen = []
    for batch in loader:
        rows = batch.rows.numpy()
        assert torch.equal(batch.targets, torch.from_numpy(HAND_POSITIVE[rows]).float())
        assert torch.equal(batch.ignore, torch.from_numpy(~HAND_KNOWN[rows]))
        seen += rows[~batch.padded.numpy()].tolist()
    assert sorted(seen) == [0, 1, 2, 3]


@pytest.mark.parametrize("distinct", [3, 700, 20_000])
def test_interning_gives_one_code_per_word_through_collisions(distinct):
    """Codes agree with the words (checked against a dict); many words force re-hashing of colliding buckets."""
    from mlic_pipe.datasets.openimages import _intern

    rng = np.random.default_rng(distinct)
    vocabulary = rng.integers(0, 2**63, (distinct, 2), dtype=np.int64).astype(np.uint64)
    words = vocabulary[rng.integers(0, distinct, 60_000)]
    code, holders = _intern(words)
    assert len(holders) == len({tuple(w) for w in words.tolist()})
    assert np.array_equal(words[holders[code]], words)  # every row's code names a row with the same word
    first_code = {}
    for word, c in zip(map(tuple, words.tolist()), code.tolist()):
        assert first_code.setdefault(word, c) == c


def test_open_images_shards_carry_the_partial_labels_compactly_and_verify(tmp_path):
    """Mostly-unknown labels go into each sample's .json as the few known indices; verify and the loader agree."""
    import json
    import tarfile

    from mlic_pipe.loader import MLICLoader
    from mlic_pipe.shards import load_shards, verify_shards, write_shards

    root = _v7(tmp_path / "oi", HAND_ROWS, images=True)
    index = load_openimages(root, "validation", unverified="ignore")
    write_shards(index, str(tmp_path / "shards"), progress=False)
    verify_shards(str(tmp_path / "shards"), index, progress=False)
    with tarfile.open(next((tmp_path / "shards").glob("*.tar"))) as tar:
        records = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    # the shorter list of each row: rows 0 and 3 have one unknown class of 3, rows 1 and 2 one known
    assert [r.get("ignore") for r in records] == [[2], None, None, [2]]
    assert [r.get("known") for r in records] == [None, [2], [1], None]
    assert records[1] == {"row": 1, "labels": [2], "classes": ["Car"], "known": [2]}
    shards = load_shards(str(tmp_path / "shards"))
    seen = 0
    for batch in MLICLoader(shards, 2, image_size=16, train=False, device="cpu", num_threads=1):
        rows = batch.rows.numpy()
        assert torch.equal(batch.ignore, torch.from_numpy(~HAND_KNOWN[rows]))
        seen += int((~batch.padded).sum())
    assert seen == 4

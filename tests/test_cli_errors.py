"""Every user error on the command line exits 2 with one line naming the flag: never a traceback.

Reference: the flags as a user types them (a table of bad values, files and combinations); the
expected flag in each message is written out by hand.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mlic_pipe.cli import main
from mlic_pipe.training import TrainConfig

TRAIN = ["train", "--backbone", "resnet18", "--image-size", "64", "--batch-size", "8", "--epochs", "1",
         "--limit-train-batches", "1", "--val-split", "", "-q"]
PROFILE = ["profile", "--image-size", "64", "--batch-size", "4", "--steps", "1", "--warmup", "0", "-q"]


def _cases(tmp_path):
    not_checkpoint = tmp_path / "notes.txt"
    not_checkpoint.write_text("not a checkpoint\n")
    other = tmp_path / "other.pt"
    torch.save({"model": {}, "optimizer": {}, "epoch": 0, "classes": None,
                "config": dataclasses.asdict(TrainConfig(backbone="mobilenetv3_small_100"))}, other)
    out = str(tmp_path / "shards")
    return [
        (["profile", "--batch-size", "0"], "--batch-size"),
        (["profile", "--image-size", "0"], "--image-size"),
        (["profile", "--steps", "0"], "--steps"),
        (["profile", "--threads", "0"], "--threads"),
        (["profile", "--batch-size", "many"], "--batch-size"),
        ([*PROFILE, "--image-size", "20000"], "--image-size 20000"),
        ([*PROFILE, "--image-size", "100000"], "--image-size 100000"),
        ([*PROFILE, "--device", "tpu"], "--device"),
        ([*PROFILE, "--json", str(tmp_path / "missing" / "p.json")], "--json"),
        ([*TRAIN, "--lr", "-1"], "--lr"),
        ([*TRAIN, "--batch-size", "0"], "--batch-size"),
        ([*TRAIN, "--image-size", "0"], "--image-size"),
        ([*TRAIN, "--threads", "0"], "--threads"),
        ([*TRAIN, "--momentum", "1.5"], "--momentum"),
        ([*TRAIN, "--backbone", "resnet5000"], "--backbone"),
        ([*TRAIN, "--head", "csra", "--head-arg", "num_heads=3"], "--head-arg"),
        ([*TRAIN, "--head-arg", "no_such_option=1"], "--head-arg"),
        ([*TRAIN, "--head-arg", "num_heads"], "--head-arg"),
        ([*TRAIN, "--resume", str(not_checkpoint), "--out-dir", str(tmp_path / "r1")], "--resume"),
        ([*TRAIN, "--resume", str(other), "--out-dir", str(tmp_path / "r2")], "--resume"),
        ([*TRAIN, "--resume", str(tmp_path / "nowhere.pt")], "--resume"),
        (["shard", "demo", out, "--samples-per-shard", "0"], "--samples-per-shard"),
        (["shard", "demo", out, "--shard-bytes", "abc"], "--shard-bytes"),
        (["shard", "demo", str(tmp_path / "notes.txt")], "notes.txt"),
        (["preview", "--out", str(tmp_path / "missing" / "b.png")], "--out"),
        (["preview", "--size", "0"], "--size"),
    ]


def test_bad_flags_exit_2_with_one_line_naming_the_flag(tmp_path, capsys):
    for argv, flag in _cases(tmp_path):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own refusals
            code = exit_.code
        out, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (argv, code, err)
        assert "Traceback" not in err + out, argv
        assert lines and lines[-1].startswith("mlic-pipe") and flag in lines[-1], (argv, lines)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_on_a_machine_without_one_names_the_flag(capsys):
    assert main([*PROFILE, "--device", "cuda"]) == 2
    assert "--device cuda was asked for, but no CUDA device is available: use --device cpu" in capsys.readouterr().err

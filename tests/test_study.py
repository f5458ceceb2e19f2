"""`mlic-pipe study`: the grid resumes, the table is the runs' numbers, and the command runs end to end."""
from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
from PIL import Image

from mlic_pipe.errors import ConfigError
from mlic_pipe.study import run_study, summarize
from mlic_pipe.study.chart import draw_curves


def _fake_train(calls):
    """A stand-in for `train` that logs made-up validation numbers from (mix, seed), as the trainer logs them."""
    def train(config, progress=True):
        calls.append((config.mix, config.splicemix_cl, config.seed, config.resume))
        rng = np.random.default_rng([config.seed, len(config.mix), int(config.splicemix_cl)])
        with open(f"{config.out_dir}/log.jsonl", "a") as log:
            log.write(json.dumps({"config": {}}) + "\n")
            for epoch in range(1, config.epochs + 1):
                log.write(json.dumps({"epoch": epoch, "train_loss": 1.0, "mAP": rng.uniform(), "CF1": rng.uniform(),
                                      "OF1": rng.uniform(), "CF1_top3": rng.uniform(),
                                      "OF1_top3": rng.uniform()}) + "\n")
    return train


def test_the_grid_keeps_finished_runs_resumes_the_rest_and_tabulates_mean_and_std(tmp_path, monkeypatch):
    import mlic_pipe.training

    calls = []
    monkeypatch.setattr(mlic_pipe.training, "train", _fake_train(calls))
    base = {"epochs": 3, "data": "demo"}
    (tmp_path / "runs" / "cutmix-seed1").mkdir(parents=True)
    (tmp_path / "runs" / "cutmix-seed1" / "last.pt").write_bytes(b"")  # an interrupted run
    logs = run_study(base, ["none", "splicemix-cl", "cutmix"], [0, 1], tmp_path, progress=False)
    assert len(calls) == 6
    assert ("splicemix", True, 0, None) in calls and ("none", False, 1, None) in calls
    assert ("cutmix", False, 1, str(tmp_path / "runs" / "cutmix-seed1" / "last.pt")) in calls
    again = run_study(base, ["none", "splicemix-cl", "cutmix"], [0, 1], tmp_path, progress=False)
    assert len(calls) == 6 and [l.epochs for l in again] == [l.epochs for l in logs]  # nothing trained twice
    summary = summarize(logs)
    for config in ("none", "splicemix-cl", "cutmix"):
        finals = []
        for seed in (0, 1):
            records = [json.loads(line) for line in
                       (tmp_path / "runs" / f"{config}-seed{seed}" / "log.jsonl").read_text().splitlines()]
            finals.append([r for r in records if r.get("epoch") == 3][0])
        for metric in ("mAP", "CF1", "OF1", "CF1_top3", "OF1_top3"):
            values = [f[metric] for f in finals]
            assert summary.final[config][metric] == pytest.approx((statistics.mean(values), statistics.stdev(values)))
        if config != "none":  # paired by seed: the difference per seed, then its mean and spread
            none_finals = [[json.loads(line) for line in (tmp_path / "runs" / f"none-seed{seed}" / "log.jsonl")
                            .read_text().splitlines() if '"epoch": 3' in line][0]["mAP"] for seed in (0, 1)]
            differences = [f["mAP"] - n for f, n in zip(finals, none_finals)]
            assert summary.versus_none[config] == pytest.approx(
                (statistics.mean(differences), statistics.stdev(differences), 2))
    assert "none" not in summary.versus_none
    assert "| splicemix-cl | 2 |" in summary.table()
    draw_curves(summary, tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size == (900, 560)  # 9 x 5.6 inches at 100 dpi
    with pytest.raises(ConfigError, match="unknown study config"):
        run_study(base, ["mosaic"], [0], tmp_path, progress=False)


def test_the_study_command_trains_tabulates_and_plots(tmp_path, capsys):
    from mlic_pipe.cli import main

    assert main(["study", "--configs", "none,cutmix", "--seeds", "0", "--epochs", "1", "--image-size", "32",
                 "--batch-size", "16", "--backbone", "resnet18", "--limit-train-batches", "1", "--out-dir",
                 str(tmp_path), "-q"]) == 0
    assert "| cutmix | 1 |" in capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == {"runs", "study.md", "study.json", "study.png"}
    log = [json.loads(line) for line in (tmp_path / "runs" / "cutmix-seed0" / "log.jsonl").read_text().splitlines()]
    assert log[0]["config"]["mix"] == "cutmix" and log[0]["config"]["epochs"] == 1


def test_splicemix_cl_on_a_feature_map_too_small_for_its_grids_fails_before_training(tmp_path):
    from mlic_pipe.training import TrainConfig, train

    # resnet18 at S=64 gives a 2x2 map; SpliceMix's default grids (2x3 and its transpose) need 3 a side
    config = TrainConfig(data="demo", backbone="resnet18", image_size=64, batch_size=16, epochs=1, mix="splicemix",
                         splicemix_cl=True, out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="2x2 feature map.*3 cells a side"):
        train(config, progress=False)
    assert not (tmp_path / "log.jsonl").exists()


def test_without_matplotlib_the_chart_says_how_to_install_it(monkeypatch, tmp_path):
    import sys

    from mlic_pipe.study.chart import ChartUnavailable, pyplot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(ChartUnavailable, match=r"pip install 'mlic-pipe\[charts\]'"):
        pyplot()

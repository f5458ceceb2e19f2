"""The benchmark suite itself: every benchmark runs once on tiny shapes, and the report is right."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_benchmark_runs_once_on_tiny_shapes():
    """`--benchmark-disable` runs each benchmark body once, untimed: the suite cannot rot unnoticed."""
    done = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--tiny", "--benchmark-disable", "-q",
                           "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def bench(name, group, median, baseline=False, low=None, high=None, **info):
    return {"name": name, "group": group,
            "stats": {"mean": median, "median": median, "min": low or median, "max": high or median, "rounds": 1},
            "extra_info": {"contender": name, "baseline": baseline, **info}}


def test_report_pools_rounds_takes_ratios_per_output_and_draws_every_bar(tmp_path):
    render = dict(dtype="float32", device="cpu")
    data = {"datetime": "2026-11-22T10:00:00", "version": "5.3.1", "commit_info": {"id": "abc1234567890"},
            "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "python_version": "3.12"},
            "benchmarks": [
                bench("published", "render B=32", 0.300, True, allocation="reused", outputs=40, **render),
                bench("mlic-pipe", "render B=32", 0.040, allocation="reused", outputs=40, bytes=4e8, **render),
                bench("timm-cutmix", "render B=32", 0.100, allocation="reused", outputs=32, **render),
                bench("tv2-cutmix", "render B=32", 0.050, allocation="fresh", outputs=32, **render),
                bench("output-copy", "render B=32", 0.010, allocation="reused", outputs=40, **render),
                # a loader group of interleaved rounds: one entry per round, pooled into one median
                *[bench("dataloader", "loader S=224", t, True, outputs=480) for t in (2.0, 2.4, 1.8)],
                *[bench("mlic-pipe", "loader S=224", t, outputs=480, low=t - 0.1) for t in (1.0, 0.9, 1.3)]]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    done = subprocess.run([sys.executable, "-m", "benchmarks.report", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "results.md").read_text()
    # 0.300 / 0.040 per call, and per output: (0.300 / 40) / (0.040 / 40)
    # and 4x the time of copying its output: (0.040 / 40) / (0.010 / 40)
    assert "| **mlic-pipe** | reused | 40 | 40.00 | 40.0-40.0 | 1000.0 | 10.0 | 7.50x | 7.50x | 4.00 |" in markdown
    # timm makes 32 outputs: per output (0.300 / 40) / (0.100 / 32) = 2.40x, per call 3.00x
    assert "| timm-cutmix | reused | 32 | 100.00 | 100.0-100.0 | 320.0 |  | 2.40x | 3.00x | 12.50 |" in markdown
    # torchvision allocates its outputs: no reused baseline to compare it with, so no ratio
    assert "| tv2-cutmix | fresh | 32 | 50.00 | 50.0-50.0 | 640.0 |  |  |  |" in markdown
    # interleaved rounds pooled: medians 2.0 and 1.0, min-max over the rounds
    assert "| dataloader (baseline) | n/a | 480 | 2000.00 | 1800.0-2400.0 | 240.0 |  | 1.00x | 1.00x |  |" in markdown
    assert "| **mlic-pipe** | n/a | 480 | 1000.00 | 800.0-1300.0 | 480.0 |  | 2.00x | 2.00x |" in markdown
    assert "Test CPU, 2 cores" in markdown and "abc1234567" in markdown
    chart = Image.open(tmp_path / "results.png").convert("RGB")
    assert chart.width == 1100
    # bars in their colours: ours orange, baselines grey, others blue; none missing
    colours = {colour for _, colour in chart.getcolors(maxcolors=1 << 20)}
    assert {(0xd9, 0x48, 0x0f), (0xad, 0xb5, 0xbd), (0x4c, 0x6e, 0xf5)} <= colours
    table_only = subprocess.run([sys.executable, "-m", "benchmarks.report", str(path), "--no-chart", "--out",
                                 str(tmp_path / "table")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert table_only.returncode == 0 and (tmp_path / "table.md").exists() and not (tmp_path / "table.png").exists()


def test_a_ratio_between_runs_measured_differently_is_refused():
    from benchmarks.report import Row, ratio

    base = Row("published", 0.3, None, None, True, allocation="reused", outputs=40, dtype="float32", device="cpu")
    assert ratio(base, Row("mlic-pipe", 0.1, None, None, False, allocation="reused", outputs=40, dtype="float32",
                           device="cpu")) == pytest.approx((3.0, 3.0))
    for change in (dict(allocation="fresh"), dict(dtype="bfloat16"), dict(device="NVIDIA H200")):
        other = Row("mlic-pipe", 0.1, None, None, False, **{**dict(allocation="reused", outputs=40, dtype="float32",
                                                                   device="cpu"), **change})
        with pytest.raises(ValueError, match=f"their {next(iter(change))} differs"):
            ratio(base, other)


def test_report_refuses_a_file_without_timings(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"benchmarks": []}))
    done = subprocess.run([sys.executable, "-m", "benchmarks.report", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "no benchmarks" in done.stderr

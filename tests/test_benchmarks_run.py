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


def bench(name, group, mean, baseline=False, **info):
    return {"name": name, "group": group, "stats": {"mean": mean},
            "extra_info": {"contender": name, "baseline": baseline, **info}}


def test_report_recomputes_ratios_and_draws_every_bar(tmp_path):
    data = {"datetime": "2026-11-22T10:00:00", "version": "5.3.1", "commit_info": {"id": "abc1234567890"},
            "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "python_version": "3.12"},
            "benchmarks": [bench("published", "render B=32", 0.300, True, images_per_s=133.3, GB_per_s=0.5),
                           bench("mlic-pipe", "render B=32", 0.040, images_per_s=1000.0, GB_per_s=3.75),
                           bench("timm-cutmix", "render B=32", 0.100, images_per_s=320.0),
                           bench("model-step", "step-share resnet50", 2.0, True, images_per_s=5.0),
                           bench("mlic-pipe", "step-share resnet50", 0.5, images_per_s=20.0, share_of_step=0.2)]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    done = subprocess.run([sys.executable, "-m", "benchmarks.report", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "results.md").read_text()
    assert "| **mlic-pipe** | 40.00 | 1000.0 | 3.75 | 7.50x |" in markdown  # 0.300 / 0.040
    assert "| timm-cutmix | 100.00 | 320.0 |  | 3.00x |" in markdown
    assert "| published (baseline) | 300.00 |" in markdown and "share_of_step 0.2" in markdown
    assert "Test CPU, 2 cores" in markdown and "abc1234567" in markdown
    chart = Image.open(tmp_path / "results.png")
    assert chart.format == "PNG" and chart.width == 1100
    # one bar per contender, in its colour: ours orange, baselines grey, others blue (left edge at x=260)
    bar_colours = {(0xd9, 0x48, 0x0f): "ours", (0xad, 0xb5, 0xbd): "baseline", (0x4c, 0x6e, 0xf5): "other"}
    column = [bar_colours.get(chart.convert("RGB").getpixel((261, y))) for y in range(chart.height)]
    bars = [kind for before, kind in zip([None] + column, column) if kind and kind != before]
    assert bars == ["baseline", "ours", "other", "baseline", "ours"]


def test_report_refuses_a_file_without_timings(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"benchmarks": []}))
    done = subprocess.run([sys.executable, "-m", "benchmarks.report", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "no benchmarks" in done.stderr

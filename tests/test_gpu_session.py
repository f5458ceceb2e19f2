"""The GPU session script: its dry run passes on the CPU, and it records failures and overruns and goes on."""
import io
import json
import lzma
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from benchmarks import gpu_session
from benchmarks.gpu_session import OUT_FILES, STEPS, Session, Step, StepFailed, run_steps

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_dry_run_rehearses_every_step_and_exits_0(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_session", "--dry-run", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and [name for name in summary["steps"]] == [s.name for s in STEPS]
    assert {name: record["status"] for name, record in summary["steps"].items()} == {s.name: "ok" for s in STEPS}
    assert sorted(p.name for p in out.iterdir()) == sorted(OUT_FILES)  # the device gives back at most 8 files
    assert len(OUT_FILES) <= 8
    figures = {row["figure"]: row["value"] for row in summary["targets"]}
    assert all(value is not None for value in figures.values()), figures  # each headline was read off its step
    assert summary["steps"]["train"]["figures"]["epochs"] == 2
    assert "step          status" in done.stdout  # the table comes last, where the device tool shows output


def test_budgets_fit_the_seven_minutes_a_session_has():
    assert sum(step.budget_s for step in STEPS) <= 420


def test_a_failing_or_overrunning_step_is_recorded_and_the_session_goes_on(tmp_path):
    def fails(session):
        raise StepFailed("the kernel was wrong")

    def breaks(session):
        raise KeyError("figure")

    def overruns(session):
        session.require(session.command([sys.executable, "-c", "import time; time.sleep(30)"]), "sleeping")

    def works(session):
        return {"answer": 42}

    session = Session(tmp_path / "out", dry_run=True)
    steps = [Step("fails", 5, fails), Step("breaks", 5, breaks), Step("overruns", 1, overruns), Step("works", 5, works),
             Step("skipped", 5, works)]
    try:
        assert run_steps(session, steps, only={"fails", "breaks", "overruns", "works"}) is False
    finally:
        session.close()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    statuses = {name: record["status"] for name, record in summary["steps"].items()}
    assert statuses == {"fails": "failed", "breaks": "failed", "overruns": "timeout", "works": "ok", "skipped": "not run"}
    assert "the kernel was wrong" in summary["steps"]["fails"]["error"]
    assert "KeyError" in summary["steps"]["breaks"]["error"]
    assert 1 <= summary["steps"]["overruns"]["seconds"] < 10  # killed at its budget, not after the 30 s sleep
    assert "ran out of the step's time budget" in summary["steps"]["overruns"]["error"]
    assert summary["steps"]["works"]["figures"] == {"answer": 42}


def test_dali_parts_are_joined_unpacked_and_put_on_the_path(tmp_path):
    """The device image has no DALI: dali_wheels.sh's xz tar, split into parts, becomes an importable site."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        source = b"__version__ = '9.9'\n"
        member = tarfile.TarInfo("fake_dali/__init__.py")
        member.size = len(source)
        tar.addfile(member, io.BytesIO(source))
    packed = lzma.compress(archive.getvalue())
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(3):  # split as `split -b` does: byte ranges, in name order
        (parts / f"part-0{i}").write_bytes(packed[i * len(packed) // 3:(i + 1) * len(packed) // 3])
    session = Session(tmp_path / "out", dry_run=True, dali_parts=parts)
    try:
        gpu_session._unpack_dali(session)
        found = session.command([sys.executable, "-c", "import fake_dali; print(fake_dali.__version__)"])
    finally:
        session.close()
    assert found.ok and found.output.strip() == "9.9"


def test_missing_dali_parts_fail_the_step_with_what_to_do(tmp_path):
    session = Session(tmp_path / "out", dry_run=True, dali_parts=tmp_path / "nothing")
    try:
        with pytest.raises(StepFailed, match="dali_wheels.sh"):
            gpu_session._unpack_dali(session)
    finally:
        session.close()

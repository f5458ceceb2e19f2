"""Every GPU check in one budgeted command, for a lent GPU machine that is there for minutes, not hours.

    python -m benchmarks.gpu_session --out DIR [--dali-parts DIR] [--only STEP,...]
    python -m benchmarks.gpu_session --out DIR --dry-run      # the rehearsal, on a machine without a GPU

A lent machine starts bare, takes at most 64 MiB of files in per call, gives back at most 8 files and
is held for about 15 minutes in all, so the whole check is one prepared command. It runs the steps
below in order, each as a subprocess with a hard time budget (a step that overruns is killed and
recorded as ``timeout``), keeps going past a failing step (recorded with its error), rewrites
``summary.json`` after every step (a killed session still leaves one) and prints a table last (the
tool returns the end of the output). Steps:

- ``environment``: GPU, driver, versions; DALI and pycocotools unpacked from the parts
  ``../shared/tools/dali_wheels.sh`` makes (``--dali-parts``) when the image lacks them; the project
  installed (``pip install --no-deps --no-build-isolation -e .``) unless it already imports from
  this tree; the demo data built.
- ``gpu-tests``: ``pytest -m gpu`` (kernel, loader, shards, resume, SAM under fp16, no host syncs),
  with one fixed kernel config (``MLIC_PIPE_RENDER_CONFIG``) so no time goes to autotuning.
- ``kernel-bench``: benchmarks/test_bench_kernel.py (fraction of copy bandwidth, vs the published op
  sequence, timm, torchvision, kornia), B 64 / 128, S 224 / 448, float32 / bfloat16, autotuned.
- ``loader-bench``: benchmarks/test_bench_loader.py on CUDA (MLICLoader vs bare DALI vs a DataLoader
  with as many workers as DALI has threads, S 224 / 448) and the per-epoch pipeline rebuild.
- ``augment-bench``: benchmarks/test_bench_auto_augment.py on CUDA (rand-m9-n2-mstd0.5 and trivial beside the
  same DALI graph without them, 'mixed' decode).
- ``profile``: ``mlic-pipe profile --model resnet101 --image-size 448 --dtype bfloat16``.
- ``train``: a 2-epoch ``mlic-pipe train`` on the demo data with SpliceMix-CL in bf16.

Files in ``--out`` (never more than 8): summary.json, session.log (every command's output),
pytest-gpu.log, bench-kernel.json, bench-loader.json, bench-auto-augment.json, profile.json, train-log.jsonl. The session's
scratch (caches, the train run, DALI's unpacked wheels) lives outside it.

``--dry-run`` runs the same steps through the same code on the CPU (tiny shapes, the Triton
interpreter, ``--device cpu``): budgets, failure recording and the summary are rehearsed, and it
exits 0 when every step did. Its numbers measure nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
OUT_FILES = ("summary.json", "session.log", "pytest-gpu.log", "bench-kernel.json", "bench-loader.json",
             "bench-auto-augment.json", "profile.json", "train-log.jsonl")
FIXED_KERNEL_CONFIG = "8x64w4"  # the tests' one block config (no autotuning); the benchmarks autotune

__all__ = ["OUT_FILES", "STEPS", "Session", "Step", "StepFailed", "main", "run_steps", "targets"]


class StepFailed(Exception):
    """A step ran but did not do its job; the message says what went wrong."""


@dataclass(frozen=True)
class Step:
    name: str
    budget_s: int  # the step's hard limit; all together stay under 7 minutes
    run: Callable[["Session"], dict]


@dataclass
class CommandResult:
    returncode: int | None  # None when the budget ran out and the command was killed
    seconds: float
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Session:
    """Where a session writes, how it runs commands within the current step's budget, and what it found."""

    def __init__(self, out: Path, dry_run: bool, dali_parts: Path | None = None, python: str = sys.executable):
        self.out, self.dry_run, self.dali_parts, self.python = out, dry_run, dali_parts, python
        self.out.mkdir(parents=True, exist_ok=True)
        self.scratch = Path(tempfile.mkdtemp(prefix="mlic-pipe-gpu-session-"))
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLIC_PIPE_CACHE_DIR": str(self.scratch / "cache")}
        self.env.pop("MLIC_PIPE_RENDER_CONFIG", None)  # benchmarks autotune; the tests' step sets it
        if dry_run:
            self.env["TRITON_INTERPRET"] = "1"
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # a rehearsal on the CPU even where a GPU is present
        self.deadline = float("inf")
        self.summary: dict = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "dry_run": dry_run, "command": " ".join([Path(sys.executable).name, "-m",
                                                                       "benchmarks.gpu_session", *sys.argv[1:]]),
                              "steps": {}, "targets": []}
        self._log = (out / "session.log").open("a", encoding="utf-8")

    def note(self, text: str) -> None:
        """A line on stdout and in session.log."""
        print(text, flush=True)
        self._log.write(text + "\n")
        self._log.flush()

    def command(self, argv: list[str], *, log: str | None = None, env: dict | None = None) -> CommandResult:
        """Run `argv` in the repository root until it ends or the step's budget runs out (then it is killed)."""
        start = time.perf_counter()
        left = self.deadline - time.monotonic()
        if left <= 0.1:
            return CommandResult(None, 0.0, "not started: the step's budget was spent")
        self.note(f"$ {' '.join(argv)}")
        process = subprocess.Popen(argv, cwd=ROOT, env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=None if left == float("inf") else left)
            code = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the command and every process it started
            output, _ = process.communicate()
            code = None
        seconds = time.perf_counter() - start
        self._log.write(output + f"[exit {code} after {seconds:.1f} s]\n")
        self._log.flush()
        if log is not None:
            (self.out / log).write_text(output, encoding="utf-8")
        return CommandResult(code, seconds, output)

    def require(self, result: CommandResult, what: str) -> CommandResult:
        """`result`, or StepFailed naming `what` and the end of its output."""
        if result.ok:
            return result
        why = "ran out of the step's time budget" if result.returncode is None else f"exited {result.returncode}"
        tail = "\n".join(result.output.strip().splitlines()[-15:])
        raise StepFailed(f"{what} {why}:\n{tail}")

    def write_summary(self) -> None:
        path = self.out / "summary.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.summary, indent=2, default=str), encoding="utf-8")
        os.replace(path.with_suffix(".tmp"), path)

    def close(self) -> None:
        self._log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- steps

def _python_probe(session: Session, code: str) -> CommandResult:
    return session.command([session.python, "-c", code])


def _unpack_dali(session: Session) -> str:
    """Reassemble DALI + pycocotools from dali_wheels.sh's parts into the scratch site, put it on PYTHONPATH."""
    import lzma
    import tarfile

    parts = sorted(session.dali_parts.glob("part-*")) if session.dali_parts else []
    if not parts:
        raise StepFailed(f"nvidia.dali does not import, and --dali-parts {session.dali_parts} holds no part-* files: "
                         "prepare them with ../shared/tools/dali_wheels.sh and copy them there first")
    site = session.scratch / "site"
    site.mkdir(exist_ok=True)

    class Joined:  # the parts read back to back, as one stream
        def __init__(self):
            self.files = [p.open("rb") for p in parts]

        def read(self, size=-1):
            while self.files:
                data = self.files[0].read(size)
                if data:
                    return data
                self.files.pop(0).close()
            return b""

    with lzma.open(Joined()) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        archive.extractall(site, filter="tar")
    session.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), session.env.get("PYTHONPATH")]))
    return f"unpacked {len(parts)} parts into {site}"


def environment(session: Session) -> dict:
    """GPU and versions; DALI from the parts when missing; the project installed; the demo data built."""
    figures: dict = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    if shutil.which("nvidia-smi") and not session.dry_run:
        smi = session.command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
        figures["nvidia_smi"] = smi.output.strip()
    dali = _python_probe(session, "import nvidia.dali, pycocotools; print(nvidia.dali.__version__)")
    if not dali.ok:
        figures["dali_install"] = _unpack_dali(session)
        dali = session.require(_python_probe(session, "import nvidia.dali, pycocotools; "
                                                      "print(nvidia.dali.__version__)"), "importing the unpacked DALI")
    figures["dali"] = dali.output.strip().splitlines()[-1]
    where = _python_probe(session, "import mlic_pipe, mlic_pipe.kernels; print(mlic_pipe.__file__)")
    if not (where.ok and where.output.strip().splitlines()[-1].startswith(str(ROOT))):
        session.require(session.command([session.python, "-m", "pip", "install", "-q", "--no-deps",
                                         "--no-build-isolation", "-e", "."]), "installing the project")
        figures["installed"] = "pip install --no-deps --no-build-isolation -e ."
    else:
        figures["installed"] = "already importable from this tree"
    versions = session.require(_python_probe(session, (
        "import json, torch, triton, timm; print(json.dumps({'torch': torch.__version__, 'triton': triton.__version__, "
        "'timm': timm.__version__, 'cuda': torch.version.cuda, 'gpu': torch.cuda.get_device_name() "
        "if torch.cuda.is_available() else None}))")), "reading the versions")
    figures.update(json.loads(versions.output.strip().splitlines()[-1]))
    session.require(session.command([session.python, "-m", "mlic_pipe", "demo-data"]), "building the demo data")
    if not session.dry_run and figures.get("gpu") is None:
        raise StepFailed("torch sees no CUDA device: this is not a GPU machine (use --dry-run to rehearse)")
    return figures


def _pytest_counts(output: str) -> dict:
    """The passed / failed / skipped / error counts of pytest's last summary line."""
    import re

    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
    counts = {}
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", lines[-1] if lines else ""):
        counts[word.rstrip("s") if word.startswith("error") else word] = int(number)
    return counts


def gpu_tests(session: Session) -> dict:
    """Every test marked gpu, with one fixed kernel config (no autotuning)."""
    result = session.command([session.python, "-m", "pytest", "-m", "gpu", "-q", "-rfEs", "-p", "no:cacheprovider",
                              "tests"], log="pytest-gpu.log", env={"MLIC_PIPE_RENDER_CONFIG": FIXED_KERNEL_CONFIG})
    figures = _pytest_counts(result.output)
    figures["seconds"] = round(result.seconds, 1)
    if session.dry_run and result.ok and figures.get("passed", 0) == 0:
        figures["note"] = "dry run: no CUDA device, so every GPU test skipped (the rehearsal is of the command)"
    session.require(result, "pytest -m gpu")
    return figures


def _benchmarks(session: Session, module: str, out_name: str, select: str) -> dict:
    """Run one benchmark module into `out_name`; the groups' contenders with their means and extra_info."""
    preset = ["--tiny"] if session.dry_run else []
    result = session.command([session.python, "-m", "pytest", f"benchmarks/{module}", "--benchmark-only", "-q",
                              "-p", "no:cacheprovider", "-k", select, "--benchmark-json", str(session.out / out_name),
                              *preset])
    session.require(result, f"pytest benchmarks/{module}")
    data = json.loads((session.out / out_name).read_text())
    groups: dict = {}
    for bench in data["benchmarks"]:  # a contender's last entry holds its final median and ratios
        info = bench["extra_info"]
        name = info.get("contender", bench["name"])
        if info.get("allocation") == "fresh":  # the headline figures are the reused-output runs
            name = f"{name} (fresh)"
        groups.setdefault(bench["group"], {})[name] = {"mean_ms": round(1000 * bench["stats"]["mean"], 3), **info}
    return {"groups": groups, "seconds": round(result.seconds, 1)}


def kernel_bench(session: Session) -> dict:
    return _benchmarks(session, "test_bench_kernel.py", "bench-kernel.json", "gpu_render")


def loader_bench(session: Session) -> dict:
    return _benchmarks(session, "test_bench_loader.py", "bench-loader.json", "cpu" if session.dry_run else "cuda")


def augment_bench(session: Session) -> dict:
    policies = "(crop or trivial)" if session.dry_run else "(crop or n2 or trivial)"  # to fit the budget
    return _benchmarks(session, "test_bench_auto_augment.py", "bench-auto-augment.json",
                       f"{'cpu' if session.dry_run else 'cuda'} and {policies}")


def profile(session: Session) -> dict:
    shape = (["--model", "resnet18", "--image-size", "64", "--batch-size", "8", "--steps", "2", "--warmup", "1",
              "--device", "cpu"] if session.dry_run else ["--model", "resnet101", "--image-size", "448", "--steps", "20"])
    result = session.command([session.python, "-m", "mlic_pipe", "profile", *shape, "--dtype", "bfloat16", "-q",
                              "--json", str(session.out / "profile.json")])
    session.require(result, "mlic-pipe profile")
    report = json.loads((session.out / "profile.json").read_text())
    return {"augmentation_share": round(report["augmentation_ms"] / report["step_ms"], 4),
            "augmentation_ms": round(report["augmentation_ms"], 2), "step_ms": round(report["step_ms"], 2),
            "stage_ms": report["stage_ms"], "images_per_s": round(report["images_per_s"], 1),
            "device": report["device"]}


def train(session: Session) -> dict:
    run_dir = session.scratch / "train"
    shape = (["--backbone", "resnet18", "--image-size", "96", "--batch-size", "8", "--limit-train-batches", "2",
              "--device", "cpu", "--threads", "2"] if session.dry_run else
             ["--backbone", "resnet50", "--image-size", "224", "--batch-size", "32", "--threads", "8"])
    result = session.command([session.python, "-m", "mlic_pipe", "train", "demo", *shape, "--epochs", "2",
                              "--splicemix-cl", "--amp", "bf16", "--out-dir", str(run_dir), "-q"])
    if (run_dir / "log.jsonl").exists():
        shutil.copyfile(run_dir / "log.jsonl", session.out / "train-log.jsonl")
    session.require(result, "mlic-pipe train")
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()[1:]]
    last = records[-1]
    return {"epochs": len(records), "mAP": round(last["mAP"], 4), "train_loss": [round(r["train_loss"], 4)
                                                                              for r in records],
            "images_per_s": round(last["images_per_s"], 1), "seconds": round(result.seconds, 1)}


STEPS = (Step("environment", 60, environment), Step("gpu-tests", 110, gpu_tests),
         Step("kernel-bench", 80, kernel_bench), Step("loader-bench", 70, loader_bench),
         Step("augment-bench", 25, augment_bench), Step("profile", 35, profile), Step("train", 40, train))


# ------------------------------------------------------------------------------------------ the session

def run_steps(session: Session, steps=STEPS, only: set[str] | None = None) -> bool:
    """Run each step within its budget, recording its figures or its failure; True when all that ran passed."""
    session.note(f"mlic-pipe GPU session{' (dry run)' if session.dry_run else ''}: {len(steps)} steps, budgets "
                 f"{sum(s.budget_s for s in steps)} s in all, files in {session.out}")
    passed = True
    for step in steps:
        if only is not None and step.name not in only:
            session.summary["steps"][step.name] = {"status": "not run", "budget_s": step.budget_s}
            continue
        session.note(f"\n== {step.name} (budget {step.budget_s} s)")
        session.deadline = time.monotonic() + step.budget_s
        start = time.perf_counter()
        record: dict = {"budget_s": step.budget_s}
        try:
            record.update(status="ok", figures=step.run(session))
        except StepFailed as failure:
            timed_out = "time budget" in str(failure)
            record.update(status="timeout" if timed_out else "failed", error=str(failure))
        except Exception as error:  # noqa: BLE001 - a broken step must not end the session
            record.update(status="failed", error=f"{type(error).__name__}: {error}",
                          traceback=traceback.format_exc()[-3000:])
        record["seconds"] = round(time.perf_counter() - start, 1)
        passed &= record["status"] == "ok"
        session.summary["steps"][step.name] = record
        session.note(f"== {step.name}: {record['status']} in {record['seconds']} s (budget {step.budget_s} s)"
                     + (f"\n{record['error']}" if "error" in record else ""))
        session.summary["targets"] = targets(session.summary)
        session.write_summary()
    session.write_summary()
    return passed


def _group(summary: dict, step: str, prefix: str) -> dict:
    groups = summary["steps"].get(step, {}).get("figures", {}).get("groups", {})
    return next((contenders for name, contenders in groups.items() if name.startswith(prefix)), {})


def targets(summary: dict) -> list[dict]:
    """The GPU issue's headline figures against their targets (and the floor below which it is not resolved).

    A dry run reads the same figures off its tiny shapes (B=8, S=48 and 32), so the extraction is rehearsed too.
    """
    kernel_case, loader_case = ("B=8 S=48", "B=8 S={}") if summary["dry_run"] else ("B=64 S=448", "B=32 S={}")
    kernel = _group(summary, "kernel-bench", f"gpu render {kernel_case} uint8->bfloat16").get("kernel", {})
    sizes = (32, 32) if summary["dry_run"] else (224, 448)
    loader = dict(zip((224, 448), (_group(summary, "loader-bench", f"loader epoch demo {loader_case.format(size)}")
                                   .get("mlic-pipe", {}) for size in sizes)))
    share = summary["steps"].get("profile", {}).get("figures", {}).get("augmentation_share")
    rows = [("kernel fraction of copy bandwidth (B=64, S=448, bf16)", kernel.get("fraction_of_copy"), ">=", 0.85, 0.70),
            ("kernel vs published op sequence (B=64, S=448, bf16)", kernel.get("ratio_to_baseline"), ">=", 20, None),
            ("kernel vs fastest peer (B=64, S=448, bf16)", kernel.get("speedup_vs_fastest_other"), ">=", 5, None),
            ("loader overhead over bare DALI, S=224", loader[224].get("overhead_vs_dali_bare"), "<=", 0.02, 0.05),
            ("loader overhead over bare DALI, S=448", loader[448].get("overhead_vs_dali_bare"), "<=", 0.02, 0.05),
            ("loader vs DataLoader (same CPU budget), S=224", loader[224].get("ratio_to_baseline"), ">=", 5, None),
            ("augmentation share of a ResNet-101 448 bf16 step", share, "<=", 0.01, None)]
    checked = []
    for name, value, sense, target, floor in rows:
        def meets(bound):
            if value is None or bound is None:
                return None
            return value >= bound if sense == ">=" else value <= bound
        checked.append({"figure": name, "value": value, "target": f"{sense} {target}", "met": meets(target),
                        "floor": None if floor is None else f"{sense} {floor}", "above_floor": meets(floor)})
    return checked


def _table(summary: dict) -> str:
    lines = ["", f"{'step':<14}{'status':<10}{'seconds':>9}{'budget':>8}"]
    for name, record in summary["steps"].items():
        lines.append(f"{name:<14}{record['status']:<10}{record.get('seconds', 0):>9}{record['budget_s']:>8}")
    lines += ["", "target" + (" (dry run: CPU, tiny shapes; these numbers measure nothing)" if summary["dry_run"] else "")]
    for row in summary["targets"]:
        mark = {True: "met", False: "MISSED", None: "-"}[row["met"]]
        lines.append(f"  {row['figure']:<52} {str(row['value']):>10}  {row['target']:<8} {mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_session", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the (at most 8) result files")
    parser.add_argument("--dry-run", action="store_true", help="rehearse on the CPU: tiny shapes, the interpreter")
    parser.add_argument("--dali-parts", type=Path, help="folder of dali_wheels.sh's part-* files, used when the "
                        "image has no DALI")
    parser.add_argument("--only", help=f"comma-separated steps to run ({', '.join(s.name for s in STEPS)}); "
                        "the others are recorded as not run")
    args = parser.parse_args(argv)
    only = None if args.only is None else {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = (only or set()) - {s.name for s in STEPS}
    if unknown:
        parser.error(f"unknown step(s) {', '.join(sorted(unknown))}; the steps are {', '.join(s.name for s in STEPS)}")
    session = Session(args.out, args.dry_run, args.dali_parts)
    try:
        passed = run_steps(session, STEPS, only)
        session.summary["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        session.write_summary()
        session.note(_table(session.summary))
    finally:
        session.close()
    extra = sorted(p.name for p in args.out.iterdir() if p.name not in OUT_FILES)
    if extra:
        print(f"warning: {args.out} holds files beyond the session's own: {', '.join(extra)}", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

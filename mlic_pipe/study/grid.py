"""`run_study`: every (config, seed) run of a study, in its own directory, skipping the finished ones."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mlic_pipe.errors import ConfigError

__all__ = ["METRICS", "STUDY_CONFIGS", "RunLog", "read_log", "run_study"]

# What each config changes in the base TrainConfig. The names are what `--configs` takes.
STUDY_CONFIGS = {
    "none": {"mix": "none"},
    "splicemix": {"mix": "splicemix"},
    "splicemix-cl": {"mix": "splicemix", "splicemix_cl": True},
    "cutmix": {"mix": "cutmix"},
    "fmix": {"mix": "fmix"},
    "mixup": {"mix": "mixup"},
    "resizemix": {"mix": "resizemix"},
    "saliencymix": {"mix": "saliencymix"},
}
# CF1/OF1 threshold the probabilities at 0.5, which measures calibration as much as ranking (a model that
# marks every class positive gets CF1 = OF1 = the F1 of the label density); the top-3 forms rank instead.
METRICS = ("mAP", "CF1", "OF1", "CF1_top3", "OF1_top3")


@dataclass
class RunLog:
    """One finished run: its config name, seed and the validation metrics of every epoch."""

    config: str
    seed: int
    epochs: list[dict]  # {"epoch", *METRICS}, in epoch order


def read_log(path: Path) -> list[dict]:
    """The per-epoch validation records of a run's log.jsonl (the last record of an epoch wins after a resume)."""
    by_epoch = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "epoch" in record and "mAP" in record:
            missing = [k for k in METRICS if k not in record]
            if missing:
                raise ConfigError(f"{path}: epoch {record['epoch']} has no {', '.join(missing)}; "
                                  "it was logged by an older trainer: remove the run's folder to train it again")
            by_epoch[record["epoch"]] = {"epoch": record["epoch"], **{k: record[k] for k in METRICS}}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _run_one(base: dict, config: str, seed: int, directory: Path) -> RunLog:
    from mlic_pipe.training import TrainConfig, train

    settings = {**base, **STUDY_CONFIGS[config], "seed": seed, "out_dir": str(directory)}
    settings["resume"] = str(directory / "last.pt") if (directory / "last.pt").exists() else None
    train(TrainConfig(**settings), progress=False)
    epochs = read_log(directory / "log.jsonl")
    if not epochs:
        raise ConfigError(f"the run in {directory} logged no validation: the study needs a validation split "
                          "(give {val_data} or a dataset with a val split)")
    (directory / "done.json").write_text(json.dumps({"config": config, "seed": seed, "epochs": epochs}))
    return RunLog(config, seed, epochs)


def run_study(base: dict, configs: list[str], seeds: list[int], out_dir: str | Path, *,
              progress: bool = True) -> list[RunLog]:
    """Train every config in `configs` with every seed; returns the runs' logs (finished ones are read back).

    Args:
        base: TrainConfig fields shared by every run (data, backbone, epochs, image size, ...).
        configs: names of `STUDY_CONFIGS`. seeds: one run per seed and config.
        out_dir: the study's directory; run ``<config>-seed<seed>`` lives in ``out_dir/runs/``.
    """
    unknown = [name for name in configs if name not in STUDY_CONFIGS]
    if unknown:
        raise ConfigError(f"unknown study config(s) {', '.join(unknown)}; choose from {', '.join(STUDY_CONFIGS)}")
    if not configs or not seeds:
        raise ConfigError("a study needs at least one config and one seed")
    runs = Path(out_dir) / "runs"
    logs = []
    grid = [(config, seed) for config in configs for seed in seeds]
    with tqdm(total=len(grid), desc="study", unit="run", disable=not progress) as bar:
        for config, seed in grid:
            directory = runs / f"{config}-seed{seed}"
            bar.set_postfix_str(directory.name)
            done = directory / "done.json"
            if done.exists():  # the metrics are read from the log, so a study that tabulates more of them needs no rerun
                logs.append(RunLog(config, seed, read_log(directory / "log.jsonl")))
            else:
                directory.mkdir(parents=True, exist_ok=True)
                logs.append(_run_one(base, config, seed, directory))
            bar.update(1)
    return logs

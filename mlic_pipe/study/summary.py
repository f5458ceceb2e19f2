"""`summarize`: a study's runs as mean +- std per config (last epoch), in Markdown and JSON."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from mlic_pipe.study.grid import METRICS, RunLog

__all__ = ["StudySummary", "summarize"]


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


@dataclass
class StudySummary:
    """Per config: the last epoch's metrics over seeds, and validation mAP per epoch (mean, std)."""

    configs: list[str]
    seeds: dict[str, list[int]]
    final: dict[str, dict[str, tuple[float, float]]]  # config -> metric -> (mean, std)
    curves: dict[str, tuple[list[int], list[float], list[float]]]  # config -> (epochs, mean mAP, std)

    def table(self) -> str:
        """Markdown: one row per config, metrics in % as mean +- std over the seeds."""
        lines = ["| config | seeds | " + " | ".join(METRICS) + " | mAP vs none |",
                 "|---|---|" + "---|" * len(METRICS) + "---|"]
        reference = self.final.get("none", {}).get("mAP")
        for config in self.configs:
            cells = [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in (self.final[config][k] for k in METRICS)]
            delta = "" if reference is None or config == "none" else \
                f"{100 * (self.final[config]['mAP'][0] - reference[0]):+.2f}"
            lines.append(f"| {config} | {len(self.seeds[config])} | " + " | ".join(cells) + f" | {delta} |")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"configs": self.configs, "seeds": self.seeds, "final": self.final, "curves": self.curves},
                          indent=1)


def summarize(logs: list[RunLog]) -> StudySummary:
    """Group the runs by config; the 'final' numbers are each run's last epoch (runs must share the epoch count)."""
    configs = list(dict.fromkeys(log.config for log in logs))
    seeds, final, curves = {}, {}, {}
    for config in configs:
        runs = [log for log in logs if log.config == config]
        seeds[config] = [log.seed for log in runs]
        final[config] = {k: _mean_std([log.epochs[-1][k] for log in runs]) for k in METRICS}
        length = min(len(log.epochs) for log in runs)
        per_epoch = np.array([[e["mAP"] for e in log.epochs[:length]] for log in runs])
        std = per_epoch.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(length)
        curves[config] = ([e["epoch"] for e in runs[0].epochs[:length]], per_epoch.mean(axis=0).tolist(),
                          std.tolist())
    return StudySummary(configs, seeds, final, curves)

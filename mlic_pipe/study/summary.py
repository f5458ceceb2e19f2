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
    """Per config: the last epoch's metrics over seeds, mAP against `none` seed by seed, and mAP per epoch.

    A seed fixes the initial weights and the data order whatever the config, so runs with the same seed are
    paired: the spread of (config - none) per seed is often far smaller than either config's own spread.
    """

    configs: list[str]
    seeds: dict[str, list[int]]
    final: dict[str, dict[str, tuple[float, float]]]  # config -> metric -> (mean, std)
    curves: dict[str, tuple[list[int], list[float], list[float]]]  # config -> (epochs, mean mAP, std)
    versus_none: dict[str, tuple[float, float, int]]  # config -> (mean, std, number of shared seeds) of mAP - none's

    def table(self) -> str:
        """Markdown: one row per config, metrics in % as mean +- std over the seeds."""
        lines = ["| config | seeds | " + " | ".join(METRICS) + " | mAP vs none, paired by seed |",
                 "|---|---|" + "---|" * len(METRICS) + "---|"]
        for config in self.configs:
            cells = [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in (self.final[config][k] for k in METRICS)]
            delta = ""
            if config in self.versus_none:
                mean, std, shared = self.versus_none[config]
                delta = f"{100 * mean:+.2f} ± {100 * std:.2f}" + ("" if shared == len(self.seeds[config])
                                                                  else f" ({shared} seeds)")
            lines.append(f"| {config} | {len(self.seeds[config])} | " + " | ".join(cells) + f" | {delta} |")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"configs": self.configs, "seeds": self.seeds, "final": self.final, "curves": self.curves,
                           "versus_none": self.versus_none}, indent=1)


def summarize(logs: list[RunLog]) -> StudySummary:
    """Group the runs by config; the 'final' numbers are each run's last epoch (runs must share the epoch count)."""
    configs = list(dict.fromkeys(log.config for log in logs))
    seeds, final, curves, versus_none = {}, {}, {}, {}
    last_map = {(log.config, log.seed): log.epochs[-1]["mAP"] for log in logs}
    for config in configs:
        runs = [log for log in logs if log.config == config]
        seeds[config] = [log.seed for log in runs]
        final[config] = {k: _mean_std([log.epochs[-1][k] for log in runs]) for k in METRICS}
        length = min(len(log.epochs) for log in runs)
        per_epoch = np.array([[e["mAP"] for e in log.epochs[:length]] for log in runs])
        std = per_epoch.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(length)
        curves[config] = ([e["epoch"] for e in runs[0].epochs[:length]], per_epoch.mean(axis=0).tolist(),
                          std.tolist())
    for config in configs:
        shared = [seed for seed in seeds[config] if ("none", seed) in last_map] if config != "none" else []
        if shared:
            mean, std = _mean_std([last_map[config, seed] - last_map["none", seed] for seed in shared])
            versus_none[config] = (mean, std, len(shared))
    return StudySummary(configs, seeds, final, curves, versus_none)

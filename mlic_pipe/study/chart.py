"""`draw_curves`: validation mAP per epoch per config, mean line and ±1 std band, as a PNG (matplotlib).

matplotlib is an optional extra (``pip install 'mlic-pipe[charts]'``), imported here only when a
chart is drawn; without it `draw_curves` raises `ChartUnavailable` and the study command writes
its table and JSON and says how to get the chart.
"""
from __future__ import annotations

from pathlib import Path

from mlic_pipe.study.summary import StudySummary

__all__ = ["ChartUnavailable", "draw_curves", "pyplot"]


class ChartUnavailable(ImportError):
    """matplotlib is not installed; the message says how to install it."""


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed), or `ChartUnavailable`."""
    try:
        import matplotlib
    except ImportError as error:
        raise ChartUnavailable(f"charts need matplotlib ({error}): pip install 'mlic-pipe[charts]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_curves(summary: StudySummary, path: str | Path, title: str = "validation mAP (mean ± 1 std over seeds)"):
    """Write the chart to `path`: one line per config, its seeds' spread as a band, the legend outside."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(9, 5.6), dpi=100, layout="constrained")
    for config, (epochs, mean, std) in summary.curves.items():
        mean_pct = [100 * m for m in mean]
        line, = axes.plot(epochs, mean_pct, marker="o" if len(epochs) == 1 else None, linewidth=2,
                          label=f"{config} (n={len(summary.seeds[config])})")
        axes.fill_between(epochs, [100 * (m - s) for m, s in zip(mean, std)],
                          [100 * (m + s) for m, s in zip(mean, std)], color=line.get_color(), alpha=0.18, linewidth=0)
    axes.set(xlabel="epoch", ylabel="val mAP %", title=title)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.savefig(path)
    plt.close(figure)

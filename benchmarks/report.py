"""Turn a pytest-benchmark JSON file into a Markdown table and a PNG bar chart.

    pytest benchmarks/ --benchmark-only --benchmark-json results.json
    python -m benchmarks.report results.json            # writes results.md and results.png beside it

Per group (contenders timed on the same inputs in the same run) the table lists, per contender and
allocation, the median time over all its rounds (entries of interleaved rounds are pooled) with its
min-max, outputs/s, GB/s where bytes are countable, and the speed-up over the group's baseline (the
contender whose ``extra_info["baseline"]`` is true) run with the same allocation, dtype and device,
per output image and per call, recomputed here (`ratio` refuses any other pair), and in render
groups the time per output as a multiple of a copy of the output (``x copy``). The chart (matplotlib,
the ``bench`` or ``charts`` extra, imported only to draw it; ``--no-chart`` skips it) draws one panel
per group, a bar per contender, length = outputs/s (a log axis where a group spans decades),
labelled with the per-output speed-up; mlic-pipe's bars are highlighted and the baseline's grey.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Row", "load_groups", "main", "ratio", "render_chart", "render_markdown"]

OURS = ("mlic-pipe", "kernel")
COPY_FLOOR = "output-copy"  # a copy of the output's shape and dtype: the render groups' floor


@dataclass
class Row:
    name: str
    median_s: float
    images_per_s: float | None
    gb_per_s: float | None
    baseline: bool
    allocation: str = "n/a"
    outputs: int | None = None
    dtype: str | None = None
    device: str | None = None
    spread_s: tuple[float, float] | None = None
    rounds: int = 1
    ratio: float | None = None  # per output image
    ratio_batch: float | None = None  # per call (batch or epoch)
    copy_multiple: float | None = None  # median / the group's output-copy median (render groups)
    notes: dict = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        return any(self.name == o or self.name.endswith(f"-{o}") or self.name.startswith(o) for o in OURS)

    @property
    def label(self) -> str:
        return self.name if self.allocation == "n/a" else f"{self.name} ({self.allocation})"


def _contender(bench: dict) -> str:
    info = bench.get("extra_info", {})
    if "contender" in info:
        return str(info["contender"])
    name = bench["name"]
    return name[name.find("[") + 1:-1].split("-")[-1] if "[" in name else name


def ratio(base: Row, row: Row) -> tuple[float, float]:
    """(per output, per call) speed-up of `row` over `base`; ValueError if they were not measured alike.

    A ratio between a run that allocates its outputs and one that reuses them, or between two dtypes or
    devices, measures the setup, not the contender: it is refused.
    """
    for what in ("allocation", "dtype", "device"):
        if getattr(base, what) != getattr(row, what):
            raise ValueError(f"no ratio between {row.label} and {base.label}: their {what} differs "
                             f"({getattr(row, what)} vs {getattr(base, what)})")
    per_call = base.median_s / row.median_s
    if base.outputs and row.outputs:
        return per_call * row.outputs / base.outputs, per_call
    return per_call, per_call


def _row(entries: list[dict]) -> Row:
    """One contender's figure from its entries: the median over every round (interleaved entries hold one each)."""
    info = entries[-1].get("extra_info", {})
    times = [bench["stats"].get("median", bench["stats"]["mean"]) for bench in entries]
    median = statistics.median(times) if len(entries) > 1 else times[0]
    lows = [bench["stats"].get("min", t) for bench, t in zip(entries, times)]
    highs = [bench["stats"].get("max", t) for bench, t in zip(entries, times)]
    outputs = info.get("outputs")
    notes = {k: info[k] for k in ("share_of_step", "overhead_vs_dali_bare", "overhead_vs_dali_normalized",
                                    "fraction_of_copy", "first_call_s",
                                    "speedup_vs_fastest_other", "cpu_budget") if k in info}
    return Row(name=_contender(entries[-1]), median_s=median,
               images_per_s=round(outputs / median, 1) if outputs else info.get("images_per_s"),
               gb_per_s=round(info["bytes"] / median / 1e9, 2) if "bytes" in info else info.get("GB_per_s"),
               baseline=bool(info.get("baseline", False)), allocation=info.get("allocation", "n/a"), outputs=outputs,
               dtype=info.get("dtype"), device=info.get("device"), spread_s=(min(lows), max(highs)),
               rounds=sum(bench["stats"].get("rounds", 1) for bench in entries), notes=notes)


def load_groups(data: dict) -> dict[str, list[Row]]:
    """Rows per group, in run order, with ratios to the group's baseline measured the same way."""
    entries: dict[str, dict[tuple[str, str], list[dict]]] = {}
    for bench in data.get("benchmarks", []):
        key = (_contender(bench), bench.get("extra_info", {}).get("allocation", "n/a"))
        entries.setdefault(bench.get("group") or bench["name"], {}).setdefault(key, []).append(bench)
    groups = {group: [_row(found) for found in rows.values()] for group, rows in entries.items()}
    for rows in groups.values():
        floor = next((r for r in rows if r.name == COPY_FLOOR), None)
        for row in rows:
            base = next((r for r in rows if r.baseline and r.allocation == row.allocation), None)
            if base is not None:
                row.ratio, row.ratio_batch = ratio(base, row)
            if floor is not None and row.outputs and floor.outputs:  # per output, as the ratios
                row.copy_multiple = (row.median_s / row.outputs) / (floor.median_s / floor.outputs)
    return groups


def _machine(data: dict) -> str:
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}) or {}
    parts = [cpu.get("brand_raw") or machine.get("processor") or "unknown CPU",
             f"{cpu.get('count', '?')} cores" if cpu else "", f"Python {machine.get('python_version', '?')}"]
    gpus = sorted({b.get("extra_info", {}).get("device") for b in data.get("benchmarks", [])} - {None, "cpu"})
    if gpus:
        parts.insert(0, ", ".join(gpus))
    return ", ".join(p for p in parts if p)


def render_markdown(data: dict, groups: dict[str, list[Row]]) -> str:
    commit = data.get("commit_info", {})
    lines = ["# Benchmark results", "",
             f"- date: {data.get('datetime', '?')}",
             f"- machine: {_machine(data)}",
             f"- command: `{data.get('machine_info', {}).get('command', '?')}` "
             f"(preset: {data.get('machine_info', {}).get('preset', '?')})",
             "- software: " + ", ".join(f"{k} {v}" for k, v in data.get("machine_info", {}).get("software", {}).items()),
             f"- commit: {str(commit.get('id', '?'))[:10]}{' (dirty)' if commit.get('dirty') else ''}",
             f"- pytest-benchmark {data.get('version', '?')}", "",
             "Each figure is the median over its rounds (min-max beside it). Throughput counts output images. "
             "`vs baseline` is per output image (SpliceMix makes B + B/4 from B, the single-label mixers B), "
             "`per call` per batch or epoch; a ratio is only taken against the baseline run with the same "
             "allocation (fresh outputs each call, or reused buffers), dtype and device. `x copy` is the time per "
             f"output over that of `{COPY_FLOOR}` (a copy of a tensor of the output's shape and dtype, kept buffers): "
             "how far a render is from merely writing its result.", ""]
    for group, rows in groups.items():
        lines += [f"## {group}", "", "| contender | allocation | outputs | median ms | min-max ms | outputs/s | GB/s "
                  "| vs baseline (per output) | per call | x copy | notes |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for row in rows:
            name = f"**{row.name}**" if row.ours else row.name + (" (baseline)" if row.baseline else "")
            spread = f"{1000 * row.spread_s[0]:.1f}-{1000 * row.spread_s[1]:.1f}" if row.spread_s else ""
            notes = ", ".join(f"{k} {v}" for k, v in row.notes.items())
            lines.append(f"| {name} | {row.allocation} | {row.outputs or ''} | {1000 * row.median_s:.2f} | {spread} | "
                         f"{row.images_per_s or '':} | {row.gb_per_s if row.gb_per_s is not None else ''} | "
                         f"{_times(row.ratio)} | {_times(row.ratio_batch)} | "
                         f"{'' if row.copy_multiple is None else f'{row.copy_multiple:.2f}'} | {notes} |")
        lines.append("")
    return "\n".join(lines)


def _times(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else ""


def render_chart(groups: dict[str, list[Row]], path: Path, title: str = "") -> None:
    """One horizontal bar panel per group: outputs/s (bar length), labelled with the per-output speed-up over the
    group's baseline and, in render groups, the multiple of the output copy. A group whose rates span more than a
    decade gets a log axis, so the slow contenders stay readable."""
    plt = pyplot()
    heights = [0.6 + 0.32 * len(rows) for rows in groups.values()]
    figure, panels = plt.subplots(len(groups), 1, figsize=(11, sum(heights) + 0.6), dpi=100, squeeze=False,
                                  gridspec_kw={"height_ratios": heights}, layout="constrained")
    for axes, (group, rows) in zip(panels[:, 0], groups.items()):
        rates = [row.images_per_s or 1 / row.median_s for row in rows]
        colours = ["#d9480f" if row.ours else ("#adb5bd" if row.baseline else "#4c6ef5") for row in rows]
        positions = range(len(rows))[::-1]
        axes.barh(list(positions), rates, color=colours, height=0.7)
        axes.set_yticks(list(positions), [row.label for row in rows], fontsize=8)
        if max(rates) > 10 * min(rates):
            axes.set_xscale("log")
        axes.set_xlim(right=max(rates) * (8 if axes.get_xscale() == "log" else 1.45))
        for y, row, rate in zip(positions, rows, rates):
            label = f"{rate:,.0f} outputs/s" if row.images_per_s else f"{1000 * row.median_s:.1f} ms"
            if row.ratio is not None:
                label += f"  {row.ratio:.2f}x"
            if row.copy_multiple is not None and row.name != COPY_FLOOR:
                label += f"  ({row.copy_multiple:.1f}x copy)"
            axes.annotate(label, (rate, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
        axes.set_title(group, fontsize=10, loc="left")
        axes.tick_params(axis="x", labelsize=8)
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(title or "throughput (outputs/s) and speed-up per output over each group's baseline", fontsize=11)
    figure.savefig(path)
    plt.close(figure)


def pyplot():
    """matplotlib's pyplot (Agg), imported only to draw; SystemExit with the install line without it."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("benchmarks.report: the chart needs matplotlib: pip install -e '.[bench]' "
                         "(or pass --no-chart for the Markdown table alone)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a pytest-benchmark JSON file (--benchmark-json)")
    parser.add_argument("--out", help="output prefix (default: the JSON path without .json)")
    parser.add_argument("--title", default="", help="chart title")
    parser.add_argument("--no-chart", action="store_true", help="write the Markdown table only (no matplotlib)")
    args = parser.parse_args(argv)
    path = Path(args.json)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        print(f"benchmarks.report: cannot read {path}: {error}", file=sys.stderr)
        return 2
    groups = load_groups(data)
    if not groups:
        print(f"benchmarks.report: {path} has no benchmarks (was it run with --benchmark-disable?)", file=sys.stderr)
        return 2
    prefix = Path(args.out) if args.out else path.with_suffix("")
    markdown = render_markdown(data, groups)
    prefix.with_suffix(".md").write_text(markdown)
    print(markdown)
    if args.no_chart:
        print(f"wrote {prefix.with_suffix('.md')}")
        return 0
    render_chart(groups, prefix.with_suffix(".png"), args.title)
    print(f"wrote {prefix.with_suffix('.md')} and {prefix.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

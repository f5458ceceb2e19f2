"""Turn a pytest-benchmark JSON file into a Markdown table and a PNG bar chart.

    pytest benchmarks/ --benchmark-only --benchmark-json results.json
    python -m benchmarks.report results.json            # writes results.md and results.png beside it

Per group (contenders timed on the same inputs in the same run) the table lists mean time,
images/s, GB/s where bytes are countable, and the speed-up over the group's baseline (the
contender whose ``extra_info["baseline"]`` is true), recomputed here from the means. The chart draws
one bar per contender, length = images/s relative to the fastest of its group, labelled with the
speed-up; mlic-pipe's bars are highlighted and the baseline's are grey. It is drawn with Pillow (a
dependency already), so the report needs nothing else installed.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Row", "load_groups", "main", "render_chart", "render_markdown"]

OURS = ("mlic-pipe", "kernel")


@dataclass
class Row:
    name: str
    mean_s: float
    images_per_s: float | None
    gb_per_s: float | None
    baseline: bool
    ratio: float | None = None
    notes: dict = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        return any(self.name == o or self.name.endswith(f"-{o}") or self.name.startswith(o) for o in OURS)


def _contender(bench: dict) -> str:
    info = bench.get("extra_info", {})
    if "contender" in info:
        return str(info["contender"])
    name = bench["name"]
    return name[name.find("[") + 1:-1].split("-")[-1] if "[" in name else name


def load_groups(data: dict) -> dict[str, list[Row]]:
    """Rows per group, in run order, with ratios to each group's baseline."""
    groups: dict[str, list[Row]] = {}
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        mean = bench["stats"]["mean"]
        notes = {k: info[k] for k in ("share_of_step", "overhead_vs_dali_bare", "fraction_of_copy",
                                        "speedup_vs_fastest_other") if k in info}
        groups.setdefault(bench.get("group") or bench["name"], []).append(Row(
            name=_contender(bench), mean_s=mean, images_per_s=info.get("images_per_s"),
            gb_per_s=info.get("GB_per_s"), baseline=bool(info.get("baseline", False)), notes=notes))
    for rows in groups.values():
        base = next((r for r in rows if r.baseline), None)
        for row in rows:
            row.ratio = base.mean_s / row.mean_s if base is not None else None
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
             "Ratio = baseline time / contender time (higher is faster; the baseline is 1.00x).", ""]
    for group, rows in groups.items():
        lines += [f"## {group}", "", "| contender | mean ms | images/s | GB/s | vs baseline | notes |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        for row in rows:
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
            name = f"**{row.name}**" if row.ours else row.name + (" (baseline)" if row.baseline else "")
            notes = ", ".join(f"{k} {v}" for k, v in row.notes.items())
            lines.append(f"| {name} | {1000 * row.mean_s:.2f} | {row.images_per_s or '':} | "
                         f"{row.gb_per_s if row.gb_per_s is not None else ''} | {ratio} | {notes} |")
        lines.append("")
    return "\n".join(lines)


def render_chart(groups: dict[str, list[Row]], path: Path, title: str = "") -> None:
    """A horizontal bar chart per group: images/s (bar length), speed-up over the baseline (label)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font, bold = ImageFont.load_default(size=14), ImageFont.load_default(size=16)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = bold = ImageFont.load_default()
    width, label_w, bar_h, gap = 1100, 260, 20, 6
    height = 50 + sum(34 + len(rows) * (bar_h + gap) + 12 for rows in groups.values())
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((16, 12), title or "throughput (images/s) and speed-up over each group's baseline", fill="black",
              font=bold)
    y = 50
    for group, rows in groups.items():
        draw.text((16, y), group, fill="black", font=bold)
        y += 28
        top = max((r.images_per_s or 1 / r.mean_s) for r in rows)
        for row in rows:
            rate = row.images_per_s or 1 / row.mean_s
            length = max(2, int((width - label_w - 230) * rate / top))
            colour = "#d9480f" if row.ours else ("#adb5bd" if row.baseline else "#4c6ef5")
            draw.text((16, y + 3), row.name, fill="black", font=font)
            draw.rectangle([label_w, y, label_w + length, y + bar_h], fill=colour)
            label = f"{rate:,.0f} img/s" if row.images_per_s else f"{1000 * row.mean_s:.1f} ms"
            if row.ratio is not None:
                label += f"  {row.ratio:.2f}x"
            draw.text((label_w + length + 8, y + 3), label, fill="black", font=font)
            y += bar_h + gap
        y += 12
    image.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a pytest-benchmark JSON file (--benchmark-json)")
    parser.add_argument("--out", help="output prefix (default: the JSON path without .json)")
    parser.add_argument("--title", default="", help="chart title")
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
    render_chart(groups, prefix.with_suffix(".png"), args.title)
    print(markdown)
    print(f"wrote {prefix.with_suffix('.md')} and {prefix.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

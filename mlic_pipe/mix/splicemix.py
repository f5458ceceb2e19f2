"""SpliceMix (Lu et al.): mixed images spliced from grids of downsampled regular images.

Paper parity (default mode, one decision per batch): grid 1x2 / 2x2 / 2x3 with p 0.3 / 0.4 / 0.3;
a non-square grid transposed with p 0.5; with p 0.3 drop k cells per mixed image (1x2: k=1, 2x2:
k ~ U{1..3}, 2x3: k ~ U{1..5}); M = B // 4 mixed images appended after the B regular ones;
cells filled from concatenated random permutations of the batch, so an image is reused only
after every image was used once. Unlike the public code, the plan comes from the caller's
generator (so DDP ranks differ), and uneven grids partition S exactly instead of resizing back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mlic_pipe.mix.calling import CallableMixer
from mlic_pipe.mix.plan import MixPlan
from mlic_pipe.mix.sampling import check_mix_ratio, check_probability, concatenated_permutations

__all__ = ["GridSpec", "SpliceMix", "parse_grid"]

_SPEC = re.compile(r"^(\d+)x(\d+)(?:-(\d+))?$")
# (grid, probability, largest number of dropped cells) of the paper's default mode
DEFAULT_GRIDS = (((1, 2), 0.3, 1), ((2, 2), 0.4, 3), ((2, 3), 0.3, 5))


@dataclass(frozen=True)
class GridSpec:
    rows: int
    cols: int
    drop: int = 0  # cells dropped in every mixed image of this group

    @property
    def num_cells(self) -> int:
        return self.rows * self.cols


def parse_grid(spec: str) -> GridSpec:
    """Parse "RxC" or "RxC-k" (k cells dropped per mixed image), e.g. "2x3-2"."""
    match = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if not match:
        raise ValueError(f"grid {spec!r} is not of the form 'RxC' or 'RxC-k', e.g. '2x2' or '2x3-2'")
    rows, cols, drop = int(match[1]), int(match[2]), int(match[3] or 0)
    if rows < 1 or cols < 1 or rows * cols < 2:
        raise ValueError(f"grid {spec!r} must have at least 2 cells (e.g. '1x2')")
    if drop >= rows * cols:
        raise ValueError(f"grid {spec!r} drops {drop} of its {rows * cols} cells: at most {rows * cols - 1} may be dropped")
    return GridSpec(rows, cols, drop)


class SpliceMix(CallableMixer):
    """Plans SpliceMixed batches; ``mixer(images, targets)`` also mixes one (`CallableMixer`).

    Args:
        grids: "default" for the paper's default mode, or grid specs such as ["1x2", "2x3-2"]
            (several groups per batch).
        counts: mixed images per group (custom grids only); default: M split evenly over groups.
        mix_ratio: M = int(B * mix_ratio) mixed images (0.25 gives the paper's B // 4).
        fixed_batch: replace the last M regular outputs by the mixed ones, so the batch stays B
            (the sources are still drawn from all B inputs).
        prob: probability that a batch is mixed at all.
        drop_prob: default mode's probability of dropping cells in a batch.
        transpose_prob: probability that a non-square grid is transposed (per group and batch).
    """

    def __init__(self, grids: str | Sequence[str] = "default", counts: Sequence[int] | None = None, *,
                 mix_ratio: float = 0.25, fixed_batch: bool = False, prob: float = 1.0, drop_prob: float = 0.3,
                 transpose_prob: float = 0.5):
        check_mix_ratio(mix_ratio)
        for name, value in (("prob", prob), ("drop_prob", drop_prob), ("transpose_prob", transpose_prob)):
            check_probability(name, value)
        self.default = isinstance(grids, str) and grids == "default"
        if self.default:
            if counts is not None:
                raise ValueError("counts applies to custom grids; the default mode mixes int(B * mix_ratio) images")
            self.specs: list[GridSpec] = []
        else:
            if isinstance(grids, str):
                grids = [g for g in grids.split(",") if g.strip()]
            self.specs = [parse_grid(g) for g in grids]
            if not self.specs:
                raise ValueError("grids is empty: pass 'default' or specs such as ['2x2', '1x2-1']")
            if counts is not None and (len(counts) != len(self.specs) or any(c < 0 for c in counts)):
                raise ValueError(f"counts must give one non-negative number per grid ({len(self.specs)}), got {counts}")
        self.counts = None if counts is None else [int(c) for c in counts]
        self.mix_ratio, self.fixed_batch, self.prob = mix_ratio, fixed_batch, prob
        self.drop_prob, self.transpose_prob = drop_prob, transpose_prob

    def __repr__(self) -> str:
        grids = "default" if self.default else [f"{s.rows}x{s.cols}-{s.drop}" for s in self.specs]
        return f"SpliceMix(grids={grids!r}, mix_ratio={self.mix_ratio}, fixed_batch={self.fixed_batch})"

    def _groups(self, batch_size: int, rng: np.random.Generator) -> list[tuple[GridSpec, int]]:
        """This batch's (grid, number of mixed images) groups, transposes and drops decided."""
        if self.default:
            coin, drop_coin = rng.random(), rng.random()
            # as the public code: 1x2 when coin is in [0.7, 1), 2x2 in [0.3, 0.7), 2x3 below 0.3
            upper = 1.0
            for (rows, cols), p, max_drop in DEFAULT_GRIDS:
                upper -= p
                if coin >= upper:
                    break
            drop = int(rng.integers(1, max_drop + 1)) if drop_coin < self.drop_prob else 0
            specs, counts = [GridSpec(rows, cols, drop)], [int(batch_size * self.mix_ratio)]
        else:
            specs = self.specs
            if self.counts is not None:
                counts = self.counts
            else:
                total = int(batch_size * self.mix_ratio)
                counts = [total // len(specs) + (i < total % len(specs)) for i in range(len(specs))]
        groups = []
        for spec, count in zip(specs, counts):
            if spec.rows != spec.cols and rng.random() < self.transpose_prob:
                spec = GridSpec(spec.cols, spec.rows, spec.drop)
            groups.append((spec, count))
        return groups

    @property
    def largest_side(self) -> int:
        """The most cells along one side of any grid this mixer may draw (transposed grids included)."""
        possible = [GridSpec(*grid) for grid, _, _ in DEFAULT_GRIDS] if self.default else self.specs
        return max(max(spec.rows, spec.cols) if self.transpose_prob > 0 else spec.rows for spec in possible)

    @property
    def min_batch_size(self) -> int:
        """The smallest batch every grid this mixer may draw can be filled from (distinct images per grid)."""
        possible = [GridSpec(*grid) for grid, _, _ in DEFAULT_GRIDS] if self.default else self.specs
        return max(spec.num_cells for spec in possible)

    def plan(self, batch_size: int, image_size: int, rng: np.random.Generator, device=None) -> MixPlan:
        """Draw the plan of one batch of `batch_size` decoded `image_size` x `image_size` images."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        # checked against every grid this mixer may draw, so a bad setting fails on the first batch
        possible = [GridSpec(*grid) for grid, _, _ in DEFAULT_GRIDS] if self.default else self.specs
        for spec in possible:
            if batch_size < spec.num_cells:
                raise ValueError(f"a {spec.rows}x{spec.cols} grid needs {spec.num_cells} distinct images but the "
                                 f"batch has {batch_size}: use a batch of at least {spec.num_cells} or a smaller grid")
            if max(spec.rows, spec.cols) > image_size:
                raise ValueError(f"a {spec.rows}x{spec.cols} grid does not fit a {image_size}-pixel image: "
                                 "every cell needs at least one pixel")
        groups = self._groups(batch_size, rng)
        if rng.random() >= self.prob or sum(c for _, c in groups) == 0:
            return MixPlan.identity(batch_size)
        num_mixed = sum(count for _, count in groups)
        if self.fixed_batch and num_mixed > batch_size:
            raise ValueError(f"fixed_batch replaces regular outputs, but {num_mixed} mixed images exceed the batch "
                             f"of {batch_size}")
        needed = sum(spec.num_cells * count for spec, count in groups)
        sources = concatenated_permutations(batch_size, needed, rng)

        width = max(spec.num_cells for spec, _ in groups)
        num_regular = batch_size - num_mixed if self.fixed_batch else batch_size
        cells = np.full((num_regular + num_mixed, width), -1, dtype=np.int64)
        cells[:num_regular, 0] = np.arange(num_regular)
        grid = np.ones((num_regular + num_mixed, 2), dtype=np.int64)
        row, used = num_regular, 0
        for spec, count in groups:
            block = sources[used:used + count * spec.num_cells].reshape(count, spec.num_cells).copy()
            used += count * spec.num_cells
            if spec.drop:
                dropped = np.argsort(rng.random((count, spec.num_cells)), axis=1)[:, :spec.drop]
                np.put_along_axis(block, dropped, -1, axis=1)
            cells[row:row + count, :spec.num_cells] = block
            grid[row:row + count] = (spec.rows, spec.cols)
            row += count
        return MixPlan.build(num_regular=num_regular, cells=cells, grid=grid)

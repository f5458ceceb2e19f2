"""Multi-label metrics: mAP, the CP/CR/CF1/OP/OR/OF1 family (threshold and top-k) and F1-optimal thresholds.

Every paper in this field reports the same numbers, computed by slightly different scripts. These
follow the definitions the papers state, checked against scikit-learn:

- AP is the non-interpolated average precision of `sklearn.metrics.average_precision_score`:
  ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, so tied scores form one step.
- Entries marked in ``ignore`` (VOC's "difficult") count for nothing: not as positives, not as
  negatives, not as predictions.
- A class without a positive (after ignoring) has no AP or recall. It is left out of every mean
  and listed in ``MetricReport.classes_without_positives``, never silently scored 0 or 1.
- Precision of a class that predicts nothing is 0 (scikit-learn's ``zero_division=0``); F1 of
  two zeros is 0. Nothing here divides 0 by 0.
- CP and CR are per-class means; CF1 is the harmonic mean of CP and CR (not the mean of per-class
  F1s). OP, OR, OF1 pool the counts of all classes. The top-k variants predict each image's k
  highest-scoring classes; by default (`multilabel_metrics`) only those whose probability also
  reaches 0.5, as ML-GCN's evaluation (and the papers that reuse it) computes the top-3 numbers.
- AP ties are scikit-learn's: tied scores form one precision-recall step.

All functions take (N, C) scores, {0, 1} targets and an optional boolean ignore mask as torch
tensors or numpy arrays. `MetricAccumulator` collects batches (across ranks with
``torch.distributed``) so evaluation can stream.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mlic_pipe.datasets.labels import SparseLabels, sorted_member
from mlic_pipe.distributed import is_distributed

__all__ = ["MetricAccumulator", "MetricReport", "average_precision", "f1_optimal_thresholds",
           "mean_average_precision", "multilabel_metrics", "precision_recall_f1"]


# Entries per column block: the float64 sort and its running sums stay near 32 MB each, whatever N x C is
# (Open Images' 125k test images x 9,605 classes is 1.2 G entries: 9.6 GB as one float64 table).
BLOCK_ENTRIES = 1 << 22


def _on_host(values) -> torch.Tensor:
    """A tensor or array-like as a CPU tensor (no copy when it already is one)."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu()
    return torch.as_tensor(np.asarray(values))


class _Labels:
    """Targets and the 'counts' mask (not ignored) as the metrics read them: by column block, or at entries.

    Either form comes in: (N, C) {0, 1} tables (tensors or arrays), or `SparseLabels` (what
    `MetricAccumulator` keeps, and a `LabelIndex` holds), in which case no (N, C) table is ever built:
    a block's dense columns come from the entries sorted by column.
    """

    def __init__(self, targets, ignore, shape: tuple[int, int]):
        self.shape = shape
        self.sparse = isinstance(targets, SparseLabels)
        if self.sparse:
            if targets.shape != shape:
                raise ValueError(f"scores and targets must both be (N, C), got {shape} and {targets.shape}")
            self._positive = _by_column(targets)
            if ignore is not None and not isinstance(ignore, SparseLabels):
                ignore = SparseLabels.from_dense(_on_host(ignore).numpy())
            if ignore is not None and ignore.shape != shape:
                raise ValueError(f"ignore must be (N, C) like targets, got {ignore.shape}")
            self._ignore = None if ignore is None else (_by_column(ignore), ignore.complement)
            return
        targets = _on_host(targets)
        if targets.shape != shape:
            raise ValueError(f"scores and targets must both be (N, C), got {shape} and {tuple(targets.shape)}")
        if ((targets != 0) & (targets != 1)).any():
            raise ValueError("targets must be 0 or 1; for soft (mixed) targets evaluate on unmixed images")
        self._targets = targets.to(torch.bool)
        self._counts = None
        if ignore is not None:
            ignore = ignore.dense(dtype=bool) if isinstance(ignore, SparseLabels) else ignore
            ignore = _on_host(ignore)
            if ignore.shape != targets.shape:
                raise ValueError(f"ignore must be (N, C) like targets, got {tuple(ignore.shape)}")
            self._counts = ~ignore.to(torch.bool)

    def block(self, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, last - first) bool targets and counts of columns first..last-1."""
        n = self.shape[0]
        if not self.sparse:
            counts = (torch.ones((n, last - first), dtype=torch.bool) if self._counts is None
                      else self._counts[:, first:last])
            return self._targets[:, first:last], counts
        targets = _dense_columns(self._positive, n, first, last, True)
        if self._ignore is None:
            return targets, torch.ones_like(targets)
        listed, complement = self._ignore
        return targets, _dense_columns(listed, n, first, last, complement)  # counts: not ignored

    def positives_per_class(self) -> torch.Tensor:
        """(C,) float64: the counted positives of each class."""
        c = self.shape[1]
        totals = torch.zeros(c, dtype=torch.float64)
        for first in range(0, c, self.block_width()):
            last = min(first + self.block_width(), c)
            targets, counts = self.block(first, last)
            totals[first:last] = (targets & counts).sum(0).to(torch.float64)
        return totals

    def block_width(self) -> int:
        return max(1, BLOCK_ENTRIES // max(self.shape[0], 1))

    def at(self, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets and counts of the entries (rows[i], cols[i])."""
        if not self.sparse:
            counts = torch.ones_like(rows, dtype=torch.bool) if self._counts is None else self._counts[rows, cols]
            return self._targets[rows, cols], counts
        keys = (cols.to(torch.int64) * self.shape[0] + rows.to(torch.int64)).numpy()
        targets = torch.from_numpy(sorted_member(self._positive, keys))
        if self._ignore is None:
            return targets, torch.ones_like(targets)
        listed, complement = self._ignore
        inside = torch.from_numpy(sorted_member(listed, keys))
        return targets, inside if complement else ~inside


def _by_column(labels: SparseLabels) -> np.ndarray:
    """The listed entries as sorted keys column * N + row (so a column block is one contiguous range)."""
    rows = np.repeat(np.arange(labels.num_rows, dtype=np.int64), np.diff(labels.indptr))
    return np.sort(labels.indices.astype(np.int64) * labels.num_rows + rows)


def _dense_columns(keys: np.ndarray, n: int, first: int, last: int, value: bool) -> torch.Tensor:
    """(n, last - first) bool: `value` at the listed entries of the columns, `not value` elsewhere."""
    lo, hi = np.searchsorted(keys, [first * n, last * n])
    table = torch.full((n, last - first), not value, dtype=torch.bool)
    chosen = torch.from_numpy(keys[lo:hi])
    table[chosen % n, chosen // n - first] = value
    return table


def _as_inputs(scores, targets, ignore=None) -> tuple[torch.Tensor, _Labels]:
    """float32-or-wider scores on the CPU and their labels, checked (the float64 copy is made a block at a time)."""
    scores = _on_host(scores)
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores and targets must both be (N, C), got scores of shape {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN: the model diverged or produced invalid outputs; metrics need "
                         "finite scores (check the loss for NaN first)")
    return scores, _Labels(targets, ignore, tuple(scores.shape))


def _blocks(scores: torch.Tensor, labels: _Labels):
    """(first column, float64 scores, bool targets, bool counts) of each column block."""
    width = labels.block_width()
    for first in range(0, scores.shape[1], width):
        last = min(first + width, scores.shape[1])
        targets, counts = labels.block(first, last)
        yield first, scores[:, first:last].to(torch.float64), targets, counts


def _ranked(scores: torch.Tensor, targets: torch.Tensor, counts: torch.Tensor):
    """Each column sorted by descending score, ignored entries pushed last (at -inf).

    Returns the sorted scores, float64 {0, 1} columns `positive` (a counted positive) and `counted`
    in that order, and `run_end`: True at the last position of each run of equal scores, the only
    places where a threshold can cut.
    """
    masked = torch.where(counts, scores, torch.full_like(scores, -float("inf")))
    order = torch.argsort(masked, dim=0, descending=True, stable=True)
    sorted_scores = masked.gather(0, order)
    positive = (targets & counts).gather(0, order).to(torch.float64)
    counted = counts.gather(0, order).to(torch.float64)
    run_end = torch.ones_like(sorted_scores, dtype=torch.bool)
    run_end[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    return sorted_scores, positive, counted, run_end


def _block_average_precision(scores: torch.Tensor, targets: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    n = scores.shape[0]
    _, positive, counted, run_end = _ranked(scores, targets, counts)
    true_pos, predicted = positive.cumsum(0), counted.cumsum(0)
    # every position maps to the last position of its run
    positions = torch.arange(n).unsqueeze(1).expand_as(run_end)
    last = torch.where(run_end, positions, torch.full_like(positions, n))
    last = last.flip(0).cummin(0).values.flip(0)
    predicted = predicted.gather(0, last)
    precision = torch.where(predicted > 0, true_pos.gather(0, last) / predicted.clamp_min(1), 0.0)
    num_pos = positive.sum(0)
    ap = (positive * precision).sum(0) / num_pos.clamp_min(1)
    return torch.where(num_pos > 0, ap, torch.full_like(ap, float("nan")))


def average_precision(scores, targets, ignore=None) -> torch.Tensor:
    """(C,) float64 per-class AP, NaN for a class without a positive; equals scikit-learn per class.

    Vectorised over classes: sort each column by descending score, accumulate true positives and
    predictions, and credit every positive with the precision at the *end of its tie run* (that
    is what evaluating at distinct thresholds means). Ignored entries add to neither count.
    Columns go a block at a time (`BLOCK_ENTRIES`), so 9,605 classes cost no more memory than 80.
    """
    scores, labels = _as_inputs(scores, targets, ignore)
    ap = torch.full((scores.shape[1],), float("nan"), dtype=torch.float64)
    if scores.shape[0] == 0:
        return ap
    for first, block, block_targets, counts in _blocks(scores, labels):
        ap[first:first + block.shape[1]] = _block_average_precision(block, block_targets, counts)
    return ap


def mean_average_precision(scores, targets, ignore=None) -> float:
    """mAP over the classes that have at least one positive (see `average_precision`)."""
    ap = average_precision(scores, targets, ignore)
    valid = ~torch.isnan(ap)
    return float(ap[valid].mean()) if valid.any() else float("nan")


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), torch.zeros_like(numerator))


def _harmonic(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def precision_recall_f1(scores, targets, ignore=None, *, threshold: float | None = 0.5,
                        top_k: int | None = None, top_k_threshold: float | None = None) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 for predictions ``score >= threshold`` or, with `top_k`, each image's top k.

    With `top_k` and `top_k_threshold`, a top-k class is predicted only if its score also reaches
    the threshold (the ML-GCN lineage's top-3: ``score >= 0.5`` on probabilities, logit >= 0).
    Per-class (C*) means run over the classes with at least one positive, like mAP; the overall (O*)
    figures pool every counted entry. The top-k counts come from the (N, k) picks alone (no (N, C) mask).
    """
    scores, labels = _as_inputs(scores, targets, ignore)
    n, c = scores.shape
    num_pos = labels.positives_per_class()
    true_pos = torch.zeros(c, dtype=torch.float64)
    num_predicted = torch.zeros(c, dtype=torch.float64)
    if top_k is not None:
        if not 1 <= top_k <= c:
            raise ValueError(f"top-k needs 1 <= k <= number of classes ({c}), got k={top_k}")
        picked = scores.topk(top_k, dim=1)
        rows = torch.arange(n).unsqueeze(1).expand(-1, top_k).reshape(-1)
        cols = picked.indices.reshape(-1)
        predicted = torch.ones_like(cols, dtype=torch.bool)
        if top_k_threshold is not None:
            predicted &= picked.values.reshape(-1) >= top_k_threshold
        truth, counts = labels.at(rows, cols)
        predicted &= counts
        num_predicted = torch.bincount(cols[predicted], minlength=c).to(torch.float64)
        true_pos = torch.bincount(cols[predicted & truth], minlength=c).to(torch.float64)
    elif threshold is not None:
        for first, block, block_targets, counts in _blocks(scores, labels):
            predicted = (block >= threshold) & counts
            last = first + block.shape[1]
            num_predicted[first:last] = predicted.sum(0).to(torch.float64)
            true_pos[first:last] = (predicted & block_targets).sum(0).to(torch.float64)
    else:
        raise ValueError("give a threshold or top_k")
    valid = num_pos > 0
    if not valid.any():
        nan = float("nan")
        return dict(CP=nan, CR=nan, CF1=nan, OP=nan, OR=nan, OF1=nan)
    cp = float(_safe_divide(true_pos, num_predicted)[valid].mean())
    cr = float((true_pos / num_pos.clamp_min(1))[valid].mean())
    op = float(_safe_divide(true_pos.sum(), num_predicted.sum()))
    orecall = float(true_pos.sum() / num_pos.sum())
    return dict(CP=cp, CR=cr, CF1=_harmonic(cp, cr), OP=op, OR=orecall, OF1=_harmonic(op, orecall))


def f1_optimal_thresholds(scores, targets, ignore=None, *, default: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class thresholds that maximise F1 on these scores, and the F1 they reach.

    A class predicts positive when ``score >= threshold``; candidates are the class's distinct
    scores, so the returned threshold is one of them (ties resolved towards the higher threshold).
    A class without a positive gets `default` and F1 NaN: there is nothing to optimise, and 0/0 is
    never evaluated.

    Returns:
        thresholds (C,) float64 and best F1 (C,) float64.
    """
    scores, labels = _as_inputs(scores, targets, ignore)
    n, c = scores.shape
    thresholds = torch.full((c,), float(default), dtype=torch.float64)
    best_f1 = torch.full((c,), float("nan"), dtype=torch.float64)
    if n == 0:
        return thresholds, best_f1
    for first, block, block_targets, counts in _blocks(scores, labels):
        sorted_scores, positive, counted, run_end = _ranked(block, block_targets, counts)
        true_pos, num_predicted = positive.cumsum(0), counted.cumsum(0)
        num_pos = positive.sum(0)
        f1 = 2 * true_pos / (num_predicted + num_pos).clamp_min(1)
        # only the last position of a tie run is a realisable cut, and only at counted entries
        f1 = torch.where(run_end & (counted > 0), f1, torch.full_like(f1, -1.0))
        best, where = f1.max(0)
        valid = num_pos > 0
        columns = torch.arange(first, first + block.shape[1])[valid]
        thresholds[columns] = sorted_scores.gather(0, where[None])[0][valid]
        best_f1[columns] = best[valid]
    return thresholds, best_f1


@dataclass
class MetricReport:
    """The numbers of one evaluation; `as_dict` is what the trainer logs."""

    mAP: float
    ap: list[float]
    threshold: dict[str, float]
    top3: dict[str, float]
    classes_without_positives: list[str] = field(default_factory=list)
    num_images: int = 0

    def as_dict(self) -> dict:
        out = {"mAP": self.mAP, "num_images": self.num_images}
        out.update({k: v for k, v in self.threshold.items()})
        out.update({f"{k}_top3": v for k, v in self.top3.items()})
        # mAP runs over the classes with a positive: the logs say how many (at 9,605 classes, thousands have none,
        # so the names are capped at 20 and counted)
        out["num_classes_scored"] = len(self.ap) - len(self.classes_without_positives)
        out["num_classes_without_positives"] = len(self.classes_without_positives)
        out["classes_without_positives"] = list(self.classes_without_positives[:20])
        return out

    def format(self) -> str:
        def row(numbers):
            return "  ".join(f"{name} {100 * value:5.1f}" for name, value in numbers.items())
        scored = len(self.ap) - len(self.classes_without_positives)
        lines = [f"mAP {100 * self.mAP:.2f} over the {scored} of {len(self.ap)} classes with a positive, "
                 f"{self.num_images} images",
                 f"  @0.5   {row(self.threshold)}",
                 f"  top-3  {row(self.top3)}"]
        if self.classes_without_positives:
            names = self.classes_without_positives
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            lines.append(f"  left out (no positives): {', '.join(names[:10])}{more}")
        return "\n".join(lines)


def multilabel_metrics(scores, targets, ignore=None, *, classes: list[str] | None = None,
                       top_k: int = 3, top_k_threshold: float | None = 0.5) -> MetricReport:
    """Everything at once: mAP, the P/R/F1 family at 0.5 and at top-k.

    Pass probabilities. The top-k family is the ML-GCN lineage's by default (a top-k class counts
    only if its probability reaches 0.5); ``top_k_threshold=None`` gives the plain top-k.
    """
    ap = average_precision(scores, targets, ignore)
    names = classes if classes is not None else [str(i) for i in range(len(ap))]
    if len(names) != len(ap):
        raise ValueError(f"{len(names)} class names for {len(ap)} score columns")
    missing = [names[i] for i in torch.nonzero(torch.isnan(ap)).flatten().tolist()]
    valid = ~torch.isnan(ap)
    return MetricReport(
        mAP=float(ap[valid].mean()) if valid.any() else float("nan"),
        ap=ap.tolist(),
        threshold=precision_recall_f1(scores, targets, ignore, threshold=0.5),
        top3=precision_recall_f1(scores, targets, ignore, top_k=min(top_k, len(ap)), top_k_threshold=top_k_threshold),
        classes_without_positives=missing,
        num_images=int(_on_host(scores).shape[0]),
    )


class MetricAccumulator:
    """Collects (scores, targets, ignore) batch by batch, then computes `multilabel_metrics` once.

    AP needs every score of a class, so the scores are kept (on the CPU, as float32: 4 bytes per image
    and class). Targets and the ignore mask are kept sparse (`SparseLabels`; an ignore mask that is
    mostly True, as with Open Images' unverified classes, as its complement), so they cost O(labels)
    rather than two more (N, C) tables, and no ignore table is made for batches without one.
    Under torch.distributed, `compute(distributed=True)` gathers every rank's batches first, so each
    rank reports the metrics of the whole evaluation set.
    """

    def __init__(self, classes: list[str] | None = None):
        self.classes = classes
        self._scores: list[torch.Tensor] = []
        self._targets: list[SparseLabels] = []
        self._ignore: list[SparseLabels | None] = []

    def reset(self) -> None:
        self._scores.clear(), self._targets.clear(), self._ignore.clear()

    def update(self, scores: torch.Tensor, targets: torch.Tensor, ignore: torch.Tensor | None = None) -> None:
        scores = scores.detach().float().cpu()
        targets = targets.detach().cpu()
        if ((targets != 0) & (targets != 1)).any():
            raise ValueError("targets must be 0 or 1; for soft (mixed) targets evaluate on unmixed images")
        self._scores.append(scores)
        self._targets.append(SparseLabels.from_dense(targets.numpy()))
        self._ignore.append(None if ignore is None else _sparse_mask(ignore.detach().cpu().to(torch.bool).numpy()))

    def _gathered(self, distributed: bool) -> tuple[torch.Tensor, SparseLabels, SparseLabels | None]:
        parts = (self._scores, self._targets, self._ignore)
        if distributed and is_distributed():
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, parts)
            parts = tuple([item for g in gathered for item in g[i]] for i in range(3))
        scores, targets, ignore = parts
        if not scores:
            return torch.empty(0), None, None
        c = scores[0].shape[1]
        all_scores = torch.cat(scores)
        if all(part is None for part in ignore):
            return all_scores, SparseLabels.stack(targets), None
        masks = [_sparse_mask(np.zeros((len(s), c), dtype=bool)) if part is None else part
                 for s, part in zip(scores, ignore)]
        complement = any(mask.complement for mask in masks)  # one form for all: the complement wherever one uses it
        masks = [_as_complement(mask) if complement else mask for mask in masks]
        return all_scores, SparseLabels.stack(targets), SparseLabels.stack(masks)

    def compute(self, distributed: bool = True) -> MetricReport:
        scores, targets, ignore = self._gathered(distributed)
        if scores.numel() == 0:
            raise ValueError("no batches were added: nothing to evaluate")
        return multilabel_metrics(scores, targets, ignore, classes=self.classes)


def _sparse_mask(mask: np.ndarray) -> SparseLabels:
    """A bool mask as listed True entries, or as listed False entries (a complement) when most are True."""
    sparse = SparseLabels.from_dense(mask)
    return sparse if mask.sum() * 2 <= mask.size else _as_complement(sparse)


def _as_complement(part: SparseLabels) -> SparseLabels:
    """The same set, listing the entries *not* in it (a batch's rows: small enough to go through dense)."""
    if part.complement:
        return part
    listed = SparseLabels.from_dense(part.dense(dtype=bool) == 0)
    return SparseLabels(listed.indptr, listed.indices, listed.num_classes, complement=True)

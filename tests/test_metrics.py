"""Metrics against scikit-learn (the independent reference) and hand-computed cases."""
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from mlic_pipe.metrics import (MetricAccumulator, average_precision, f1_optimal_thresholds, mean_average_precision,
                               multilabel_metrics, precision_recall_f1)


def random_case(seed, n=60, c=7, ties=True, ignore_rate=0.0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.3).astype(np.uint8)
    targets[:, -1] = 0  # one class without positives
    scores = rng.random((n, c))
    if ties:  # coarse scores: many ties, also across positives and negatives
        scores = np.round(scores * 6) / 6
    ignore = rng.random((n, c)) < ignore_rate
    return scores, targets, ignore


def sklearn_ap(scores, targets, ignore):
    out = []
    for c in range(targets.shape[1]):
        keep = ~ignore[:, c]
        y = targets[keep, c]
        out.append(average_precision_score(y, scores[keep, c]) if y.sum() else np.nan)
    return np.array(out)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ignore_rate", [0.0, 0.2])
def test_average_precision_equals_sklearn_with_ties_and_ignore(seed, ignore_rate):
    scores, targets, ignore = random_case(seed, ignore_rate=ignore_rate)
    ours = average_precision(scores, targets, ignore if ignore_rate else None).numpy()
    expected = sklearn_ap(scores, targets, ignore)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, equal_nan=True)
    assert np.isnan(ours[-1])
    assert mean_average_precision(scores, targets, ignore) == pytest.approx(np.nanmean(expected), rel=1e-12)


def test_all_tied_scores_give_the_positive_rate():
    targets = np.array([[1], [0], [0], [1]])
    assert float(average_precision(np.full((4, 1), 0.3), targets)[0]) == pytest.approx(0.5)


def per_class_counts_sklearn(predicted, targets, ignore):
    """CP/CR/OP/OR by scikit-learn on each class's counted entries, then the paper's averages."""
    valid = [c for c in range(targets.shape[1]) if targets[~ignore[:, c], c].sum() > 0]
    cp = np.mean([precision_score(targets[~ignore[:, c], c], predicted[~ignore[:, c], c], zero_division=0)
                  for c in valid])
    cr = np.mean([recall_score(targets[~ignore[:, c], c], predicted[~ignore[:, c], c]) for c in valid])
    keep = ~ignore
    op = precision_score(targets[keep], predicted[keep], zero_division=0)
    orecall = recall_score(targets[keep], predicted[keep])
    return dict(CP=cp, CR=cr, CF1=2 * cp * cr / (cp + cr), OP=op, OR=orecall, OF1=f1_score(targets[keep], predicted[keep]))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ignore_rate", [0.0, 0.25])
def test_threshold_family_equals_sklearn(seed, ignore_rate):
    scores, targets, ignore = random_case(seed, ignore_rate=ignore_rate)
    ours = precision_recall_f1(scores, targets, ignore, threshold=0.5)
    expected = per_class_counts_sklearn((scores >= 0.5).astype(np.uint8), targets, ignore)
    for name in expected:
        assert ours[name] == pytest.approx(expected[name], rel=1e-12), name


@pytest.mark.parametrize("seed", range(3))
def test_top_k_family_equals_sklearn_on_top_k_predictions(seed):
    scores, targets, ignore = random_case(seed, ties=False, ignore_rate=0.1)
    top = np.argsort(-scores, axis=1)[:, :3]
    predicted = np.zeros_like(targets)
    np.put_along_axis(predicted, top, 1, axis=1)
    ours = precision_recall_f1(scores, targets, ignore, top_k=3)
    expected = per_class_counts_sklearn(predicted, targets, ignore)
    for name in expected:
        assert ours[name] == pytest.approx(expected[name], rel=1e-12), name


def test_top3_by_hand():
    # 2 images, 4 classes. Top-3 of image 0: classes 0, 1, 2; of image 1: classes 3, 2, 1.
    scores = np.array([[0.9, 0.8, 0.7, 0.1],
                       [0.1, 0.2, 0.3, 0.4]])
    targets = np.array([[1, 0, 0, 1],
                        [0, 0, 1, 0]])
    # per class (tp, predicted, positives): c0 (1,1,1) c1 (0,2,0) c2 (1,2,1) c3 (0,1,1); c1 has no positive
    out = precision_recall_f1(scores, targets, top_k=3)
    cp, cr = (1 + 0.5 + 0) / 3, (1 + 1 + 0) / 3
    assert out["CP"] == pytest.approx(cp)
    assert out["CR"] == pytest.approx(cr)
    assert out["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))
    assert out["OP"] == pytest.approx(2 / 6)  # 2 true positives of 6 predictions
    assert out["OR"] == pytest.approx(2 / 3)  # of 3 positives
    assert out["OF1"] == pytest.approx(2 * (1 / 3) * (2 / 3) / (1 / 3 + 2 / 3))


def test_f1_optimal_thresholds_equal_a_brute_force_search():
    scores, targets, ignore = random_case(7, ignore_rate=0.1)
    thresholds, best = f1_optimal_thresholds(scores, targets, ignore)
    for c in range(targets.shape[1]):
        keep = ~ignore[:, c]
        y, s = targets[keep, c], scores[keep, c]
        if y.sum() == 0:
            assert np.isnan(float(best[c])) and float(thresholds[c]) == 0.5
            continue
        candidates = np.unique(s)
        f1s = [f1_score(y, (s >= t).astype(int)) for t in candidates]
        assert float(best[c]) == pytest.approx(max(f1s), rel=1e-12)
        assert f1_score(y, (s >= float(thresholds[c])).astype(int)) == pytest.approx(max(f1s), rel=1e-12)


def test_thresholds_never_produce_nan_for_classes_with_positives():
    scores = np.zeros((5, 2))
    targets = np.array([[1, 0]] * 5)
    thresholds, best = f1_optimal_thresholds(scores, targets)
    assert best[0] == 1.0 and thresholds[0] == 0.0
    assert np.isnan(float(best[1])) and float(thresholds[1]) == 0.5


def test_report_lists_classes_without_positives_and_accumulator_matches_one_shot():
    scores, targets, ignore = random_case(3, ignore_rate=0.1)
    classes = [f"class{i}" for i in range(targets.shape[1])]
    report = multilabel_metrics(scores, targets, ignore, classes=classes)
    assert report.classes_without_positives == ["class6"]
    assert report.mAP == pytest.approx(np.nanmean(sklearn_ap(scores, targets, ignore)), rel=1e-12)
    accumulator = MetricAccumulator(classes)
    for part in np.array_split(np.arange(len(scores)), 4):
        accumulator.update(torch.from_numpy(scores[part]), torch.from_numpy(targets[part]), torch.from_numpy(ignore[part]))
    streamed = accumulator.compute()
    assert streamed.mAP == pytest.approx(report.mAP, rel=1e-6)  # float32 storage
    assert "class6" in streamed.format()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        average_precision(np.array([[np.nan]]), np.array([[1]]))
    with pytest.raises(ValueError, match="0 or 1"):
        average_precision(np.array([[0.2]]), np.array([[0.5]]))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no batches"):
        MetricAccumulator().compute()


def test_default_top3_is_the_ml_gcn_lineage_a_top3_class_counts_only_above_half():
    """Against ML-GCN's evaluation written out here: top-3 indices, predicted where the score >= 0.5."""
    rng = np.random.default_rng(5)
    scores = rng.random((40, 7))
    targets = (rng.random((40, 7)) < 0.3).astype(np.uint8)
    targets[0] = 1  # every class has a positive
    predicted = np.zeros_like(targets)
    for i in range(40):
        for c in np.argsort(-scores[i])[:3]:
            predicted[i, c] = 1 if scores[i, c] >= 0.5 else 0
    tp = (predicted * targets).sum(0).astype(float)
    n_pred, n_pos = predicted.sum(0).astype(float), targets.sum(0).astype(float)
    cp = np.mean(np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0))
    cr = np.mean(tp / n_pos)
    op, orecall = tp.sum() / n_pred.sum(), tp.sum() / n_pos.sum()
    report = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets))
    assert report.top3["CP"] == pytest.approx(cp) and report.top3["CR"] == pytest.approx(cr)
    assert report.top3["OP"] == pytest.approx(op) and report.top3["OR"] == pytest.approx(orecall)
    plain = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), top_k_threshold=None)
    assert plain.top3["OR"] > report.top3["OR"]  # plain top-3 also predicts the sub-0.5 classes


@pytest.mark.parametrize("ignore_rate", [0.1, 0.9])
def test_sparse_targets_and_ignore_in_column_blocks_equal_the_dense_computation(monkeypatch, ignore_rate):
    """CSR targets, an ignore set (listed, or as its complement when mostly True) and blocks of a few columns."""
    import mlic_pipe.metrics as metrics
    from mlic_pipe.datasets.labels import SparseLabels

    scores, targets, ignore = random_case(5, ignore_rate=ignore_rate)
    sparse_targets = SparseLabels.from_dense(targets)
    known = SparseLabels.from_dense(~ignore)
    sparse_ignore = SparseLabels(known.indptr, known.indices, known.num_classes, complement=True)
    dense_report = multilabel_metrics(scores, targets, ignore)
    monkeypatch.setattr(metrics, "BLOCK_ENTRIES", 2 * len(scores))  # two columns a block
    for ignore_form in (sparse_ignore, SparseLabels.from_dense(ignore), ignore):
        report = multilabel_metrics(scores, sparse_targets, ignore_form)
        assert report.ap == pytest.approx(dense_report.ap, nan_ok=True, rel=1e-12)
        assert report.threshold == pytest.approx(dense_report.threshold, rel=1e-12)
        assert report.top3 == pytest.approx(dense_report.top3, rel=1e-12)
        thresholds, best = f1_optimal_thresholds(scores, sparse_targets, ignore_form)
        dense_thresholds, dense_best = f1_optimal_thresholds(scores, targets, ignore)
        assert torch.equal(thresholds, dense_thresholds) and torch.allclose(best, dense_best, equal_nan=True)
    valid = ~np.isnan(sklearn_ap(scores, targets, ignore))
    assert np.allclose(np.array(dense_report.ap)[valid], sklearn_ap(scores, targets, ignore)[valid])


def test_accumulator_at_9605_classes_keeps_labels_sparse_and_matches_sklearn():
    """Open Images' shape: few positives, most entries unknown; stored as O(labels), scored per class like sklearn."""
    rng = np.random.default_rng(0)
    n, c = 96, 9605
    targets = np.zeros((n, c), dtype=np.uint8)
    known = np.zeros((n, c), dtype=bool)
    for row in range(n):
        verified = rng.choice(200, 12, replace=False)  # 200 busy classes; the rest never verified
        known[row, verified] = True
        targets[row, verified[:5]] = 1
    scores = rng.random((n, c)).astype(np.float32)
    accumulator = MetricAccumulator([f"c{k}" for k in range(c)])
    for part in np.array_split(np.arange(n), 3):
        accumulator.update(torch.from_numpy(scores[part]), torch.from_numpy(targets[part]),
                           torch.from_numpy(~known[part]))
    assert sum(t.nbytes + i.nbytes for t, i in zip(accumulator._targets, accumulator._ignore)) < 20_000
    assert all(i.complement for i in accumulator._ignore)
    report = accumulator.compute()
    expected = sklearn_ap(scores.astype(np.float64), targets, ~known)
    assert np.array(report.ap) == pytest.approx(expected, nan_ok=True, rel=1e-9)
    assert report.mAP == pytest.approx(np.nanmean(expected), rel=1e-9)
    assert len(report.classes_without_positives) == int(np.isnan(expected).sum()) > 9000
    assert f"over the {int((~np.isnan(expected)).sum())} of 9605 classes with a positive" in report.format()
    assert "more" in report.format().splitlines()[-1]


def test_the_logged_report_says_how_many_classes_the_map_runs_over():
    scores, targets, ignore = random_case(1)
    targets[:, :2] = 0  # three classes without a positive (the last one already has none)
    logged = multilabel_metrics(scores, targets, classes=list("abcdefg")).as_dict()
    assert logged["num_classes_scored"] == 4 and logged["num_classes_without_positives"] == 3
    assert logged["classes_without_positives"] == ["a", "b", "g"]
    assert logged["mAP"] == pytest.approx(np.nanmean(sklearn_ap(scores, targets, ignore)), rel=1e-12)

"""Scoring: predictions, the metric table, paired bootstrap intervals, slices, the model card's data.

Every metric is one row of :data:`METRICS`: its task, which way is better, the values it can take,
and its scikit-learn definition (``Metric.compute``, the reference). Most also have a vectorised
numpy form (``Metric.fast``) that scores many row weightings at once: a bootstrap round is a
weighting of the test rows by how often each was drawn, and a slice one by 0 or 1. The gate runs
a thousand rounds on every run, and scikit-learn spends ~0.3 ms validating its inputs per call;
the tests pin each fast form to its scikit-learn reference.

A metric that is undefined on some rows (one class only, a constant target, a binary metric on
three classes) is left out of the result rather than reported as NaN: contracts refuse NaN.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from keel.contracts import (
    Curve,
    EvaluationReport,
    FeatureImportance,
    FeatureSpec,
    Interval,
    SliceMetrics,
)
from keel.errors import ParameterError

# Bootstrap rounds are scored in blocks of at most this many (round, row) cells: ~8 MB a matrix.
_BLOCK_CELLS = 1 << 20
_CURVE_POINTS = 200
_RESIDUAL_POINTS = 500
_CALIBRATION_BINS = 10
IMPORTANCE_SHUFFLES = 5  # shuffles of each (refined) feature
IMPORTANCE_REFINED = 20  # features given every shuffle: the model card shows this many
IMPORTANCE_SCREEN_CELLS = 200_000  # rows x features of the one-shuffle ranking of wide tables
IMPORTANCE_SCREEN_MIN_ROWS = 200


# -- predictions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Predictions:
    """One pass of a model over some rows, shared by the metrics, intervals, slices and curves.

    ``classes`` is the model's ``classes_`` order (the columns of ``proba``); it is empty for a
    regression model, which is how the task is told apart.
    """

    y: pd.Series
    pred: np.ndarray
    proba: np.ndarray | None = None
    classes: list[Any] = field(default_factory=list)

    @property
    def task(self) -> str:
        """``classification`` when the model has classes, else ``regression``."""
        return "classification" if self.classes else "regression"

    def take(self, rows: np.ndarray) -> Predictions:
        """The predictions of a subset of rows (integer positions or a boolean mask)."""
        rows = np.asarray(rows)
        return Predictions(
            self.y.iloc[rows].reset_index(drop=True),
            np.asarray(self.pred)[rows],
            None if self.proba is None else np.asarray(self.proba)[rows],
            list(self.classes),
        )


def predict(model: Any, frame: pd.DataFrame, spec: FeatureSpec) -> Predictions:
    """One pass of ``model`` over the rows of ``frame`` (``y`` indexed by position)."""
    return _predict_xy(model, frame[spec.features], frame[spec.target], spec.task)


def _predict_xy(model: Any, x: pd.DataFrame, y: pd.Series, task: str) -> Predictions:
    y = y.reset_index(drop=True)
    if task == "regression":
        return Predictions(y, np.asarray(model.predict(x)))
    classes = list(model.classes_)
    if not hasattr(model, "predict_proba"):
        return Predictions(y, np.asarray(model.predict(x)), None, classes)
    # A scikit-learn classifier's predict is the argmax of predict_proba: compute it once.
    proba = np.asarray(model.predict_proba(x))
    return Predictions(y, np.asarray(model.classes_)[proba.argmax(axis=1)], proba, classes)


# -- encoded predictions: what the fast forms read ----------------------------------------------
@dataclass
class _Encoded:
    """Predictions as numbers, computed once per call: class codes, floats, cached precomputation.

    Class codes index ``labels``: the model's classes first (code = column of ``proba``), then any
    true or predicted label the model does not know.
    """

    n: int
    classification: bool
    k: int = 0  # the model's classes
    n_labels: int = 0  # classes plus unknown labels
    known: bool = True  # every true label is one of the model's classes
    y_code: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.intp))
    pred_code: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.intp))
    proba: np.ndarray | None = None
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    pred: np.ndarray = field(default_factory=lambda: np.empty(0))
    cache: dict[str, Any] = field(default_factory=dict)
    #: per weighting: the last weight matrix and what was computed from it
    memo: dict[str, tuple[np.ndarray, Any]] = field(default_factory=dict)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def per_weights(self, key: str, w: np.ndarray, make: Callable[[], Any]) -> Any:
        last = self.memo.get(key)
        if last is None or last[0] is not w:
            last = self.memo[key] = (w, make())
        return last[1]


def _encode(p: Predictions) -> _Encoded:
    n = len(p.y)
    if not p.classes:
        return _Encoded(n=n, classification=False,
                        y=np.asarray(p.y, dtype=float), pred=np.asarray(p.pred, dtype=float))
    labels = list(p.classes)
    y_values, pred_values = np.asarray(p.y, dtype=object), np.asarray(p.pred, dtype=object)
    known = bool((pd.Index(labels).get_indexer(y_values) >= 0).all())
    for values in (y_values, pred_values):
        unknown = values[pd.Index(labels).get_indexer(values) < 0]
        labels += list(pd.unique(unknown))
    index = pd.Index(labels)
    proba = None if p.proba is None else np.asarray(p.proba, dtype=float)
    return _Encoded(
        n=n, classification=True, k=len(p.classes), n_labels=len(labels), known=known,
        y_code=index.get_indexer(y_values), pred_code=index.get_indexer(pred_values), proba=proba,
    )


def _ones(n: int) -> np.ndarray:
    return np.ones((1, n))


# -- fast forms: a weight matrix (weightings x rows) in, one value per weighting out (NaN: undefined)
def _weighted_mean(w: np.ndarray, per_row: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: np.ndarray = (w @ per_row) / total
    return result


def _class_counts(d: _Encoded, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted true, predicted and correct counts per label: each (weightings x labels)."""
    def make() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        eye = np.eye(d.n_labels)
        true_1, pred_1 = eye[d.y_code], eye[d.pred_code]
        return w @ true_1, w @ pred_1, w @ (true_1 * pred_1)
    counts: tuple[np.ndarray, np.ndarray, np.ndarray] = d.per_weights("counts", w, make)
    return counts


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """The quotient, 0 where ``bottom`` is 0: scikit-learn's ``zero_division=0``."""
    result: np.ndarray = np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)
    return result


def _fast_accuracy(d: _Encoded, w: np.ndarray) -> np.ndarray:
    correct = d.cached("correct", lambda: (d.y_code == d.pred_code).astype(float))
    return _weighted_mean(w, correct)


def _fast_balanced_accuracy(d: _Encoded, w: np.ndarray) -> np.ndarray:
    true, _, hit = _class_counts(d, w)
    present = true > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        result: np.ndarray = _ratio(hit, true).sum(axis=1) / present.sum(axis=1)
    return result


def _macro(part: str) -> Callable[[_Encoded, np.ndarray], np.ndarray]:
    def fast(d: _Encoded, w: np.ndarray) -> np.ndarray:
        true, predicted, hit = _class_counts(d, w)
        present = (true + predicted) > 0  # scikit-learn's labels: those in y or in pred
        per_label = {"precision": lambda: _ratio(hit, predicted),
                     "recall": lambda: _ratio(hit, true),
                     "f1": lambda: _ratio(2 * hit, true + predicted)}[part]()
        with np.errstate(invalid="ignore", divide="ignore"):
            result: np.ndarray = per_label.sum(axis=1) / present.sum(axis=1)
        return result
    return fast


def _binary(part: str) -> Callable[[_Encoded, np.ndarray], np.ndarray]:
    def fast(d: _Encoded, w: np.ndarray) -> np.ndarray:
        true, predicted, hit = (m[:, 1] for m in _class_counts(d, w))  # classes[1] is positive
        return {"precision": lambda: _ratio(hit, predicted),
                "recall": lambda: _ratio(hit, true),
                "f1": lambda: _ratio(2 * hit, true + predicted)}[part]()
    return fast


def _tie_groups(scores: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Row order by score, and where each run of tied scores starts (None when no ties)."""
    order = np.argsort(-scores if descending else scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order, (starts if len(starts) < len(scores) else None)


def _grouped(w: np.ndarray, positive: np.ndarray, order: np.ndarray,
             starts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Weight of positives and of negatives per tie group, in score order."""
    ordered = w[:, order]
    pos = ordered * positive[order]
    neg = ordered - pos
    if starts is not None:
        pos, neg = np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)
    return pos, neg


def _auc(d: _Encoded, w: np.ndarray, column: int) -> np.ndarray:
    """ROC AUC of one class against the rest: Mann-Whitney U, a tie counting one half."""
    positive, order, starts = d.cached(f"auc{column}", lambda: (
        (d.y_code == column).astype(float), *_tie_groups(_proba(d)[:, column], False)))
    pos, neg = _grouped(w, positive, order, starts)
    below = np.cumsum(neg, axis=1) - neg  # negatives scored lower than each group
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: np.ndarray = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    result[(n_pos == 0) | (n_neg == 0)] = np.nan
    return result


def _average_precision(d: _Encoded, w: np.ndarray, column: int) -> np.ndarray:
    """Average precision of one class: the precision at each distinct threshold, by recall gained."""
    positive, order, starts = d.cached(f"ap{column}", lambda: (
        (d.y_code == column).astype(float), *_tie_groups(_proba(d)[:, column], True)))
    pos, neg = _grouped(w, positive, order, starts)
    hits = np.cumsum(pos, axis=1)
    precision = _ratio(hits, hits + np.cumsum(neg, axis=1))
    n_pos = pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: np.ndarray = (pos * precision).sum(axis=1) / n_pos
    # with no negatives it would be 1 whatever the scores: undefined, as roc_auc is
    result[(n_pos == 0) | (neg.sum(axis=1) == 0)] = np.nan
    return result


def _proba(d: _Encoded) -> np.ndarray:
    assert d.proba is not None  # checked by _applies
    return d.proba


def _one_vs_rest(score: Callable[[_Encoded, np.ndarray, int], np.ndarray],
                 ) -> Callable[[_Encoded, np.ndarray], np.ndarray]:
    def fast(d: _Encoded, w: np.ndarray) -> np.ndarray:
        if d.k == 2:
            return score(d, w, 1)
        # macro average; NaN (undefined) as soon as one class is missing from the rows
        result: np.ndarray = np.mean([score(d, w, c) for c in range(d.k)], axis=0)
        return result
    return fast


def _fast_log_loss(d: _Encoded, w: np.ndarray) -> np.ndarray:
    def make() -> np.ndarray:
        proba = _proba(d)
        eps = np.finfo(proba.dtype).eps  # scikit-learn clips to [eps, 1 - eps]
        loss: np.ndarray = -np.log(np.clip(proba[np.arange(d.n), d.y_code], eps, 1 - eps))
        return loss
    return _weighted_mean(w, d.cached("log_loss", make))


def _fast_brier(d: _Encoded, w: np.ndarray) -> np.ndarray:
    def make() -> np.ndarray:
        proba = _proba(d)
        if d.k == 2:  # the positive class's squared error, in [0, 1]
            error: np.ndarray = ((d.y_code == 1) - proba[:, 1]) ** 2
            return error
        # multiclass: summed over classes, in [0, 2]
        summed: np.ndarray = ((np.eye(d.k)[d.y_code] - proba) ** 2).sum(axis=1)
        return summed
    return _weighted_mean(w, d.cached("brier", make))


def _fast_rmse(d: _Encoded, w: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.sqrt(_weighted_mean(w, d.cached("sq", lambda: (d.y - d.pred) ** 2)))
    return result


def _fast_mae(d: _Encoded, w: np.ndarray) -> np.ndarray:
    return _weighted_mean(w, d.cached("abs", lambda: np.abs(d.y - d.pred)))


def _fast_r2(d: _Encoded, w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1)
    residual = w @ d.cached("sq", lambda: (d.y - d.pred) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w @ d.y) / total
        spread = (w * (d.y[None, :] - mean[:, None]) ** 2).sum(axis=1)
        result: np.ndarray = 1 - residual / spread
    drawn = w > 0  # r2 is undefined when every true value is the same
    constant = np.where(drawn, d.y, np.inf).min(axis=1) == np.where(drawn, d.y, -np.inf).max(axis=1)
    result[constant] = np.nan
    return result


def _fast_mape(d: _Encoded, w: np.ndarray) -> np.ndarray:
    nonzero = d.cached("nonzero", lambda: (d.y != 0).astype(float))
    ape = d.cached("ape", lambda: np.abs(d.y - d.pred) / np.maximum(
        np.abs(d.y), np.finfo(float).eps) * nonzero)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: np.ndarray = (w @ ape) / (w @ nonzero)
    return result


# -- the scikit-learn references ----------------------------------------------------------------
def _quiet(compute: Callable[[Predictions], float]) -> Callable[[Predictions], float]:
    """Run a scikit-learn metric without its warnings about ill-defined values (they are handled)."""
    def run(p: Predictions) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(compute(p))
    return run


def _every_class(p: Predictions) -> bool:
    return set(pd.unique(np.asarray(p.y, dtype=object))) >= set(p.classes)


def _codes(p: Predictions) -> np.ndarray:
    """True labels as column numbers of ``proba``: scikit-learn wants labels in sorted order."""
    codes: np.ndarray = pd.Index(p.classes).get_indexer(np.asarray(p.y, dtype=object))
    return codes


def _ref_roc_auc(p: Predictions) -> float:
    from sklearn.metrics import roc_auc_score

    assert p.proba is not None
    if not _every_class(p):
        return math.nan
    if len(p.classes) == 2:
        return float(roc_auc_score(np.asarray(p.y == p.classes[1]), p.proba[:, 1]))
    return float(roc_auc_score(_codes(p), p.proba, multi_class="ovr",
                               labels=range(len(p.classes))))


def _ref_pr_auc(p: Predictions) -> float:
    from sklearn.metrics import average_precision_score
    from sklearn.preprocessing import label_binarize

    assert p.proba is not None
    if not _every_class(p):
        return math.nan
    if len(p.classes) == 2:
        return float(average_precision_score(np.asarray(p.y == p.classes[1]), p.proba[:, 1]))
    return float(average_precision_score(
        label_binarize(_codes(p), classes=range(len(p.classes))), p.proba, average="macro"))


def _ref_brier(p: Predictions) -> float:
    from sklearn.metrics import brier_score_loss

    assert p.proba is not None
    if len(p.classes) == 2:
        return float(brier_score_loss(p.y, p.proba[:, 1], pos_label=p.classes[1]))
    return float(brier_score_loss(_codes(p), p.proba, labels=range(len(p.classes))))


def _ref_r2(p: Predictions) -> float:
    from sklearn.metrics import r2_score

    # force_finite=False: a constant true value gives NaN or -inf (undefined), not 0 or 1
    return float(r2_score(p.y, p.pred, force_finite=False))


def _ref_mape(p: Predictions) -> float:
    from sklearn.metrics import mean_absolute_percentage_error

    y = np.asarray(p.y, dtype=float)
    nonzero = y != 0  # guard against zeros: a zero true value has no percentage error
    if not nonzero.any():
        return math.nan
    return float(mean_absolute_percentage_error(y[nonzero], np.asarray(p.pred)[nonzero]))


def _sk(name: str, **kwargs: Any) -> Callable[[Predictions], float]:
    """A scikit-learn metric of (y, pred), with ``kwargs``; binary ones with classes[1] positive."""
    def compute(p: Predictions) -> float:
        import sklearn.metrics

        extra = dict(kwargs)
        if extra.get("average") == "binary":
            extra["pos_label"] = p.classes[1]
        return float(getattr(sklearn.metrics, name)(p.y, p.pred, **extra))
    return compute


def _ref_log_loss(p: Predictions) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(_codes(p), p.proba, labels=range(len(p.classes))))


# -- the table ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """One metric: its task, which way is better, the values it can take, how it is computed.

    ``compute`` is the scikit-learn definition, for predictions it ``applies`` to (NaN when
    undefined on the rows); ``fast``, when present, computes the same for a matrix of row
    weights at once (bootstrap rounds, slices).
    """

    name: str
    task: str  # "classification" or "regression"
    higher_is_better: bool
    low: float
    high: float
    needs_proba: bool
    help: str
    compute: Callable[[Predictions], float] = field(repr=False, compare=False)
    fast: Callable[[_Encoded, np.ndarray], np.ndarray] | None = field(
        default=None, repr=False, compare=False)
    binary_only: bool = False

    def applies(self, p: Predictions) -> bool:
        """Whether this metric can be computed for these predictions at all (task, classes)."""
        return _applies(self, p.task, len(p.classes), p.proba is not None,
                        None if not p.classes else _every_label_known(p))


def _every_label_known(p: Predictions) -> bool:
    return bool((pd.Index(p.classes).get_indexer(np.asarray(p.y, dtype=object)) >= 0).all())


def _applies(m: Metric, task: str, k: int, has_proba: bool, known: bool | None) -> bool:
    if m.task != task or (m.needs_proba and not has_proba) or (m.binary_only and k != 2):
        return False
    # a probability or a positive class for a true label the model does not know: undefined
    return not (m.needs_proba or m.binary_only) or bool(known)


def _table() -> dict[str, Metric]:
    c, r, inf = "classification", "regression", math.inf
    zero = {"zero_division": 0}
    return {m.name: m for m in (
        Metric("accuracy", c, True, 0.0, 1.0, False, "share of rows predicted right",
               _sk("accuracy_score"), _fast_accuracy),
        Metric("balanced_accuracy", c, True, 0.0, 1.0, False,
               "mean recall over the classes present in the true values",
               _sk("balanced_accuracy_score"), _fast_balanced_accuracy),
        Metric("precision_macro", c, True, 0.0, 1.0, False,
               "mean precision over classes (a class never predicted counts 0)",
               _sk("precision_score", average="macro", **zero), _macro("precision")),
        Metric("recall_macro", c, True, 0.0, 1.0, False, "mean recall over classes",
               _sk("recall_score", average="macro", **zero), _macro("recall")),
        Metric("f1_macro", c, True, 0.0, 1.0, False, "mean F1 over classes",
               _sk("f1_score", average="macro", **zero), _macro("f1")),
        Metric("precision", c, True, 0.0, 1.0, False,
               "binary: share of predicted positives (classes[1]) that are positive",
               _sk("precision_score", average="binary", **zero), _binary("precision"),
               binary_only=True),
        Metric("recall", c, True, 0.0, 1.0, False,
               "binary: share of positives (classes[1]) predicted positive",
               _sk("recall_score", average="binary", **zero), _binary("recall"),
               binary_only=True),
        Metric("f1", c, True, 0.0, 1.0, False, "binary: F1 of the positive class (classes[1])",
               _sk("f1_score", average="binary", **zero), _binary("f1"), binary_only=True),
        Metric("roc_auc", c, True, 0.0, 1.0, True,
               "area under the ROC curve (multiclass: one-vs-rest macro; every class needed)",
               _ref_roc_auc, _one_vs_rest(_auc)),
        Metric("pr_auc", c, True, 0.0, 1.0, True,
               "average precision (multiclass: one-vs-rest macro; every class needed)",
               _ref_pr_auc, _one_vs_rest(_average_precision)),
        Metric("log_loss", c, False, 0.0, inf, True, "cross-entropy of the predicted probabilities",
               _ref_log_loss, _fast_log_loss),
        Metric("brier", c, False, 0.0, 2.0, True,
               "mean squared error of the probabilities (binary: in [0, 1]; multiclass: [0, 2])",
               _ref_brier, _fast_brier),
        Metric("rmse", r, False, 0.0, inf, False, "root mean squared error",
               _sk("root_mean_squared_error"), _fast_rmse),
        Metric("mae", r, False, 0.0, inf, False, "mean absolute error",
               _sk("mean_absolute_error"), _fast_mae),
        Metric("r2", r, True, -inf, 1.0, False,
               "share of the target's variance explained (undefined for a constant target)",
               _ref_r2, _fast_r2),
        Metric("mape", r, False, 0.0, inf, False,
               "mean absolute percentage error as a fraction, over rows whose true value is not 0",
               _ref_mape, _fast_mape),
    )}


#: Every metric Keel computes, in the order results list them.
METRICS: dict[str, Metric] = {name: replace(m, compute=_quiet(m.compute))
                              for name, m in _table().items()}
TASK_METRICS: dict[str, tuple[str, ...]] = {
    task: tuple(name for name, m in METRICS.items() if m.task == task)
    for task in ("classification", "regression")
}
HIGHER_IS_BETTER: set[str] = {name for name, m in METRICS.items() if m.higher_is_better}
LOWER_IS_BETTER: set[str] = {name for name, m in METRICS.items() if not m.higher_is_better}
#: The values each metric can take: a threshold outside can never pass.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    name: (m.low, m.high) for name, m in METRICS.items()
}


def primary_metric(task: str, n_classes: int) -> str:
    """The metric of the default rule: roc_auc (binary), f1_macro (multiclass), rmse."""
    if task == "regression":
        return "rmse"
    return "roc_auc" if n_classes == 2 else "f1_macro"


def _metric_names(names: Iterable[str] | None, task: str) -> list[str]:
    if names is None:
        return list(TASK_METRICS.get(task, ()))
    chosen = list(dict.fromkeys(names))
    unknown = [name for name in chosen if name not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metric(s) {', '.join(map(repr, unknown))}; expected one of "
                         f"{', '.join(METRICS)}.")
    return chosen


def _values(m: Metric, p: Predictions, d: _Encoded, w: np.ndarray) -> np.ndarray:
    """``m`` under each weighting (row of ``w``): NaN where undefined."""
    if d.n == 0 or not _applies(m, p.task, d.k, d.proba is not None,
                                d.known if d.classification else None):
        return np.full(len(w), np.nan)
    if m.fast is not None:
        return m.fast(d, w)
    # no fast form: scikit-learn on each weighting's rows (a weight is how often a row is drawn)
    positions = np.arange(d.n)
    return np.array([m.compute(p.take(np.repeat(positions, row.astype(np.intp)))) for row in w])


def metrics_of(p: Predictions, names: Iterable[str] | None = None) -> dict[str, float]:
    """The task's metrics (or just ``names``) on these rows, in table order.

    A metric undefined here is left out: NaN or infinite, a binary metric with more classes,
    roc_auc or pr_auc with a class missing from the rows, r2 on a constant target, mape when every
    true value is 0, a probability metric for a model without ``predict_proba`` or a true label
    it does not know. Precision, recall and F1 count a class with no predicted (or true) rows as
    0 (scikit-learn's ``zero_division=0``) rather than leaving the metric out.
    """
    wanted = _metric_names(names, p.task)
    d = _encode(p)
    ones = _ones(d.n)
    result = {}
    for name in sorted(wanted, key=list(METRICS).index):
        value = float(_values(METRICS[name], p, d, ones)[0])
        if math.isfinite(value):
            result[name] = value
    return result


def per_class(p: Predictions) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class (``{}`` for regression).

    Classes are those of the model, then any true label it does not know; a class never predicted
    (or absent from the rows) has precision (recall) 0.
    """
    from sklearn.metrics import precision_recall_fscore_support

    if not p.classes:
        return {}
    labels = list(p.classes)
    labels += [v for v in pd.unique(np.asarray(p.y, dtype=object)) if v not in set(labels)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        precision, recall, f1, support = precision_recall_fscore_support(
            p.y, p.pred, labels=labels, zero_division=0)
    return {str(label): {"precision": float(precision[i]), "recall": float(recall[i]),
                         "f1": float(f1[i]), "support": float(support[i])}
            for i, label in enumerate(labels)}


# -- paired bootstrap ---------------------------------------------------------------------------
def paired_bootstrap(
    candidate: Predictions,
    baseline: Predictions,
    metrics: Sequence[str],
    rounds: int,
    level: float,
    seed: int,
) -> dict[str, Interval]:
    """Percentile intervals of candidate minus baseline, both scored on the same resampled rows.

    Pairing removes the noise both models share (hard rows are hard for both), so an interval
    that excludes 0 is a difference the test rows support. Rounds where a metric is undefined
    (one class drawn) are skipped; with fewer than half usable, that metric has no interval.
    The same seed gives the same intervals.
    """
    n = len(candidate.y)
    if len(baseline.y) != n:
        raise ValueError(f"candidate and baseline must be predictions of the same rows: "
                         f"{n} and {len(baseline.y)} rows.")
    if not candidate.y.reset_index(drop=True).equals(baseline.y.reset_index(drop=True)):
        raise ValueError("candidate and baseline must be predictions of the same rows, in the "
                         "same order: their true values differ.")
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer. Got {rounds!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1. Got {level!r}.")
    names = _metric_names(metrics, candidate.task)
    if n == 0 or not names:
        return {}
    encoded = (_encode(candidate), _encode(baseline))
    differences = {name: np.empty(rounds) for name in names}
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n)
    for start in range(0, rounds, block):
        size = min(block, rounds - start)
        drawn = rng.integers(0, n, size=(size, n))
        # how often each row was drawn in each round: the round as a weighting of the rows
        offsets = (np.arange(size) * n)[:, None]
        w = np.bincount((drawn + offsets).ravel(), minlength=size * n).reshape(size, n)
        w = w.astype(float)
        for name in names:
            m = METRICS[name]
            differences[name][start:start + size] = (
                _values(m, candidate, encoded[0], w) - _values(m, baseline, encoded[1], w))
    result = {}
    for name in names:
        usable = differences[name][np.isfinite(differences[name])]
        if len(usable) == 0 or 2 * len(usable) < rounds:
            continue
        low, high = np.percentile(usable, [50 * (1 - level), 50 * (1 + level)])
        result[name] = Interval(low=float(low), high=float(high), level=float(level),
                                rounds=len(usable))
    return result


# -- slices -------------------------------------------------------------------------------------
MISSING = "(missing)"
OTHER = "(other)"


def _text(value: Any) -> str:
    """A slice value as text: numbers with up to 4 significant digits, integers whole."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    return str(value)


def _slices_of(column: pd.Series, bins: int, max_values: int) -> list[tuple[str, np.ndarray]]:
    """(label, row mask) of each slice of one column, non-empty, in display order."""
    missing = column.isna().to_numpy()
    groups: list[tuple[str, np.ndarray]] = []
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if numeric:
        values = column.to_numpy(dtype=float, na_value=np.nan)
        present = values[~missing]
        distinct = np.unique(present)
        if len(distinct) > bins:
            # quantile edges that are values of these rows, so that no bin is empty
            edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1),
                                          method="inverted_cdf"))
            which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
            for i in range(len(edges) - 1):
                close = "]" if i == len(edges) - 2 else ")"
                label = f"[{_text(edges[i])}, {_text(edges[i + 1])}{close}"
                groups.append((label, (which == i) & ~missing))
        else:
            groups += [(_text(v), (values == v) & ~missing) for v in distinct]
    else:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        texts = pd.Series([_text(v) for v in uniques], dtype=object)
        shown = pd.Series(texts.to_numpy()[codes], dtype=object).where(~missing, None)
        ranked = sorted(shown[~missing].value_counts().items(),
                        key=lambda item: (-item[1], str(item[0])))
        kept = [str(label) for label, _ in ranked[:max_values]]
        groups += [(label, (shown == label).to_numpy()) for label in kept]
        groups.append((OTHER, ~missing & ~shown.isin(kept).to_numpy()))
    groups.append((MISSING, missing))
    return [(label, mask) for label, mask in groups if mask.any()]


def _listing(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(repr(str(name)) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def slice_metrics(
    frame: pd.DataFrame,
    candidate: Predictions,
    baseline: Predictions | None,
    columns: Sequence[str],
    metrics: Sequence[str],
    bins: int = 4,
    max_values: int = 20,
) -> list[SliceMetrics]:
    """The metrics of each value (or quantile bin) of ``columns``, for candidate and baseline.

    ``frame`` holds the predictions' rows in their order, with any columns (the model's inputs or
    not). Text, categorical and bool columns get a slice per value: the ``max_values`` most
    frequent, the rest as "(other)". Numeric columns with more than ``bins`` distinct values get
    quantile bins of these rows ("[a, b)", the last "[a, b]"); missing values are "(missing)".
    A metric undefined on a slice (one class only) is left out of it.
    """
    unknown = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if unknown:
        raise ParameterError(
            f"The 'slices' parameter of evaluate must name columns of the test rows. Got "
            f"{_listing(unknown, 5)}; the columns are {_listing([str(c) for c in frame.columns])}.",
            stage="evaluate",
        )
    n = len(candidate.y)
    if len(frame) != n or (baseline is not None and len(baseline.y) != n):
        raise ValueError("frame, candidate and baseline must hold the same rows.")
    names = _metric_names(metrics, candidate.task)
    scored = [(candidate, _encode(candidate))]
    if baseline is not None:
        scored.append((baseline, _encode(baseline)))
    result = []
    for column in dict.fromkeys(columns):
        groups = _slices_of(frame[column], bins, max_values)
        block = max(1, _BLOCK_CELLS // max(n, 1))
        for start in range(0, len(groups), block):
            part = groups[start:start + block]
            w = np.stack([mask for _, mask in part]).astype(float)  # a slice: weights 0 or 1
            values = [{name: _values(METRICS[name], p, d, w) for name in names}
                      for p, d in scored]
            for i, (label, mask) in enumerate(part):
                found = [{name: float(v[i]) for name, v in per.items() if math.isfinite(v[i])}
                         for per in values]
                result.append(SliceMetrics(column=str(column), value=label, rows=int(mask.sum()),
                                           candidate=found[0],
                                           baseline=found[1] if baseline is not None else None))
    return result


# -- the model card's data ----------------------------------------------------------------------
def _curve(x: np.ndarray, y: np.ndarray, thresholds: np.ndarray | None = None,
           points: int = _CURVE_POINTS) -> Curve:
    """At most ``points`` evenly spaced points, both ends kept; points with NaN or inf dropped."""
    columns = [np.asarray(x, dtype=float), np.asarray(y, dtype=float)]
    if thresholds is not None:
        columns.append(np.asarray(thresholds, dtype=float))
    finite = np.logical_and.reduce([np.isfinite(c) for c in columns])
    columns = [c[finite] for c in columns]
    m = len(columns[0])
    keep = np.unique(np.linspace(0, m - 1, min(m, points)).round().astype(int))
    kept = [c[keep].tolist() for c in columns]
    return Curve(x=kept[0], y=kept[1], thresholds=kept[2] if thresholds is not None else [])


def _binary_curves(p: Predictions) -> dict[str, Curve]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    assert p.proba is not None
    positive = np.asarray(p.y == p.classes[1])
    score = np.asarray(p.proba[:, 1], dtype=float)
    curves = {}
    if positive.any() and not positive.all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fpr, tpr, roc_thresholds = roc_curve(positive, score)
            precision, recall, pr_thresholds = precision_recall_curve(positive, score)
        curves["roc"] = _curve(fpr, tpr, np.clip(roc_thresholds, 0.0, 1.0))
        # the last point (recall 0, precision 1) lies above every score: threshold 1
        curves["pr"] = _curve(recall, precision, np.r_[np.clip(pr_thresholds, 0.0, 1.0), 1.0])
    which = np.minimum((np.clip(score, 0, 1) * _CALIBRATION_BINS).astype(int),
                       _CALIBRATION_BINS - 1)
    rows = np.bincount(which, minlength=_CALIBRATION_BINS)
    used = rows > 0
    predicted = np.bincount(which, weights=score, minlength=_CALIBRATION_BINS)[used] / rows[used]
    observed = np.bincount(which, weights=positive.astype(float),
                           minlength=_CALIBRATION_BINS)[used] / rows[used]
    curves["calibration"] = _curve(predicted, observed)
    return curves


def _sample(n: int, at_most: int, seed: int) -> np.ndarray:
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=at_most, replace=False))


def _importance(model: Any, frame: pd.DataFrame, spec: FeatureSpec, primary: str, seed: int,
                max_rows: int) -> tuple[list[FeatureImportance], int, int]:
    """Permutation importance on a sample: how much the primary metric worsens per shuffled input.

    Each shuffle is one pass of the whole pipeline over the sample, so a wide table would cost
    features x shuffles passes (320 columns: 1,600 passes, over a minute). Beyond
    :data:`IMPORTANCE_REFINED` features, every feature is first ranked by one shuffle of fewer
    rows (about :data:`IMPORTANCE_SCREEN_CELLS` row-passes in all), and only the top ones get
    :data:`IMPORTANCE_SHUFFLES` shuffles of the whole sample. Returns the importances (largest
    first), the sample's rows and the screening's rows (0: no screening).
    """
    if max_rows < 1 or len(frame) == 0:
        return [], 0, 0
    rows = frame.iloc[_sample(len(frame), max_rows, seed)]
    x = rows[spec.features].reset_index(drop=True)
    y = rows[spec.target].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    features = [str(f) for f in spec.features]
    screen_rows = 0
    if len(features) > IMPORTANCE_REFINED:
        # the sample is in random order already, so its first rows are a random subsample
        screen_rows = min(len(x), max(IMPORTANCE_SCREEN_MIN_ROWS,
                                      IMPORTANCE_SCREEN_CELLS // len(features)))
        screened = _shuffle_drops(model, x.iloc[:screen_rows], y.iloc[:screen_rows], features,
                                  1, primary, spec.task, rng)
        order = sorted(features, key=lambda f: -_finite_mean(screened[f]))
        refined = _shuffle_drops(model, x, y, order[:IMPORTANCE_REFINED], IMPORTANCE_SHUFFLES,
                                 primary, spec.task, rng)
        drops = {**{f: screened[f] for f in order[IMPORTANCE_REFINED:]}, **refined}
    else:
        drops = _shuffle_drops(model, x, y, features, IMPORTANCE_SHUFFLES, primary, spec.task, rng)
    entries = [FeatureImportance(feature=f, mean=float(np.mean(d)), std=float(np.std(d)),
                                 shuffles=len(d))
               for f, d in drops.items() if np.isfinite(d).all()]
    # refined features first: a screened one is never ranked above them on one noisy shuffle
    entries.sort(key=lambda e: (e.shuffles < IMPORTANCE_SHUFFLES, -e.mean, e.feature))
    return entries, len(x), screen_rows


def _finite_mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if np.isfinite(values).all() else -math.inf


def _shuffle_drops(model: Any, x: pd.DataFrame, y: pd.Series, features: Sequence[str],
                   shuffles: int, primary: str, task: str,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per feature, the primary metric's worsening for each of ``shuffles`` shuffles of its rows.

    A larger-is-better metric drops; an error metric rises: both come out positive when the
    feature matters.
    """
    sign = 1.0 if METRICS[primary].higher_is_better else -1.0

    def score(frame: pd.DataFrame) -> float:
        return sign * metrics_of(_predict_xy(model, frame, y, task), [primary]).get(
            primary, math.nan)

    base = score(x)
    shuffled = x.copy()
    drops: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for feature in features:
            column = x[feature]
            values = np.empty(shuffles)
            for i in range(shuffles):
                # ExtensionArray.take keeps the column's dtype (categories, nullable numbers)
                shuffled[feature] = pd.Series(column.array.take(rng.permutation(len(x))),
                                              index=x.index, name=feature)
                values[i] = base - score(shuffled)
            shuffled[feature] = column
            drops[feature] = values
    return drops


def evaluation_report(
    model: Any,
    frame: pd.DataFrame,
    spec: FeatureSpec,
    p: Predictions,
    primary: str,
    seed: int,
    max_rows: int = 2000,
) -> EvaluationReport:
    """What the model card plots: confusion matrix and curves, and permutation importance.

    Binary: ROC and precision-recall curves (at most 200 points each) and a calibration curve
    (10 equal-width bins of the positive class's probability). Regression: residuals of a seeded
    sample of at most 500 rows. Importance shuffles each input column of a seeded sample of at
    most ``max_rows`` rows of ``frame`` and reports how much the primary metric worsens.
    """
    from sklearn.metrics import confusion_matrix

    if primary not in METRICS:
        raise ValueError(f"Unknown metric {primary!r}; expected one of {', '.join(METRICS)}.")
    labels: list[str] = []
    matrix = None
    curves: dict[str, Curve] = {}
    if p.classes:
        labels = [str(c) for c in p.classes]
        matrix = [[int(v) for v in row]
                  for row in confusion_matrix(p.y, p.pred, labels=p.classes).tolist()]
        if len(p.classes) == 2 and p.proba is not None and _every_label_known(p):
            curves = _binary_curves(p)
    elif len(p.y):
        rows = _sample(len(p.y), _RESIDUAL_POINTS, seed)
        predicted = np.asarray(p.pred, dtype=float)[rows]
        actual = np.asarray(p.y, dtype=float)[rows]
        curves["residuals"] = _curve(predicted, actual - predicted, points=_RESIDUAL_POINTS)
    importance, used, screened = _importance(model, frame, spec, primary, seed, max_rows)
    return EvaluationReport(task=spec.task, primary_metric=primary, labels=labels,
                            confusion_matrix=matrix, curves=curves, importance=importance,
                            importance_rows=used, importance_screen_rows=screened)

"""Two versions side by side (``keel models diff``): what changed, and each field's pair.

Works on any manifest the registry reads, those of Keel 0.1.0 included: what a version did not
record (split rule, search, comparison) is None on its side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keel.contracts import Check, Decision, Manifest, SplitRule

ARROW = "->"
ABSENT = "(absent)"


def _num(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def spelled_value(value: Any) -> str:
    """A parameter value as ``--param`` would spell it: none, true, numbers, text."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def spelled(params: dict[str, Any]) -> str:
    """Parameters as ``--param`` would spell them, ``defaults`` when none were set."""
    return " ".join(f"{k}={spelled_value(v)}" for k, v in sorted(params.items())) or "defaults"


def searched(summary: dict[str, Any] | None) -> str:
    """One phrase for a version's search: method, trials, metric and the best parameters."""
    if summary is None:
        return "none"
    return (f"{summary['method']} search, {summary['trials']} trials on {summary['metric']} "
            f"(best {spelled(summary['best_params'])}, {_num(summary['best_score'])})")


def _brief(value: Any, width: int = 40) -> str:
    """A value for the one-line list of changes: long ones (a list of flags) keep their start."""
    text = spelled_value(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _pair(a: Any, b: Any) -> dict[str, Any]:
    return {"a": a, "b": b, "changed": a != b}


def _added_removed(a: Sequence[str], b: Sequence[str]) -> tuple[list[str], list[str]]:
    """Names in ``b`` but not ``a`` and in ``a`` but not ``b``, each in its list's order."""
    return [x for x in b if x not in a], [x for x in a if x not in b]


def describe_split(rule: SplitRule | None) -> str:
    """One phrase for a split rule; versions before schema 3 did not record theirs."""
    if rule is None:
        return "not recorded"
    if rule.method == "time":
        return f"time on {rule.columns[0]} from {rule.cutoff} (test_size {rule.test_size:g})"
    on = (f"key {', '.join(rule.columns)}" if rule.keyed else f"{len(rule.columns)} columns")
    return f"hash of {on} (test_size {rule.test_size:g})"


def check_text(check: Check) -> str:
    """``metric check [slice]: candidate vs required R -> pass|fail``, as the summary prints it."""
    where = f" [{check.slice}]" if check.slice else ""
    verdict = "pass" if check.passed else "fail"
    return (f"{check.metric} {check.check}{where}: {_num(check.candidate)} vs required "
            f"{_num(check.required)} {ARROW} {verdict}")


def decision_status(decision: Decision) -> str:
    """``override`` (promoted whatever the checks said), ``passed`` or ``rejected``."""
    if decision.override is not None:
        return "override"
    return "passed" if decision.passed else "rejected"


def decision_summary(decision: Decision) -> dict[str, Any]:
    """A decision record as ``diff`` shows it: status, and the reasons in a few sentences."""
    failed = [check_text(c) for c in decision.checks if not c.passed]
    reasons: list[str] = []
    if decision.override is not None:
        reasons.append(f"override: {decision.override.reason}")
        reasons += failed or ["its checks passed"]
    elif not decision.passed:
        reasons += failed
    elif decision.first_run:
        reasons.append("first model: the change thresholds did not apply")
    else:
        against = f" against version {decision.baseline.version}" if decision.baseline else ""
        reasons.append(f"passed {len(decision.checks)} check(s){against}")
    return {
        "status": decision_status(decision),
        "reasons": reasons,
        "override_reason": decision.override.reason if decision.override else None,
        "checks_passed": all(c.passed for c in decision.checks),
        "first_run": decision.first_run,
        "notes": list(decision.notes),
    }


def _search_summary(manifest: Manifest) -> dict[str, Any] | None:
    search = manifest.training.search
    if search is None:
        return None
    best = search.candidates[search.best]
    return {"method": search.method, "metric": search.metric, "trials": len(search.candidates),
            "best_params": dict(best.params), "best_score": best.score}


def _same_rows(a: Manifest, b: Manifest) -> dict[str, Any] | None:
    """Both versions scored on the same rows: the newer one's gate re-scored the other, if so."""
    for old, new in ((a, b), (b, a)):
        baseline = new.baseline
        if baseline is None or baseline.version != old.version or baseline.metrics is None:
            continue
        comparison = new.decision.comparison
        new_metrics = comparison.candidate if comparison is not None else new.metrics
        rows = comparison.rows if comparison is not None else new.decision.test_rows
        scores = {old.version: baseline.metrics, new.version: new_metrics}
        caveat = None if comparison is not None else (
            f"version {new.version}'s gate did not record which test rows version "
            f"{old.version} trained on (a version before schema 3), so some may be counted: "
            f"version {old.version}'s numbers may be optimistic")
        return {"scored_by": new.version, "rows": rows, "a": scores[a.version],
                "b": scores[b.version], "caveat": caveat}
    return None


def diff_manifests(a: Manifest, b: Manifest) -> dict[str, Any]:
    """Two versions side by side (plain JSON types), and a short list of what changed, A to B.

    Fields a version does not record (written by an older Keel) are None.
    """
    changes: list[str] = []
    da, db = a.data, b.data
    cols_added, cols_removed = _added_removed(da.columns, db.columns)
    if da.data_version != db.data_version:
        rows = (f"{da.rows} {ARROW} {db.rows} rows" if da.rows != db.rows else
                f"{db.rows} rows in both")
        changes.append(f"data: {rows} (new data version)")
    if da.source != db.source:
        changes.append(f"source: {da.source} {ARROW} {db.source}")
    if cols_added or cols_removed:
        changes.append("columns: " + "; ".join(
            part for part in (f"added {', '.join(cols_added)}" if cols_added else "",
                              f"removed {', '.join(cols_removed)}" if cols_removed else "")
            if part))
    for label, old, new in (("target", a.target, b.target), ("task", a.task, b.task)):
        if old != new:
            changes.append(f"{label}: {old} {ARROW} {new}")
    if a.split != b.split:
        changes.append(f"split: {describe_split(a.split)} {ARROW} {describe_split(b.split)}")

    ta, tb = a.training, b.training
    if ta.estimator != tb.estimator:
        changes.append(f"estimator: {ta.estimator} {ARROW} {tb.estimator}")
    if ta.encoding != tb.encoding:
        changes.append(f"encoding: {ta.encoding} {ARROW} {tb.encoding}")
    params: dict[str, dict[str, Any]] = {}
    if ta.estimator_class == tb.estimator_class:  # the same constructor: compare every value
        for name in sorted(set(ta.effective_params) | set(tb.effective_params)):
            old_v = ta.effective_params.get(name, ABSENT)
            new_v = tb.effective_params.get(name, ABSENT)
            if old_v != new_v:
                params[name] = {"a": old_v, "b": new_v}
        if params:
            changes.append("params: " + ", ".join(
                f"{name} {_brief(p['a'])} {ARROW} {_brief(p['b'])}" for name, p in params.items()))
    elif a.hyperparameters != b.hyperparameters:
        changes.append(f"params: {spelled(a.hyperparameters)} {ARROW} "
                       f"{spelled(b.hyperparameters)}")
    search = _pair(_search_summary(a), _search_summary(b))
    if search["changed"]:
        changes.append(f"search: {searched(search['a'])} {ARROW} {searched(search['b'])}")

    fa, fb = a.features, b.features
    num_added, num_removed = _added_removed(fa.numeric, fb.numeric)
    cat_added, cat_removed = _added_removed(fa.categorical, fb.categorical)
    feature_parts = [f"added {', '.join(num_added + cat_added)}" if num_added + cat_added else "",
                     f"removed {', '.join(num_removed + cat_removed)}"
                     if num_removed + cat_removed else ""]
    if any(feature_parts):
        changes.append("features: " + "; ".join(p for p in feature_parts if p))

    metrics: dict[str, dict[str, Any]] = {}
    for name in list(a.metrics) + [m for m in b.metrics if m not in a.metrics]:
        old_m, new_m = a.metrics.get(name), b.metrics.get(name)
        change = None if old_m is None or new_m is None else new_m - old_m
        metrics[name] = {"a": old_m, "b": new_m, "change": change}
    gated = [m for m in metrics if m in a.decision.thresholds or m in b.decision.thresholds]
    for name in gated or list(metrics):
        entry = metrics[name]
        if entry["a"] != entry["b"]:
            delta = "" if entry["change"] is None else f" ({entry['change']:+.4f})"
            changes.append(f"{name} {_num(entry['a'])} {ARROW} {_num(entry['b'])}{delta}")

    decision = {"a": decision_summary(a.decision), "b": decision_summary(b.decision)}
    if decision["a"]["status"] != decision["b"]["status"]:
        changes.append(f"decision: {decision['a']['status']} {ARROW} {decision['b']['status']}")
    ea, eb = a.environment, b.environment
    for label, old_e, new_e in (("keel", ea.keel, eb.keel), ("git commit", ea.git_commit[:12],
                                                           eb.git_commit[:12]),
                                ("scikit-learn", ea.scikit_learn, eb.scikit_learn),
                                ("python", ea.python, eb.python)):
        if old_e != new_e:
            changes.append(f"{label}: {old_e or 'unknown'} {ARROW} {new_e or 'unknown'}")
    images = {stage: _pair(ea.images.get(stage), eb.images.get(stage))
              for stage in list(ea.images) + [s for s in eb.images if s not in ea.images]}
    changed_images = [stage for stage, pair in images.items() if pair["changed"]]
    if changed_images:
        changes.append(f"images: {len(changed_images)} changed ({', '.join(changed_images)})")

    return {
        "model": b.model,
        "a": {"version": a.version, "registered_at": a.registered_at,
              "schema_version": a.schema_version},
        "b": {"version": b.version, "registered_at": b.registered_at,
              "schema_version": b.schema_version},
        "same_version": a.version == b.version,
        "changes": changes,
        "data": {
            "data_version": _pair(da.data_version, db.data_version),
            "rows": _pair(da.rows, db.rows),
            "rows_used": _pair(da.rows_used, db.rows_used),
            "source": _pair(da.source, db.source),
            "format": _pair(da.format, db.format),
            "columns_added": cols_added,
            "columns_removed": cols_removed,
        },
        "target": _pair(a.target, b.target),
        "task": _pair(a.task, b.task),
        "split": _pair(a.split.to_dict() if a.split else None,
                       b.split.to_dict() if b.split else None),
        "estimator": _pair(ta.estimator, tb.estimator),
        "estimator_class": _pair(ta.estimator_class, tb.estimator_class),
        "encoding": _pair(ta.encoding, tb.encoding),
        "hyperparameters": _pair(dict(a.hyperparameters), dict(b.hyperparameters)),
        "params_changed": params,
        "search": search,
        "train_rows": _pair(ta.train_rows, tb.train_rows),
        "features": {
            "numeric": _pair(list(fa.numeric), list(fb.numeric)),
            "categorical": _pair(list(fa.categorical), list(fb.categorical)),
            "numeric_added": num_added, "numeric_removed": num_removed,
            "categorical_added": cat_added, "categorical_removed": cat_removed,
        },
        "excluded_columns": _pair(dict(a.excluded_columns), dict(b.excluded_columns)),
        "metrics": metrics,
        "same_rows": _same_rows(a, b),
        "decision": decision,
        "baseline": _pair(a.baseline.version if a.baseline else None,
                          b.baseline.version if b.baseline else None),
        "keel": _pair(ea.keel, eb.keel),
        "git_commit": _pair(ea.git_commit, eb.git_commit),
        "python": _pair(ea.python, eb.python),
        "scikit_learn": _pair(ea.scikit_learn, eb.scikit_learn),
        "images": images,
        "run_id": _pair(a.run_id, b.run_id),
    }

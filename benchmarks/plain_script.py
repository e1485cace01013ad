"""The plain one-process script that does the work of a ``keel run``: the floor keel is compared to.

What a data scientist would write without Keel, in one Python process holding the table in
memory, with the same model as Keel's defaults (``keel/estimators.py``, ``keel/preprocess.py``):

1. ``ingest``: read the CSV with pandas, write it as a zstd Parquet file (Keel's snapshot);
2. ``statistics``: per column count, missing, min, max, mean and quantiles (numbers) or
   distinct values and counts (categories);
3. ``split``: a stratified 80/20 train/test split;
4. ``train``: ``Pipeline(ColumnTransformer(numbers as they are, categories ordinal-encoded),
   HistGradientBoostingClassifier(categorical_features=...))``;
5. ``evaluate``: accuracy, balanced accuracy, precision, recall, F1, roc_auc, pr_auc, log_loss and
   brier on the test rows; with ``--production MODEL.joblib`` the older model is re-scored on the
   same rows (what keel's evaluate does with a production version);
6. ``save``: ``joblib.dump`` of the model.

Prints one JSON line on standard output: rows, each step's seconds, the total, the metrics (and
the production model's).

    .venv/bin/python benchmarks/plain_script.py --source table.csv --target Status --work DIR \
        [--production DIR/model.joblib]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEPS = ("imports", "ingest", "statistics", "split", "train", "evaluate", "save")
QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]


def metrics(model: Any, x: Any, y: Any) -> dict[str, float]:
    """Keel's binary classification metrics of ``model`` on these rows (positive: 2nd class)."""
    import numpy as np
    from sklearn import metrics as m

    proba = model.predict_proba(x)
    classes = list(model.classes_)
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    positive = np.asarray(y == classes[1])
    return {
        "accuracy": m.accuracy_score(y, pred),
        "balanced_accuracy": m.balanced_accuracy_score(y, pred),
        "precision": m.precision_score(y, pred, pos_label=classes[1], zero_division=0),
        "recall": m.recall_score(y, pred, pos_label=classes[1], zero_division=0),
        "f1": m.f1_score(y, pred, pos_label=classes[1], zero_division=0),
        "roc_auc": m.roc_auc_score(positive, proba[:, 1]),
        "pr_auc": m.average_precision_score(positive, proba[:, 1]),
        "log_loss": m.log_loss(y, proba, labels=classes),
        "brier": m.brier_score_loss(positive, proba[:, 1]),
    }


def statistics(frame: Any) -> dict[str, dict[str, Any]]:
    """Per column: count and missing; numbers also min, max, mean and quantiles; text its values."""
    result: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        column = frame[name]
        missing = int(column.isna().sum())
        stats: dict[str, Any] = {"count": len(column) - missing, "missing": missing}
        if column.dtype.kind in "iufb":
            stats.update(min=column.min(), max=column.max(), mean=column.mean(),
                         quantiles=column.quantile(QUANTILES).tolist())
        else:
            counts = column.value_counts()
            stats.update(distinct=len(counts), top=counts.head(20).to_dict())
        result[name] = stats
    return result


def run(source: str, target: str, work: Path, production: str | None,
        seed: int = 0) -> dict[str, Any]:
    """Every step on ``source``, timed; the model and snapshot go to ``work``."""
    seconds: dict[str, float] = {}

    def step(name: str, work_of_step: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = work_of_step()
        seconds[name] = round(time.perf_counter() - started, 4)
        return result

    started = time.perf_counter()
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    seconds["imports"] = round(time.perf_counter() - started, 4)
    work.mkdir(parents=True, exist_ok=True)

    def ingest() -> Any:
        frame = pd.read_csv(source)
        frame.to_parquet(work / "snapshot.parquet", compression="zstd", index=False)
        return frame

    frame = step("ingest", ingest)
    step("statistics", lambda: statistics(frame))
    frame = frame[frame[target].notna()]
    features = [c for c in frame.columns if c != target]
    numeric = [c for c in features if frame[c].dtype.kind in "iufb"]
    categorical = [c for c in features if c not in numeric]
    x_train, x_test, y_train, y_test = step("split", lambda: train_test_split(
        frame[numeric + categorical], frame[target], test_size=0.2, stratify=frame[target],
        random_state=seed))

    def train() -> Any:
        transform = ColumnTransformer(
            [("numeric", "passthrough", numeric),
             ("categorical", OrdinalEncoder(handle_unknown="use_encoded_value",
                                            unknown_value=np.nan, min_frequency=5,
                                            max_categories=250), categorical)],
            remainder="drop", verbose_feature_names_out=False)
        mask = [False] * len(numeric) + [True] * len(categorical)
        model = HistGradientBoostingClassifier(categorical_features=mask, random_state=seed)
        return Pipeline([("features", transform), ("model", model)]).fit(x_train, y_train)

    model = step("train", train)

    def evaluate() -> tuple[dict[str, float], dict[str, float] | None]:
        scores = metrics(model, x_test, y_test)
        if production is None:
            return scores, None
        return scores, metrics(joblib.load(production), x_test, y_test)

    scores, production_scores = step("evaluate", evaluate)
    step("save", lambda: joblib.dump(model, work / "model.joblib"))
    return {"rows": len(frame), "train_rows": len(x_train), "test_rows": len(x_test),
            "steps": seconds, "total": round(time.perf_counter() - started, 4),
            "metrics": scores, "production_metrics": production_scores,
            "model": str(work / "model.joblib")}


def main(argv: list[str] | None = None) -> None:
    """Run every step and print the one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="CSV file to train on")
    parser.add_argument("--target", default="Status")
    parser.add_argument("--work", type=Path, required=True,
                        help="folder for the Parquet snapshot and model.joblib")
    parser.add_argument("--production", default=None, metavar="MODEL.joblib",
                        help="an older model to re-score on the test rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.source, args.target, args.work, args.production, args.seed),
                     default=float))


if __name__ == "__main__":
    main()

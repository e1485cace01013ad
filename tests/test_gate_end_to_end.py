"""The gate end to end (issue: a gate worth trusting), through `keel run` on the bundled sample.

Production is never scored on a row it trained on, whatever changes between runs (the seed, the
data growing, the holdout's salt); a weaker challenger is rejected with the metric, both values
and the interval, a stronger one promoted; a search of eight parameter sets runs through the
pipeline's ParallelFor and picks the best on validation rows; the model card renders.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.contracts import Manifest
from keel.registry import Registry
from keel.split import is_test
from keel.storage import open_store

try:
    from browser import dump_dom
    from test_cli import SAMPLE, keel, keel_json
except ImportError:  # tests/ imported as a package
    from tests.browser import dump_dom
    from tests.test_cli import SAMPLE, keel, keel_json

pytestmark = pytest.mark.e2e


def run(store, work, *args: str, source=SAMPLE) -> dict:
    return keel_json("run", "--source", str(source), "--target", "Status", "--model", "credit",
                     "--store", str(store), *args, work_dir=work)


def manifest(store, version: int) -> Manifest:
    return Registry(open_store(str(store)), "credit").manifest(version)


def sample_rows() -> pd.DataFrame:
    return pd.read_csv(SAMPLE)


def grown(rows: int, seed: int) -> pd.DataFrame:
    """New rows like the sample's: resampled rows with their numbers moved a little."""
    sample = sample_rows()
    new = sample.sample(rows, random_state=seed, replace=True).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    for column in ("Income", "Amount", "Price"):
        new[column] = (new[column] * rng.uniform(0.9, 1.1, rows)).round()
    return pd.concat([sample, new], ignore_index=True)


def test_production_is_never_scored_on_its_own_training_rows(tmp_path):
    store, work = tmp_path / "store", tmp_path / "work"
    run(store, work)
    second = run(store, work, "--seed", "1")  # another seed: the holdout does not move
    first_rule, decision = manifest(store, 1).split, manifest(store, 2).decision
    assert manifest(store, 2).split == first_rule
    comparison = decision.comparison
    assert comparison.excluded == 0 and comparison.rows == decision.test_rows
    assert second["baseline"]["rows"] == decision.test_rows
    # two runs of the same estimator on the same data: within noise of each other
    assert abs(second["metrics"]["roc_auc"] - second["baseline"]["metrics"]["roc_auc"]) < 0.01

    data = grown(600, seed=3)
    data.to_csv(tmp_path / "grown.csv", index=False)
    third = run(store, work, source=tmp_path / "grown.csv")
    decision = manifest(store, 3).decision
    assert decision.comparison.excluded == 0 and decision.test_rows > manifest(
        store, 2).decision.test_rows
    # the sample's test rows are still test rows; none of production's training rows is one
    sample = sample_rows()
    assert (is_test(sample, manifest(store, 3).split) == is_test(sample, first_rule)).all()
    assert third["baseline"]["version"] == 2

    fourth = run(store, work, "--split-salt", "a new holdout", source=tmp_path / "grown.csv")
    decision = manifest(store, 4).decision
    comparison = decision.comparison
    assert comparison.excluded > 0
    assert comparison.rows + comparison.excluded == decision.test_rows
    assert "training side of production version 3's split" in comparison.reason
    # the rows compared are exactly this run's test rows that version 3's rule holds out
    test = data[is_test(data, manifest(store, 4).split)]
    assert int(is_test(test, manifest(store, 3).split).sum()) == comparison.rows
    assert fourth["baseline"]["excluded"] == comparison.excluded
    assert any(f"{comparison.excluded} of {decision.test_rows} test rows left out" in note
               for note in fourth["decision"]["notes"])

    diff = keel_json("models", "diff", "1", "4", "--store", str(store), "--model", "credit",
                     work_dir=work)
    assert "split" in json.dumps(diff) and "a new holdout" in json.dumps(diff)
    card = store / "registry" / "credit" / "versions" / "4" / "model_card.html"
    assert fourth["model_card"] == str(card)
    shown = dump_dom(card)
    assert "version 4" in shown and "Baseline comparison" in shown
    assert f"{comparison.excluded} test rows left out" in shown


def test_a_weaker_challenger_is_rejected_and_a_stronger_one_promoted(tmp_path):
    store, work = tmp_path / "store", tmp_path / "work"
    weak = ("--estimator", "random_forest", "--param", "max_depth=1", "--param", "n_estimators=3")
    assert run(store, work, *weak)["status"] == "promoted"  # the first model

    stronger = run(store, work, "--change-bound", "interval")
    assert stronger["status"] == "promoted" and stronger["production_version"] == 2
    (check,) = stronger["decision"]["checks"]
    assert check["interval"]["low"] > 0  # better beyond the noise, not only on average

    result = keel("run", "--source", str(SAMPLE), "--target", "Status", "--model", "credit",
                  "--store", str(store), *weak, work_dir=work)
    assert result.returncode == 0, result.stderr  # a rejection is a normal outcome
    assert "REJECTED" in result.stdout
    line = next(li for li in result.stdout.splitlines() if "gate" in li and "roc_auc" in li)
    weaker = manifest(store, 3).decision
    (check,) = weaker.checks
    assert check.metric == "roc_auc" and not check.passed and check.interval.high < 0
    assert f"{check.candidate:.4f}" in line and f"{check.baseline:.4f}" in line
    assert "difference" in line and "FAIL" in line
    assert Registry(open_store(str(store)), "credit").alias().version == 2


def test_a_search_of_eight_parameter_sets_picks_the_best_on_validation_rows(tmp_path):
    store, work = tmp_path / "store", tmp_path / "work"
    summary = run(store, work, "--grid", "max_depth=2,3,5,none", "--grid",
                  "learning_rate=0.05,0.1", "--param", "max_iter=50")
    search = summary["search"]
    assert len(search["candidates"]) == 8
    scores = [c["score"] for c in search["candidates"]]
    assert search["best"]["score"] == max(scores)
    assert {(c["params"]["max_depth"], c["params"]["learning_rate"])
            for c in search["candidates"]} == {
        (d, r) for d in (2, 3, 5, None) for r in (0.05, 0.1)}
    record = manifest(store, 1).training
    assert record.params == search["best"]["params"]
    assert record.search.candidates[record.search.best].validation_rows < record.train_rows

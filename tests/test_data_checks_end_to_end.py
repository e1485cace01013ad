"""The data checks through ``keel run`` and ``keel validate``: drift, new categories, a removed
column and target leakage are stopped or warned as configured, and what is printed names each
column with its numbers; nothing is registered by a stopped run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

try:
    from test_cli import SAMPLE, keel, keel_json, tree_digest
except ImportError:  # tests/ imported as a package
    from tests.test_cli import SAMPLE, keel, keel_json, tree_digest

pytestmark = pytest.mark.e2e


def drifted(path: Path, *, rescale: bool = True, new_category: bool = True,
            remove: bool = True) -> Path:
    """The sample with Income in another unit (x1000), a new Home value in a third of the rows,
    and the Records column gone."""
    frame = pd.read_csv(SAMPLE)
    if rescale:
        frame["Income"] = frame["Income"] * 1000
    if new_category:
        frame.loc[frame.index % 3 == 0, "Home"] = "castle"
    if remove:
        frame = frame.drop(columns=["Records"])
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Path:
    """A store whose production version 1 was trained on the sample."""
    root = tmp_path_factory.mktemp("production")
    store = root / "store"
    summary = keel_json("run", "--source", str(SAMPLE), "--target", "Status", "--store",
                        str(store), "--model", "credit", work_dir=root / "work")
    assert summary["status"] == "promoted" and summary["version"] == 1
    assert summary["validation"]["reference_version"] is None  # a first run: no reference
    return store


def copy_of(store: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "store"
    shutil.copytree(store, target)
    return target


def number_after(text: str, pattern: str) -> float:
    found = re.search(pattern + r"\D{0,40}?(\d+(?:\.\d+)?)", text)
    assert found, (pattern, text)
    return float(found.group(1))


def test_drift_new_category_and_a_removed_feature_stop_the_run_by_default(production, tmp_path):
    store = copy_of(production, tmp_path)
    before = tree_digest(store)

    result = keel("run", "--source", str(drifted(tmp_path / "drifted.csv")), "--target",
                  "Status", "--store", str(store), "--model", "credit",
                  work_dir=tmp_path / "work")

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("keel: error: [validate] ")
    assert "'Records'" in lines[-1]  # production's feature is missing: blocking by default
    shown = "\n".join(lines)
    # every affected column is named with its numbers, warnings included
    assert re.search(r"'Income'.*(psi|out_of_range|range)", shown), shown
    assert re.search(r"'Home'.*new_category", shown), shown
    assert 30.0 <= number_after(shown, r"'Home'.*?new_category") <= 36.0  # a third of the rows
    assert tree_digest(store) == before  # nothing registered, nothing changed


def test_the_same_drift_only_warns_when_configured_and_the_summary_names_it(production,
                                                                              tmp_path):
    store = copy_of(production, tmp_path)
    summary = keel_json(
        "run", "--source", str(drifted(tmp_path / "drifted.csv")), "--target", "Status",
        "--store", str(store), "--model", "credit", "--severity",
        "production_feature_missing=warning", "--severity", "missing_column=ignore",
        work_dir=tmp_path / "work")

    checks = summary["validation"]
    assert checks["reference_version"] == 1
    kinds = {(a["column"], a["kind"]): a for a in checks["anomalies"]}
    assert kinds[("Records", "production_feature_missing")]["severity"] == "warning"
    assert kinds[("Home", "new_category")]["value"] == pytest.approx(1 / 3, abs=0.02)
    drift = {d["column"]: d for d in checks["drift"]}
    assert drift["Income"]["score"] > drift["Income"]["threshold"]
    assert checks["drift"][0]["column"] in ("Income", "Home")  # the worst drifts come first

    human = keel("run", "--source", str(drifted(tmp_path / "drifted.csv")), "--target",
                 "Status", "--store", str(store), "--model", "credit", "--severity",
                 "production_feature_missing=warning", work_dir=tmp_path / "work2")
    assert human.returncode == 0, human.stderr
    assert re.search(r"'Income'.*\d", human.stdout) and re.search(r"'Home'.*\d", human.stdout)
    assert "'Records'" in human.stdout
    assert re.search(r"^  checks    [2-9] warnings; compared with production version 1 ",
                     human.stdout, re.M), human.stdout


def test_drift_alone_passes_by_default_and_stops_with_drift_error(production, tmp_path):
    store = copy_of(production, tmp_path)
    source = drifted(tmp_path / "rescaled.csv", new_category=False, remove=False)

    stopped = keel("run", "--source", str(source), "--target", "Status", "--store", str(store),
                   "--model", "credit", "--severity", "drift=error",
                   work_dir=tmp_path / "work")
    assert stopped.returncode == 1
    assert "'Income'" in stopped.stderr.strip().splitlines()[-1]

    ignored = keel_json("run", "--source", str(source), "--target", "Status", "--store",
                        str(store), "--model", "credit", "--severity", "Income:drift=ignore",
                        "--severity", "Income:out_of_range=ignore", work_dir=tmp_path / "w2")
    income = [a for a in ignored["validation"]["anomalies"] if a["column"] == "Income"]
    assert income and {a["severity"] for a in income} == {"ignore"}


def test_a_column_computed_from_the_target_is_reported_as_possible_leakage(tmp_path):
    frame = pd.read_csv(SAMPLE)
    frame["decision_code"] = np.where(frame["Status"] == "good", 7, 3)  # made from the target
    source = tmp_path / "leaky.csv"
    frame.to_csv(source, index=False)

    summary = keel_json("run", "--source", str(source), "--target", "Status", "--store",
                        str(tmp_path / "store"), work_dir=tmp_path / "work")

    leaks = [a for a in summary["validation"]["anomalies"] if a["kind"] == "target_leakage"]
    assert [a["column"] for a in leaks] == ["decision_code"]
    assert leaks[0]["severity"] == "warning" and leaks[0]["value"] >= 0.98
    assert "leakage" in leaks[0]["message"] and "'decision_code'" in leaks[0]["message"]

    excluded = keel_json("run", "--source", str(source), "--target", "Status", "--store",
                         str(tmp_path / "store2"), "--exclude-column", "decision_code",
                         work_dir=tmp_path / "work2")
    assert "decision_code" in excluded["excluded_columns"]
    assert not [a for a in excluded["validation"]["anomalies"] if a["kind"] == "target_leakage"]


def test_keel_validate_alone_against_production_prints_and_writes_the_reports(production,
                                                                                tmp_path):
    out = tmp_path / "reports"
    result = keel("validate", "--source", str(drifted(tmp_path / "d.csv", remove=False)),
                  "--target", "Status", "--store", str(production), "--against", "credit",
                  "--output", str(out), work_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "compared with production version 1" in result.stdout
    assert re.search(r"'Home'.*new_category.*\d", result.stdout)
    checks = json.loads((out / "validation.json").read_text())
    assert checks["reference_version"] == 1
    html = (out / "validation_report.html").read_text()
    assert "Income" in html and "<svg" in html
    assert (out / "statistics.json").is_file() and (out / "validation_report.md").is_file()

    stopped = keel("validate", "--source", str(drifted(tmp_path / "d2.csv")), "--target",
                   "Status", "--store", str(production), "--against", "credit", "--output",
                   str(out), work_dir=tmp_path)
    assert stopped.returncode == 1
    assert "'Records'" in stopped.stdout and "'Records'" in stopped.stderr.splitlines()[-1]
    assert stopped.stderr.count("'Records'") == 1  # the details are not printed twice


def test_validation_rules_file_sets_ranges_and_severities(production, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("severity:\n  new_category: error\ncolumns:\n  Age:\n    min: 18\n"
                     "    max: 30\n")
    result = keel("validate", "--source", str(drifted(tmp_path / "d.csv", remove=False)),
                  "--target", "Status", "--store", str(production), "--against", "credit",
                  "--validation-rules", str(rules), "--output", str(tmp_path / "o"),
                  work_dir=tmp_path)
    assert result.returncode == 1
    assert "'Home'" in result.stderr.splitlines()[-1]  # new_category made an error by the file
    assert re.search(r"'Age'.*out_of_range", result.stdout)  # outside the expected 18..30

    bad = tmp_path / "bad.yaml"
    bad.write_text("severity:\n  drift: fatal\n")
    refused = keel("validate", "--source", str(SAMPLE), "--target", "Status",
                   "--validation-rules", str(bad), work_dir=tmp_path)
    assert refused.returncode == 1
    assert "validation_rules" in refused.stderr and "fatal" in refused.stderr

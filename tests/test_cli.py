"""The `keel` command end to end: whole pipelines through kfp.local, as a user runs them."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keel.stages import STAGE_NAMES

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "credit.csv"
KEEL = str(Path(sys.executable).with_name("keel"))


def keel(*args: str, work_dir: Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [KEEL, *args, *(["--work-dir", str(work_dir)] if args[0] == "run" else [])],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )


def keel_json(*args: str, work_dir: Path) -> dict:
    result = keel(*args, "--json", work_dir=work_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (hidden ones too) with its sha256: 'byte-for-byte unchanged'."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def rng_table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 80, rows).astype(float),
        "income": rng.normal(3000, 800, rows),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], rows),
        "segment": rng.choice(["a", "b", "c"], rows),
    })


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    """The sample trained twice into one store (versions 1 and 2)."""
    root = tmp_path_factory.mktemp("sample")
    store, work = root / "store", root / "work"
    first = keel_json("run", "--source", str(SAMPLE), "--target", "Status", "--store", str(store),
                      work_dir=work)
    second = keel_json("run", "--source", str(SAMPLE), "--target", "Status", "--store",
                       str(store), work_dir=work)
    return store, work, first, second


@pytest.mark.e2e
def test_sample_promotes_version_one_then_rescored_as_baseline(trained_store):
    store, _, first, second = trained_store
    assert first["status"] == "promoted"
    assert (first["version"], first["production_version"]) == (1, 1)
    assert first["baseline"] is None and first["decision"]["first_run"] is True
    assert any("first run" in note for note in first["decision"]["notes"])
    assert first["metrics"]["roc_auc"] > 0.75
    assert first["model"] == "credit" and first["rows"] == 4454

    assert second["version"] == 2
    assert second["baseline"]["version"] == 1
    # Same data, same seed: version 1 re-scored on this split scores like the candidate.
    assert second["baseline"]["metrics"]["roc_auc"] == pytest.approx(second["metrics"]["roc_auc"])
    check = second["decision"]["checks"][0]
    assert (check["metric"], check["check"], check["passed"]) == ("roc_auc", "absolute_change", True)
    assert second["status"] == "promoted" and second["production_version"] == 2
    assert second["data_version"] == first["data_version"]


@pytest.mark.e2e
def test_manifest_records_lineage(trained_store):
    store, work, _, _ = trained_store
    manifest = keel_json("models", "show", "--store", str(store), "--version", "2", work_dir=work)
    version_dir = store / "registry" / "credit" / "versions" / "2"
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((version_dir / name).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["data"]["rows"] == 4454
    assert Path(manifest["data"]["snapshot"]).is_file()
    assert manifest["data"]["data_version"] in manifest["data"]["snapshot"]
    assert manifest["baseline"]["version"] == 1
    assert manifest["environment"]["images"]["train"].endswith("/train:0.1.0")
    assert manifest["environment"]["scikit_learn"]
    assert manifest["environment"]["git_commit"]
    assert manifest["run_id"]
    assert manifest["training"]["estimator_class"] == "HistGradientBoostingClassifier"
    assert len(manifest["schema_hash"]) == 64


@pytest.mark.e2e
def test_models_list_and_rollback(trained_store, tmp_path):
    store, work, _, _ = trained_store
    listed = keel_json("models", "list", "--store", str(store), work_dir=work)
    assert [v["version"] for v in listed["versions"]] == [1, 2]
    assert listed["production_version"] == 2

    rolled = keel_json("models", "rollback", "--store", str(store), "--reason", "bad week",
                       work_dir=work)
    assert (rolled["from"], rolled["to"], rolled["reason"]) == (2, 1, "bad week")
    listed = keel_json("models", "list", "--store", str(store), work_dir=work)
    assert listed["production_version"] == 1

    # Nothing earlier than version 1: a clear error, and the alias stays put.
    again = keel("models", "rollback", "--store", str(store), work_dir=work)
    assert again.returncode == 1
    assert "no production version before 1" in again.stderr
    forward = keel_json("models", "rollback", "--store", str(store), "--to", "2", work_dir=work)
    assert forward["to"] == 2
    actions = [json.loads(p.read_text())["action"]
               for p in sorted((store / "registry" / "credit" / "events").iterdir())]
    assert actions == ["promote", "promote", "rollback", "rollback"]


@pytest.mark.e2e
def test_rejected_candidate_is_registered_but_not_promoted(trained_store, tmp_path):
    store, work, _, _ = trained_store
    before = keel_json("models", "list", "--store", str(store), work_dir=work)
    result = keel_json(
        "run", "--source", str(SAMPLE), "--target", "Status", "--store", str(store),
        "--estimator", "linear", "--threshold", "roc_auc.min_absolute_change=0.5",
        work_dir=work,
    )
    assert result["status"] == "rejected"
    assert result["production_version"] == before["production_version"]
    failing = [c for c in result["decision"]["checks"] if not c["passed"]]
    assert failing[0]["required"] == pytest.approx(failing[0]["baseline"] + 0.5)


def run_table(tmp_path: Path, frame: pd.DataFrame, target: str, *extra: str) -> dict:
    source = tmp_path / "table.parquet"
    frame.to_parquet(source)
    return keel_json("run", "--source", str(source), "--target", target,
                     "--store", str(tmp_path / "store"), *extra, work_dir=tmp_path / "work")


@pytest.mark.e2e
def test_multiclass_with_missing_values(tmp_path):
    frame = rng_table(600, seed=1)
    frame["tier"] = np.where(frame.income > 3500, "gold",
                             np.where(frame.income > 2600, "silver", "bronze"))
    frame.loc[::7, "income"] = np.nan
    frame.loc[::11, "city"] = None
    frame.loc[::50, "tier"] = None
    summary = run_table(tmp_path, frame, "tier", "--estimator", "random_forest")
    assert summary["task"] == "classification"
    assert summary["status"] == "promoted"
    # Multiclass gates on f1_macro; on a first run its change threshold is skipped, and said so.
    assert summary["decision"]["checks"] == []
    assert "f1_macro" in summary["decision"]["notes"][0]
    assert summary["metrics"]["f1_macro"] > 0.6
    manifest = json.loads((tmp_path / "store/registry/table/versions/1/manifest.json").read_text())
    assert manifest["data"]["rows_dropped_missing_target"] == 12


@pytest.mark.e2e
def test_regression_with_categorical_columns(tmp_path):
    frame = rng_table(500, seed=2)
    bonus = frame.city.map({"paris": 900.0, "lyon": 300.0, "nice": 100.0, "lille": 0.0})
    frame["price"] = frame.income * 0.5 + bonus + np.random.default_rng(3).normal(0, 50, 500)
    summary = run_table(tmp_path, frame, "price", "--estimator", "linear")
    assert summary["task"] == "regression"
    assert summary["metrics"]["r2"] > 0.8
    assert summary["decision"]["notes"]  # first run note on rmse
    assert set(summary["metrics"]) == {"rmse", "mae", "r2"}


@pytest.mark.e2e
def test_imbalanced_binary_and_free_text_name_column(tmp_path):
    frame = rng_table(800, seed=4)
    frame["name"] = [f"customer {i} of the {w} street" for i, w in
                     enumerate(np.random.default_rng(5).choice(["north", "south"], 800))]
    frame["churn"] = np.where(frame.income > 4100, "yes", "no")  # about 8% positives
    assert 0.03 < (frame.churn == "yes").mean() < 0.15
    summary = run_table(tmp_path, frame, "churn", "--param", "max_iter=50")
    assert summary["status"] == "promoted"
    assert "name" in summary["excluded_columns"]
    assert summary["metrics"]["roc_auc"] > 0.9
    manifest = json.loads((tmp_path / "store/registry/table/versions/1/manifest.json").read_text())
    assert manifest["hyperparameters"] == {"max_iter": 50}
    assert "name" not in manifest["features"]["categorical"]


@pytest.mark.e2e
def test_human_summary_shows_progress_and_decision(tmp_path):
    (tmp_path / "credit.csv").write_bytes(SAMPLE.read_bytes())
    # Relative paths, as a user types them: the stages run in other processes.
    result = keel("run", "--source", "credit.csv", "--target", "Status", "--store", "store",
                  "--estimator", "linear", work_dir=tmp_path / "work", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "store" / "registry" / "credit" / "versions" / "1" / "manifest.json").is_file()
    for stage in STAGE_NAMES:
        assert f"  {stage:<11} success" in result.stderr
    assert "Model 'credit' version 1: PROMOTED (production is version 1)" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def write_source(tmp_path: Path, name: str, content: str | pd.DataFrame) -> Path:
    path = tmp_path / name
    if isinstance(content, pd.DataFrame):
        content.to_csv(path, index=False)
    else:
        path.write_text(content)
    return path


BAD_INPUTS = {
    # case: (file name, content, extra args, expected stage, words the message must contain)
    "unknown column": ("t.csv", None, ["--target", "Price2"], "validate",
                       ["'target' parameter", "'Price2'", "'Status'"]),
    "empty table": ("t.csv", "Status,Age\n", ["--target", "Status"], "validate",
                    ["empty", "got 0"]),
    "missing file": ("absent.csv", "", ["--target", "Status"], "ingest", ["does not exist"]),
    "unreadable file": ("t.parquet", "this is not parquet", ["--target", "Status"], "ingest",
                        ["not readable as parquet"]),
    "one class": ("t.csv", "Status,Age,Job\n" + "good,30,a\ngood,40,b\n" * 20,
                  ["--target", "Status"], "validate", ["two classes", "'good'"]),
    "unknown parameter": ("t.csv", None, ["--target", "Status", "--param", "depth=3"],
                          "train", ["'depth'", "max_depth"]),
    "bad parameter value": ("t.csv", None, ["--target", "Status", "--param", "max_depth=-3"],
                            "train", ["max_depth", "-3"]),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_one_line_error_and_store_unchanged(trained_store, tmp_path, case):
    name, content, args, stage, words = BAD_INPUTS[case]
    store, work, _, _ = trained_store
    source = tmp_path / name
    if content is None:
        source.write_bytes(SAMPLE.read_bytes())
    elif name != "absent.csv":
        source.write_text(content)
    before = tree_digest(store)
    result = keel("run", "--source", str(source), "--model", "credit", "--store", str(store),
                  *args, work_dir=work)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"keel: error: [{stage}] "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[-1]
    assert tree_digest(store) == before


@pytest.mark.e2e
def test_debug_shows_the_traceback(tmp_path):
    result = keel("run", "--source", str(tmp_path / "nope.csv"), "--target", "x", "--store",
                  str(tmp_path / "s"), "--debug", work_dir=tmp_path / "w")
    assert result.returncode != 0
    assert "Traceback" in result.stdout + result.stderr


def test_an_unknown_choice_is_a_usage_error_listing_the_choices(tmp_path):
    result = keel("run", "--source", str(SAMPLE), "--target", "Status", "--store",
                  str(tmp_path / "s"), "--estimator", "xgboost", work_dir=tmp_path / "w")
    assert result.returncode == 2
    assert "'xgboost' is not one of" in result.stderr and "hist_gradient_boosting" in result.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "w").exists()


PREFLIGHT_ERRORS = {
    # case: (extra args, stage, words the one-line message must contain)
    "bad parameter value": (["--param", "max_depth=abc"], "train", ["'max_depth'", "'abc'"]),
    "unknown parameter": (["--param", "depth=3"], "train", ["'depth'", "max_depth"]),
    "parameter of the other task": (["--task", "regression", "--param", "class_weight=balanced"],
                                    "train", ["'class_weight'"]),
    "metric of the other task": (["--task", "classification", "--threshold", "rmse.upper=0.5"],
                                 "evaluate", ["'rmse'", "classification does not compute"]),
    "not a number": (["--test-size", "nan"], "preprocess", ["'test_size'", "nan"]),
    "fraction out of range": (["--test-size", "1.5"], "preprocess", ["'test_size'", "1.5"]),
    "negative seed": (["--seed", "-1"], "preprocess", ["'seed'", "-1"]),
    "unknown source scheme": (["--source", "s3://bucket/t.csv"], "ingest", ["s3://", "gs://"]),
    "unknown store scheme": (["--store", "s3://bucket/keel"], "publish", ["s3://", "gs://"]),
    "model name with a newline": (["--model", "credit\n"], "publish", ["'model' parameter"]),
}


@pytest.mark.parametrize("case", list(PREFLIGHT_ERRORS))
def test_bad_settings_fail_before_the_first_stage(tmp_path, case):
    args, stage, words = PREFLIGHT_ERRORS[case]
    base = {"--source": str(SAMPLE), "--target": "Status", "--store": str(tmp_path / "s")}
    for flag in base:
        if flag in args:
            base.pop(flag)
            break
    result = keel("run", *[x for pair in base.items() for x in pair], *args,
                  work_dir=tmp_path / "w")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no "ingest running": nothing started
    assert lines[0].startswith(f"keel: error: [{stage}] "), lines[0]
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "s").exists() and not (tmp_path / "w").exists()


def test_bad_threshold_and_model_name_fail_before_any_stage(tmp_path):
    result = keel("run", "--source", str(SAMPLE), "--target", "Status", "--store",
                  str(tmp_path / "s"), "--threshold", "roc_auc=0.7", work_dir=tmp_path / "w")
    assert result.returncode == 1 and "METRIC.RULE=NUMBER" in result.stderr
    result = keel("run", "--source", str(SAMPLE), "--target", "Status", "--store",
                  str(tmp_path / "s"), "--threshold", "auc.lower=0.7", work_dir=tmp_path / "w")
    assert result.returncode == 1 and "unknown metric 'auc'" in result.stderr
    assert "roc_auc" in result.stderr
    result = keel("run", "--source", str(SAMPLE), "--target", "Status", "--store",
                  str(tmp_path / "s"), "--model", "Bad Name", work_dir=tmp_path / "w")
    assert result.returncode == 1 and "'model' parameter" in result.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "w").exists()


def test_models_commands_on_empty_store(tmp_path):
    result = keel("models", "list", "--store", str(tmp_path), work_dir=tmp_path)
    assert result.returncode == 1
    assert "holds 0 models" in result.stderr and "--model" in result.stderr


def test_debug_of_a_models_command_is_read_from_the_click_context(tmp_path):
    plain = keel("models", "list", "--store", str(tmp_path), work_dir=tmp_path)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = keel("models", "list", "--store", str(tmp_path), "--debug", work_dir=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "RegistryError" in debug.stderr

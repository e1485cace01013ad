"""The `keel` command end to end: whole pipelines through kfp.local, as a user runs them."""

import hashlib
import json
import re
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
    # Forward again needs --force and a reason (the event records both).
    forward = keel_json("models", "rollback", "--store", str(store), "--to", "2", "--force",
                        "--reason", "roll forward", work_dir=work)
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
    assert set(summary["metrics"]) == {"rmse", "mae", "r2", "mape"}


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


# --- the catalogue of bad inputs ---------------------------------------------------------------
# Every failure a user can cause: exit status 1, exactly one line `keel: error: [stage] ...` on
# stderr, at most MAX_LINE characters, no traceback, no raw control character, and the store
# byte-for-byte unchanged.

MAX_LINE = 300
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # anything but the newlines between lines
ABSENT, DIRECTORY = object(), object()  # the source is not created / is a folder


def assert_one_error_line(result: subprocess.CompletedProcess, stage: str,
                          status: int = 1) -> str:
    """The result's one error line, after checking everything every user error must satisfy."""
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = result.stderr.strip("\n").split("\n")
    errors = [line for line in lines if line.startswith("keel: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr
    assert lines[-1].startswith(f"keel: error: [{stage}] "), lines[-1]
    assert len(lines[-1]) <= MAX_LINE, (len(lines[-1]), lines[-1])
    assert "Traceback" not in result.stderr + result.stdout
    assert not RAW_CONTROL.search(result.stderr + result.stdout), repr(result.stderr)
    return lines[-1]


def csv_rows(header: str, rows: list[str]) -> str:
    return header + "\n" + "".join(row + "\n" for row in rows)


def zero_row_parquet(path: Path) -> None:
    pd.DataFrame({"Status": pd.Series([], dtype=str),
                  "Age": pd.Series([], dtype=float)}).to_parquet(path)


BAD_INPUTS = {
    # case: (file name, content, extra args, expected stage, words the message must contain).
    # content: None = the sample; str or bytes = the file; a callable writes it; ABSENT, DIRECTORY.
    "unknown column": ("t.csv", None, ["--target", "Price2"], "validate",
                       ["'target' parameter", "'Price2'", "'Status'"]),
    "unknown slice": ("t.csv", None, ["--target", "Status", "--slice", "Hme"], "validate",
                      ["'slices' parameter of evaluate must name columns", "'Hme'", "'Home'"]),
    "unknown split key": ("t.csv", None, ["--target", "Status", "--split-key", "id"], "validate",
                          ["'split_key' parameter of preprocess", "'id'"]),
    "slice rule without slices": ("t.csv", None, ["--target", "Status", "--threshold",
                                                  "roc_auc.max_slice_drop=0.1"], "evaluate",
                                  ["max_slice_drop", "--slice COLUMN"]),
    "bad grid": ("t.csv", None, ["--target", "Status", "--grid", "max_depth=3,,5"], "train",
                 ["--grid must look like NAME=V1,V2", "'max_depth=3,,5'"]),
    "grid and param": ("t.csv", None, ["--target", "Status", "--grid", "max_depth=3,5",
                                       "--param", "max_depth=4"], "train",
                       ["'grid' parameter of train and the 'params' parameter both set"]),
    "header only": ("t.csv", "Status,Age\n", ["--target", "Status"], "validate",
                    ["empty", "got 0"]),
    "empty file": ("t.csv", "", ["--target", "Status"], "ingest", ["t.csv", "not readable"]),
    "missing file": ("absent.csv", ABSENT, ["--target", "Status"], "ingest", ["does not exist"]),
    "directory as source": ("tables", DIRECTORY, ["--target", "Status"], "ingest",
                            ["tables", "is a folder"]),
    "directory named like a csv": ("tables.csv", DIRECTORY, ["--target", "Status"], "ingest",
                                   ["tables.csv", "is a folder"]),
    "unreadable file": ("t.parquet", "this is not parquet", ["--target", "Status"], "ingest",
                        ["not readable as parquet"]),
    "binary junk": ("t.csv", bytes(range(256)) * 40, ["--target", "Status"], "ingest",
                    ["not readable as csv"]),
    "gz name, not gzip": ("t.csv.gz", "Status,Age\ngood,1\n", ["--target", "Status"], "ingest",
                          ["t.csv.gz"]),
    "unknown file extension": ("t.xlsx", "Status,Age\ngood,1\n", ["--target", "Status"],
                               "ingest", ["Cannot tell the format", "t.xlsx"]),
    "csv read as parquet": ("t.csv", None, ["--target", "Status", "--format", "parquet"],
                            "ingest", ["not readable as parquet"]),
    "json file that is one object": (
        "t.json", json.dumps({"Status": "good", "Age": 30, "Job": "x"}, indent=2),
        ["--target", "Status"], "validate", ["'Status'"]),
    "json lines with a broken line": ("t.jsonl", '{"Status": "good", "Age": 1}\nnot json\n',
                                      ["--target", "Status"], "ingest", ["not readable as jsonl"]),
    "latin-1 bytes": ("t.csv", csv_rows("Status,Age,City",
                                        ["good,30,Montréal", "bad,40,Zürich"] * 60).encode("latin-1"),
                      ["--target", "Status"], "ingest", ["0xe9", "--source-encoding"]),
    "ragged row with an escape sequence": (
        "t.csv", csv_rows("Status,Age", ["good,1", "bad,2"] * 30
                          + ["good,\x1b[31mred\x1b[0m,extra"] + ["bad,3"] * 30),
        ["--target", "Status"], "ingest", ["\\x1b[31mred\\x1b[0m"]),
    "escape sequence in the file name": ("t\x1b[31m.csv", ABSENT, ["--target", "Status"],
                                         "ingest", ["t\\x1b[31m.csv"]),
    "parquet with no rows": ("t.parquet", zero_row_parquet, ["--target", "Status"], "validate",
                             ["empty"]),
    "duplicate column names": ("t.csv", csv_rows("Status,Age,Age", ["good,1,2", "bad,3,4"] * 50),
                               ["--target", "Status"], "validate", ["unique", "'Age'"]),
    "target all missing": ("t.csv", csv_rows("Status,Age,Job", [",30,a", ",40,b"] * 50),
                           ["--target", "Status"], "validate", ["'Status'", "missing"]),
    "one class": ("t.csv", "Status,Age,Job\n" + "good,30,a\ngood,40,b\n" * 20,
                  ["--target", "Status"], "validate", ["two classes", "'good'"]),
    "5,000 classes": ("t.csv", csv_rows("Status,Age", [f"class-{i},{i % 7}" for i in range(5000)]),
                      ["--target", "Status"], "validate", ["'Status'"]),
    "3-row table": ("t.csv", "Status,Age\ngood,1\nbad,2\ngood,3\n", ["--target", "Status"],
                    "validate", ["too small"]),
    "only the target column": ("t.csv", csv_rows("Status", ["good", "bad"] * 50),
                               ["--target", "Status"], "validate", ["feature"]),
    "every feature constant": ("t.csv", csv_rows("Status,Age", ["good,1", "bad,1"] * 50),
                               ["--target", "Status"], "validate", ["feature", "Age"]),
    "text target for regression": ("t.csv", None, ["--target", "Status", "--task", "regression"],
                                   "validate", ["numeric", "'Status'"]),
    "target name with an escape sequence": ("t.csv", None, ["--target", "St\x1b[2Jatus"],
                                            "validate", ["St\\x1b[2Jatus"]),
    "parameter of another estimator": (
        "t.csv", None, ["--target", "Status", "--estimator", "random_forest", "--param",
                        "learning_rate=0.1"], "train", ["'learning_rate'"]),
    "negative parameter value": ("t.csv", None, ["--target", "Status", "--param", "max_depth=-3"],
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
    elif content is DIRECTORY:
        source.mkdir()
    elif isinstance(content, bytes):
        source.write_bytes(content)
    elif isinstance(content, str):
        source.write_text(content)
    elif callable(content):
        content(source)
    before = tree_digest(store)
    result = keel("run", "--source", str(source), "--model", "credit", "--store", str(store),
                  *args, work_dir=work)
    line = assert_one_error_line(result, stage)
    for word in words:
        assert word in line
    assert tree_digest(store) == before


@pytest.mark.e2e
def test_a_file_name_with_an_escape_sequence_is_printed_escaped(tmp_path):
    source = tmp_path / "cr\x1b[31medit.csv"
    source.write_bytes(SAMPLE.read_bytes())
    result = keel("run", "--source", str(source), "--target", "Status", "--store",
                  str(tmp_path / "store"), "--model", "credit", "--estimator", "linear",
                  work_dir=tmp_path / "work")
    assert result.returncode == 0, result.stderr
    assert "cr\\x1b[31medit.csv" in result.stderr.splitlines()[0]  # "Training ... from ..."
    assert not RAW_CONTROL.search(result.stderr + result.stdout)


@pytest.mark.e2e
def test_column_names_from_data_are_printed_escaped_in_the_summary(tmp_path):
    frame = rng_table(300, seed=6)
    frame["row\x1b[2J\rid"] = [f"r{i}" for i in range(300)]  # an identifier: excluded, and said
    frame["tier"] = np.where(frame.income > 3000, "high", "low")
    source = tmp_path / "table.parquet"
    frame.to_parquet(source)
    result = keel("run", "--source", str(source), "--target", "tier", "--store",
                  str(tmp_path / "store"), "--estimator", "linear", work_dir=tmp_path / "work")
    assert result.returncode == 0, result.stderr
    assert "  excluded  row\\x1b[2J\\rid: " in result.stdout
    assert not RAW_CONTROL.search(result.stderr + result.stdout)


@pytest.mark.e2e
def test_debug_shows_the_traceback_then_the_one_line(tmp_path):
    result = keel("run", "--source", str(tmp_path / "nope.csv"), "--target", "x", "--store",
                  str(tmp_path / "s"), "--debug", work_dir=tmp_path / "w")
    assert result.returncode == 1
    assert "Traceback" in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("keel: error: [ingest] ")


USAGE_ERRORS = {
    # case: (extra args, words click's message must contain)
    "unknown estimator": (["--estimator", "xgboost"], ["'xgboost' is not one of",
                                                       "hist_gradient_boosting"]),
    "unknown format": (["--format", "xml"], ["'xml' is not one of", "parquet"]),
    "unknown task": (["--task", "ranking"], ["'ranking' is not one of"]),
    "seed not an integer": (["--seed", "1.5"], ["'1.5' is not a valid integer"]),
    "test size not a number": (["--test-size", "a fifth"], ["is not a valid float"]),
    "unknown option": (["--frobnicate"], ["No such option"]),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_errors_keep_clicks_message_and_status_2(tmp_path, case):
    args, words = USAGE_ERRORS[case]
    result = keel("run", "--source", str(SAMPLE), "--target", "Status", "--store",
                  str(tmp_path / "s"), *args, work_dir=tmp_path / "w")
    assert result.returncode == 2, result.stderr
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "w").exists()


def test_a_missing_required_option_is_a_usage_error(tmp_path):
    result = keel("run", "--source", str(SAMPLE), "--store", str(tmp_path / "s"),
                  work_dir=tmp_path / "w")
    assert result.returncode == 2 and "--target" in result.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "w").exists()


def listing(root: Path) -> dict[str, str]:
    """Every path under root, folders too, with the sha256 of files: 'nothing was created'."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "folder" for p in sorted(root.rglob("*"))}


PREFLIGHT_ERRORS = {
    # case: (extra args, stage, words the one-line message must contain); "{tmp}" is the test's
    # folder, where a regular file named "file" exists.
    # -- parameters and thresholds
    "bad parameter value": (["--param", "max_depth=abc"], "train", ["'max_depth'", "'abc'"]),
    "unknown parameter": (["--param", "depth=3"], "train", ["'depth'", "max_depth"]),
    "parameter of the other task": (["--task", "regression", "--param", "class_weight=balanced"],
                                    "train", ["'class_weight'"]),
    "parameter without a name": (["--param", "=3"], "train", ["name=value", "'=3'"]),
    "parameter without a value": (["--param", "max_depth"], "train", ["name=value"]),
    "parameter that is nan": (["--param", "learning_rate=nan"], "train", ["'learning_rate'"]),
    "parameter that overflows to inf": (["--param", "max_iter=1e400"], "train",
                                        ["'max_iter'", "inf"]),
    "metric of the other task": (["--task", "classification", "--threshold", "rmse.upper=0.5"],
                                 "evaluate", ["'rmse'", "classification does not compute"]),
    "threshold without a rule": (["--threshold", "roc_auc=0.7"], "evaluate",
                                 ["METRIC.RULE=NUMBER"]),
    "threshold of an unknown metric": (["--threshold", "auc.lower=0.7"], "evaluate",
                                       ["unknown metric 'auc'", "roc_auc"]),
    "threshold of an unknown rule": (["--threshold", "roc_auc.between=0.5"], "evaluate",
                                     ["'between'", "min_relative_change"]),
    "threshold not a number": (["--threshold", "roc_auc.lower=abc"], "evaluate",
                               ["METRIC.RULE=NUMBER"]),
    "threshold that is nan": (["--threshold", "roc_auc.lower=nan"], "evaluate", ["finite"]),
    "threshold that is inf": (["--threshold", "roc_auc.lower=inf"], "evaluate", ["finite"]),
    # -- numbers
    "not a number": (["--test-size", "nan"], "preprocess", ["'test_size'", "nan"]),
    "infinite test size": (["--test-size", "inf"], "preprocess", ["'test_size'", "inf"]),
    "negative test size": (["--test-size", "-0.2"], "preprocess", ["'test_size'", "-0.2"]),
    "zero test size": (["--test-size", "0"], "preprocess", ["'test_size'"]),
    "fraction out of range": (["--test-size", "1.5"], "preprocess", ["'test_size'", "1.5"]),
    "negative seed": (["--seed", "-1"], "preprocess", ["'seed'", "-1"]),
    "seed too large": (["--seed", "4294967296"], "preprocess", ["'seed'", "4294967296"]),
    "negative minimum of test rows": (["--min-test-rows", "-1"], "validate",
                                      ["'min_test_rows'", "-1"]),
    "unknown text encoding": (["--source-encoding", "klingon"], "ingest",
                              ["'source_encoding'", "'klingon'"]),
    # -- names and URIs
    "empty model name": (["--model", ""], "publish", ["'model' parameter", "''"]),
    "model name with a newline": (["--model", "credit\n"], "publish",
                                  ["'model' parameter", "'credit\\n'"]),
    "model name with a space": (["--model", "Bad Name"], "publish", ["'model' parameter"]),
    "model name that climbs folders": (["--model", "../escape"], "publish", ["'../escape'"]),
    "model name too long": (["--model", "m" * 64], "publish", ["1-63"]),
    "empty target": (["--target", ""], "validate", ["'target' parameter", "''"]),
    "empty source": (["--source", ""], "ingest", ["'source' parameter"]),
    "unknown source scheme": (["--source", "s3://bucket/t.csv"], "ingest", ["s3://", "gs://"]),
    "ftp source": (["--source", "ftp://example.com/t.csv"], "ingest", ["'ftp://'"]),
    "unknown store scheme": (["--store", "s3://bucket/keel"], "publish", ["s3://", "gs://"]),
    "gs store without a bucket": (["--store", "gs://"], "publish", ["bucket"]),
    # -- places
    "store is a file": (["--store", "{tmp}/file"], "publish", ["'store'", "{tmp}/file is a file"]),
    "store below a file": (["--store", "{tmp}/file/store"], "publish",
                           ["cannot be created", "{tmp}/file is a file"]),
    "store in /proc": (["--store", "/proc/keel-store"], "publish", ["/proc cannot be written"]),
    "store name too long": (["--store", "{tmp}/" + "s" * 300], "publish", ["longer than"]),
    "work dir is a file": (["--work-dir", "{tmp}/file"], "run",
                           ["--work-dir", "{tmp}/file is a file"]),
    "work dir below a file": (["--work-dir", "{tmp}/file/work"], "run",
                              ["--work-dir", "{tmp}/file is a file"]),
    "work dir in /proc": (["--work-dir", "/proc/keel-work"], "run", ["/proc cannot be written"]),
    "work dir whose logs folder is a file": (["--work-dir", "{tmp}/work"], "run",
                                             ["{tmp}/work/logs is a file"]),
}


@pytest.mark.parametrize("case", list(PREFLIGHT_ERRORS))
def test_bad_settings_and_places_fail_before_the_first_stage(tmp_path, case):
    args, stage, words = PREFLIGHT_ERRORS[case]
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    words = [word.replace("{tmp}", str(tmp_path)) for word in words]
    (tmp_path / "file").write_text("a regular file\n")
    if case == "work dir whose logs folder is a file":
        (tmp_path / "work").mkdir()
        (tmp_path / "work" / "logs").write_text("not a folder\n")
    options = {"--source": str(SAMPLE), "--target": "Status", "--store": str(tmp_path / "s"),
               "--work-dir": str(tmp_path / "w")}
    options.update(zip(args[::2], args[1::2], strict=True))  # every case is flag-value pairs
    before = listing(tmp_path)
    result = subprocess.run([KEEL, "run", *[x for pair in options.items() for x in pair]],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    line = assert_one_error_line(result, stage)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no stage started
    for word in words:
        assert word in line
    assert listing(tmp_path) == before  # nothing created: not the store, the work dir, a probe


def test_catalogue_covers_at_least_forty_distinct_bad_inputs():
    assert len(BAD_INPUTS) + len(PREFLIGHT_ERRORS) >= 40
    assert len(set(BAD_INPUTS) | set(PREFLIGHT_ERRORS)) == len(BAD_INPUTS) + len(PREFLIGHT_ERRORS)


@pytest.mark.e2e
def test_fail_on_reject_exits_3_after_printing_the_summary(trained_store):
    store, work, _, _ = trained_store
    rejecting = ["--estimator", "linear", "--threshold", "roc_auc.min_absolute_change=0.5"]
    result = keel("run", "--source", str(SAMPLE), "--target", "Status", "--store", str(store),
                  *rejecting, "--fail-on-reject", "--json", work_dir=work)
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "rejected"
    human = keel("run", "--source", str(SAMPLE), "--target", "Status", "--store", str(store),
                 *rejecting, "--fail-on-reject", work_dir=work)
    assert human.returncode == 3 and ": REJECTED (production is version" in human.stdout
    assert "keel: error" not in human.stderr


@pytest.mark.e2e
def test_fail_on_reject_exits_0_when_promoted(tmp_path):
    result = keel("run", "--source", str(SAMPLE), "--target", "Status", "--store",
                  str(tmp_path / "store"), "--estimator", "linear", "--fail-on-reject",
                  work_dir=tmp_path / "work")
    assert result.returncode == 0, result.stderr
    assert "PROMOTED" in result.stdout


def test_models_commands_on_empty_store(tmp_path):
    result = keel("models", "list", "--store", str(tmp_path), work_dir=tmp_path)
    assert result.returncode == 1
    assert "holds 0 models" in result.stderr and "--model" in result.stderr


def test_debug_of_a_models_command_is_read_from_the_click_context(tmp_path):
    plain = keel("models", "list", "--store", str(tmp_path), work_dir=tmp_path)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = keel("models", "list", "--store", str(tmp_path), "--debug", work_dir=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "RegistryError" in debug.stderr

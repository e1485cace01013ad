"""The benchmarks run end to end at a tiny size and write reports of the expected shape.

Only the structure and the sanity of the numbers are checked here, never their speed: how fast
keel is, is what the benchmarks themselves report (`make bench`).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
MODES = ["plain", "plain_production", "keel_first", "keel_production"]

pytestmark = pytest.mark.e2e


def run(script, *args):
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def check_machine(doc):
    machine = doc["machine"]
    assert machine["cpus"] >= 1 and machine["memory_gib"] > 0
    assert machine["python"].startswith("3.") and machine["cpu_model"]
    assert doc["date"][:2] == "20"


def test_the_pipeline_benchmark_compares_keel_with_the_plain_script(tmp_path):
    out = run("pipeline.py", "--rows", "500", "--repeat", "1", "--out", str(tmp_path))
    doc = json.loads((tmp_path / "pipeline.json").read_text())
    check_machine(doc)
    assert doc["benchmark"] == "pipeline" and doc["repeat"] == 1
    assert "ru_maxrss" in doc["memory_method"]
    [size] = doc["sizes"]
    assert size["rows"] == 500 and size["csv_mb"] >= 0
    assert sorted(size["modes"]) == sorted(MODES)
    for mode in MODES:
        numbers = size["modes"][mode]
        assert numbers["seconds"] > 0 and numbers["cpu_seconds"] > 0, mode
        assert numbers["peak_rss_mb"] > 20, mode  # a Python with pandas and scikit-learn
        assert 0.5 < numbers["roc_auc"] <= 1, mode
        assert len(numbers["runs"]) == 1
        assert sum(numbers["stages"].values()) <= numbers["seconds"] + 0.5, mode
    keel_stages = size["modes"]["keel_first"]["stages"]
    assert {"ingest", "validate", "preprocess", "train", "evaluate", "publish",
            "promote"} <= set(keel_stages)
    assert set(size["modes"]["plain"]["stages"]) == {"imports", "ingest", "statistics", "split",
                                                     "train", "evaluate", "save"}
    assert size["modes"]["keel_production"]["runs"][0]["baseline_rows"] > 0
    assert size["modes"]["keel_first"]["runs"][0]["baseline_rows"] is None
    ratios = size["ratios"]
    assert ratios["keel_first_vs_plain"] == pytest.approx(
        size["modes"]["keel_first"]["seconds"] / size["modes"]["plain"]["seconds"], abs=0.01)
    assert all(value > 0 for value in ratios.values())

    report = (tmp_path / "pipeline.md").read_text()
    assert report == out.stdout
    assert "| rows | plain script | plain + production | keel first version (× plain) |" in report
    assert "| 500 | ingest | ingest |" in report and "| 500 | train | train |" in report
    assert "2 cores" in report or f"{doc['machine']['cpus']} cores" in report
    progress = [line for line in out.stderr.splitlines() if "run 1/1" in line]
    assert sorted(line.split()[4] for line in progress) == sorted(MODES)


def test_the_stages_benchmark_measures_each_stage_against_its_floor(tmp_path):
    out = run("stages.py", "--rows", "500", "--repeat", "1", "--out", str(tmp_path))
    doc = json.loads((tmp_path / "stages.json").read_text())
    check_machine(doc)
    assert doc["benchmark"] == "stages"
    [size] = doc["sizes"]
    assert size["rows"] == 500 and size["snapshot_mb"] >= 0
    assert list(size["stages"]) == ["ingest", "statistics", "score", "predict"]
    for name, stage in size["stages"].items():
        for numbers in (stage["keel"], stage["floor"]):
            assert numbers["seconds"] > 0 and numbers["rows_per_second"] > 0, name
            assert numbers["peak_rss_mb"] > 20, name
        assert stage["ratio"] == pytest.approx(
            stage["floor"]["seconds"] / stage["keel"]["seconds"], rel=0.01)
        assert stage["floor_mode"] in stage["floors"]
    ingest = size["stages"]["ingest"]
    assert set(ingest["floors"]) == {"ingest_pandas", "ingest_pyarrow"}
    assert ingest["floor"]["seconds"] == min(f["seconds"] for f in ingest["floors"].values())
    assert ingest["target"] == 0.8 and isinstance(ingest["meets_target"], bool)
    assert size["stages"]["statistics"]["target"] == 0.5
    assert size["stages"]["score"]["meets_target"] is None

    report = (tmp_path / "stages.md").read_text()
    assert report == out.stdout
    for name in ("ingest", "statistics", "score", "predict"):
        assert f"| 500 | {name} |" in report
    assert "≥ 0.8" in report and "≥ 0.5" in report


def test_the_benchmarks_refuse_nonsense_sizes(tmp_path):
    for script in ("pipeline.py", "stages.py"):
        out = subprocess.run([sys.executable, str(BENCHMARKS / script), "--rows", "0",
                              "--out", str(tmp_path)], capture_output=True, text=True)
        assert out.returncode == 2 and "must be 1 or more" in out.stderr, script
    assert list(tmp_path.iterdir()) == []


def test_the_plain_script_reports_its_steps_and_the_production_model(tmp_path):
    from keel.sample import write_sample

    source = write_sample(tmp_path / "t.csv", 400, seed=2).path
    first = json.loads(run("plain_script.py", "--source", source, "--work",
                           str(tmp_path / "a")).stdout)
    assert first["rows"] == 400 and first["test_rows"] == 80
    assert first["production_metrics"] is None
    assert (tmp_path / "a" / "model.joblib").exists()
    assert (tmp_path / "a" / "snapshot.parquet").exists()
    second = json.loads(run("plain_script.py", "--source", source, "--work", str(tmp_path / "b"),
                            "--production", str(tmp_path / "a" / "model.joblib")).stdout)
    # the same rows and seed: the older model is the same model, so it scores the same
    assert second["production_metrics"] == second["metrics"] == first["metrics"]
    assert set(first["metrics"]) >= {"accuracy", "roc_auc", "log_loss", "brier", "f1"}
    assert all(seconds >= 0 for seconds in first["steps"].values())

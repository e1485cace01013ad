"""``keel validate`` on real tables (scikit-learn's bundled datasets): what it prints shows every
number of every anomaly, and a refused table leaves nothing in the output folder."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_wine

try:
    from test_cli import keel
except ImportError:  # tests/ imported as a package
    from tests.test_cli import keel


@pytest.fixture(scope="module")
def wine(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wine") / "wine.csv"
    load_wine(as_frame=True).frame.to_csv(path, index=False)
    return path


def test_a_leaking_column_with_a_long_name_is_printed_with_its_score_and_threshold(wine,
                                                                                   tmp_path):
    """The line passed 100 characters and was cut to '... balanced_accuracy 1.000 (...'."""
    frame = pd.read_csv(wine)
    name = "od280/od315_of_diluted_wine2"  # 28 characters: shown whole, quoted
    frame[name] = frame["target"] * 2.5 + 1  # computed from the target
    source = tmp_path / "leaky.csv"
    frame.to_csv(source, index=False)
    result = keel("validate", "--source", str(source), "--target", "target", "--output",
                  str(tmp_path / "out"), work_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Data checks passed, 1 warning\n"), result.stdout
    lines = [line for line in result.stdout.splitlines()  # the checks' lines (not the paths)
             if not line.startswith(("  report ", "  markdown ", "  reference "))]
    assert all(len(line) <= 100 for line in lines), lines
    start = next(i for i, line in enumerate(lines) if "target_leakage" in line)
    assert lines[start].startswith(f"  warning '{name}' target_leakage: ")
    shown = " ".join(line.strip() for line in lines[start:start + 2])
    assert shown.endswith("possible target leakage, it alone scores balanced_accuracy 1.000 "
                          "(threshold 0.980)"), lines
    assert "..." not in result.stdout


@pytest.mark.parametrize("problem", ["target", "ingest"])
def test_a_refused_table_leaves_no_output_folder_and_no_snapshot(wine, tmp_path, problem):
    """Its folder was created before ingest, and a failed read left a part of the snapshot."""
    source, target = wine, "target"
    if problem == "target":
        target = "Target"
    else:  # a row that breaks the CSV after many good ones: ingest fails midway
        source = tmp_path / "broken.csv"
        text = wine.read_text()
        source.write_text(text + "".join(text.splitlines(True)[1:]) * 300 + "1,2,3\n")
    out = tmp_path / "reports" / "today"
    result = keel("validate", "--source", str(source), "--target", target, "--output", str(out),
                  work_dir=tmp_path)
    assert result.returncode == 1
    stage = "validate" if problem == "target" else "ingest"
    assert re.match(rf"keel: error: \[{stage}\] ", result.stderr.splitlines()[-1])
    assert not out.exists()

    given = tmp_path / "mine"  # a folder the user made is kept, and holds nothing of the call
    given.mkdir()
    result = keel("validate", "--source", str(source), "--target", target, "--output",
                  str(given), work_dir=tmp_path)
    assert result.returncode == 1 and given.is_dir() and list(given.iterdir()) == []


def test_a_stopped_check_counts_its_anomalies_in_words(wine, tmp_path):
    source = wine  # alcohol is 11-15: every value is below the rule's minimum, made an error
    rules = tmp_path / "rules.yaml"
    rules.write_text("columns:\n  alcohol: {min: 20}\n")
    result = keel("validate", "--source", str(source), "--target", "target",
                  "--validation-rules", str(rules), "--severity", "out_of_range=error",
                  "--output", str(tmp_path / "out"), work_dir=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("Data checks STOPPED: 1 blocking anomaly, 0 warnings\n"), (
        result.stdout + result.stderr)

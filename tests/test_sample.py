"""keel.sample and `keel sample`: seeded credit-shaped tables, written in chunks."""

import gzip
import hashlib
import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from keel.errors import ParameterError
from keel.sample import (
    CATEGORICAL,
    CHUNK_ROWS,
    COLUMNS,
    MISSING,
    NUMERIC,
    TARGET,
    chunks,
    write_sample,
)

KEEL = [sys.executable, "-m", "keel"]


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def keel(*args, cwd=None):
    return subprocess.run([*KEEL, *args], capture_output=True, text=True, cwd=cwd)


def test_a_table_has_the_credit_shape(tmp_path):
    result = write_sample(tmp_path / "t.parquet", 5000, seed=3)
    frame = pd.read_parquet(result.path)
    assert result.rows == len(frame) == 5000 and result.bytes > 0
    assert list(frame.columns) == COLUMNS
    assert len(NUMERIC) == 10 and len(CATEGORICAL) == 4
    assert all(frame[c].dtype.kind in "if" for c in NUMERIC)
    assert all(frame[c].dtype.kind not in "iufb" for c in CATEGORICAL)
    assert set(frame[TARGET]) == {"good", "bad"}
    missing = frame.isna().mean()
    for column in NUMERIC:  # the columns with missing values have about their share of them
        if column in MISSING:
            assert 0.3 * MISSING[column] < missing[column] < 2 * MISSING[column], column
        else:
            assert missing[column] == 0, column
    assert missing[[TARGET, *CATEGORICAL]].sum() == 0
    assert 0.15 < (frame[TARGET] == "bad").mean() < 0.4


def test_the_target_depends_on_the_features_but_not_perfectly(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    frame = pd.read_parquet(write_sample(tmp_path / "t.parquet", 20000, seed=1).path)
    x = frame[NUMERIC + CATEGORICAL].astype({c: "category" for c in CATEGORICAL})
    y = frame[TARGET] == "bad"
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(x[:15000], y[:15000])
    auc = roc_auc_score(y[15000:], model.predict_proba(x[15000:])[:, 1])
    assert 0.7 < auc < 0.95


def test_the_same_seed_gives_the_same_bytes_in_another_process(tmp_path):
    here = write_sample(tmp_path / "a.csv", 1500, seed=7)
    code = ("import sys; from keel.sample import write_sample; "
            "write_sample(sys.argv[1], 1500, seed=7)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.csv")], check=True)
    assert digest(tmp_path / "a.csv") == digest(tmp_path / "b.csv")
    assert here.bytes == (tmp_path / "b.csv").stat().st_size


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.csv.gz"])
def test_every_format_is_deterministic_and_seeds_differ(tmp_path, name):
    write_sample(tmp_path / "a" / name, 300, seed=0)
    write_sample(tmp_path / "b" / name, 300, seed=0)
    write_sample(tmp_path / "c" / name, 300, seed=1)
    assert digest(tmp_path / "a" / name) == digest(tmp_path / "b" / name)
    assert digest(tmp_path / "a" / name) != digest(tmp_path / "c" / name)


def test_csv_parquet_and_gzipped_csv_hold_the_same_rows(tmp_path):
    csv = pd.read_csv(write_sample(tmp_path / "t.csv", 800, seed=2).path)
    gz = pd.read_csv(write_sample(tmp_path / "t.csv.gz", 800, seed=2).path)
    parquet = pd.read_parquet(write_sample(tmp_path / "t.parquet", 800, seed=2).path)
    with gzip.open(tmp_path / "t.csv.gz", "rt") as f:
        assert f.readline().strip() == ",".join(COLUMNS)  # a plain header, no quotes
    pd.testing.assert_frame_equal(csv, gz)
    pd.testing.assert_frame_equal(csv[NUMERIC].astype(float), parquet[NUMERIC].astype(float))
    assert (csv[[TARGET, *CATEGORICAL]].to_numpy() == parquet[[TARGET, *CATEGORICAL]].to_numpy()
            ).all()
    assert csv.isna().sum().sum() == parquet.isna().sum().sum() > 0


def test_a_table_is_written_in_chunks(tmp_path):
    rows = 2 * CHUNK_ROWS + 10
    sizes = [batch.num_rows for batch in chunks(rows, seed=0)]
    assert sizes == [CHUNK_ROWS, CHUNK_ROWS, 10]
    seen = []
    write_sample(tmp_path / "t.parquet", rows, progress=lambda done, total: seen.append(done))
    assert seen == [CHUNK_ROWS, 2 * CHUNK_ROWS, rows]
    assert pq.ParquetFile(tmp_path / "t.parquet").metadata.num_row_groups == 3


@pytest.mark.parametrize("rows", [0, -5])
def test_rows_below_one_are_refused(tmp_path, rows):
    with pytest.raises(ParameterError, match="--rows of sample must be a whole number, 1 or more"):
        write_sample(tmp_path / "t.csv", rows)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["t.txt", "t.json", "t", ".csv", "t.csv.bz2"])
def test_an_unknown_suffix_is_refused(tmp_path, name):
    with pytest.raises(ParameterError, match=r"ending in \.csv\.gz, \.csv, \.parquet"):
        write_sample(tmp_path / name, 10)


def test_an_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("mine")
    with pytest.raises(ParameterError, match="exists; pass --overwrite"):
        write_sample(path, 10)
    assert path.read_text() == "mine"
    write_sample(path, 10, overwrite=True)
    assert len(pd.read_csv(path)) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left


def test_a_folder_below_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError, match="could not be written"):
        write_sample(tmp_path / "file" / "t.csv", 10)


def test_the_command_writes_the_table_and_reports_it(tmp_path):
    out = keel("sample", "--rows", "700", "--out", "t.parquet", "--seed", "4", "--json",
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc == {"path": str(tmp_path / "t.parquet"), "format": "parquet", "rows": 700,
                   "seed": 4, "bytes": (tmp_path / "t.parquet").stat().st_size}
    assert "Sampling 700 rows (seed 4)" in out.stderr
    assert "sample      " not in out.stderr  # progress lines only for large tables
    expected = write_sample(tmp_path / "again.parquet", 700, seed=4)
    assert digest(tmp_path / "t.parquet") == digest(tmp_path / "again.parquet")
    assert expected.rows == 700


def test_the_command_prints_progress_for_a_large_table(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import keel.sample_cli
    from keel.cli import main

    monkeypatch.setattr(keel.sample_cli, "PROGRESS_ROWS", 1000)
    result = CliRunner().invoke(main, ["sample", "--rows", str(CHUNK_ROWS + 5), "--out",
                                       str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("  sample")]
    assert progress == [f"  sample      {CHUNK_ROWS:,} of {CHUNK_ROWS + 5:,} rows (99%)",
                        f"  sample      {CHUNK_ROWS + 5:,} of {CHUNK_ROWS + 5:,} rows (100%)"]
    assert f"Wrote {CHUNK_ROWS + 5:,} rows (csv, " in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--rows", "0", "--out", "t.csv"], "[sample] The --rows of sample must be a whole number"),
    (["--rows", "10", "--out", "t.xlsx"], "[sample] The --out of sample must be a file name "
                                          "ending in .csv.gz, .csv, .parquet. Got 't.xlsx'."),
    (["--rows", "10", "--seed", "-1", "--out", "t.csv"], "[sample] The --seed of sample"),
    (["--rows", "10", "--out", "/proc/keel/t.csv"], "[sample] The folder of --out must be a "
                                                    "folder Keel can write to"),
    (["--rows", "10", "--out", "gs://bucket/t.csv"], "[sample] The --out of sample must be a "
                                                     "local file path"),
])
def test_the_command_refuses_bad_input_in_one_line(tmp_path, args, message):
    out = keel("sample", *args, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [out.stderr.splitlines()[-1]]  # one line, no traceback
    assert out.stderr.startswith(f"keel: error: {message}")
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_an_unwritable_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    out = keel("sample", "--rows", "10", "--out", str(tmp_path / "file" / "t.csv"))
    assert out.returncode == 1
    assert out.stderr == ("keel: error: [sample] The folder of --out must be a folder Keel can "
                          f"write to; {tmp_path / 'file'} is a file.\n")


def test_the_command_is_a_usage_error_without_rows(tmp_path):
    out = keel("sample", "--out", "t.csv", cwd=tmp_path)
    assert out.returncode == 2 and "--rows" in out.stderr

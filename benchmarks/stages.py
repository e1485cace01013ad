"""Benchmark: keel's stages, one at a time, against the floor of the same work without Keel.

On a seeded credit-shaped CSV from ``keel.sample`` (``--rows``, default 1M), each measurement in
a fresh process (time and the process's peak resident memory, VmHWM), median of ``--repeat``:

- ``ingest``: ``keel.ingest.ingest`` (CSV to the zstd Parquet snapshot and its data version)
  against the faster of pandas (``read_csv`` then ``to_parquet``) and pyarrow (``csv.read_csv``
  then ``parquet.write_table``), both writing zstd Parquet. Target: at least 0.8x the floor's
  throughput.
- ``statistics``: ``keel.statistics.compute_statistics`` on the snapshot against the plain
  pyarrow scan of ``benchmarks/statistics_memory.py`` (count, min, max and mean per column; run
  through that benchmark's own measuring process). Target: at least 0.5x its throughput.
- ``score``: what keel's evaluate does with a frame (``keel.metrics.predict`` then
  ``metrics_of``) against ``model.predict`` alone on the same rows (every row of the snapshot,
  already in memory).
- ``predict``: what keel's predict stage does per batch of the snapshot
  (``keel.predict.training_frame`` then its scoring, without the registry or the output file)
  against ``pandas.read_parquet`` then ``model.predict``.

The model is keel's default (``keel.train.train``: HistGradientBoosting) fitted once on at most
100,000 rows of the snapshot. Writes ``stages.json`` and ``stages.md`` into ``--out`` (default
benchmarks/results) and prints each measurement as it goes.

    .venv/bin/python benchmarks/stages.py                  # 1M rows
    .venv/bin/python benchmarks/stages.py --rows 100000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import RESULTS, machine, machine_line, write_results  # noqa: E402 - benchmarks/ is not a package

TARGET = "Status"
TRAIN_ROWS = 100_000
#: stage -> (keel's mode, the floor's modes, target ratio of keel's throughput to the floor's)
STAGES: dict[str, tuple[str, list[str], float | None]] = {
    "ingest": ("ingest_keel", ["ingest_pandas", "ingest_pyarrow"], 0.8),
    "statistics": ("statistics_keel", ["statistics_pyarrow_scan"], 0.5),
    "score": ("score_keel", ["score_model_predict"], None),
    "predict": ("predict_keel", ["predict_model_predict"], None),
}

#: this benchmark's statistics modes, and statistics_memory.py's names of them
STATISTICS_MODES = {"statistics_keel": "statistics", "statistics_pyarrow_scan": "floor"}


# -- the measured processes ---------------------------------------------------------------------
def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _model(folder: Path) -> tuple[Any, Any, dict[str, str]]:
    """The fitted model, its feature spec and the training dtypes (from :func:`prepare`)."""
    import joblib

    from keel.contracts import FeatureSpec

    spec = FeatureSpec.read(str(folder / "spec.json"), stage="evaluate")
    dtypes = json.loads((folder / "dtypes.json").read_text())
    return joblib.load(folder / "model.joblib"), spec, dtypes


def child(mode: str, folder: Path) -> dict[str, float]:
    """Run one ``mode`` on the prepared ``folder`` in this (fresh) process; its numbers."""
    import pandas as pd
    import pyarrow.parquet as pq

    csv, snapshot, out = folder / "table.csv", folder / "snapshot.parquet", folder / "out.parquet"
    work: Any
    if mode == "ingest_keel":
        from keel.ingest import ingest

        def work() -> Any:
            return ingest(str(csv), str(out))
    elif mode == "ingest_pandas":
        def work() -> Any:
            pd.read_csv(csv).to_parquet(out, compression="zstd", index=False)
    elif mode == "ingest_pyarrow":
        import pyarrow.csv as pacsv

        def work() -> Any:
            pq.write_table(pacsv.read_csv(csv), out, compression="zstd")
    elif mode in ("score_keel", "score_model_predict"):
        from keel.metrics import metrics_of, predict

        model, spec, _ = _model(folder)
        frame = pd.read_parquet(snapshot)
        if mode == "score_keel":
            def work() -> Any:
                return metrics_of(predict(model, frame, spec))
        else:
            def work() -> Any:
                return model.predict(frame[spec.features])
    elif mode == "predict_keel":
        from keel.predict import BATCH_ROWS, _scored, training_frame

        model, spec, dtypes = _model(folder)

        def work() -> Any:
            parquet = pq.ParquetFile(snapshot, pre_buffer=False)
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                _scored(model, training_frame(batch, spec, dtypes), spec.task)
    elif mode == "predict_model_predict":
        model, spec, _ = _model(folder)

        def work() -> Any:
            return model.predict(pd.read_parquet(snapshot, columns=spec.features))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    base = _vm("VmRSS")
    started, started_cpu = time.perf_counter(), _cpu()
    work()
    return {"seconds": time.perf_counter() - started, "cpu_seconds": _cpu() - started_cpu,
            "peak_rss": _vm("VmHWM"), "base_rss": base}


def measure(mode: str, folder: Path) -> dict[str, float]:
    """One measurement of ``mode`` in a fresh process."""
    if mode in STATISTICS_MODES:  # statistics_memory.py's own measuring process
        from statistics_memory import measure as measure_statistics

        return measure_statistics(folder / "snapshot.parquet", STATISTICS_MODES[mode])
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(folder)], check=True,
                         capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- preparing the table, snapshot and model ----------------------------------------------------
def prepare(folder: Path, rows: int, seed: int) -> None:
    """The CSV, keel's snapshot of it, and keel's default model fitted on its first rows."""
    import joblib
    import pandas as pd
    import pyarrow.parquet as pq

    from keel.contracts import FeatureSpec
    from keel.ingest import ingest
    from keel.sample import CATEGORICAL, NUMERIC, write_sample
    from keel.train import train

    folder.mkdir(parents=True)
    write_sample(folder / "table.csv", rows, seed)
    ingest(str(folder / "table.csv"), str(folder / "snapshot.parquet"))
    spec = FeatureSpec(target=TARGET, task="classification", numeric=NUMERIC,
                       categorical=CATEGORICAL, encoding="auto")
    parquet = pq.ParquetFile(folder / "snapshot.parquet")
    head = next(parquet.iter_batches(batch_size=min(rows, TRAIN_ROWS)))
    frame = pd.DataFrame(head.to_pandas())
    model, _ = train(frame, spec, "hist_gradient_boosting", {}, seed)
    joblib.dump(model, folder / "model.joblib")
    spec.write(str(folder / "spec.json"))
    (folder / "dtypes.json").write_text(json.dumps({c: str(frame[c].dtype) for c in frame}))


# -- the report ---------------------------------------------------------------------------------
def summary(runs: list[dict[str, float]], rows: int) -> dict[str, Any]:
    """Medians of one mode's runs."""
    seconds = statistics.median(r["seconds"] for r in runs)
    return {"seconds": round(seconds, 4), "rows_per_second": round(rows / seconds),
            "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs), 4),
            "peak_rss_mb": round(max(r["peak_rss"] for r in runs) / 2**20, 1),
            "runs": [round(r["seconds"], 4) for r in runs]}


def markdown(doc: dict[str, Any]) -> str:
    """The Markdown report: one line per size and stage."""
    lines = ["# Stage benchmark: keel's stages against their floor", "",
             f"{doc['date']}. {machine_line(doc['machine'])}", "",
             f"Median of {doc['repeat']} runs, each in a fresh process; peak memory is the "
             "process's VmHWM (largest of the runs). Ratio: keel's throughput over the floor's "
             "(1 = as fast as the floor).", "",
             "| rows | stage | keel s | keel rows/s | floor | floor s | floor rows/s | ratio | "
             "target | peak MiB keel / floor |",
             "|---:|---|---:|---:|---|---:|---:|---:|---|---:|"]
    for size in doc["sizes"]:
        for name, stage in size["stages"].items():
            keel, floor = stage["keel"], stage["floor"]
            target = "" if stage["target"] is None else (
                f"≥ {stage['target']} {'met' if stage['meets_target'] else 'NOT met'}")
            lines.append(
                f"| {size['rows']:,} | {name} | {keel['seconds']:.3f} | "
                f"{keel['rows_per_second']:,} | {stage['floor_mode']} | {floor['seconds']:.3f} | "
                f"{floor['rows_per_second']:,} | {stage['ratio']:.2f} | {target} | "
                f"{keel['peak_rss_mb']:.0f} / {floor['peak_rss_mb']:.0f} |")
    lines += ["", "Floors: ingest, the faster of pandas and pyarrow (CSV to zstd Parquet); "
              "statistics, a plain pyarrow scan (count, min, max, mean: no quantiles or distinct "
              "counts); score and predict, `model.predict` alone."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Prepare each size, measure every mode in turn, write the JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for stages.json and stages.md")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    if args.repeat < 1 or any(rows < 1 for rows in args.rows):
        parser.error("--repeat and --rows must be 1 or more")
    info = machine()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{date}  {machine_line(info)}", file=sys.stderr, flush=True)
    sizes = []
    with tempfile.TemporaryDirectory(prefix="keel-bench-stages-") as tmp:
        for rows in sorted(set(args.rows)):
            folder = Path(tmp) / str(rows)
            prepare(folder, rows, args.seed)
            runs: dict[str, list[dict[str, float]]] = {}
            for repeat in range(args.repeat):  # every mode once per repeat, side by side
                for keel_mode, floor_modes, _ in STAGES.values():
                    for mode in [keel_mode, *floor_modes]:
                        result = measure(mode, folder)
                        runs.setdefault(mode, []).append(result)
                        print(f"{rows:>10,} rows  run {repeat + 1}/{args.repeat}  {mode:<22} "
                              f"{result['seconds']:8.3f} s  peak "
                              f"{result['peak_rss'] / 2**20:7.1f} MiB", file=sys.stderr,
                              flush=True)
            stages = {}
            for name, (keel_mode, floor_modes, target) in STAGES.items():
                keel = summary(runs[keel_mode], rows)
                floors = {mode: summary(runs[mode], rows) for mode in floor_modes}
                best = min(floors, key=lambda mode: floors[mode]["seconds"])
                ratio = round(floors[best]["seconds"] / keel["seconds"], 3)
                stages[name] = {"keel_mode": keel_mode, "keel": keel, "floor_mode": best,
                                "floor": floors[best], "floors": floors, "ratio": ratio,
                                "target": target,
                                "meets_target": None if target is None else ratio >= target}
            sizes.append({"rows": rows,
                          "csv_mb": round((folder / "table.csv").stat().st_size / 2**20, 1),
                          "snapshot_mb": round(
                              (folder / "snapshot.parquet").stat().st_size / 2**20, 1),
                          "stages": stages})
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    doc = {"benchmark": "stages", "date": date, "machine": info, "repeat": args.repeat,
           "seed": args.seed, "train_rows": TRAIN_ROWS, "sizes": sizes}
    write_results(args.out, doc, markdown(doc))


if __name__ == "__main__":
    main()

"""Benchmark: time and peak memory of ingest and statistics as rows grow.

Writes seeded, credit-shaped Parquet tables (10 numeric columns, some with missing values, and 4
categorical ones; zstd, one row group per 65,536 rows like an ingest snapshot) of each size into
a temporary folder, then, each in a fresh process, measures:

- ``ingest``: ``keel.ingest.ingest`` of the table as a Parquet source into a snapshot (the data
  version included);
- ``statistics``: ``compute_statistics(path)``;
- ``floor``: a plain pyarrow scan of the same batches computing count, min, max and mean per
  column, the least a one-pass statistics can cost;

and reports wall and CPU time (best of ``--repeat``) and the process's peak resident memory
(VmHWM),
with the resident memory after imports (``base``) for reference. Peak memory should stay about
the same when the rows grow tenfold: ingest and statistics stream record batches.

    .venv/bin/python benchmarks/statistics_memory.py                 # 200k, 1M and 2M rows
    .venv/bin/python benchmarks/statistics_memory.py --rows 100000 1000000 --repeat 1

Prints a Markdown table and writes benchmarks/results/statistics_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS = Path(__file__).resolve().parent / "results" / "statistics_memory.json"
ROW_GROUP_ROWS = 65536
PURPOSES = ["debt_consolidation", "credit_card", "home_improvement", "car", "medical",
            "small_business", "vacation", "other"]
HOMES = ["rent", "mortgage", "own", "other"]
GRADES = list("ABCDEFG")
STATES = [f"S{i:02d}" for i in range(50)]


# -- the synthetic table ----------------------------------------------------------------------
def _with_missing(values: np.ndarray, share: float, rng: np.random.Generator) -> pa.Array:
    return pa.array(values, mask=rng.random(values.size) < share)


def credit_batch(rows: int, rng: np.random.Generator) -> pa.RecordBatch:
    """``rows`` rows of a credit-shaped table: 10 numeric columns and 4 categorical ones."""
    income = rng.lognormal(10.8, 0.6, rows).round(2)
    loan = (rng.gamma(2.0, 7500.0, rows) // 25 * 25).astype(np.float64)
    def pick(values: list[str], weights: np.ndarray | None = None) -> pa.Array:
        codes = rng.choice(len(values), rows, p=weights)
        return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()),
                                              pa.array(values)).dictionary_decode()
    return pa.RecordBatch.from_pydict({
        "age": pa.array(rng.integers(18, 90, rows)),
        "income": _with_missing(income, 0.05, rng),
        "loan_amount": pa.array(loan),
        "credit_score": _with_missing(rng.normal(680, 70, rows).clip(300, 850).astype(np.int64),
                                      0.02, rng),
        "debt_to_income": pa.array((loan / income).round(4)),
        "months_employed": _with_missing(rng.geometric(1 / 60, rows).astype(np.int64), 0.08, rng),
        "open_accounts": pa.array(rng.poisson(9, rows)),
        "utilization": _with_missing(rng.beta(2, 5, rows), 0.03, rng),
        "late_payments": pa.array(rng.poisson(0.4, rows)),
        "balance": _with_missing(rng.normal(12000, 9000, rows).round(2), 0.1, rng),
        "purpose": pick(PURPOSES, np.array([30, 25, 12, 10, 8, 6, 4, 5]) / 100),
        "home_ownership": pick(HOMES, np.array([0.45, 0.4, 0.13, 0.02])),
        "state": pick(STATES),
        "grade": pick(GRADES, np.array([0.18, 0.29, 0.26, 0.15, 0.08, 0.03, 0.01])),
    })


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """Write the table of ``rows`` rows, one row group at a time (flat memory)."""
    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, ROW_GROUP_ROWS):
            batch = credit_batch(min(ROW_GROUP_ROWS, rows - start), rng)
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
            writer.write_batch(batch)
    finally:
        if writer is not None:
            writer.close()


# -- the measured processes -------------------------------------------------------------------
CHILD = r"""
import json, resource, sys, time

def vm(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0

path, mode = sys.argv[1], sys.argv[2]
import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
import keel.statistics as statistics
from keel.ingest import ingest

def floor(path):
    file = pq.ParquetFile(path, pre_buffer=False)
    state = {}
    for batch in file.iter_batches(batch_size=statistics.BATCH_ROWS):
        for name, column in zip(batch.schema.names, batch.columns):
            s = state.setdefault(name, [0, None, None, 0.0])
            s[0] += len(column) - column.null_count
            if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
                low, high = pc.min_max(column).as_py().values()
                s[1] = low if s[1] is None else min(s[1], low)
                s[2] = high if s[2] is None else max(s[2], high)
                s[3] += pc.sum(column).as_py() or 0
    return {n: (s[0], s[1], s[2], s[3] / s[0] if s[0] else None) for n, s in state.items()}

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

base = vm("VmRSS")
start, start_cpu = time.perf_counter(), cpu()
if mode == "ingest":
    result = ingest(path, sys.argv[3])
elif mode == "statistics":
    result = statistics.compute_statistics(path)
else:
    result = floor(path)
seconds, cpu_seconds = time.perf_counter() - start, cpu() - start_cpu
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss": vm("VmHWM"),
                  "base_rss": base}))
"""


def measure(path: Path, mode: str) -> dict[str, float]:
    """Run ``mode`` (ingest, statistics or floor) on ``path`` in a fresh process: its numbers."""
    snapshot = path.with_name("snapshot.parquet")
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(snapshot)], check=True,
                         capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    """Write the tables, measure each, print the Markdown table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000, 2_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best time)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    records = []
    with tempfile.TemporaryDirectory(prefix="keel-statistics-") as folder:
        for rows in args.rows:
            path = Path(folder) / f"credit-{rows}.parquet"
            write_table(path, rows, args.seed)
            for mode in ("ingest", "statistics", "floor"):
                runs = [measure(path, mode) for _ in range(args.repeat)]
                records.append({
                    "rows": rows, "columns": 14, "mode": mode,
                    "file_mb": round(path.stat().st_size / 2**20, 1),
                    "seconds": round(min(r["seconds"] for r in runs), 3),
                    "cpu_seconds": round(min(r["cpu_seconds"] for r in runs), 3),
                    "peak_rss_mb": round(max(r["peak_rss"] for r in runs) / 2**20, 1),
                    "base_rss_mb": round(max(r["base_rss"] for r in runs) / 2**20, 1),
                })
                print(f"{rows:>10,} rows  {mode:<10} {records[-1]['seconds']:.3f} s  "
                      f"peak {records[-1]['peak_rss_mb']} MiB", file=sys.stderr)

    lines = ["| rows | what | file MiB | wall s | CPU s | peak RSS MiB | RSS after imports MiB |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['rows']:,} | {r['mode']} | {r['file_mb']} | {r['seconds']:.3f} | "
              f"{r['cpu_seconds']:.3f} | {r['peak_rss_mb']} | {r['base_rss_mb']} |"
              for r in records]
    lines.append(f"\nBest of {args.repeat} runs for times, largest peak; {os.cpu_count()} CPUs.")
    ratios = {}
    for mode in ("ingest", "statistics"):
        peaks = {r["rows"]: r["peak_rss_mb"] for r in records if r["mode"] == mode}
        smallest, largest = min(peaks), max(peaks)
        ratios[mode] = round(peaks[largest] / peaks[smallest], 3)
        if largest > smallest:
            lines.append(f"Peak memory of {mode} at {largest / smallest:g}x the rows: "
                         f"{ratios[mode]:.2f}x ({peaks[smallest]} MiB at {smallest:,} rows, "
                         f"{peaks[largest]} MiB at {largest:,}).")
    print("\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "benchmark": "statistics_memory",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
        "repeat": args.repeat,
        "results": records,
        "peak_ratio": {"rows": f"{max(args.rows)} / {min(args.rows)}", **ratios},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()

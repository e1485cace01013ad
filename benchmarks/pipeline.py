"""Benchmark: a whole ``keel run`` against a plain one-process script doing the same work.

For each table size (seeded credit-shaped CSVs from ``keel.sample``: 1k, 100k and 1M rows by
default, ``--large`` adds 5M), measures ``--repeat`` times, side by side and in a rotating order
(so a slow minute on a shared machine falls on every contender alike):

- ``plain``: ``benchmarks/plain_script.py``, one process: ingest (CSV to Parquet), statistics,
  stratified 80/20 split, HistGradientBoosting in a ColumnTransformer pipeline, metrics, joblib;
- ``plain_production``: the same, also re-scoring an older model on the test rows;
- ``keel_first``: ``keel run --source CSV --target Status --store S --work-dir W --json`` with a
  fresh, empty store and work dir: the first version;
- ``keel_production``: the same, on a copy of a store that already holds version 1 (made once per
  size, before the measurements): validate compares with it, evaluate re-scores it.

Each measurement runs in a fresh wrapper process that starts the command and, once it ended,
reads ``getrusage(RUSAGE_CHILDREN)``: the wall time end to end (interpreter start included), the
CPU time of the whole process tree, and ``ru_maxrss``, the peak resident memory of the largest
single process of the tree (Linux counts every descendant that was waited for; it is not the sum
of processes running at once). Keel's per-stage times come from its progress lines on standard
error (``  train       success (1.6s)``, 0.1 s resolution); the plain script prints its own.

Reports medians over the repeats and the ratios keel / plain; writes ``pipeline.json`` and
``pipeline.md`` (into ``--out``, default benchmarks/results) with the machine and the date.

    .venv/bin/python benchmarks/pipeline.py                      # 1k, 100k and 1M rows, 3 repeats
    .venv/bin/python benchmarks/pipeline.py --rows 1000 100000 --repeat 5
    .venv/bin/python benchmarks/pipeline.py --large              # adds 5M rows
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PLAIN_SCRIPT = HERE / "plain_script.py"
TARGET = "Status"
DEFAULT_ROWS = [1_000, 100_000, 1_000_000]
LARGE_ROWS = 5_000_000
MODES = ("plain", "plain_production", "keel_first", "keel_production")
#: keel's stages next to the plain script's step doing the same work
STAGE_PAIRS = [("ingest", "ingest"), ("validate", "statistics"), ("preprocess", "split"),
               ("tune", None), ("train", "train"), ("evaluate", "evaluate"),
               ("publish", "save"), ("deploy", None), ("promote", None), (None, "imports")]
MEMORY_METHOD = ("peak RSS of the largest single process of the tree: "
                 "getrusage(RUSAGE_CHILDREN).ru_maxrss read by a fresh wrapper process per "
                 "measurement once the command ended")
#: the environment of the measured commands (``--omp-threads`` sets OMP_NUM_THREADS in it)
ENV = dict(os.environ)
_STAGE_LINE = re.compile(r"^\s+(\w+)\s+success \(([0-9.]+)s\)\s*$")

# A fresh process per measurement: RUSAGE_CHILDREN then covers this one command's tree only.
WRAPPER = r"""
import json, resource, subprocess, sys, time
out, err, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "wb") as stdout, open(err, "wb") as stderr:
    start = time.perf_counter()
    status = subprocess.call(cmd, stdout=stdout, stderr=stderr)
    seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"status": status, "seconds": seconds, "peak_rss": usage.ru_maxrss * 1024,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime}))
"""


# -- the machine --------------------------------------------------------------------------------
def _proc_field(path: str, field: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    """What the numbers were measured on: cores, memory, CPU, Python, keel's commit, the load."""
    from importlib.metadata import PackageNotFoundError, version

    memory = _proc_field("/proc/meminfo", "MemTotal")  # "24576000 kB"
    try:
        keel_version = version("keel")
    except PackageNotFoundError:
        keel_version = None
    status = _git("status", "--porcelain")
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "keel": keel_version,
        "commit": _git("rev-parse", "--short=12", "HEAD"),
        "uncommitted_changes": bool(status) if status is not None else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def machine_line(info: dict[str, Any]) -> str:
    """The machine in one Markdown line."""
    dirty = " with uncommitted changes" if info.get("uncommitted_changes") else ""
    threads = info.get("omp_num_threads")
    return (f"Machine: {info['cpus']} cores, {info['memory_gib']} GiB, {info['cpu_model']}; "
            f"Python {info['python']}; keel {info['keel']} at {info['commit']}{dirty}; load "
            f"average {' / '.join(map(str, info['load_average']))} at the start; "
            f"OMP_NUM_THREADS {threads or 'unset'}.")


# -- measuring ----------------------------------------------------------------------------------
def measure(command: list[str], folder: Path) -> dict[str, Any]:
    """Run ``command`` under a fresh wrapper: status, seconds, CPU, peak RSS, stdout, stderr."""
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    wrapped = subprocess.run([sys.executable, "-c", WRAPPER, str(out), str(err), *command],
                             check=True, capture_output=True, text=True, env=ENV)
    result: dict[str, Any] = json.loads(wrapped.stdout.strip().splitlines()[-1])
    result["stdout"] = out.read_text(errors="replace")
    result["stderr"] = err.read_text(errors="replace")
    if result["status"] != 0:
        tail = "\n".join(result["stderr"].splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command)} exited with {result['status']}:\n{tail}")
    return result


def keel_stages(stderr: str) -> dict[str, float]:
    """Seconds per stage from keel's progress lines (repeated tasks, such as tune, add up)."""
    stages: dict[str, float] = {}
    for line in stderr.splitlines():
        if match := _STAGE_LINE.match(line):
            stages[match[1]] = round(stages.get(match[1], 0.0) + float(match[2]), 3)
    return stages


def last_json(stdout: str) -> dict[str, Any]:
    """The last line of standard output, a JSON object."""
    doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return doc


def keel_command() -> list[str]:
    """The ``keel`` of this Python (the venv's script, else ``python -m keel``)."""
    script = Path(sys.executable).parent / "keel"
    return [str(script)] if script.exists() else [sys.executable, "-m", "keel"]


def keel_run(source: Path, store: Path, work_dir: Path) -> list[str]:
    """The measured ``keel run`` command line."""
    return [*keel_command(), "run", "--source", str(source), "--target", TARGET, "--store",
            str(store), "--work-dir", str(work_dir), "--json"]


def plain_run(source: Path, work: Path, production: Path | None = None) -> list[str]:
    """The measured plain script command line."""
    command = [sys.executable, str(PLAIN_SCRIPT), "--source", str(source), "--target", TARGET,
               "--work", str(work)]
    return command + (["--production", str(production)] if production else [])


class Size:
    """One table size: its CSV, the prepared production store and model, the measurements."""

    def __init__(self, rows: int, folder: Path, seed: int):
        from keel.sample import write_sample

        self.rows, self.folder = rows, folder
        folder.mkdir(parents=True)
        self.csv = folder / f"credit-{rows}.csv"
        started = time.perf_counter()
        write_sample(self.csv, rows, seed)
        self.sample_seconds = time.perf_counter() - started
        self.runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        # version 1 in a store, and an older plain model: what the *_production modes start from
        self.store = folder / "prepared-store"
        self.plain_model = folder / "prepared-plain" / "model.joblib"
        prepared = folder / "prepare"
        prepared.mkdir()
        first = measure(keel_run(self.csv, self.store, folder / "prepared-work"), prepared)
        if last_json(first["stdout"]).get("version") != 1:
            raise RuntimeError(f"preparing the store made no version 1: {first['stdout'][-300:]}")
        shutil.rmtree(folder / "prepared-work", ignore_errors=True)
        measure(plain_run(self.csv, self.plain_model.parent), prepared)

    def measure(self, mode: str, repeat: int) -> dict[str, Any]:
        """One measurement of ``mode``, in fresh folders removed afterwards."""
        run = self.folder / f"{mode}-{repeat}"
        run.mkdir()
        try:
            if mode.startswith("keel"):
                store = run / "store"
                if mode == "keel_production":
                    shutil.copytree(self.store, store)
                result = measure(keel_run(self.csv, store, run / "work"), run)
                summary = last_json(result["stdout"])
                expected = 2 if mode == "keel_production" else 1
                if summary.get("version") != expected:
                    raise RuntimeError(f"{mode} made version {summary.get('version')}, "
                                       f"expected {expected}")
                record = {"stages": keel_stages(result["stderr"]),
                          "roc_auc": summary["metrics"].get("roc_auc"),
                          "status": summary.get("status"),
                          "baseline_rows": (summary.get("baseline") or {}).get("rows")}
            else:
                production = self.plain_model if mode == "plain_production" else None
                result = measure(plain_run(self.csv, run / "work", production), run)
                report = last_json(result["stdout"])
                record = {"stages": report["steps"], "roc_auc": report["metrics"]["roc_auc"],
                          "in_script_seconds": report["total"]}
        finally:
            shutil.rmtree(run, ignore_errors=True)
        record.update(seconds=round(result["seconds"], 3),
                      cpu_seconds=round(result["cpu_seconds"], 3),
                      peak_rss_mb=round(result["peak_rss"] / 2**20, 1))
        self.runs[mode].append(record)
        return record


# -- the report ---------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    """The median, rounded for the report."""
    return round(statistics.median(values), 3)


def summarise(size: Size) -> dict[str, Any]:
    """Medians per mode and stage, and the ratios keel / plain."""
    modes: dict[str, Any] = {}
    for mode, runs in size.runs.items():
        names = dict.fromkeys(name for run in runs for name in run["stages"])
        stages = {name: median([run["stages"].get(name, 0.0) for run in runs]) for name in names}
        seconds = median([run["seconds"] for run in runs])
        modes[mode] = {
            "seconds": seconds,
            "cpu_seconds": median([run["cpu_seconds"] for run in runs]),
            "peak_rss_mb": median([run["peak_rss_mb"] for run in runs]),
            "stages": stages,
            # keel: process starts, kfp.local, waiting between stages; plain: interpreter start
            "outside_stages": round(seconds - sum(stages.values()), 3),
            "roc_auc": median([run["roc_auc"] for run in runs]),
            "runs": runs,
        }

    def ratio(keel: str, plain: str, key: str) -> float:
        return round(modes[keel][key] / modes[plain][key], 2) if modes[plain][key] else 0.0

    return {
        "rows": size.rows, "csv_mb": round(size.csv.stat().st_size / 2**20, 1),
        "sample_seconds": round(size.sample_seconds, 3), "modes": modes,
        "ratios": {
            "keel_first_vs_plain": ratio("keel_first", "plain", "seconds"),
            "keel_production_vs_plain_production": ratio("keel_production", "plain_production",
                                                         "seconds"),
            "peak_keel_first_vs_plain": ratio("keel_first", "plain", "peak_rss_mb"),
            "peak_keel_production_vs_plain_production": ratio(
                "keel_production", "plain_production", "peak_rss_mb"),
        },
    }


def markdown(doc: dict[str, Any]) -> str:
    """The Markdown report: the summary table, then the per-stage table."""
    lines = ["# Pipeline benchmark: `keel run` against a plain script", "",
             f"{doc['date']}. {machine_line(doc['machine'])}", "",
             f"Median of {doc['repeat']} runs per cell (rotating order, side by side); wall time "
             "end to end; peak memory is the " + doc["memory_method"] + ".", "",
             "| rows | plain script | plain + production | keel first version (× plain) "
             "| keel with production (× plain + production) | peak MiB plain / keel first / "
             "keel production | roc_auc plain / keel |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for size in doc["sizes"]:
        m, r = size["modes"], size["ratios"]
        lines.append(
            f"| {size['rows']:,} | {m['plain']['seconds']:.2f} s | "
            f"{m['plain_production']['seconds']:.2f} s | {m['keel_first']['seconds']:.2f} s "
            f"({r['keel_first_vs_plain']:.2f}×) | {m['keel_production']['seconds']:.2f} s "
            f"({r['keel_production_vs_plain_production']:.2f}×) | "
            f"{m['plain']['peak_rss_mb']:.0f} / {m['keel_first']['peak_rss_mb']:.0f} / "
            f"{m['keel_production']['peak_rss_mb']:.0f} | "
            f"{m['plain']['roc_auc']:.3f} / {m['keel_first']['roc_auc']:.3f} |")
    lines += ["", "## Per stage (median seconds)", "",
              "Keel's stages next to the plain script's step doing the same work; keel's times "
              "are its progress lines (0.1 s resolution). *Outside the stages*: the wall time "
              "minus the stages (keel: its start, kfp.local and the hand-over between stage "
              "processes; plain: the interpreter's start).", "",
              "| rows | keel stage | plain step | plain | plain + production | keel first | "
              "keel with production |",
              "|---:|---|---|---:|---:|---:|---:|"]

    def cell(mode: dict[str, Any], name: str | None) -> str:
        return "" if name is None or name not in mode["stages"] else f"{mode['stages'][name]:.2f}"

    for size in doc["sizes"]:
        m = size["modes"]
        for stage, step in STAGE_PAIRS:
            lines.append(f"| {size['rows']:,} | {stage or ''} | {step or ''} | "
                         f"{cell(m['plain'], step)} | {cell(m['plain_production'], step)} | "
                         f"{cell(m['keel_first'], stage)} | {cell(m['keel_production'], stage)} |")
        lines.append(f"| {size['rows']:,} | *outside the stages* | *outside the steps* | "
                     + " | ".join(f"{m[mode]['outside_stages']:.2f}" for mode in MODES) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Generate the tables, measure every mode at every size, write the JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=DEFAULT_ROWS)
    parser.add_argument("--large", action="store_true", help=f"also {LARGE_ROWS:,} rows")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per mode and size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample tables")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder for pipeline.json and pipeline.md")
    parser.add_argument("--omp-threads", type=int, default=None, metavar="N",
                        help="OMP_NUM_THREADS for every measured command (scikit-learn's "
                             "HistGradientBoosting threads) [default: as the environment says]")
    args = parser.parse_args(argv)
    if args.omp_threads is not None:
        ENV["OMP_NUM_THREADS"] = str(args.omp_threads)
    if args.repeat < 1 or any(rows < 1 for rows in args.rows):
        parser.error("--repeat and --rows must be 1 or more")
    sizes = sorted(set(args.rows + ([LARGE_ROWS] if args.large else [])))
    info = machine()
    info["omp_num_threads"] = ENV.get("OMP_NUM_THREADS")
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{date}  {machine_line(info)}", file=sys.stderr, flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="keel-bench-pipeline-") as tmp:
        for rows in sizes:
            size = Size(rows, Path(tmp) / str(rows), args.seed)
            print(f"{rows:>10,} rows  table {size.csv.stat().st_size / 2**20:.1f} MiB written in "
                  f"{size.sample_seconds:.1f} s; store with version 1 prepared", file=sys.stderr,
                  flush=True)
            for repeat in range(args.repeat):
                shift = repeat % len(MODES)
                for mode in MODES[shift:] + MODES[:shift]:
                    record = size.measure(mode, repeat)
                    print(f"{rows:>10,} rows  run {repeat + 1}/{args.repeat}  {mode:<17} "
                          f"{record['seconds']:8.2f} s  CPU {record['cpu_seconds']:8.2f} s  "
                          f"peak {record['peak_rss_mb']:7.1f} MiB  roc_auc "
                          f"{record['roc_auc']:.3f}", file=sys.stderr, flush=True)
            results.append(summarise(size))
            shutil.rmtree(size.folder, ignore_errors=True)
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    doc = {"benchmark": "pipeline", "date": date, "machine": info, "repeat": args.repeat,
           "seed": args.seed, "memory_method": MEMORY_METHOD, "sizes": results}
    write_results(args.out, doc, markdown(doc))


def write_results(out: Path, doc: dict[str, Any], report: str) -> None:
    """``<benchmark>.json`` and ``<benchmark>.md`` in ``out``; the report is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{doc['benchmark']}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / f"{doc['benchmark']}.md").write_text(report)
    print(report, end="")


if __name__ == "__main__":
    main()

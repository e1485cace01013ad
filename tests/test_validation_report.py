"""The validation report: Markdown content, HTML escaping and bounds, and what Chromium shows."""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from keel.contracts import (
    Anomaly,
    ColumnInfo,
    ColumnStatistics,
    Drift,
    Frequency,
    Histogram,
    LeakageScore,
    TableSchema,
    TableStatistics,
    ValidationResult,
)
from keel.model_card import CURVE
from keel.validation_report import (
    MAX_COLUMNS,
    MAX_HTML_COLUMNS,
    MAX_PLOTS,
    OUTLINE,
    TEMPLATE,
    TEMPLATES,
    column_views,
    flagged_first,
    histogram_svg,
    md,
    percent,
    rebin,
    report_html,
    report_markdown,
    shared_range,
    sparkline,
    status_of,
)

try:
    import browser
except ImportError:  # tests/ imported as a package
    from tests import browser

HOSTILE = "<script>alert(1)</script>"
PIPE = "a|b\nc"
HOSTILE_VALUE = "<img src=x onerror=alert(2)>"
RED, GREEN, AMBER = (0xC6, 0x28, 0x28), (0x1A, 0x7F, 0x37), (0xB2, 0x5E, 0x00)
QUANTILES = ("0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99")


# -- contract objects from DataFrames -----------------------------------------------------------
def column_statistics(series: pd.Series, bins: int = 20) -> ColumnStatistics:
    """A column's statistics as validate's statistics computes them (the sketch left empty)."""
    present = series.dropna()
    common = {"name": str(series.name), "type": str(pa.array(series, from_pandas=True).type),
              "count": int(len(present)), "missing": int(series.isna().sum()),
              "distinct": int(present.nunique())}
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = present.to_numpy(dtype=float)
        if not len(values):
            return ColumnStatistics(kind="numeric", **common)
        hist, edges = np.histogram(values, bins=bins)
        return ColumnStatistics(
            kind="numeric", min=float(values.min()), max=float(values.max()),
            mean=float(values.mean()), std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            quantiles={q: float(np.quantile(values, float(q))) for q in QUANTILES},
            histogram=Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in hist]),
            **common)
    counts = present.astype(str).value_counts()
    top = [Frequency(value=str(v), count=int(n)) for v, n in counts.head(10).items()]
    if pd.api.types.is_bool_dtype(series):
        return ColumnStatistics(kind="boolean", top=top, categories=counts.astype(int).to_dict(),
                                **common)
    lengths = present.astype(str).str.len()
    kind = "text" if present.nunique() > 50 else "categorical"
    return ColumnStatistics(
        kind=kind, top=top, categories={str(k): int(v) for k, v in counts.items()}
        if len(counts) <= 1000 else None,
        min_length=int(lengths.min()), mean_length=float(lengths.mean()),
        max_length=int(lengths.max()), **common)


def table_statistics(frame: pd.DataFrame) -> TableStatistics:
    return TableStatistics(rows=len(frame), columns=[column_statistics(frame[c]) for c in frame])


def table_schema(frame: pd.DataFrame, target: str, excluded: dict[str, str] | None = None
                 ) -> TableSchema:
    excluded = excluded or {}
    columns = []
    for name in frame.columns:
        series = frame[name]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        kind = "numeric" if numeric else "categorical"
        if name in excluded:
            kind = "identifier"
        role = "target" if name == target else "excluded" if name in excluded else "feature"
        columns.append(ColumnInfo(name=name, dtype=str(series.dtype), kind=kind, role=role,
                                  missing=int(series.isna().sum()),
                                  unique=int(series.nunique()), reason=excluded.get(name, "")))
    classes = sorted(str(v) for v in frame[target].dropna().unique())
    features = [c for c in columns if c.role == "feature"]
    return TableSchema(
        target=target, task="classification", classes=classes, rows_in=len(frame),
        rows_dropped_missing_target=0, rows=len(frame), infinite_values={},
        numeric_features=[c.name for c in features if c.kind == "numeric"],
        categorical_features=[c.name for c in features if c.kind == "categorical"],
        excluded=excluded, columns=columns, schema_hash="0" * 64)


def credit(rows: int, seed: int, *, shifted: bool = False) -> pd.DataFrame:
    """A credit-shaped table; ``shifted``: incomes higher, a new home category, assets missing."""
    rng = np.random.default_rng(seed)
    homes = ["owner", "rent", "parents", "priv", "other"] + (["shared"] if shifted else [])
    weights = np.array([0.45, 0.25, 0.15, 0.08, 0.07] + ([0.06] if shifted else []))
    income = rng.gamma(4.0, 35.0, rows) * (1.35 if shifted else 1.0) + (40 if shifted else 0)
    assets = rng.lognormal(8, 1.0, rows)
    assets[rng.random(rows) < (0.25 if shifted else 0.04)] = np.nan
    frame = pd.DataFrame({
        "Id": np.arange(rows),
        "Seniority": rng.integers(0, 40, rows),
        "Home": rng.choice(homes, rows, p=weights / weights.sum()),
        "Age": rng.normal(38, 11, rows).round().clip(18, 80),
        "Marital": rng.choice(["married", "single", "separated", "widow"], rows,
                              p=[0.7, 0.22, 0.05, 0.03]),
        "Records": rng.choice(["no", "yes"], rows, p=[0.82, 0.18]),
        "Income": income,
        "Assets": assets,
        "Amount": rng.normal(1040, 470, rows).clip(100, 5000),
        "Status": rng.choice(["good", "bad"], rows, p=[0.72, 0.28]),
    })
    if shifted:
        frame = frame.drop(columns=["Records"])
    return frame


ID_REASON = "it numbers the rows (unique, consecutive integers)"


def first_run() -> tuple[TableSchema, TableStatistics, ValidationResult, None]:
    frame = credit(1500, seed=1)
    result = ValidationResult(
        reference_version=None, reference_rows=None,
        reference_note="no reference: the model has no production version yet (a first run)",
        anomalies=[], drift=[],
        leakage=[LeakageScore(column="Seniority", metric="balanced_accuracy", score=0.61),
                 LeakageScore(column="Income", metric="balanced_accuracy", score=0.58)])
    return table_schema(frame, "Status", {"Id": ID_REASON}), table_statistics(frame), result, None


def failing_run() -> tuple[TableSchema, TableStatistics, ValidationResult, TableStatistics]:
    """Production version 4 against a shifted table: 2 errors, 3 warnings, 1 ignored, drift."""
    reference_frame = credit(4000, seed=2)
    frame = credit(1500, seed=3, shifted=True)
    anomalies = [
        Anomaly(kind="production_feature_missing", column="Records", severity="error",
                message="Column 'Records', a feature of production version 4, is missing from "
                        "the table."),
        Anomaly(kind="out_of_range", column="Income", severity="error",
                message="18.4% of 'Income' values are outside the reference's range 3.1..959.6 "
                        "(allowed: 1%).", value=0.184, threshold=0.01),
        Anomaly(kind="new_category", column="Home", severity="warning",
                message="6.1% of 'Home' values are categories the reference never saw: 'shared'.",
                value=0.061, threshold=0.01),
        Anomaly(kind="missing_rate", column="Assets", severity="warning",
                message="'Assets' is missing in 25.2% of rows, 4.1% in the reference "
                        "(allowed rise: 10%).", value=0.252, reference=0.041, threshold=0.1),
        Anomaly(kind="drift", column="Income", severity="warning",
                message="'Income' drifted: psi 0.93 above its threshold 0.2.", value=0.93,
                threshold=0.2),
        Anomaly(kind="row_count", column="", severity="ignore",
                message="1500 rows, the reference had 4000.", value=1500.0, reference=4000.0,
                threshold=2.0),
    ]
    drift = [Drift(column="Age", method="psi", score=0.012, threshold=0.2),
             Drift(column="Income", method="psi", score=0.93, threshold=0.2),
             Drift(column="Home", method="linf", score=0.085, threshold=0.1),
             Drift(column="Assets", method="psi", score=0.31, threshold=0.2),
             Drift(column="Amount", method="psi", score=0.02, threshold=0.2)]
    result = ValidationResult(
        reference_version=4, reference_rows=4000,
        reference_note="compared with production version 4 of model 'credit' (4000 rows)",
        anomalies=anomalies, drift=drift,
        leakage=[LeakageScore(column="Income", metric="balanced_accuracy", score=0.64)])
    return (table_schema(frame, "Status", {"Id": ID_REASON}), table_statistics(frame), result,
            table_statistics(reference_frame))


def hostile_run() -> tuple[TableSchema, TableStatistics, ValidationResult, TableStatistics]:
    """Names and values that are HTML, Markdown table syntax and line breaks."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({HOSTILE: rng.normal(0, 1, 200),
                          PIPE: rng.choice([HOSTILE_VALUE, "x|y", "plain"], 200),
                          "y": rng.choice(["a", "b"], 200)})
    reference = table_statistics(frame.assign(**{HOSTILE: rng.normal(2, 1, 200)}))
    result = ValidationResult(
        reference_version=2, reference_rows=200, reference_note="compared with version 2",
        anomalies=[Anomaly(kind="new_category", column=PIPE, severity="error",
                           message=f"'{PIPE}' has new values: '{HOSTILE_VALUE}'", value=0.3,
                           threshold=0.01),
                   Anomaly(kind="drift", column=HOSTILE, severity="warning",
                           message=f"{HOSTILE} drifted", value=1.2, threshold=0.2)],
        drift=[Drift(column=HOSTILE, method="psi", score=1.2, threshold=0.2)],
        leakage=[LeakageScore(column=PIPE, metric="balanced_accuracy", score=0.5)])
    return table_schema(frame, "y"), table_statistics(frame), result, reference


@functools.cache
def wide_run(columns: int) -> tuple[TableSchema, TableStatistics, ValidationResult, TableStatistics]:
    """``columns`` numeric features (every tenth drifted), on 40 rows."""
    rng = np.random.default_rng(5)
    data = {f"feature_{i:04d}": rng.normal(i % 7, 1, 40) for i in range(columns)}
    frame = pd.DataFrame({**data, "y": rng.choice(["a", "b"], 40)})
    statistics = table_statistics(frame)
    drift = [Drift(column=f"feature_{i:04d}", method="psi", score=0.01 * (i % 40),
                   threshold=0.2) for i in range(columns)]
    anomalies = [Anomaly(kind="drift", column=d.column, severity="warning",
                         message=f"{d.column} drifted", value=d.score, threshold=d.threshold)
                 for d in drift if d.drifted]
    result = ValidationResult(reference_version=1, reference_rows=40, reference_note="v1",
                              anomalies=anomalies, drift=drift, leakage=[])
    return table_schema(frame, "y"), statistics, result, statistics


# -- Markdown -------------------------------------------------------------------------------------
def table_rows(markdown: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with ``header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("| "):
            break
        cells = re.split(r"(?<!\\) \| ", line.removeprefix("| ").removesuffix(" |"))
        rows.append(cells)
    return rows


def test_markdown_of_a_first_run_keeps_the_schema_report_and_says_nothing_was_compared():
    schema, statistics, result, reference = first_run()
    notes = ["production: none yet (a first run), nothing compared"]
    report = report_markdown(schema, statistics, result, reference, notes)

    assert report.startswith("# Validation report: target `Status` (classification)\n")
    assert "**Status: passed: no anomaly.** No reference: the model has no production version " \
           "yet (a first run)." in report
    for line in ("- rows read: 1500", "- rows dropped because the target is missing: 0",
                 "- infinite values read as missing: none", "- rows kept: 1500",
                 "- numeric features: 5, categorical features: 3, excluded columns: 1",
                 f"- {notes[0]}"):
        assert f"\n{line}\n" in report, line
    columns = table_rows(report, "| column | type | kind | role |")
    assert [c[0] for c in columns] == list(credit(5, 1).columns)
    assert ["Id", "int64", "identifier", "excluded", "0", "1500", ID_REASON] in columns
    assert "No anomaly found." in report and "No drift computed: no reference" in report
    assert table_rows(report, "| column | metric | score |")[0] == [
        "Seniority", "balanced_accuracy", "0.61", ""]
    # this run's numbers only, with a histogram in block characters per numeric column
    stats = {row[0]: row for row in table_rows(report, "| column | flag | missing |")}
    assert "Each cell: this run / the reference" not in report
    income = stats["Income"]
    assert income[2] == "0%" and " / " not in income[4] and re.fullmatch(r"`[\u2581-\u2588 ]+`",
                                                                          income[9])
    assert stats["Home"][8].startswith("owner 4") and stats["Home"][9] == ""


def centre(spark: str) -> float:
    """The mean position of a sparkline's blocks, weighted by their heights."""
    heights = [0 if c == " " else ord(c) - 0x2580 for c in spark]
    return sum(i * h for i, h in enumerate(heights)) / sum(heights)


def test_markdown_of_a_failing_run_puts_status_anomalies_and_worst_drift_first():
    schema, statistics, result, reference = failing_run()
    report = report_markdown(schema, statistics, result, reference,
                             ["**target changed** (allowed): production predicts 'x'"])

    assert ("**Status: failed: 2 errors, 3 warnings (1 ignored).** Compared with production "
            "version 4, 4,000 rows.") in report
    assert "- **target changed** (allowed): production predicts 'x'\n" in report  # Markdown kept
    errors, warnings, ignored = (report.index(h) for h in (
        "### Errors (stop the run): 2", "### Warnings: 3", "### Ignored: 1"))
    assert errors < warnings < ignored < report.index("## Drift") < report.index("## Columns")
    assert ("- **out_of_range** `Income`: 18.4% of 'Income' values are outside the reference's "
            "range 3.1..959.6 (allowed: 1%). (value 18.4%, threshold 1%)") in report
    assert "(value 25.2%, reference 4.1%, threshold 10%)" in report
    assert "\n- row_count\n" in report
    drift = table_rows(report, "| column | method | score | threshold | drifted |")
    assert [row[0] for row in drift] == ["Income", "Assets", "Home", "Amount", "Age"]
    assert drift[0] == ["Income", "psi", "0.93", "0.2", "**yes**"] and drift[2][4] == "no"
    assert "2 of 5 columns drifted beyond their threshold" in report
    # side by side with the reference, flagged columns first, the missing one included
    assert "Each cell: this run / the reference (4,000 rows)" in report
    stats = table_rows(report, "| column | flag | missing |")
    assert [row[0] for row in stats[:4]] == ["Income", "Records", "Home", "Assets"]
    assert [row[1] for row in stats[:4]] == ["**error**", "**error**", "**warning**", "**warning**"]
    records = stats[1]
    assert records[2].startswith("\u2014 / 0%") and records[8].startswith("\u2014 / no 8")
    assets = stats[3]
    assert re.fullmatch(r"2\d\.\d% / [34]\.\d+%", assets[2]), assets[2]
    income = stats[0]
    now, ref = (float(v.replace(",", "")) for v in income[4].split(" / "))
    assert now > ref * 1.3  # the means, this run's first
    # both histograms on one x-range: this run's incomes are higher, the reference ends early
    now_spark, ref_spark = re.findall(r"`([^`]+)`", income[9])
    assert len(now_spark) == len(ref_spark) == 12 and ref_spark.endswith("  ")
    assert centre(now_spark) > centre(ref_spark) + 1
    home = next(row for row in stats if row[0] == "Home")
    assert re.fullmatch(r"owner \d\d\.\d%, rent \d\d\.\d%, parents \d\d\.\d% / "
                        r"owner \d\d\.\d%, rent \d\d\.\d%, parents \d\d\.\d%", home[8]), home[8]


def test_markdown_escapes_cells_and_stays_one_line_per_row():
    schema, statistics, result, reference = hostile_run()
    report = report_markdown(schema, statistics, result, reference)

    assert "<script" not in report and "<img" not in report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    columns = table_rows(report, "| column | type | kind | role |")
    assert [c[0] for c in columns] == ["&lt;script&gt;alert(1)&lt;/script&gt;", "a\\|b c", "y"]
    assert all(len(row) == 7 for row in columns)
    stats = table_rows(report, "| column | flag | missing |")
    assert all(len(row) == 10 for row in stats)
    assert "`a|b c`" in report  # the anomaly's column as inline code: nothing to escape there
    assert md("x*y`z\\") == "x\\*y\\`z\\\\"


def test_markdown_of_5000_columns_is_bounded():
    schema, statistics, result, reference = wide_run(5000)
    report = report_markdown(schema, statistics, result, reference)

    assert len(table_rows(report, "| column | type | kind | role |")) == MAX_COLUMNS
    assert len(table_rows(report, "| column | flag | missing |")) == MAX_COLUMNS
    assert f"\u2026 and {5001 - MAX_COLUMNS:,} more columns not listed." in report
    assert "\u2026 and 4,950 more columns not listed." in report  # drift: 50 rows
    assert len(report) < 200_000 and len(report.splitlines()) < 900


# -- HTML without a browser -----------------------------------------------------------------------
def test_every_text_from_the_data_is_escaped_in_the_html():
    doc = report_html(*hostile_run(), title=HOSTILE)
    assert HOSTILE not in doc and "<img" not in doc and "<script" not in doc
    assert doc.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
    assert "&lt;img src=x onerror=alert(2)&gt;" in doc
    for svg in re.findall(r"<svg.*?</svg>", doc, flags=re.S):
        ET.fromstring(svg)  # well-formed: nothing broke out of a text or an attribute


def test_the_html_loads_nothing_from_outside():
    doc = report_html(*failing_run())
    for needle in ("<script", "<link", "<img", "<iframe", "url(", "@import", "http:", "https:",
                   "src="):
        assert needle not in doc, needle


def test_the_html_of_many_columns_is_bounded_and_says_so():
    doc = report_html(*wide_run(5000))
    assert doc.count('<tr class="flag-') == MAX_HTML_COLUMNS
    assert len(re.findall(r'aria-label="Histogram of', doc)) == MAX_PLOTS
    assert f"The first {MAX_HTML_COLUMNS} of 5001 columns are listed" in doc
    assert f"Plots are drawn for the first {MAX_PLOTS} columns" in doc
    assert len(doc) < 1_500_000


def test_status_and_numbers():
    assert status_of(failing_run()[2]) == "failed" and status_of(first_run()[2]) == "passed"
    assert status_of(hostile_run()[2].model_copy(update={"anomalies": []})) == "passed"
    assert [percent(v) for v in (0.1234, 0.05, 0.0, 1.0, 0.99999, 0.00004, None)] == [
        "12.3%", "5%", "0%", "100%", "99.9%", "<0.01%", "\u2014"]


def test_histograms_of_different_edges_share_one_x_range():
    now = Histogram(edges=[10.0, 20.0, 30.0], counts=[5, 5])
    ref = Histogram(edges=[0.0, 5.0, 10.0, 15.0, 20.0], counts=[1, 2, 3, 4])
    root = ET.fromstring(histogram_svg(now, ref, name="x"))
    bars = root.findall("rect[@class='bar']")
    outline = root.find("path[@class='reference']").get("d")
    xs = [float(x) for x in re.findall(r"[ML]([\d.]+),", outline)]
    assert min(xs) < float(bars[0].get("x"))  # the reference starts left of this run's bars
    assert max(xs) == pytest.approx(float(bars[0].get("x")) + float(bars[0].get("width")),
                                    abs=1)  # ... and ends where this run's first bin ends
    assert {t.text for t in root.iter("text")} >= {"0", "30"}
    # the same edges spread evenly: counts kept, moved to the shared bins
    assert rebin(now, 0.0, 30.0, 3) == [0.0, 5.0, 5.0]
    assert sum(rebin(ref, 0.0, 30.0, 4)) == pytest.approx(10)
    assert sparkline(now, (0.0, 30.0), 3) == " \u2588\u2588"
    assert histogram_svg(Histogram(edges=[1.0, 1.0], counts=[3]), None, name="c")  # one value
    assert histogram_svg(Histogram(edges=[0.0, 1.0], counts=[0]), None, name="e") == ""
    huge = Histogram(edges=[-1e308, 0.0, 1e308], counts=[1, 1])  # wider than a float can hold
    assert histogram_svg(huge, None, name="h") == "" and sparkline(huge, shared_range(huge)) == ""


def test_category_bars_show_new_and_vanished_values():
    schema, statistics, result, reference = failing_run()
    views = {v.name: v for v in column_views(schema, statistics, result, reference)}
    home = {s.value: s for s in views["Home"].shares()}
    assert list(home)[:5] == ["owner", "rent", "parents", "priv", "other"]
    assert home["shared"].ref == 0 and home["shared"].now == pytest.approx(0.061, abs=0.02)
    assert views["Home"].flag == "warning" and views["Income"].flag == "error"
    records = views["Records"]  # only in the reference
    assert records.info is None and records.now is None and records.label == "only in the reference"
    assert [(s.value, s.now) for s in records.shares()] == [("no", None), ("yes", None)]
    assert [v.name for v in flagged_first(list(views.values()), "Status")][:6] == [
        "Income", "Records", "Home", "Assets", "Status", "Id"]


def test_the_template_ships_with_the_package():
    assert (TEMPLATES / TEMPLATE).is_file()


# -- in Chromium ----------------------------------------------------------------------------------
MEASURE = """<script id="keel-test-measure">
const box = e => { const r = e.getBoundingClientRect();
  return [r.left, r.top + window.scrollY, r.width, r.height].map(Math.round); };
const at = s => { const e = document.querySelector(s); return e ? box(e) : null; };
document.body.setAttribute("data-measure", JSON.stringify({
  width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
  status: at("#status"), anomalies: at("#anomalies"), drift: at("#drift table tbody tr"),
  histograms: [...document.querySelectorAll("svg[aria-label^='Histogram']")].map(box),
  categories: Object.fromEntries([...document.querySelectorAll("svg[aria-label^='Most frequent']")]
    .map(s => [s.getAttribute("aria-label").replace("Most frequent values of ", ""), box(s)])),
}));
</script>"""


def measure(page: Path) -> tuple[str, dict]:
    """The page's DOM as Chromium rendered it at 1280 px, and the layout measured in it."""
    return browser.measure(page, MEASURE)


visible_text = browser.visible_text


def pixels(png: Path, height: int) -> np.ndarray:
    with Image.open(png) as image:
        assert image.size == (1280, height)
        return np.asarray(image.convert("RGB"))


def near(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 30) -> int:
    return int((np.abs(image.astype(int) - np.array(colour)).sum(axis=2) <= tolerance).sum())


def crop(image: np.ndarray, box: list[int]) -> np.ndarray:
    x, y, width, height = box
    return image[y:y + height, x:x + width]


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_chromium_shows_a_failing_report_status_errors_and_drift_above_the_fold(tmp_path: Path):
    page = tmp_path / "failing.html"
    page.write_text(report_html(*failing_run(), ["production: version 4 of model 'credit'"],
                                title="credit"))
    dom, layout = measure(page)
    text = visible_text(dom)
    for needle in ("Validation report: credit failed",
                   "Failed: 2 errors, 3 warnings (1 ignored).",
                   "Compared with production version 4, 4,000 rows.",
                   "Column 'Records', a feature of production version 4, is missing",
                   "(allowed: 1%). (value 18.4%, threshold 1%)", "6.1% of 'Home' values are categories",
                   "Ignored by the rules: 1", "2 of 5 columns drifted beyond their threshold",
                   "Income psi 0.93 0.2 yes", "Assets psi 0.31 0.2 yes", "Home linf 0.085 0.1 no",
                   "Columns (9, and 1 only in the reference)", "only in the reference"):
        assert needle in text, needle
    assert text.index("Income psi 0.93") < text.index("Assets psi 0.31") < text.index("Age psi")
    assert layout["width"] <= 1280
    # what decides the run is on the first screen
    assert layout["status"][1] < 80 and layout["anomalies"][1] < 300 and layout["drift"][1] < 450
    assert len(layout["histograms"]) == 6 and len(layout["categories"]) == 4

    top = pixels(browser.screenshot(page, width=1280, height=900), 900)
    assert (top.sum(axis=2) < 250).sum() > 3000, "the first screen looks blank"
    badge = crop(top, layout["status"])
    assert near(badge, RED) > 0.5 * badge.shape[0] * badge.shape[1], "the badge is not red"
    assert near(top[:120], GREEN) < 20, "a passed badge is shown"
    assert near(top, RED) > 1500  # the badge, the error bars and the drifted rows' bars

    whole = pixels(browser.screenshot(page, tmp_path / "whole.png", height=layout["height"]),
                   layout["height"])
    for box in layout["histograms"]:
        drawn = crop(whole, box)
        assert near(drawn, rgb(CURVE), 40) > 80, f"no bars in the histogram at {box}"
        assert near(drawn, rgb(OUTLINE), 90) > 30, f"no reference outline in the histogram at {box}"
    assert sorted(layout["categories"]) == ["Home", "Marital", "Records", "Status"]
    for name, box in layout["categories"].items():
        drawn = crop(whole, box)
        assert near(drawn, rgb(OUTLINE), 90) > 30, f"no reference outline in {name}'s bars"
        bars = near(drawn, rgb(CURVE), 40)
        # Records is only in the reference: its shares there, as outlines, and no bar
        assert bars == 0 if name == "Records" else bars > 40, f"{name}: {bars} bar pixels"


def test_chromium_shows_a_first_run_passed_in_green(tmp_path: Path):
    page = tmp_path / "first.html"
    page.write_text(report_html(*first_run(), ["production: none yet (a first run)"]))
    dom, layout = measure(page)
    text = visible_text(dom)
    assert "Passed: no anomaly." in text and "No reference: the model has no production" in text
    assert "No anomaly found." in text and "No drift computed: no reference" in text
    assert layout["width"] <= 1280 and len(layout["histograms"]) == 6
    top = pixels(browser.screenshot(page, width=1280, height=900), 900)
    badge = crop(top, layout["status"])
    assert near(badge, GREEN) > 0.5 * badge.shape[0] * badge.shape[1]
    assert near(top, RED) < 20
    whole = pixels(browser.screenshot(page, tmp_path / "whole.png", height=layout["height"]),
                   layout["height"])
    for box in layout["histograms"]:
        assert near(crop(whole, box), rgb(CURVE), 40) > 80
        assert near(crop(whole, box), rgb(OUTLINE), 60) < 10  # no reference to outline


def test_chromium_keeps_hostile_names_as_text_and_300_columns_in_the_window(tmp_path: Path):
    page = tmp_path / "hostile.html"
    page.write_text(report_html(*hostile_run(), title=HOSTILE))
    dom = browser.dump_dom(page)
    assert "<script" not in dom and "<img" not in dom
    assert HOSTILE in visible_text(dom) and HOSTILE_VALUE in visible_text(dom)

    wide = tmp_path / "wide.html"
    wide.write_text(report_html(*wide_run(300)))
    _, layout = measure(wide)
    assert layout["width"] <= 1280 and len(layout["histograms"]) == MAX_PLOTS
    assert layout["status"][1] < 80 and layout["drift"][1] < 900

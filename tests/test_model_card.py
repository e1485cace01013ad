"""The model card: what it says (rendered in headless Chromium), its SVG plots, and escaping."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keel.contracts import (
    Baseline,
    Check,
    Comparison,
    Curve,
    DataLineage,
    Decision,
    EvaluationReport,
    FeatureImportance,
    FeatureSpec,
    Interval,
    Lineage,
    Override,
    Search,
    SliceMetrics,
    SplitRule,
    Trial,
)
from keel.model_card import (
    CURVE,
    TEMPLATES,
    calibration_svg,
    confusion_svg,
    importance_svg,
    interval_text,
    nice_ticks,
    number,
    pr_svg,
    render_model_card,
    residuals_svg,
    roc_svg,
    signed,
    tick_label,
    xy_plot,
)

try:
    import browser
    from factories import lineage
except ImportError:  # tests/ imported as a package
    from tests import browser
    from tests.factories import lineage

ROOT = Path(__file__).parent.parent
HOSTILE = "<script>alert(1)</script>"
HOSTILE_REASON = "<img src=x onerror=alert(2)> is an id"
SECTIONS = ["decision", "comparison", "metrics", "slices", "data", "split", "schema", "parameters",
            "search", "plots", "environment"]
STATUS_COLOURS = {"passed": (0x1A, 0x7F, 0x37), "rejected": (0xC6, 0x28, 0x28),
                  "override": (0xB2, 0x5E, 0x00)}


# -- the three cards ----------------------------------------------------------------------------
def interval(low: float, high: float) -> Interval:
    return Interval(low=low, high=high, level=0.95, rounds=1000)


def binary_card() -> tuple[Lineage, EvaluationReport]:
    """Credit, version 2: beats version 1 on roc_auc; one slice is worse; a grid search ran."""
    base = lineage()
    metrics = {"accuracy": 0.80123, "f1_macro": 0.7412, "log_loss": 0.44871, "roc_auc": 0.84123456}
    baseline = Baseline(version=1, generation=4,
                        metrics={"accuracy": 0.7946, "f1_macro": 0.7337, "log_loss": 0.4573,
                                 "roc_auc": 0.8338022908})
    comparison = Comparison(
        rows=812, excluded=79, reason="training rows of version 1 (its split rule)",
        candidate={"accuracy": 0.8001, "f1_macro": 0.7409, "log_loss": 0.4491, "roc_auc": 0.8412},
        intervals={"roc_auc": interval(-0.0041, 0.0189), "log_loss": interval(-0.02, 0.003)})
    checks = [
        Check(metric="roc_auc", check="absolute_change", candidate=0.8412, baseline=0.8338022908,
              threshold=0.0, required=0.8338022908, passed=True,
              interval=interval(-0.0041, 0.0189), rows=812),
        Check(metric="roc_auc", check="max_slice_drop", candidate=0.7702, baseline=0.7911,
              threshold=0.05, required=0.7411, passed=True, rows=143, slice="Home=rent"),
    ]
    decision = Decision(
        passed=True, checks=checks, baseline=baseline, first_run=False,
        thresholds={"roc_auc": {"min_absolute_change": 0.0, "max_slice_drop": 0.05}},
        override=None, notes=["79 test rows were training rows of version 1: left out of both scores"],
        metrics=metrics, test_rows=891, comparison=comparison,
        per_class={"bad": {"precision": 0.6623, "recall": 0.5012, "f1": 0.5706, "support": 246.0},
                   "good": {"precision": 0.8351, "recall": 0.9104, "f1": 0.8711, "support": 645.0}},
        slices=[
            SliceMetrics(column="Home", value="owner", rows=390, candidate={"roc_auc": 0.8523},
                         baseline={"roc_auc": 0.8401}),
            SliceMetrics(column="Home", value="rent", rows=143, candidate={"roc_auc": 0.7702},
                         baseline={"roc_auc": 0.7911}),
            SliceMetrics(column="Age", value="[18, 30)", rows=201, candidate={"roc_auc": 0.8101},
                         baseline={"roc_auc": 0.8011}),
        ])
    trials = [Trial(index=i, params={"learning_rate": rate, "max_depth": depth}, metric="roc_auc",
                    score=score, fit_seconds=0.21, validation_rows=357)
              for i, (rate, depth, score) in enumerate([(0.05, 3, 0.8211), (0.1, 3, 0.8356),
                                                        (0.1, None, 0.8302)])]
    search = Search(metric="roc_auc", higher_is_better=True, method="grid", validation_size=0.1,
                    candidates=trials, best=1)
    training = base.training.model_copy(update={
        "params": {"learning_rate": [0.05, 0.1], "max_depth": [3, None]}, "search": search})
    card = lineage(
        baseline=baseline, decision=decision, metrics=metrics, training=training,
        hyperparameters={"learning_rate": 0.1, "max_depth": 3},
        excluded_columns={"Id": "identifier: unique per row"},
        split=SplitRule(method="hash", test_size=0.2, columns=["Id"], keyed=True, salt="credit-7"))
    grid = [i / 50 for i in range(51)]
    report = EvaluationReport(
        task="classification", primary_metric="roc_auc", labels=["bad", "good"],
        confusion_matrix=[[123, 123], [58, 587]],
        curves={"roc": Curve(x=grid, y=[x ** 0.3 for x in grid]),
                "pr": Curve(x=grid, y=[1 - 0.3 * x * x for x in grid]),
                "calibration": Curve(x=[0.05 + i / 10 for i in range(10)],
                                     y=[0.03 + 0.95 * i / 10 for i in range(10)])},
        importance=[FeatureImportance(feature="Seniority", mean=0.061, std=0.008),
                    FeatureImportance(feature="Income", mean=0.043, std=0.006),
                    FeatureImportance(feature="Records", mean=0.02, std=0.004),
                    FeatureImportance(feature="Price", mean=-0.002, std=0.003)],
        importance_rows=891)
    return card, report


def multiclass_card() -> tuple[Lineage, EvaluationReport]:
    """Three classes, rejected: f1_macro fell, a slice check failed; hostile names everywhere."""
    metrics = {"accuracy": 0.71, "balanced_accuracy": 0.6532, "f1_macro": 0.6418}
    baseline = Baseline(version=5, generation=9, metrics={"accuracy": 0.73, "f1_macro": 0.6702})
    labels = ["A", "B", "C & D"]
    checks = [
        Check(metric="f1_macro", check="absolute_change", candidate=0.6398, baseline=0.6702,
              threshold=0.0, required=0.6702, passed=False, interval=interval(-0.051, -0.0102),
              rows=400),
        Check(metric="f1_macro", check="max_slice_drop", candidate=0.41, baseline=0.5817,
              threshold=0.1, required=0.4817, passed=False, rows=57, slice=f"{HOSTILE}=x<y"),
        Check(metric="accuracy", check="lower", candidate=0.71, required=0.6, passed=True),
    ]
    decision = Decision(
        passed=False, checks=checks, baseline=baseline, first_run=False,
        thresholds={"f1_macro": {"min_absolute_change": 0.0, "max_slice_drop": 0.1},
                    "accuracy": {"lower": 0.6}},
        override=None, notes=[f"slices on {HOSTILE}"], metrics=metrics, test_rows=400,
        comparison=Comparison(rows=400, excluded=0, candidate={"accuracy": 0.71, "f1_macro": 0.6398},
                              intervals={"f1_macro": interval(-0.051, -0.0102)}),
        per_class={label: {"precision": 0.7, "recall": 0.6, "f1": 0.646, "support": 133.0}
                   for label in labels},
        slices=[SliceMetrics(column=HOSTILE, value="x<y", rows=57, candidate={"f1_macro": 0.41},
                             baseline={"f1_macro": 0.5817}),
                SliceMetrics(column=HOSTILE, value="other", rows=343, candidate={"f1_macro": 0.67},
                             baseline={"f1_macro": 0.668})])
    columns = ["Grade", "income", HOSTILE, "region", "<img src=x>"]
    base = lineage()
    card = lineage(
        task="classification", target="Grade",
        data=DataLineage(source="gs://bucket/grades.parquet", format="parquet",
                         data_version="ab" * 32, rows=2000, columns=columns,
                         snapshot="gs://bucket/keel/data/x/snapshot.parquet", rows_used=1998,
                         rows_dropped_missing_target=2),
        features=FeatureSpec(target="Grade", task="classification", numeric=["income"],
                             categorical=[HOSTILE, "region"], encoding="onehot"),
        excluded_columns={"<img src=x>": HOSTILE_REASON},
        training=base.training.model_copy(update={
            "estimator": "linear", "estimator_class": "LogisticRegression", "params": {"C": 0.5},
            "effective_params": {"C": 0.5, "max_iter": 1000}, "encoding": "onehot",
            "features": ["income", HOSTILE, "region"], "train_rows": 1598}),
        hyperparameters={"C": 0.5}, metrics=metrics, baseline=baseline, decision=decision,
        split=SplitRule(method="hash", test_size=0.2, columns=["income", HOSTILE, "region", "Grade"]))
    report = EvaluationReport(
        task="classification", primary_metric="f1_macro", labels=labels,
        confusion_matrix=[[90, 30, 13], [20, 100, 13], [10, 30, 94]],
        importance=[FeatureImportance(feature=HOSTILE, mean=0.12, std=0.01),
                    FeatureImportance(feature="income", mean=0.05, std=0.02)],
        importance_rows=400)
    return card, report


def regression_card() -> tuple[Lineage, EvaluationReport]:
    """Regression promoted by override: production version 2 could not be scored; a time split."""
    metrics = {"mae": 10234.7, "r2": 0.8123, "rmse": 15321.77}
    baseline = Baseline(version=2, generation=2, metrics=None,
                        error="ValueError: columns are missing: 'Rooms'")
    checks = [Check(metric="rmse", check="baseline", candidate=15321.77, required=None, passed=False,
                    note="production version 2 could not be scored: ValueError: columns are "
                         "missing: 'Rooms'")]
    decision = Decision(
        passed=True, checks=checks, baseline=baseline, first_run=False,
        thresholds={"rmse": {"min_relative_change": 0.01}},
        override=Override(reason="Rooms was retired upstream; approved by the pricing team",
                          checks_passed=False),
        notes=["manual override: Rooms was retired upstream; approved by the pricing team"],
        metrics=metrics, test_rows=300)
    base = lineage()
    card = lineage(
        task="regression", target="Price",
        features=FeatureSpec(target="Price", task="regression", numeric=["Area", "Age"],
                             categorical=["District"], encoding="ordinal"),
        training=base.training.model_copy(update={
            "estimator": "random_forest", "estimator_class": "RandomForestRegressor", "params": {},
            "effective_params": {"n_estimators": 100, "max_depth": None},
            "features": ["Area", "Age", "District"], "train_rows": 1200}),
        hyperparameters={}, metrics=metrics, baseline=baseline, decision=decision,
        excluded_columns={},
        split=SplitRule(method="time", test_size=0.2, columns=["SoldAt"],
                        cutoff="2026-06-01T00:00:00"))
    predicted = [100_000 + 3000 * i for i in range(60)]
    residual = [15_000 * math.sin(i * 1.7) for i in range(60)]
    report = EvaluationReport(
        task="regression", primary_metric="rmse",
        curves={"residuals": Curve(x=[float(p) for p in predicted], y=residual)},
        importance=[FeatureImportance(feature="Area", mean=9000.0, std=800.0),
                    FeatureImportance(feature="District", mean=3100.0, std=450.0)],
        importance_rows=300)
    return card, report


@dataclass(frozen=True)
class Case:
    name: str
    make: object
    version: int | None
    status: str
    texts: tuple[str, ...]
    plots: tuple[str, ...]


CASES = [
    Case("binary", binary_card, 2, "passed",
         ("credit", "version 2", "Decision: passed", "All 2 checks passed", "absolute_change",
          "0.8412", "0.8338", "[-0.0041, +0.0189] 95%", "Production: version 1",
          "Comparable rows: 812", "79 test rows left out: training rows of version 1",
          "roc_auc", "0.8412", "log_loss", "0.4487", "f1_macro", "0.7412",
          "owner", "rent", "[18, 30)", "-0.0209", "worse", "Home=rent",
          "bad", "0.6623", "645", "learning_rate=0.1", "0.8356", "credit-7",
          "identifier: unique per row", "7545b6b9e17200a420e8ebd2c32dbd02e69dc39d", "27755872",
          "HistGradientBoostingClassifier", "ROC curve (roc_auc 0.8412)", "Calibration",
          "Confusion matrix", "Permutation feature importance"),
         ("roc", "pr", "calibration", "confusion", "importance")),
    Case("multiclass", multiclass_card, 3, "rejected",
         ("version 3", "Decision: rejected", "2 of 3 checks failed", "Production: version 5",
          "f1_macro", "0.6418", "-0.0304", "[-0.051, -0.0102] 95%", "fail",
          "C & D", "check failed", "LogisticRegression", "Confusion matrix"),
         ("confusion", "importance")),
    Case("regression", regression_card, None, "override",
         ("Decision: override", "Rooms was retired upstream; approved by the pricing team",
          "could not be scored: ValueError: columns are missing: 'Rooms'", "rmse", "15322",
          "10235", "0.8123", "2026-06-01T00:00:00", "SoldAt", "RandomForestRegressor",
          "No parameter given", "Residuals"),
         ("residuals", "importance")),
]

# Added to a copy of the card only (the card has no script): where the layout put things.
MEASURE = """<script id="keel-test-measure">
const box = e => { const r = e.getBoundingClientRect();
  return [r.left, r.top + window.scrollY, r.width, r.height].map(Math.round); };
document.body.setAttribute("data-measure", JSON.stringify({
  width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
  plots: box(document.getElementById("plots")),
  figures: Object.fromEntries([...document.querySelectorAll("figure")].map(f => [f.id, box(f)])),
  svgs: [...document.querySelectorAll("svg")].map(s => box(s).slice(2)),
}));
</script>"""


def measure(page: Path) -> tuple[str, dict]:
    """The page's DOM as Chromium rendered it at 1280 px, and the layout measured in it."""
    return browser.measure(page, MEASURE)


visible_text = browser.visible_text


def near(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 30) -> int:
    """How many pixels are within ``tolerance`` (summed over R, G, B) of ``colour``."""
    return int((np.abs(image.astype(int) - np.array(colour)).sum(axis=2) <= tolerance).sum())


def bluish(image: np.ndarray) -> int:
    """Pixels of the plots' blue, or a lighter or anti-aliased shade of it (blue well above red)."""
    rgb = image.astype(int)
    return int(((rgb[..., 2] - rgb[..., 0] > 50) & (rgb[..., 1] < 235)).sum())


def pixels(png: Path, height: int = 2000) -> np.ndarray:
    with Image.open(png) as image:
        assert image.size == (1280, height)
        return np.asarray(image.convert("RGB"))


def crop(image: np.ndarray, box: list[int]) -> np.ndarray:
    x, y, width, height = box
    return image[y:y + height, x:x + width]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_chromium_shows_the_card(case: Case, tmp_path: Path):
    card, report = case.make()
    page = tmp_path / f"{case.name}.html"
    page.write_text(render_model_card(card, report, model="credit", version=case.version))

    dom, layout = measure(page)
    text = visible_text(dom)
    missing = [needle for needle in case.texts if needle not in text]
    assert not missing, f"not in the rendered page: {missing}"
    if case.version is None:
        assert "version None" not in dom and "<title>Model card: credit (override)</title>" in dom
    # sections in the order a reader needs them (those without data are left out)
    found = [re.search(f'<section id="{name}"', dom) for name in SECTIONS]
    starts = [m.start() for m in found if m]
    assert starts == sorted(starts) and len(starts) >= 9
    assert sorted(layout["figures"]) == sorted(f"plot-{plot}" for plot in case.plots)
    # laid out at 1280 px: nothing wider than the window, every plot drawn with a size
    assert layout["width"] <= 1280
    assert len(layout["svgs"]) == len(case.plots)
    assert all(w > 200 and h > 80 for w, h in layout["svgs"]), layout["svgs"]

    top = pixels(browser.screenshot(page))[:200]
    dark = (top.sum(axis=2) < 250).sum()
    assert dark > 1500, f"the title area looks blank ({dark} dark pixels)"
    assert near(top, STATUS_COLOURS[case.status]) > 400, "no status badge in the title's colour"
    for other, colour in STATUS_COLOURS.items():
        if other != case.status:
            assert near(top, colour) < 50, f"a {other} badge is shown"

    # the whole page, as tall as it is: each figure shows its curve, bars or cells in blue
    whole = pixels(browser.screenshot(page, tmp_path / f"{case.name}-full.png",
                                      height=layout["height"]), layout["height"])
    for figure, box in layout["figures"].items():
        assert bluish(crop(whole, box)) > 300, f"{figure} shows no curve-coloured pixels"
    assert near(crop(whole, layout["plots"]), tuple(int(CURVE[i:i + 2], 16) for i in (1, 3, 5))) > 500


def test_a_card_without_plots_shows_none_and_says_so(tmp_path: Path):
    card, _ = binary_card()
    doc = render_model_card(card, EvaluationReport(task="classification", primary_metric="roc_auc"),
                            model="credit", version=2)
    assert "<svg" not in doc and 'id="plot-' not in doc
    assert "no curve, confusion matrix or feature importance to plot" in doc
    page = tmp_path / "plain.html"
    page.write_text(doc)
    _, layout = measure(page)
    assert layout["figures"] == {} and layout["svgs"] == []
    whole = pixels(browser.screenshot(page, height=layout["height"]), layout["height"])
    assert bluish(crop(whole, layout["plots"])) < 50  # the control for the colour checks above


# -- escaping and self-containment --------------------------------------------------------------
def test_every_text_from_the_data_is_escaped():
    doc = render_model_card(*multiclass_card(), model="credit", version=3)
    assert HOSTILE not in doc and "<img" not in doc and "<script" not in doc
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # the column list, the features, the slices and checks, the notes, the importance plot
    assert doc.count(escaped) >= 8
    assert "&lt;img src=x onerror=alert(2)&gt; is an id" in doc
    assert "C &amp; D" in doc and "C & D" not in doc
    for svg in re.findall(r"<svg.*?</svg>", doc, flags=re.S):
        ET.fromstring(svg)  # well-formed: nothing unescaped broke out of a text or an attribute


def test_escaping_holds_in_the_browser(tmp_path: Path):
    page = tmp_path / "hostile.html"
    page.write_text(render_model_card(*multiclass_card(), model="credit", version=3))
    dom = browser.dump_dom(page)
    assert "<script" not in dom and "<img" not in dom  # shown as text, never parsed as elements
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_the_card_loads_nothing_from_outside():
    doc = render_model_card(*binary_card(), model="credit", version=2)
    for needle in ("<script", "<link", "<img", "<iframe", "url(", "@import", "http:", "https:",
                   "src="):
        assert needle not in doc, needle


# -- status and numbers -------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_title_names_model_version_and_status(case: Case):
    html = render_model_card(*case.make(), model="credit", version=case.version)
    title = re.search(r"<h1>(.*?)</h1>", html, flags=re.S)[1]
    assert "credit" in title and f'status-{case.status}">{case.status}<' in title
    assert ("version" in title) == (case.version is not None)


def test_numbers_have_four_significant_digits():
    assert number(0.8338022908) == "0.8338"
    assert number(12345.6) == "12346"
    assert number(0.000123456) == "0.0001235"
    assert number(0.05) == "0.05" and number(0.80) == "0.8" and number(2.0) == "2"
    assert number(1.5e-7) == "1.5e-07" and number(-1.23456e-5) == "-1.235e-05"
    assert number(3.2e9) == "3.2e+09"
    assert number(0.0) == "0" and number(-0.0) == "0"
    assert number(891) == "891" and number(None) == "\u2014"
    assert signed(0.0074) == "+0.0074" and signed(-0.02) == "-0.02" and signed(0.0) == "0"
    assert interval_text(interval(-0.00412345, 0.0189)) == "[-0.004123, +0.0189] 95%"


def test_nice_ticks_cover_the_range_in_round_steps():
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-13.7, 41.2) == [-10, 0, 10, 20, 30, 40]
    assert nice_ticks(0.81, 0.86) == [0.81, 0.82, 0.83, 0.84, 0.85, 0.86]
    assert nice_ticks(97_000, 281_000, 4) == [100_000, 150_000, 200_000, 250_000]
    assert [tick_label(t) for t in (0.25, 2500, -15_000, 150_000, 1_500_000)] == [
        "0.25", "2500", "-15k", "150k", "1.5M"]


# -- SVG plots ----------------------------------------------------------------------------------
def view_box(svg: str) -> tuple[ET.Element, float, float]:
    root = ET.fromstring(svg)
    _, _, width, height = map(float, root.get("viewBox").split())
    return root, width, height


def polyline(root: ET.Element) -> list[tuple[float, float]]:
    line = root.find("polyline")
    return [tuple(map(float, p.split(","))) for p in line.get("points").split()]


def test_roc_points_map_inside_the_plot_the_right_way_up():
    svg = roc_svg(Curve(x=[0.0, 0.1, 0.5, 1.0], y=[0.0, 0.6, 0.9, 1.0]))
    root, width, height = view_box(svg)
    points = polyline(root)
    assert len(points) == 4
    assert all(0 <= x <= width and 0 <= y <= height for x, y in points)
    (x0, y0), (x1, y1) = points[0], points[-1]
    assert x0 < x1 and y0 > y1  # (0, 0) bottom left, (1, 1) top right
    assert points[1][1] < points[0][1] and points[1][0] - x0 == pytest.approx((x1 - x0) / 10, abs=0.2)
    diagonal = root.find("line[@class='reference']")
    assert (float(diagonal.get("x1")), float(diagonal.get("y1"))) == pytest.approx((x0, y0))
    assert (float(diagonal.get("x2")), float(diagonal.get("y2"))) == pytest.approx((x1, y1))
    assert {t.text for t in root.iter("text")} >= {"0", "0.4", "1", "false positive rate"}


def test_residuals_scatter_fits_its_data_and_draws_zero():
    svg = residuals_svg(Curve(x=[1e5, 2e5, 3e5], y=[-5e3, 2e4, 1e3]))
    root, width, height = view_box(svg)
    dots = [(float(c.get("cx")), float(c.get("cy"))) for c in root.iter("circle")]
    assert len(dots) == 3 and root.find("polyline") is None
    assert all(0 < x < width and 0 < y < height for x, y in dots)
    assert dots[1][1] < dots[2][1] < dots[0][1]  # larger residual, higher up
    zero = root.find("line[@class='reference']")
    assert dots[2][1] < float(zero.get("y1")) < dots[0][1]


def test_calibration_and_pr_use_the_unit_square():
    pr = ET.fromstring(pr_svg(Curve(x=[0, 0.5, 1], y=[1, 0.8, 0.4])))
    assert pr.find("line[@class='reference']") is None  # no diagonal on a PR curve
    calibration = ET.fromstring(calibration_svg(Curve(x=[0.1, 0.5, 0.9], y=[0.12, 0.45, 0.93])))
    assert len(list(calibration.iter("circle"))) == 3
    assert calibration.find("line[@class='reference']") is not None


def test_absent_or_too_little_data_draws_nothing():
    assert roc_svg(None) == "" and pr_svg(None) == "" and calibration_svg(None) == ""
    assert roc_svg(Curve(x=[0.5], y=[0.5])) == "" and residuals_svg(Curve(x=[], y=[])) == ""
    assert confusion_svg([], None) == "" and confusion_svg(["a"], []) == ""
    assert confusion_svg(["a", "b"], [[1, 2], [3]]) == ""  # not square
    assert importance_svg([]) == ""


def test_a_long_curve_is_thinned_keeping_its_ends():
    points = [(i / 9999, (i / 9999) ** 0.5) for i in range(10_000)]
    drawn = polyline(ET.fromstring(xy_plot(points, label="t", x_label="x", y_label="y")))
    assert len(drawn) == 2000
    full = polyline(ET.fromstring(xy_plot(points[:2] + points[-2:], label="t", x_label="x",
                                          y_label="y")))
    assert drawn[0] == full[0] and drawn[-1] == full[-1]


def test_confusion_cells_are_shaded_by_the_share_of_their_actual_class():
    root, width, height = view_box(confusion_svg(["x", "y"], [[9, 1], [5, 5]]))
    cells = root.findall("rect[@class='cell']")
    assert len(cells) == 4
    assert all(float(c.get("x")) + float(c.get("width")) <= width for c in cells)
    fills = [c.get("fill") for c in cells]
    darkness = [765 - sum(int(f[i:i + 2], 16) for i in (1, 3, 5)) for f in fills]
    assert darkness[0] > darkness[2] == darkness[3] > darkness[1]  # 90% > 50% > 10%
    assert fills[0] != "#ffffff" and fills[2] == fills[3]
    assert [t.text for t in root.iter("text") if t.text in {"9", "1", "5"}] == ["9", "1", "5", "5"]


def test_importance_bars_grow_from_zero_with_std_whiskers():
    items = [FeatureImportance(feature="a", mean=0.2, std=0.05),
             FeatureImportance(feature="b", mean=-0.05, std=0.01),
             *[FeatureImportance(feature=f"f{i}", mean=0.01, std=0.0) for i in range(30)]]
    root, width, _ = view_box(importance_svg(items, "roc_auc"))
    bars = root.findall("rect[@class='bar']")
    assert len(bars) == 20  # the top 20
    a, b = bars[0], bars[1]
    zero = float(a.get("x"))
    assert float(b.get("x")) + float(b.get("width")) == pytest.approx(zero, abs=0.1)  # b: left
    assert float(a.get("width")) > 3 * float(b.get("width"))
    whisker = root.find("path[@class='whisker']").get("d")
    left, right = map(float, re.match(r"M([\d.]+),[\d.]+H([\d.]+)", whisker).groups())
    scale = float(a.get("width")) / 0.2
    assert (left - zero) / scale == pytest.approx(0.15, abs=0.01)
    assert (right - zero) / scale == pytest.approx(0.25, abs=0.01)
    assert all(float(r.get("x")) + float(r.get("width")) <= width for r in bars)
    assert any(t.text and "roc_auc" in t.text for t in root.iter("text"))


# -- packaging ----------------------------------------------------------------------------------
def test_the_template_ships_with_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["keel"]
    templates = [p.relative_to(TEMPLATES.parent).as_posix() for p in TEMPLATES.iterdir()]
    assert templates and all(any(fnmatch(t, p) for p in patterns) for t in templates), templates
    assert any(dep.startswith("jinja2==") for dep in tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def test_rendering_needs_neither_numpy_nor_scikit_learn():
    # publish renders the card and runs without the data stack (tests/test_architecture.py)
    code = ("import sys, keel.model_card; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'sklearn', 'pandas'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cards_metric_directions_are_the_metric_tables():
    """The card keeps its own copy (publish must not import numpy); it must not drift."""
    from keel import metrics, model_card

    assert model_card.LOWER_IS_BETTER == metrics.LOWER_IS_BETTER

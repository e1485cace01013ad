"""The model card: one self-contained HTML page per version, for people deciding whether to trust it.

It shows the gate's decision and its reasons, the comparison with production, the metrics, per
class and per slice, the data, split, schema, parameters and search that made the model, plots of
the evaluation and the code that ran. The Kubeflow dashboard shows it in a sandboxed iframe, and
the registry keeps a copy next to the version, so the page loads nothing: no script, no external
style, font or image. Plots are inline SVG drawn here; a plot whose data is absent is left out.

Every text from the data or the user (column names, class labels, category values, reasons) is
escaped: by the template's autoescaping, and by :func:`html.escape` inside the SVG built here.
This module imports neither scikit-learn nor numpy: publish runs without them.
"""

from __future__ import annotations

import functools
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from keel.contracts import (
    Baseline,
    Check,
    Curve,
    Decision,
    EvaluationReport,
    FeatureImportance,
    Interval,
    JsonValue,
    Lineage,
)

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "model_card.html.j2"

#: Metrics for which a smaller value is better; every other metric is better larger. A copy of
#: keel.metrics' (which imports numpy: publish stays light); a test keeps the two equal.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mape", "log_loss", "brier"})
COUNT_COLUMNS = frozenset({"support", "rows", "count", "n"})  # per-class columns shown as integers

CURVE = "#1f6fb2"  # the colour of every curve, bar and point
REFERENCE = "#8a939c"  # diagonals and zero lines
GRID = "#e3e7eb"
INK = "#3a434c"  # axis text
MAX_POINTS = 2000  # a longer curve or scatter is thinned evenly (the ends kept)
MAX_FEATURES = 20  # importance bars shown


# -- numbers ----------------------------------------------------------------------------------
def number(value: float | int | None, digits: int = 4) -> str:
    """``value`` rounded to ``digits`` significant digits, without trailing zeros.

    No exponent between 1e-4 and 1e6: ``0.8338022`` -> ``0.8338``, ``0.05`` -> ``0.05``,
    ``12345.6`` -> ``12346``, ``1.5e-07`` -> ``1.5e-07``; integers as they are; None as an em
    dash.
    """
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if -4 <= magnitude < 6:
        text = f"{value:.{max(0, digits - 1 - magnitude)}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"


def signed(value: float | None, digits: int = 4) -> str:
    """:func:`number` with an explicit ``+`` on positive values (for differences)."""
    text = number(value, digits)
    return f"+{text}" if value is not None and value > 0 and text != "0" else text


def interval_text(interval: Interval | None) -> str:
    """``[-0.0123, +0.0045] 95%``: a paired-bootstrap interval of candidate minus baseline."""
    if interval is None:
        return "\u2014"
    return f"[{signed(interval.low)}, {signed(interval.high)}] {interval.level * 100:g}%"


def plain(value: JsonValue) -> str:
    """A parameter value as the user would write it: text as is, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (``rmse``, ``log_loss``...: smaller is)."""
    return metric not in LOWER_IS_BETTER


def is_worse(metric: str, candidate: float | None, baseline: float | None) -> bool:
    """Whether the candidate is strictly worse than the baseline on ``metric``."""
    if candidate is None or baseline is None:
        return False
    return candidate < baseline if higher_is_better(metric) else candidate > baseline


# -- SVG plots --------------------------------------------------------------------------------
def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten) in the range."""
    if not high > low:
        return [low]
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = power * next(m for limit, m in ((1.5, 1), (3, 2), (7, 5), (math.inf, 10))
                        if raw / power < limit)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    for i in range(first, math.floor(high / step + 1e-9) + 1):
        tick = round(i * step, 12)
        ticks.append(0.0 if tick == 0 else tick)
    return ticks


def tick_label(tick: float) -> str:
    """A short axis label: ``0.25``, ``2500``, ``15k``, ``1.5M``."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(tick) >= scale:
            return f"{tick / (1e3 if suffix == 'k' else scale):g}{suffix}"
    return f"{tick:g}"


def span(values: Iterable[float], *, include: Sequence[float] = (),
         pad: float = 0.05) -> tuple[float, float]:
    """The range of ``values`` (and ``include``), widened by ``pad`` of its width on each side."""
    found = [*values, *include]
    low, high = min(found), max(found)
    if high == low:
        half = abs(low) * 0.5 or 1.0
        return low - half, high + half
    margin = (high - low) * pad
    return low - margin, high + margin


@dataclass(frozen=True)
class Frame:
    """Maps data coordinates to the pixel box of a plot (SVG's y grows downwards)."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    left: float
    top: float
    width: float
    height: float

    def px(self, x: float) -> float:
        """The pixel column of data ``x``, clamped to the box."""
        low, high = self.x_range
        share = min(max((x - low) / (high - low), 0.0), 1.0)
        return self.left + share * self.width

    def py(self, y: float) -> float:
        """The pixel row of data ``y``, clamped to the box."""
        low, high = self.y_range
        share = min(max((y - low) / (high - low), 0.0), 1.0)
        return self.top + (1.0 - share) * self.height


def svg_text(x: float, y: float, text: str, *, anchor: str = "middle", size: int = 11,
          extra: str = "", tooltip: str = "") -> str:
    """An escaped SVG ``<text>`` at (x, y), with an optional hover ``tooltip``."""
    title = f"<title>{html.escape(tooltip)}</title>" if tooltip else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{INK}"{extra}>{title}{html.escape(text)}</text>')


def svg_figure(width: float, height: float, label: str, body: Iterable[str]) -> str:
    """An inline ``<svg>`` of the given size around ``body``, labelled for screen readers."""
    return (f'<svg class="plot" role="img" aria-label="{html.escape(label)}" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'font-family="DejaVu Sans, sans-serif"><title>{html.escape(label)}</title>'
            + "".join(body) + "</svg>")


def _axes(frame: Frame, x_label: str, y_label: str) -> list[str]:
    """Grid lines, tick labels, the box and the axis labels of ``frame``."""
    parts = []
    bottom, right = frame.top + frame.height, frame.left + frame.width
    for tick in nice_ticks(*frame.x_range):
        x = frame.px(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{frame.top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
                     f'stroke="{GRID}"/>')
        parts.append(svg_text(x, bottom + 15, tick_label(tick)))
    for tick in nice_ticks(*frame.y_range):
        y = frame.py(tick)
        parts.append(f'<line x1="{frame.left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID}"/>')
        parts.append(svg_text(frame.left - 6, y + 4, tick_label(tick), anchor="end"))
    parts.append(f'<rect x="{frame.left:.1f}" y="{frame.top:.1f}" width="{frame.width:.1f}" '
                 f'height="{frame.height:.1f}" fill="none" stroke="{REFERENCE}"/>')
    parts.append(svg_text(frame.left + frame.width / 2, bottom + 34, x_label, size=12))
    y_mid = frame.top + frame.height / 2
    parts.append(svg_text(14, y_mid, y_label, size=12, extra=f' transform="rotate(-90 14 {y_mid:.1f})"'))
    return parts


def _thin(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return list(points)
    last = len(points) - 1
    return [points[round(i * last / (limit - 1))] for i in range(limit)]


def xy_plot(points: Sequence[tuple[float, float]], *, label: str, x_label: str, y_label: str,
            x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
            line: bool = True, markers: bool = False, diagonal: bool = False,
            zero_line: bool = False, width: int = 340, height: int = 290) -> str:
    """An x-y plot as SVG: a line and/or markers, with axes; "" when there are fewer than 2 points.

    ``x_range``/``y_range`` default to the data's range; ``diagonal`` draws y = x dashed (the
    chance line of a ROC curve, perfect calibration), ``zero_line`` y = 0 (residuals).
    """
    if len(points) < 2:
        return ""
    points = _thin(points)
    frame = Frame(x_range or span(p[0] for p in points),
                  y_range or span((p[1] for p in points), include=(0.0,) if zero_line else ()),
                  left=56, top=12, width=width - 70, height=height - 60)
    parts = _axes(frame, x_label, y_label)
    dashed = f'stroke="{REFERENCE}" stroke-width="1.2" stroke-dasharray="5 4"'
    if diagonal:
        low = max(frame.x_range[0], frame.y_range[0])
        high = min(frame.x_range[1], frame.y_range[1])
        parts.append(f'<line class="reference" x1="{frame.px(low):.1f}" y1="{frame.py(low):.1f}" '
                     f'x2="{frame.px(high):.1f}" y2="{frame.py(high):.1f}" {dashed}/>')
    if zero_line and frame.y_range[0] <= 0 <= frame.y_range[1]:
        y = frame.py(0.0)
        parts.append(f'<line class="reference" x1="{frame.left:.1f}" y1="{y:.1f}" '
                     f'x2="{frame.left + frame.width:.1f}" y2="{y:.1f}" {dashed}/>')
    pixels = [(frame.px(x), frame.py(y)) for x, y in points]
    if line:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pixels)
        parts.append(f'<polyline class="curve" points="{path}" fill="none" stroke="{CURVE}" '
                     'stroke-width="2.2" stroke-linejoin="round"/>')
    if markers:
        radius = 3.2 if line else 2.4
        opacity = "" if line else ' fill-opacity="0.55"'
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{CURVE}"{opacity}/>'
                     for x, y in pixels)
    return svg_figure(width, height, label, parts)


def _points(curve: Curve | None) -> list[tuple[float, float]]:
    return [] if curve is None else list(zip(curve.x, curve.y, strict=True))


def roc_svg(curve: Curve | None) -> str:
    """ROC curve (false positive rate, true positive rate) with the chance diagonal."""
    return xy_plot(_points(curve), label="ROC curve", x_label="false positive rate",
                   y_label="true positive rate", x_range=(0, 1), y_range=(0, 1), diagonal=True)


def pr_svg(curve: Curve | None) -> str:
    """Precision-recall curve (recall on x, precision on y)."""
    return xy_plot(_points(curve), label="Precision-recall curve", x_label="recall",
                   y_label="precision", x_range=(0, 1), y_range=(0, 1))


def calibration_svg(curve: Curve | None) -> str:
    """Calibration: observed share of positives per bin of mean predicted probability, and y = x."""
    return xy_plot(_points(curve), label="Calibration", x_label="mean predicted probability",
                   y_label="observed share of positives", x_range=(0, 1), y_range=(0, 1),
                   markers=True, diagonal=True)


def residuals_svg(curve: Curve | None) -> str:
    """Residuals (actual minus predicted) against predicted values, with the zero line."""
    return xy_plot(_points(curve), label="Residuals", x_label="predicted",
                   y_label="actual \u2212 predicted", line=False, markers=True, zero_line=True)


def shortened(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, ending in an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "\u2026"


def _shade(share: float) -> str:
    """White (0) to the curve colour (1)."""
    share = min(max(share, 0.0), 1.0)
    red, green, blue = (int(CURVE[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(255 + (c - 255) * share):02x}" for c in (red, green, blue))


def confusion_svg(labels: Sequence[str], matrix: Sequence[Sequence[int]] | None) -> str:
    """The confusion matrix as a grid; "" when there is no square matrix.

    Rows are actual classes, columns predicted ones; each cell is shaded by its share of the
    actual class's rows and shows its count (when the cells are large enough to read).
    """
    n = len(matrix or ())
    if matrix is None or n == 0 or any(len(row) != n for row in matrix):
        return ""
    names = list(labels) if len(labels) == n else [str(i) for i in range(n)]
    cell = max(18, min(72, 300 // n))
    left, top = 130, 12
    width, height = left + n * cell + 16, top + n * cell + 52
    parts = []
    for i, row in enumerate(matrix):
        total = sum(row)
        y = top + i * cell
        parts.append(svg_text(left - 6, y + cell / 2 + 4, shortened(names[i], 18), anchor="end",
                           extra=' class="label"', tooltip=names[i]))
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            x = left + j * cell
            parts.append(f'<rect class="cell" x="{x}" y="{y}" width="{cell}" height="{cell}" '
                         f'fill="{_shade(share)}" stroke="#ffffff"><title>actual '
                         f'{html.escape(names[i])}, predicted {html.escape(names[j])}: {count} '
                         f'({share:.1%} of the actual class)</title></rect>')
            if cell >= 28:
                colour = "#ffffff" if share > 0.55 else INK
                size = 12 if cell >= 40 else 10
                parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" '
                             f'font-size="{size}" text-anchor="middle" fill="{colour}">{count}</text>')
    for j, name in enumerate(names):
        parts.append(svg_text(left + j * cell + cell / 2, top + n * cell + 15,
                           shortened(name, max(2, cell // 7)), tooltip=name))
    parts.append(svg_text(left + n * cell / 2, top + n * cell + 38, "predicted class", size=12))
    parts.append(svg_text(14, top + n * cell / 2, "actual class", size=12,
                       extra=f' transform="rotate(-90 14 {top + n * cell / 2:.1f})"'))
    return svg_figure(width, height, "Confusion matrix", parts)


def _importance_note(report: EvaluationReport) -> str:
    """How the bars were measured: shuffles and rows, and the screening of a wide table."""
    refined = [i for i in report.importance if i.shuffles > 1]
    shuffles = max((i.shuffles for i in refined), default=1)
    note = f"mean \u00b1 std over {shuffles} shuffles, on {report.importance_rows} test rows"
    if report.importance_screen_rows:
        note += (f"; the {len(report.importance)} features were first ranked by one shuffle of "
                 f"{report.importance_screen_rows} rows, and the top {len(refined)} measured")
    if len(report.importance) > MAX_FEATURES:
        note += f"; the top {MAX_FEATURES} of {len(report.importance)} shown"
    return note


def importance_svg(items: Sequence[FeatureImportance], metric: str = "") -> str:
    """Permutation importance as horizontal bars (mean drop of ``metric``) with +-std whiskers."""
    shown = list(items[:MAX_FEATURES])
    if not shown:
        return ""
    left, bar_width, value_width, row = 170, 300, 160, 22
    top = 8
    low = min(0.0, *(f.mean - f.std for f in shown))
    high = max(0.0, *(f.mean + f.std for f in shown))
    if high == low:
        high = low + 1.0
    frame = Frame((low, high), (0.0, 1.0), left=left, top=top, width=bar_width,
                  height=row * len(shown))
    height = top + row * len(shown) + 46
    width = left + bar_width + value_width
    bottom = top + row * len(shown)
    parts = []
    for tick in nice_ticks(low, high, 4):
        x = frame.px(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{GRID}"/>')
        parts.append(svg_text(x, bottom + 15, tick_label(tick)))
    zero = frame.px(0.0)
    for i, feature in enumerate(shown):
        y = top + i * row
        start, end = sorted((zero, frame.px(feature.mean)))
        name = feature.feature
        parts.append(svg_text(left - 8, y + row / 2 + 4, shortened(name, 24), anchor="end",
                           extra=' class="label"', tooltip=name))
        parts.append(f'<rect class="bar" x="{start:.1f}" y="{y + 4}" '
                     f'width="{max(end - start, 0.5):.1f}" height="{row - 8}" fill="{CURVE}">'
                     f'<title>{html.escape(name)}: '
                     f'{number(feature.mean)} \u00b1 {number(feature.std)}</title></rect>')
        if feature.std > 0:
            a, b = frame.px(feature.mean - feature.std), frame.px(feature.mean + feature.std)
            mid = y + row / 2
            parts.append(f'<path class="whisker" d="M{a:.1f},{mid:.1f}H{b:.1f}M{a:.1f},{mid - 4:.1f}'
                         f'V{mid + 4:.1f}M{b:.1f},{mid - 4:.1f}V{mid + 4:.1f}" stroke="#222b33" '
                         'stroke-width="1.2" fill="none"/>')
        parts.append(svg_text(left + bar_width + 8, y + row / 2 + 4,
                           f"{number(feature.mean)} \u00b1 {number(feature.std)}", anchor="start"))
    parts.append(f'<line x1="{zero:.1f}" y1="{top}" x2="{zero:.1f}" y2="{bottom}" stroke="{INK}"/>')
    axis = f"drop in {metric} when the feature is shuffled" if metric else "importance"
    parts.append(svg_text(left + bar_width / 2, bottom + 36, axis, size=12))
    return svg_figure(width, height, "Permutation feature importance", parts)


# -- what the template shows ------------------------------------------------------------------
@dataclass(frozen=True)
class Plot:
    """One figure of the card: its id, caption, a note under it, and the SVG."""

    id: str
    caption: str
    note: str
    svg: Markup


def status_of(decision: Decision) -> str:
    """``override`` (promoted by hand), ``passed`` (eligible for promotion) or ``rejected``."""
    if decision.override is not None:
        return "override"
    return "passed" if decision.passed else "rejected"


def _check_line(check: Check) -> str:
    where = f" on {check.slice}" if check.slice else ""
    if check.candidate is None or check.required is None:
        return f"{check.metric} {check.check}{where}: {check.note or 'not computed'}"
    text = (f"{check.metric} {check.check}{where}: {number(check.candidate)} vs required "
            f"{number(check.required)}")
    return text + (f" ({check.note})" if check.note else "")


def reasons_of(decision: Decision) -> list[str]:
    """The decision in a few sentences: what passed or failed, and any override."""
    failed = [c for c in decision.checks if not c.passed]
    total = len(decision.checks)
    reasons = []
    if decision.override is not None:
        reasons.append(f"Promoted by a manual override: {decision.override.reason}")
        reasons.append("The checks passed as well." if decision.override.checks_passed else
                       f"{len(failed)} of {total} checks failed; the override sets them aside.")
    elif not failed:
        reasons.append(f"All {total} checks passed: the candidate is eligible for promotion."
                       if total else "No check applied: the candidate is eligible for promotion.")
    else:
        reasons.append(f"{len(failed)} of {total} checks failed: production stays as it is.")
    if decision.first_run:
        reasons.append("First run: there is no production model to compare with.")
    reasons.extend(f"Failed: {_check_line(check)}" for check in failed)
    return reasons


def _baseline_of(lineage: Lineage) -> Baseline | None:
    return lineage.decision.baseline or lineage.baseline


def comparison_rows(lineage: Lineage) -> list[dict[str, Any]]:
    """Candidate against baseline per metric, on the comparable rows, with the interval."""
    decision, baseline = lineage.decision, _baseline_of(lineage)
    if baseline is None or baseline.metrics is None:
        return []
    comparison = decision.comparison
    candidate = comparison.candidate if comparison is not None else decision.metrics
    intervals = comparison.intervals if comparison is not None else {}
    rows = []
    for metric in dict.fromkeys([*candidate, *baseline.metrics]):
        mine, theirs = candidate.get(metric), baseline.metrics.get(metric)
        difference = None if mine is None or theirs is None else mine - theirs
        interval = intervals.get(metric)
        if difference is None or difference == 0:
            reading = "" if difference is None else "same"
        else:
            reading = "worse" if is_worse(metric, mine, theirs) else "better"
            if interval is not None and (interval.low > 0 or interval.high < 0):
                reading += " (interval excludes 0)"
        rows.append({"metric": metric, "candidate": mine, "baseline": theirs,
                     "difference": difference, "interval": interval, "reading": reading,
                     "worse": is_worse(metric, mine, theirs)})
    return rows


def slice_rows(lineage: Lineage, metric: str) -> list[dict[str, Any]]:
    """One row per slice: the primary metric of candidate and baseline, flagged when worse."""
    failed = {c.slice for c in lineage.decision.checks if c.slice and not c.passed}
    rows = []
    for piece in lineage.decision.slices:
        mine = piece.candidate.get(metric)
        theirs = None if piece.baseline is None else piece.baseline.get(metric)
        worse = is_worse(metric, mine, theirs)
        failing = f"{piece.column}={piece.value}" in failed
        flags = [text for text, on in (("worse", worse), ("check failed", failing)) if on]
        rows.append({"column": piece.column, "value": piece.value, "rows": piece.rows,
                     "candidate": mine, "baseline": theirs,
                     "difference": None if mine is None or theirs is None else mine - theirs,
                     "flag": ", ".join(flags), "worse": worse or failing})
    return rows


def per_class_table(per_class: Mapping[str, Mapping[str, float]]) -> tuple[list[str], list[list[str]]]:
    """The per-class metrics as a header (metric names) and rows of formatted cells."""
    columns = list(dict.fromkeys(name for values in per_class.values() for name in values))
    rows = []
    for label, values in per_class.items():
        cells = [label]
        for name in columns:
            value = values.get(name)
            whole = value is not None and name in COUNT_COLUMNS and float(value).is_integer()
            cells.append(str(int(value)) if whole and value is not None else number(value))
        rows.append(cells)
    return columns, rows


def plots_of(lineage: Lineage, report: EvaluationReport) -> list[Plot]:
    """The figures whose data the report has, in a fixed order."""
    metrics = lineage.decision.metrics or lineage.metrics
    auc = f" (roc_auc {number(metrics['roc_auc'])})" if "roc_auc" in metrics else ""
    ap = next((f" ({name} {number(metrics[name])})" for name in ("average_precision", "pr_auc")
               if name in metrics), "")
    drawn = [
        ("roc", f"ROC curve{auc}", "dashed: a model that guesses", roc_svg(report.curves.get("roc"))),
        ("pr", f"Precision-recall curve{ap}", "", pr_svg(report.curves.get("pr"))),
        ("calibration", "Calibration", "dashed: perfectly calibrated probabilities",
         calibration_svg(report.curves.get("calibration"))),
        ("confusion", "Confusion matrix", "rows: actual class; columns: predicted class; shade: "
         "share of the actual class's test rows", confusion_svg(report.labels, report.confusion_matrix)),
        ("residuals", "Residuals", "test rows (a sample): actual minus predicted against predicted",
         residuals_svg(report.curves.get("residuals"))),
        ("importance", "Permutation feature importance",
         _importance_note(report), importance_svg(report.importance, report.primary_metric)),
    ]
    # Markup: every text inside was escaped with html.escape when the SVG was built.
    return [Plot(id=key, caption=caption, note=note, svg=Markup(svg))
            for key, caption, note, svg in drawn if svg]


@functools.cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(number=number, signed=signed, interval=interval_text, plain=plain)
    return env


def render_model_card(lineage: Lineage, report: EvaluationReport, *, model: str,
                      version: int | None = None) -> str:
    """The model card of a version as one self-contained HTML document (``model_card.html``).

    Args:
        lineage: what made the version and the gate's decision (the manifest's lineage).
        report: the evaluation report of the candidate (curves, confusion matrix, importance).
        model: the registry name of the model.
        version: the version number, when it is known (publish knows it).
    """
    decision = lineage.decision
    per_class_columns, per_class_rows = per_class_table(decision.per_class)
    search = lineage.training.search
    return _environment().get_template(TEMPLATE).render(
        model=model,
        version=version,
        lineage=lineage,
        report=report,
        decision=decision,
        status=status_of(decision),
        reasons=reasons_of(decision),
        baseline=_baseline_of(lineage),
        comparison=decision.comparison,
        comparison_rows=comparison_rows(lineage),
        primary=report.primary_metric,
        metrics=decision.metrics or lineage.metrics,
        per_class_columns=per_class_columns,
        per_class_rows=per_class_rows,
        slice_rows=slice_rows(lineage, report.primary_metric),
        show_slice_column=any(check.slice for check in decision.checks),
        show_note_column=any(check.note for check in decision.checks),
        search=search,
        plots=plots_of(lineage, report),
    )

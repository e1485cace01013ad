"""The validation report: what validate found, as Markdown and as a self-contained HTML page.

Both put what decides the run first: the status (passed, or how many errors and warnings), the
anomalies (errors, then warnings; ignored ones last), the worst drift and the leakage scores;
then every column's statistics beside the reference's (the production version's statistics;
none on a first run). The HTML page adds a small histogram per numeric column (this run's bars,
the reference's outline, on a shared x-range) and the top categories' shares of categorical ones.

The Kubeflow dashboard shows the Markdown in its Markdown viewer and the HTML in a sandboxed
iframe, and publish keeps a copy of the HTML in the version's folder, so the page loads nothing:
no script, no external style, font or image; plots are inline SVG. Everything from the data
(column names, category values, messages) is escaped: by the template's autoescaping and
:func:`html.escape` in the SVG built here; in the Markdown, characters that would end a table
cell, start HTML or format text are escaped. Both stay bounded whatever the table: a 5,000-column
table lists its first columns in full and says how many more there are.

Like the model card, this module imports neither numpy, pandas nor scikit-learn.
"""

from __future__ import annotations

import functools
import html
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from keel.contracts import (
    Anomaly,
    ColumnInfo,
    ColumnStatistics,
    Drift,
    Histogram,
    LeakageScore,
    TableSchema,
    TableStatistics,
    ValidationResult,
)
from keel.model_card import (
    CURVE,
    GRID,
    INK,
    TEMPLATES,
    Frame,
    number,
    shortened,
    span,
    svg_figure,
    svg_text,
)

TEMPLATE = "validation_report.html.j2"

ERROR = "#c62828"  # the model card's "rejected" red: drifted scores
OUTLINE = "#222b33"  # the reference's histogram and shares: an outline over this run's bars
TRACK = "#eef1f4"

MAX_COLUMNS = 200  # Markdown: columns listed in full in each column table
MAX_HTML_COLUMNS = 300  # HTML: rows of the column table
MAX_PLOTS = 80  # HTML: columns drawn with a histogram or category bars
MAX_ANOMALIES = 100  # per severity, errors and warnings
SHOWN_ERRORS = 20  # HTML: anomalies shown at the top; the rest (up to MAX_ANOMALIES) folded
SHOWN_WARNINGS = 10
MAX_IGNORED = 20
MAX_DRIFT = 50  # Markdown drift table rows
MAX_DRIFT_TOP = 15  # HTML: drift rows in the summary at the top
MAX_LEAKAGE = 10
TOP_VALUES = 5  # most frequent values shown per categorical column
NAME_WIDTH = 80  # characters of a column name, category or message shown (the rest elided)
MESSAGE_WIDTH = 400
SPARK_BINS = 12
SPARKS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"  # one eighth to a full block
DASH = "\u2014"

#: Anomalies whose value, reference and threshold are shares of rows (shown as percents).
SHARE_KINDS = frozenset({"new_category", "out_of_range", "missing_rate"})
Status = Literal["passed", "warnings", "failed"]


# -- numbers and text -------------------------------------------------------------------------
def percent(share: float | None) -> str:
    """A share as a percent with 3 significant digits: ``0.1234`` -> ``12.3%``; None -> em dash.

    Never rounds a share that is not 0 or 1 to ``0%`` or ``100%``.
    """
    if share is None or not math.isfinite(share):
        return DASH
    value = share * 100
    if value == 0:
        return "0%"
    if 0 < abs(value) < 0.01:
        return "<0.01%"
    text = number(value, 3)
    if text in ("100", "-100") and abs(value) != 100:
        text = "99.9" if value > 0 else "-99.9"
    return f"{text}%"


def count(value: int | None) -> str:
    """A row count with thousands separators: ``12,345``; None -> em dash."""
    return DASH if value is None else f"{value:,}"


_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f]")  # neither HTML nor XML text


def clip(text: str, width: int = NAME_WIDTH) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis.

    Each run of line breaks becomes a space, and control characters U+FFFD.
    """
    return shortened(_CONTROL.sub("\ufffd", _LINE_BREAKS.sub(" ", text)), width)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*|])")


def md(text: object, width: int = NAME_WIDTH) -> str:
    r"""Text from the data as Markdown shows it literally, even inside a table cell.

    One line (line breaks become spaces), at most ``width`` characters; ``| \ ` *`` escaped by
    a backslash and ``& < >`` as HTML entities, so nothing ends a cell, starts a tag or formats.
    """
    clipped = clip(str(text), width)
    escaped = html.escape(clipped, quote=False)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escaped)


def md_code(text: str, width: int = NAME_WIDTH) -> str:
    """A name from the data as inline code (``` `income` ```), outside tables.

    Inside code nothing is formatting, so only the fence (longer than any backtick run in the
    text) needs care; a name holding ``< > &`` is shown as escaped text instead, so that no
    renderer, however naive, meets a tag.
    """
    clipped = clip(text, width)
    if any(c in clipped for c in "<>&"):
        return md(clipped, width)
    longest = max((len(run) for run in re.findall(r"`+", clipped)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest or clipped.startswith(" ") or clipped.endswith(" ") else ""
    return f"{fence}{pad}{clipped}{pad}{fence}"


def md_note(note: str) -> str:
    """A note Keel wrote in Markdown (``**bold**`` kept): on one line, no HTML."""
    return " ".join(note.replace("<", "&lt;").replace(">", "&gt;").split())


def html_note(note: str) -> Markup:
    """A note Keel wrote in Markdown, as HTML: escaped, with ``**bold**`` and ```code``` kept."""
    escaped = str(html.escape(note, quote=False))
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


# -- what the report is made of ---------------------------------------------------------------
def status_of(result: ValidationResult) -> Status:
    """``failed`` when an anomaly stops the run, ``warnings`` when some are reported, else ``passed``."""
    if result.errors:
        return "failed"
    return "warnings" if result.warnings else "passed"


def plural(n: int, word: str, many: str = "") -> str:
    """``1 warning``, ``2 warnings``; ``many`` is the plural when it is not ``word`` + s."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def status_line(result: ValidationResult) -> str:
    """``failed: 2 errors, 3 warnings (1 ignored)``, ``passed with 3 warnings`` or ``passed``."""
    errors, warnings = len(result.errors), len(result.warnings)
    ignored = sum(a.severity == "ignore" for a in result.anomalies)
    tail = f" ({ignored:,} ignored)" if ignored else ""
    if errors:
        return f"failed: {plural(errors, 'error')}, {plural(warnings, 'warning')}{tail}"
    if warnings:
        return f"passed with {plural(warnings, 'warning')}{tail}"
    return f"passed: no anomaly{tail}"


def reference_line(result: ValidationResult, reference: TableStatistics | None) -> str:
    """What the data was compared with: ``compared with production version 4, 12,000 rows``."""
    if result.reference_version is None:
        return result.reference_note or "no reference: nothing compared"
    rows = result.reference_rows if result.reference_rows is not None else (
        None if reference is None else reference.rows)
    if reference is None and result.reference_note:  # no statistics: the note says why
        return result.reference_note
    line = f"compared with production version {result.reference_version}"
    return line + (f", {count(rows)} rows" if rows is not None else "")


def anomaly_numbers(anomaly: Anomaly) -> str:
    """``value 12.3%, reference 0.5%, threshold 1%``: the numbers an anomaly carries."""
    share = anomaly.kind in SHARE_KINDS

    def shown(value: float) -> str:
        if share:
            return percent(value)
        if anomaly.kind == "row_count" and float(value).is_integer():
            return count(int(value))
        return number(value)

    parts = [(name, value) for name, value in (("value", anomaly.value),
                                               ("reference", anomaly.reference),
                                               ("threshold", anomaly.threshold))
             if value is not None]
    return ", ".join(f"{name} {shown(value)}" for name, value in parts)


def ordered_anomalies(result: ValidationResult) -> tuple[list[Anomaly], list[Anomaly], list[Anomaly]]:
    """Errors, warnings and ignored anomalies, each in the order the checks found them."""
    ignored = [a for a in result.anomalies if a.severity == "ignore"]
    return result.errors, result.warnings, ignored


def drift_ratio(drift: Drift) -> float:
    """The score as a multiple of its threshold (1 is the threshold)."""
    return drift.score / drift.threshold


def drift_line(drift: Sequence[Drift]) -> str:
    """``2 of 5 columns drifted beyond their threshold``."""
    drifted = sum(d.drifted for d in drift)
    return f"{drifted:,} of {plural(len(drift), 'column')} drifted beyond their threshold"


def worst_drift(result: ValidationResult) -> list[Drift]:
    """Drift scores, worst (largest multiple of the threshold) first."""
    return sorted(result.drift, key=drift_ratio, reverse=True)


@dataclass(frozen=True)
class Share:
    """One of a column's most frequent values: its share of this run's and the reference's values."""

    value: str
    now: float | None
    ref: float | None


@dataclass(frozen=True)
class ColumnView:
    """One column as the report shows it: schema, this run's and the reference's statistics."""

    name: str
    info: ColumnInfo | None  # None: not in this table (only in the reference)
    now: ColumnStatistics | None
    ref: ColumnStatistics | None
    anomalies: tuple[Anomaly, ...]  # errors and warnings on this column
    drift: Drift | None

    @property
    def flag(self) -> str:
        """``error``, ``warning``, ``drift`` or ``""``: the worst that was found in the column."""
        severities = {a.severity for a in self.anomalies}
        for severity in ("error", "warning"):
            if severity in severities:
                return severity
        return "drift" if self.drift is not None and self.drift.drifted else ""

    @property
    def kind(self) -> str:
        """The statistics' kind (what the numbers are): numeric, categorical, text..."""
        found = self.now if self.now is not None else self.ref
        return found.kind if found is not None else "other"

    @property
    def label(self) -> str:
        """Schema kind and role: ``numeric feature``, ``categorical target``, ``text excluded``."""
        if self.info is None:
            return "only in the reference"
        return f"{self.info.kind} {self.info.role}"

    @property
    def type(self) -> str:
        """The column's type: the schema's pandas dtype, else the statistics' Arrow type."""
        if self.info is not None:
            return self.info.dtype
        found = self.now if self.now is not None else self.ref
        return found.type if found is not None else ""

    def missing(self, which: Literal["now", "ref"]) -> float | None:
        """The share of missing values in this run's or the reference's column."""
        stats = self.now if which == "now" else self.ref
        if stats is None:
            return None
        total = stats.count + stats.missing
        return stats.missing / total if total else None

    def shares(self, limit: int = TOP_VALUES) -> list[Share]:
        """The values to draw: at most ``limit + 2``.

        This run's most frequent values, then its values the reference never saw (new
        categories), then the reference's most frequent ones that this run's top lacks.
        """
        now = self.now.top if self.now is not None else []
        values = [f.value for f in now[:limit]]
        new = [f.value for f in now[limit:] if _share(self.ref, f.value) == 0]
        gone = [f.value for f in (self.ref.top if self.ref is not None else [])[:limit]
                if f.value not in values]
        picked = list(dict.fromkeys([*values, *new[:2], *gone]))[: limit + 2]
        return [Share(v, _share(self.now, v), _share(self.ref, v)) for v in picked]


def _share(stats: ColumnStatistics | None, value: str) -> float | None:
    """The share of ``stats``' present values equal to ``value``; None when it is not known."""
    if stats is None or not stats.count:
        return None
    if stats.categories is not None:
        return stats.categories.get(value, 0) / stats.count
    found = next((f.count for f in stats.top if f.value == value), None)
    if found is None:
        # not in the top list: rarer than its last entry, or absent when nothing else was seen
        seen = sum(f.count for f in stats.top)
        return 0.0 if seen == stats.count else None
    return found / stats.count


def column_views(schema: TableSchema, statistics: TableStatistics, result: ValidationResult,
                 reference: TableStatistics | None) -> list[ColumnView]:
    """Every column of the table (schema order), then those only in the reference."""
    infos = {c.name: c for c in schema.columns}
    now = {c.name: c for c in statistics.columns}
    ref = {c.name: c for c in reference.columns} if reference is not None else {}
    drift = {d.column: d for d in result.drift}
    found: dict[str, list[Anomaly]] = {}
    for anomaly in result.anomalies:
        if anomaly.severity != "ignore" and anomaly.column:
            found.setdefault(anomaly.column, []).append(anomaly)
    names = list(dict.fromkeys([*infos, *now, *ref, *found]))
    return [ColumnView(name=name, info=infos.get(name), now=now.get(name), ref=ref.get(name),
                       anomalies=tuple(found.get(name, ())), drift=drift.get(name))
            for name in names]


def flagged_first(views: Sequence[ColumnView], target: str) -> list[ColumnView]:
    """Columns with errors, then warnings, then drift, then the target, then the rest in order."""
    rank = {"error": 0, "warning": 1, "drift": 2}

    def key(item: tuple[int, ColumnView]) -> tuple[int, int]:
        index, view = item
        return rank.get(view.flag, 3 if view.name == target else 4), index

    return [view for _, view in sorted(enumerate(views), key=key)]


# -- histograms --------------------------------------------------------------------------------
def shared_range(*histograms: Histogram | None) -> tuple[float, float] | None:
    """The x-range covering every given histogram; None when none has a counted value."""
    drawn = [h for h in histograms if h is not None and h.counts and sum(h.counts) > 0]
    if not drawn:
        return None
    low, high = min(h.edges[0] for h in drawn), max(h.edges[-1] for h in drawn)
    # a range wider than the largest float (-1e308..1e308) cannot be divided into bins
    return (low, high) if math.isfinite(high - low) else None


def rebin(histogram: Histogram, low: float, high: float, bins: int) -> list[float]:
    """The histogram's counts spread over ``bins`` equal bins of ``low..high`` (uniform in a bin)."""
    counts = [0.0] * bins
    width = (high - low) / bins
    for start, end, n in zip(histogram.edges, histogram.edges[1:], histogram.counts, strict=False):
        if not n:
            continue
        if end <= start or width <= 0:  # a bin of one value
            index = 0 if width <= 0 else min(max(int((start - low) / width), 0), bins - 1)
            counts[index] += n
            continue
        first = max(int((start - low) / width), 0)
        last = min(int((end - low) / width), bins - 1)
        for i in range(first, last + 1):
            overlap = min(end, low + (i + 1) * width) - max(start, low + i * width)
            if overlap > 0:
                counts[i] += n * overlap / (end - start)
    return counts


def sparkline(histogram: Histogram | None, x_range: tuple[float, float] | None,
              bins: int = SPARK_BINS) -> str:
    """The histogram in block characters over ``x_range`` (``▁▃▇▅▂``); "" when nothing to draw."""
    if histogram is None or x_range is None or not sum(histogram.counts):
        return ""
    counts = rebin(histogram, *x_range, bins if x_range[1] > x_range[0] else 1)
    top = max(counts)
    return "".join(" " if c <= 0 else SPARKS[min(int(c / top * len(SPARKS)), len(SPARKS) - 1)]
                   for c in counts)


def _densities(histogram: Histogram, floor: float) -> list[float]:
    """Share of values per unit of x in each bin, so bins of different widths compare."""
    total = sum(histogram.counts)
    return [n / total / max(end - start, floor)
            for start, end, n in zip(histogram.edges, histogram.edges[1:], histogram.counts,
                                     strict=False)]


def histogram_svg(now: Histogram | None, ref: Histogram | None, *, name: str,
                  width: int = 210, height: int = 58) -> str:
    """This run's histogram as bars and the reference's as an outline, on a shared x-range.

    Heights are densities (share of values per unit of x), so two histograms with different bin
    edges are drawn to one scale. "" when this run has no counted value.
    """
    shared = shared_range(now, ref)
    if now is None or not sum(now.counts) or shared is None:
        return ""
    x_range = shared if shared[1] > shared[0] else span(shared)
    floor = (x_range[1] - x_range[0]) / 100  # a one-value bin is drawn 1% of the range wide
    drawn = [now] if ref is None or sum(ref.counts) == 0 else [now, ref]
    heights = [_densities(h, floor) for h in drawn]
    top = max(max(d) for d in heights) or 1.0
    frame = Frame(x_range, (0.0, top), left=1, top=3, width=width - 2, height=height - 17)
    base = frame.py(0.0)
    parts = [f'<line x1="{frame.left}" y1="{base:.1f}" x2="{frame.left + frame.width}" '
             f'y2="{base:.1f}" stroke="{GRID}"/>']
    for start, end, n, density in zip(now.edges, now.edges[1:], now.counts, heights[0],
                                      strict=False):
        if not n:
            continue
        x0, x1 = frame.px(start), frame.px(max(end, start + floor))
        y = frame.py(density)
        parts.append(f'<rect class="bar" x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 0.6, 1):.1f}" '
                     f'height="{max(base - y, 0.8):.1f}" fill="{CURVE}"/>')
    if len(drawn) == 2:
        assert ref is not None
        path = [f"M{frame.px(ref.edges[0]):.1f},{base:.1f}"]
        for start, end, density in zip(ref.edges, ref.edges[1:], heights[1], strict=False):
            y = frame.py(density)
            right = frame.px(max(end, start + floor))
            path.append(f"L{frame.px(start):.1f},{y:.1f}L{right:.1f},{y:.1f}")
        path.append(f"L{frame.px(max(ref.edges[-1], ref.edges[-2] + floor)):.1f},{base:.1f}")
        parts.append(f'<path class="reference" d="{"".join(path)}" fill="none" stroke="{OUTLINE}" '
                     'stroke-width="1.3" stroke-linejoin="round"/>')
    parts.append(svg_text(frame.left, height - 3, number(x_range[0], 3), anchor="start", size=10))
    parts.append(svg_text(frame.left + frame.width, height - 3, number(x_range[1], 3), anchor="end",
                       size=10))
    label = f"Histogram of {clip(name)}" + (
        ": bars this run, outline the reference" if len(drawn) == 2 else "")
    return svg_figure(width, height, label, parts)


def categories_svg(shares: Sequence[Share], *, name: str, width: int = 210) -> str:
    """Bars of the most frequent values' shares: this run filled, the reference as an outline."""
    if not shares:
        return ""
    row, label_width, text_width = 15, 74, 44
    bar_width = width - label_width - text_width
    height = row * len(shares) + 2
    parts = []
    for i, share in enumerate(shares):
        y = 1 + i * row
        parts.append(svg_text(label_width - 4, y + 11, clip(share.value, 11), anchor="end",
                           size=10, tooltip=clip(share.value, MESSAGE_WIDTH)))
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{bar_width}" height="{row - 4}" '
                     f'fill="{TRACK}"/>')
        if share.now:
            parts.append(f'<rect class="bar" x="{label_width}" y="{y + 3}" '
                         f'width="{max(share.now * bar_width, 1):.1f}" height="{row - 6}" '
                         f'fill="{CURVE}"><title>{html.escape(clip(share.value))}: {percent(share.now)} '
                         f'this run, {percent(share.ref)} the reference</title></rect>')
        if share.ref is not None:
            parts.append(f'<rect class="reference" x="{label_width}" y="{y + 1.5}" '
                         f'width="{max(share.ref * bar_width, 0.5):.1f}" height="{row - 3}" '
                         f'fill="none" stroke="{OUTLINE}" stroke-width="1.2"/>')
        parts.append(svg_text(width - 2, y + 11, percent(share.now), anchor="end", size=10))
    return svg_figure(width, height, f"Most frequent values of {clip(name)}", parts)


def drift_bar_svg(drift: Drift, width: int = 130, height: int = 14) -> str:
    """The score on a track where the threshold sits in the middle; red beyond it."""
    ratio = drift_ratio(drift)
    filled = min(ratio, 2.0) / 2 * width
    colour = ERROR if drift.drifted else CURVE
    middle = width / 2
    label = f"{drift.method} {number(drift.score)}: {number(ratio, 3)}x the threshold " \
            f"{number(drift.threshold)}"
    return svg_figure(width, height, label, [
        f'<rect x="0" y="2" width="{width}" height="{height - 4}" fill="{TRACK}"/>',
        f'<rect class="bar" x="0" y="2" width="{max(filled, 1):.1f}" height="{height - 4}" '
        f'fill="{colour}"/>',
        f'<line x1="{middle}" y1="0" x2="{middle}" y2="{height}" stroke="{INK}" '
        'stroke-width="1.5"/>',
    ])


def leakage_bar_svg(score: LeakageScore, width: int = 130, height: int = 14) -> str:
    """The score on a 0..1 track."""
    filled = min(max(score.score, 0.0), 1.0) * width
    return svg_figure(width, height, f"{score.metric} {number(score.score)}", [
        f'<rect x="0" y="2" width="{width}" height="{height - 4}" fill="{TRACK}"/>',
        f'<rect class="bar" x="0" y="2" width="{max(filled, 1):.1f}" height="{height - 4}" '
        f'fill="{CURVE}"/>',
    ])


# -- the numbers of a column, side by side -----------------------------------------------------
def _distinct(stats: ColumnStatistics | None) -> str:
    if stats is None:
        return DASH
    return ("" if stats.distinct_exact else "\u2248") + count(stats.distinct)


def _top_text(stats: ColumnStatistics | None, limit: int = 3, width: int = 20) -> str:
    """``owner 45%, rent 30%``: the most frequent values with their shares of present values."""
    if stats is None or not stats.top:
        return DASH
    total = stats.count or 1
    return ", ".join(f"{clip(f.value, width)} {percent(f.count / total)}" for f in stats.top[:limit])


def summary_of(stats: ColumnStatistics | None) -> str:
    """A non-numeric column in a few words: top values, dates, or text lengths."""
    if stats is None:
        return DASH
    if stats.kind == "datetime":
        return f"{clip(stats.earliest or DASH, 40)} \u2026 {clip(stats.latest or DASH, 40)}"
    if stats.kind == "text" and stats.mean_length is not None:
        lengths = (f"length {number(stats.min_length)}\u2013{number(stats.max_length)}, "
                   f"mean {number(stats.mean_length, 3)}")
        return f"{lengths}; {_top_text(stats, 2)}" if stats.top else lengths
    return _top_text(stats)


@dataclass(frozen=True)
class Pair:
    """One statistic of this run and of the reference, formatted."""

    now: str
    ref: str | None  # None: no reference at all

    def text(self) -> str:
        """``now / ref`` (or ``now`` without a reference)."""
        return self.now if self.ref is None else f"{self.now} / {self.ref}"


def pairs(view: ColumnView, has_reference: bool) -> dict[str, Pair]:
    """The key numbers of a column, this run and the reference's, formatted."""

    def both(get: Callable[[ColumnStatistics], str]) -> Pair:
        now = get(view.now) if view.now is not None else DASH
        ref = (get(view.ref) if view.ref is not None else DASH) if has_reference else None
        return Pair(now, ref)

    return {
        "missing": Pair(percent(view.missing("now")),
                        percent(view.missing("ref")) if has_reference else None),
        "distinct": both(_distinct),
        "mean": both(lambda s: number(s.mean)),
        "std": both(lambda s: number(s.std)),
        "min": both(lambda s: number(s.min)),
        "max": both(lambda s: number(s.max)),
        "summary": both(summary_of),
        "spark": Pair(*_sparks(view, has_reference)),
    }


def _sparks(view: ColumnView, has_reference: bool) -> tuple[str, str | None]:
    now = view.now.histogram if view.now is not None else None
    ref = view.ref.histogram if view.ref is not None else None
    x_range = shared_range(now, ref)
    return sparkline(now, x_range), sparkline(ref, x_range) if has_reference else None


# -- Markdown ----------------------------------------------------------------------------------
def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_more(shown: int, total: int, what: str) -> list[str]:
    return ["", f"\u2026 and {total - shown:,} more {what} not listed."] if total > shown else []


def _md_anomaly(anomaly: Anomaly) -> str:
    numbers = anomaly_numbers(anomaly)
    where = f" {md_code(anomaly.column)}" if anomaly.column else ""
    return (f"- **{anomaly.kind}**{where}: {md(anomaly.message, MESSAGE_WIDTH)}"
            + (f" ({numbers})" if numbers else ""))


def report_markdown(schema: TableSchema, statistics: TableStatistics, result: ValidationResult,
                    reference: TableStatistics | None, notes: Sequence[str] = ()) -> str:
    """The validation report as Markdown, shown in the Kubeflow dashboard's Markdown viewer.

    Args:
        schema: the validated table's schema document.
        statistics: this run's statistics.
        result: the data checks (anomalies, drift, leakage) and the reference they used.
        reference: the production version's statistics; None on a first run or without one.
        notes: extra bullets, in Markdown written by Keel (``**bold**`` is kept).

    Returns:
        The report: status, rows, anomalies, drift, leakage, the columns and their statistics
        beside the reference's; at most ``MAX_COLUMNS`` columns per table, then a count.
    """
    errors, warnings, ignored = ordered_anomalies(result)
    infinite = list(schema.infinite_values.items())
    infinite_text = ", ".join(f"{md(k)} ({v})" for k, v in infinite[:20]) or "none"
    if len(infinite) > 20:
        infinite_text += f" \u2026 and {len(infinite) - 20:,} more columns"
    lines = [
        f"# Validation report: target {md_code(schema.target)} ({schema.task})",
        "",
        f"**Status: {status_line(result)}.** "
        f"{md(_capital(reference_line(result, reference)), MESSAGE_WIDTH)}.",
        "",
        f"- rows read: {schema.rows_in}",
        f"- rows dropped because the target is missing: {schema.rows_dropped_missing_target}",
        f"- infinite values read as missing: {infinite_text}",
        f"- rows kept: {schema.rows}",
        f"- numeric features: {len(schema.numeric_features)}, "
        f"categorical features: {len(schema.categorical_features)}, "
        f"excluded columns: {len(schema.excluded)}",
        *(f"- {md_note(note)}" for note in notes),
        "",
        "## Anomalies",
        "",
    ]
    if not result.anomalies:
        lines.append("No anomaly found.")
    for title, found in (("Errors (stop the run)", errors), ("Warnings", warnings)):
        if found:
            lines += [f"### {title}: {len(found):,}", ""]
            lines += [_md_anomaly(a) for a in found[:MAX_ANOMALIES]]
            lines += _md_more(MAX_ANOMALIES, len(found), title.split()[0].lower())
            lines.append("")
    if ignored:
        lines += [f"### Ignored: {len(ignored):,}", ""]
        lines += [f"- {a.kind}" + (f" {md_code(a.column, 40)}" if a.column else "")
                  for a in ignored[:MAX_IGNORED]]
        lines += _md_more(MAX_IGNORED, len(ignored), "ignored anomalies")
    lines += ["", "## Drift", ""]
    drift = worst_drift(result)
    if drift:
        lines += [f"{drift_line(drift)}; worst first.", "",
                  _md_row(["column", "method", "score", "threshold", "drifted"]),
                  "|---|---|---:|---:|---|"]
        lines += [_md_row([md(d.column), d.method, number(d.score), number(d.threshold),
                           "**yes**" if d.drifted else "no"]) for d in drift[:MAX_DRIFT]]
        lines += _md_more(MAX_DRIFT, len(drift), "columns")
    else:
        lines.append("No drift computed: " + ("no reference to compare with." if reference is None
                                              else "no column to compare."))
    if result.leakage:
        leaking = {a.column for a in result.anomalies if a.kind == "target_leakage"}
        lines += ["", "## Leakage", "",
                  "How well each feature alone predicts the target (highest first).", "",
                  _md_row(["column", "metric", "score", "flagged"]), "|---|---|---:|---|"]
        lines += [_md_row([md(s.column), s.metric, number(s.score),
                           "**yes**" if s.column in leaking else ""])
                  for s in result.leakage[:MAX_LEAKAGE]]
        lines += _md_more(MAX_LEAKAGE, len(result.leakage), "columns")
    lines += ["", "## Columns", "",
              "| column | type | kind | role | missing | distinct | note |",
              "|---|---|---|---|---|---|---|"]
    for c in schema.columns[:MAX_COLUMNS]:
        cells = [md(c.name), md(c.dtype), c.kind, c.role, str(c.missing), str(c.unique),
                 md(c.reason, MESSAGE_WIDTH)]
        lines.append(_md_row(cells))
    lines += _md_more(MAX_COLUMNS, len(schema.columns), "columns")
    lines += _md_statistics(schema, statistics, result, reference)
    return "\n".join(lines) + "\n"


def _md_statistics(schema: TableSchema, statistics: TableStatistics, result: ValidationResult,
                   reference: TableStatistics | None) -> list[str]:
    has_reference = reference is not None
    views = flagged_first(column_views(schema, statistics, result, reference), schema.target)
    heading = "This run against the reference" if has_reference else "Statistics"
    explain = (f"Each cell: this run / the reference ({count(reference.rows)} rows). "
               if reference is not None else "")
    lines = ["", f"## {heading}", "",
             explain + "Columns with errors, warnings or drift first; histograms share one "
             "x-range per column; missing is a share of rows.", "",
             _md_row(["column", "flag", "missing", "distinct", "mean", "std", "min", "max",
                      "top values", "histogram"]),
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for view in views[:MAX_COLUMNS]:
        numbers = pairs(view, has_reference)
        numeric = view.kind == "numeric"
        spark = numbers["spark"]
        sparks = [f"`{s}`" for s in (spark.now, spark.ref) if s is not None and s.strip()]
        flag = view.flag
        if view.info is None and view.now is None:
            flag = flag or "missing"
        cells = [md(view.name), f"**{flag}**" if flag in ("error", "warning") else flag,
                 numbers["missing"].text(), numbers["distinct"].text()]
        cells += [md(numbers[key].text(), 60) if numeric else DASH
                  for key in ("mean", "std", "min", "max")]
        cells += [DASH if numeric else md(numbers["summary"].text(), 120), " / ".join(sparks)]
        lines.append(_md_row(cells))
    lines += _md_more(MAX_COLUMNS, len(views), "columns")
    return lines


# -- HTML --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HtmlColumn:
    """One row of the HTML column table."""

    view: ColumnView
    numbers: dict[str, Pair]
    plot: Markup  # "" when not drawn
    numeric: bool


def _plot(view: ColumnView, has_reference: bool) -> str:
    """A histogram (numbers) or bars of the most frequent values (categories); "" for the rest."""
    if view.now is None and view.ref is None:
        return ""
    if view.now is not None and view.now.histogram is not None and view.kind == "numeric":
        ref = view.ref.histogram if has_reference and view.ref is not None else None
        return histogram_svg(view.now.histogram, ref, name=view.name)
    if view.kind in ("categorical", "boolean") or (view.kind == "text" and view.now is not None
                                                   and view.now.top):
        shares = view.shares()
        if not has_reference:
            shares = [Share(s.value, s.now, None) for s in shares]
        return categories_svg(shares, name=view.name)
    return ""


@functools.cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(number=number, percent=percent, thousands=count, clip=clip, note=html_note,
                       numbers=anomaly_numbers)
    return env


def report_html(schema: TableSchema, statistics: TableStatistics, result: ValidationResult,
                reference: TableStatistics | None, notes: Sequence[str] = (), *,
                title: str = "") -> str:
    """The validation report as one self-contained HTML page (the KFP ``HTML`` artifact).

    Args:
        schema: the validated table's schema document.
        statistics: this run's statistics.
        result: the data checks (anomalies, drift, leakage) and the reference they used.
        reference: the production version's statistics; None on a first run or without one.
        notes: extra lines, in Markdown written by Keel (``**bold**`` is kept).
        title: what the report is about (the model name); the target's name when empty.

    Returns:
        The page: status, reference, anomalies, drift and leakage at the top, then the columns
        (flagged ones first) with their numbers beside the reference's and small plots; at most
        ``MAX_HTML_COLUMNS`` rows and ``MAX_PLOTS`` plots, and it says how many were left out.
    """
    has_reference = reference is not None
    views = flagged_first(column_views(schema, statistics, result, reference), schema.target)
    rows = []
    for index, view in enumerate(views[:MAX_HTML_COLUMNS]):
        svg = _plot(view, has_reference) if index < MAX_PLOTS else ""
        # Markup: every text inside the SVG was escaped with html.escape when it was built.
        rows.append(HtmlColumn(view=view, numbers=pairs(view, has_reference), plot=Markup(svg),
                               numeric=view.kind == "numeric"))
    errors, warnings, ignored = ordered_anomalies(result)
    drift = worst_drift(result)
    leaking = {a.column for a in result.anomalies if a.kind == "target_leakage"}
    return _environment().get_template(TEMPLATE).render(
        title=title or schema.target,
        schema=schema,
        status=status_of(result),
        status_line=status_line(result),
        reference_line=reference_line(result, reference),
        reference=reference,
        result=result,
        notes=list(notes),
        shown=[*errors[:SHOWN_ERRORS], *warnings[:SHOWN_WARNINGS]],
        folded=[*errors[SHOWN_ERRORS:MAX_ANOMALIES], *warnings[SHOWN_WARNINGS:MAX_ANOMALIES]],
        left_out=max(len(errors) - MAX_ANOMALIES, 0) + max(len(warnings) - MAX_ANOMALIES, 0),
        ignored=ignored[:MAX_IGNORED],
        counts={"errors": len(errors), "warnings": len(warnings), "ignored": len(ignored)},
        limits={"ignored": MAX_IGNORED, "drift": MAX_DRIFT_TOP,
                "leakage": MAX_LEAKAGE, "columns": MAX_HTML_COLUMNS, "plots": MAX_PLOTS},
        drift=[(d, Markup(drift_bar_svg(d))) for d in drift[:MAX_DRIFT_TOP]],
        drift_total=len(drift),
        drift_line=drift_line(drift),
        leakage=[(s, Markup(leakage_bar_svg(s)), s.column in leaking)
                 for s in result.leakage[:MAX_LEAKAGE]],
        columns=rows,
        column_total=len(views),
        reference_only=sum(v.info is None and v.now is None for v in views),
        plotted=sum(bool(r.plot) for r in rows),
        has_reference=has_reference,
        colours={"now": CURVE, "ref": OUTLINE},
    )

"""The monitoring report of `scones monitor`: what the endpoint captured, drawn and put on one HTML page.

From the captured inferences (local_model/capture_reader.py, a folder or S3) it draws, with matplotlib:
- `confidence.png`: each inference's top-class probability over inference time, the threshold as a line,
  the inferences below it (rejected by the workflow) marked;
- `classes.png`: the predicted classes counted per interval of inference time;
- `lowest.png`: the lowest-confidence input images with their class and score;
and writes `index.html` (jinja2, autoescaped) with the numbers, the pictures beside it (relative paths),
what could not be read, and the drift against the model's baseline (scones/monitoring/drift.py) when there is one.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lambdas.contract import CLASSES, predicted_class
from local_model.capture import SHADOW_VARIANT_PREFIX
from local_model.capture_reader import CapturedInference, CaptureReadProblems
from scones.monitoring.compare import compare_records
from scones.monitoring.report import save_figure

LOWEST_SHOWN = 16  # images in the lowest-confidence grid
TIME_BINS = 20  # intervals of the class-count chart
CLASS_COLOURS = {"bicycle": "#4c72b0", "motorcycle": "#dd8452"}


@dataclass(frozen=True)
class Scored:
    when: datetime
    confidence: float  # top-class probability
    label: str  # predicted class
    body: bytes
    content_type: str
    source: str


@dataclass
class MonitorData:
    destination: str
    threshold: float
    scored: list[Scored]
    unscored: int  # records whose answer is not one probability per class
    problems: CaptureReadProblems
    drift: dict | None = None  # {"overall": DriftReport.to_dict(), "windows": [...]} or {"unavailable": why}
    dropped: int | None = None  # captures the running model server reports as dropped (None: not known)
    pictures: dict[str, str] = field(default_factory=dict)  # name -> file name beside index.html
    comparison: dict | None = None  # champion against a shadow challenger (compare.py), when one answered

    @property
    def rejected(self) -> list[Scored]:
        return [s for s in self.scored if s.confidence < self.threshold]

    @property
    def by_class(self) -> dict[str, int]:
        counts = Counter(s.label for s in self.scored)
        return {name: counts[name] for name in CLASSES}

    def summary(self) -> dict:
        times = [s.when for s in self.scored]
        return {
            "destination": self.destination,
            "threshold": self.threshold,
            "records": len(self.scored) + self.unscored,
            "scored": len(self.scored),
            "rejected": len(self.rejected),
            "by_class": self.by_class,
            "first": min(times).isoformat() if times else None,
            "last": max(times).isoformat() if times else None,
            "unscored": self.unscored,
            "unreadable": self.problems.to_dict(),
            "dropped": self.dropped,
            "drift": self.drift,
            "pictures": self.pictures,
            "comparison": self.comparison,
        }


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def collect(
    records: Iterable[CapturedInference], destination: str, threshold: float, problems: CaptureReadProblems
) -> MonitorData:
    """The production variants' records scored over time; a shadow variant's, if any, only compared with them."""
    records = list(records)
    comparison = compare_records(records, threshold)
    scored, unscored = [], 0
    for record in records:
        if record.variant_name.startswith(SHADOW_VARIANT_PREFIX):  # never returned to a caller
            continue
        label, when = predicted_class(record.output), parse_time(record.inference_time)
        if label is None or when is None:
            unscored += 1
            continue
        top = float(max(record.output))
        scored.append(Scored(when, top, label, record.input_body, record.input_content_type, record.source))
    scored.sort(key=lambda s: s.when)
    data = MonitorData(destination, threshold, scored, unscored, problems)
    data.comparison = comparison.to_dict() if comparison is not None else None
    return data


def drift_section(data: MonitorData, baseline_source: Path | str | None, window_size: int) -> dict:
    """The whole capture compared with the model's baseline, and each window of `window_size` inferences in
    time order (scones/monitoring/drift.py); {"unavailable": why} when there is no baseline to compare with."""
    from local_model.baseline import BaselineError, load_baseline
    from scones.monitoring.drift import DriftInputError, detect_drift

    if baseline_source is None:
        return {"unavailable": "no drift check: no trained model here to read baseline.json from (--baseline)"}
    try:
        baseline = load_baseline(baseline_source)
        overall = detect_drift(baseline, [s.confidence for s in data.scored], [s.label for s in data.scored])
        windows = []
        for start in range(0, len(data.scored), window_size):
            chunk = data.scored[start : start + window_size]
            report = detect_drift(baseline, [s.confidence for s in chunk], [s.label for s in chunk])
            windows.append(
                {
                    "first_inference_time": chunk[0].when.isoformat(),
                    "last_inference_time": chunk[-1].when.isoformat(),
                    "report": report.to_dict(),
                }
            )
    except (BaselineError, DriftInputError) as e:
        return {"unavailable": f"no drift check: {e}"}
    return {"baseline": str(baseline_source), "overall": overall.to_dict(), "windows": windows}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_confidence_over_time(data: MonitorData, path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(10, 3.8))
    try:
        routed = [s for s in data.scored if s.confidence >= data.threshold]
        for name in CLASSES:
            points = [s for s in routed if s.label == name]
            axis.scatter(
                [s.when for s in points],
                [s.confidence for s in points],
                s=14,
                label=f"{name} (routed)",
                color=CLASS_COLOURS[name],
            )
        rejected = data.rejected
        axis.scatter(
            [s.when for s in rejected],
            [s.confidence for s in rejected],
            s=30,
            marker="x",
            color="#c44e52",
            label=f"rejected ({len(rejected)})",
        )
        axis.axhline(data.threshold, color="#c44e52", linestyle="--", linewidth=1, label=f"threshold {data.threshold}")
        axis.set_ylim(0.45, 1.02)
        axis.set_ylabel("top-class probability")
        axis.set_xlabel("inference time (UTC)")
        axis.legend(loc="lower left", fontsize=8)
        axis.set_title(f"{len(data.scored)} captured inferences: {data.destination}", fontsize=9)
        figure.autofmt_xdate()
    except BaseException:
        plt.close(figure)
        raise
    return save_figure(figure, path)


def time_bins(times: list[datetime], bins: int = TIME_BINS) -> list[tuple[datetime, datetime]]:
    """`bins` equal intervals from the first to the last time (one interval when they are all equal)."""
    first, last = min(times), max(times)
    if first == last:
        return [(first, last)]
    width = (last - first) / bins
    return [(first + width * i, first + width * (i + 1)) for i in range(bins)]


def class_counts_per_bin(data: MonitorData) -> tuple[list[tuple[datetime, datetime]], dict[str, list[int]]]:
    intervals = time_bins([s.when for s in data.scored])
    counts = {name: [0] * len(intervals) for name in CLASSES}
    first, last = intervals[0][0], intervals[-1][1]
    for s in data.scored:
        index = 0 if last == first else min(len(intervals) - 1, int((s.when - first) / (last - first) * len(intervals)))
        counts[s.label][index] += 1
    return intervals, counts


def plot_class_counts(data: MonitorData, path: Path) -> Path:
    plt = _pyplot()
    intervals, counts = class_counts_per_bin(data)
    starts = [start for start, _ in intervals]
    width = (intervals[0][1] - intervals[0][0]) * 0.9 if len(intervals) > 1 else None
    figure, axis = plt.subplots(figsize=(10, 3.2))
    try:
        bottom = [0] * len(intervals)
        for name in CLASSES:
            axis.bar(
                starts, counts[name], bottom=bottom, width=width, align="edge", color=CLASS_COLOURS[name], label=name
            )
            bottom = [b + c for b, c in zip(bottom, counts[name], strict=True)]
        axis.set_ylabel("inferences")
        axis.set_xlabel("inference time (UTC)")
        axis.legend(loc="upper left", fontsize=8)
        axis.set_title("predicted class per interval", fontsize=9)
        figure.autofmt_xdate()
    except BaseException:
        plt.close(figure)
        raise
    return save_figure(figure, path)


def thumbnail(body: bytes):
    """The captured image as RGB pixels, or None when it cannot be decoded (it was served, so rarely)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(body)) as image:
            return image.convert("RGB").copy()
    except Exception:
        return None


def plot_lowest_confidence(data: MonitorData, path: Path, shown: int = LOWEST_SHOWN) -> Path:
    plt = _pyplot()
    lowest = sorted(data.scored, key=lambda s: s.confidence)[:shown]
    columns = min(8, max(1, len(lowest)))
    rows = max(1, -(-len(lowest) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.9 * rows + 0.4), squeeze=False)
    try:
        for axis in axes.flat:
            axis.axis("off")
        for axis, s in zip(axes.flat, lowest, strict=False):
            image = thumbnail(s.body)
            if image is not None:
                axis.imshow(image, interpolation="nearest")
            else:
                axis.text(0.5, 0.5, "not\ndecodable", ha="center", va="center", fontsize=7)
            colour = "#c44e52" if s.confidence < data.threshold else "black"
            axis.set_title(f"{s.label} {s.confidence:.3f}", fontsize=7, color=colour)
        figure.suptitle(f"the {len(lowest)} lowest-confidence inputs (red: below {data.threshold})", fontsize=9)
    except BaseException:
        plt.close(figure)
        raise
    return save_figure(figure, path)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Scones Unlimited: monitoring report</title>
<style>
body { font-family: sans-serif; max-width: 1050px; margin: 1.5em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; font-size: 0.92em; }
.drifted { color: #c44e52; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; }
</style>
</head>
<body>
<h1>Monitoring report</h1>
<p>Captured inferences in <code>{{ s.destination }}</code>, {{ s.first or "-" }} to {{ s.last or "-" }}.</p>
<table>
<tr><th>records</th><td id="records">{{ s.records }}</td></tr>
<tr><th>scored</th><td>{{ s.scored }}</td></tr>
{% for name, count in s.by_class.items() %}<tr><th>predicted {{ name }}</th><td>{{ count }}</td></tr>
{% endfor %}<tr><th>below the threshold {{ s.threshold }} (rejected)</th><td>{{ s.rejected }}</td></tr>
<tr><th>answers that are not {{ n_classes }} probabilities</th><td>{{ s.unscored }}</td></tr>
<tr><th>unreadable</th><td>{{ unreadable }}</td></tr>
<tr><th>dropped by the model server</th>
<td>{{ "not known (no running model server)" if s.dropped is none else s.dropped }}</td></tr>
</table>
{% if s.unreadable.examples %}<p>First unreadable records:</p><ul>
{% for example in s.unreadable.examples %}<li><code>{{ example }}</code></li>
{% endfor %}</ul>{% endif %}
<h2>Drift against the training baseline</h2>
{% if drift is none %}<p>Not computed.</p>
{% elif "unavailable" in drift %}<p>{{ drift.unavailable }}</p>
{% else %}<p class="{{ 'drifted' if drift.overall.drifted else '' }}" id="drift-verdict">
{{ "DRIFT" if drift.overall.drifted else "No drift" }} over the whole capture ({{ drift.overall.reason }})</p>
<table><tr><th>window</th><th>inferences</th><th>PSI confidence</th><th>PSI classes</th><th>KS p</th>
<th>chi-square p</th><th>verdict</th></tr>
{% for w in drift.windows %}<tr><td>{{ w.first_inference_time }} .. {{ w.last_inference_time }}</td>
<td>{{ w.report.n_window }}</td><td>{{ fmt(w.report.psi_confidence) }}</td><td>{{ fmt(w.report.psi_classes) }}</td>
<td>{{ fmt(w.report.ks_p_value) }}</td><td>{{ fmt(w.report.chi2_p_value) }}</td>
<td class="{{ 'drifted' if w.report.drifted else '' }}">
{{ "drift" if w.report.drifted else ("too few" if not w.report.enough_data else "ok") }}</td></tr>
{% endfor %}</table>{% endif %}
{% if s.comparison %}{% set c = s.comparison %}<h2>Champion against challenger</h2>
<p id="comparison">{{ c.pairs }} requests answered by both the production variants and the shadow; they chose
the same class for {{ "%.1f" % (100 * c.agreement) }}%.</p>
<table><tr><th>variant</th><th>answers</th><th>mean top score</th><th>low confidence</th></tr>
{% for v in [c.production, c.shadow] %}<tr><td>{{ v.name }}</td><td>{{ v.answers }}</td>
<td>{{ "%.3f" % v.mean_top_score }}</td><td>{{ "%.0f" % (100 * v.low_confidence_rate) }}%</td></tr>
{% endfor %}</table>
{% if c.drift %}<p id="comparison-drift" class="{{ 'drifted' if c.drift.differ else '' }}">
{{ c.drift.reason }}</p>{% endif %}
{% endif %}
{% for name, title in pictures %}<h2>{{ title }}</h2>
<img src="{{ name }}" alt="{{ title }}">
{% endfor %}
</body>
</html>
"""
PICTURE_TITLES = {
    "confidence": "Top-class probability over time",
    "classes": "Predicted classes over time",
    "lowest": "Lowest-confidence inputs",
}


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_report(data: MonitorData, folder: Path) -> Path:
    """The pictures and index.html into `folder`; returns the page's path."""
    import jinja2

    folder.mkdir(parents=True, exist_ok=True)
    if data.scored:
        data.pictures = {
            "confidence": plot_confidence_over_time(data, folder / "confidence.png").name,
            "classes": plot_class_counts(data, folder / "classes.png").name,
            "lowest": plot_lowest_confidence(data, folder / "lowest.png").name,
        }
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    summary = data.summary()
    page = environment.from_string(PAGE).render(
        s=summary,
        n_classes=len(CLASSES),
        unreadable=data.problems.describe(),
        drift=summary["drift"],
        fmt=_fmt,
        pictures=[(file, PICTURE_TITLES[name]) for name, file in data.pictures.items()],
    )
    path = folder / "index.html"
    path.write_text(page)
    return path


def format_monitor(data: MonitorData, page: Path) -> str:
    s = data.summary()
    lines = [
        f"Monitoring report of {s['destination']}: {s['records']} records, {s['scored']} scored",
        f"  time          {s['first'] or '-'} .. {s['last'] or '-'}",
        "  classes       " + ", ".join(f"{name} {count}" for name, count in s["by_class"].items()),
        f"  rejected      {s['rejected']} below the threshold {s['threshold']}",
        f"  unreadable    {data.problems.describe()}"
        + (f"; {s['unscored']} answers not scores" if s["unscored"] else ""),
        f"  dropped       {'not known (no running model server)' if s['dropped'] is None else s['dropped']}",
    ]
    drift = s["drift"]
    if drift and drift.get("unavailable"):
        lines.append(f"  drift         {drift['unavailable']}")
    elif drift:
        lines.append(f"  drift         {drift['overall']['reason']}")
    if s["comparison"]:
        c = s["comparison"]
        lines.append(
            f"  challenger    {c['shadow']['name']}: agrees on {c['agreement']:.1%} of {c['pairs']} requests, "
            f"low confidence {c['shadow']['low_confidence_rate']:.0%} (champion "
            f"{c['production']['low_confidence_rate']:.0%})"
        )
    lines.append(f"  report        {page}")
    return "\n".join(lines)

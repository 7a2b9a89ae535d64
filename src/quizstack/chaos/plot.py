"""An experiment's timeline as one self-contained SVG: what users got, second by second.

The figures of report.py say how much went wrong; the timeline shows when,
next to what was done: successful and failed requests per second, the median
and 99th-percentile latency per second, the fault shaded from inject to heal,
and every event (inject, detect, heal, converged …) as a labelled mark. It is
a plain string, written without any plotting library, so it can be produced
anywhere and opened in any browser. Requests are placed at the second they
*completed*, the moment the user saw the outcome: a stall is an empty stretch,
a timeout shows where the user gave up.
"""

import math
from xml.sax.saxutils import escape, quoteattr

from quizstack.chaos.report import percentile

WIDTH, HEIGHT = 900, 400
LEFT, RIGHT = 64, 24
TOP = (48, 210)        # requests panel: y from, y to
BOTTOM = (236, 334)    # latency panel
OK_COLOUR, FAILED_COLOUR = "#4a78b5", "#d62728"
P50_COLOUR, P99_COLOUR = "#2ca02c", "#9467bd"
FAULT_COLOUR, EVENT_COLOUR = "#fbe3e3", "#555555"


def _nice(value):
    """The smallest of 1, 2, 5 × 10^k that is ≥ value (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _requests(records):
    return [r for r in records if "kind" in r and "t" in r and "dt" in r]


def per_second(records, t0, seconds):
    """For each second since t0: (ok count, failed count, p50 ms or None, p99 ms or None)."""
    buckets = [[] for _ in range(seconds)]
    for record in records:
        index = min(seconds - 1, max(0, int(record["t"] + record["dt"] - t0)))
        buckets[index].append(record)
    rows = []
    for bucket in buckets:
        latencies = [r["dt"] * 1000 for r in bucket if r["ok"]]
        rows.append((len(latencies), len(bucket) - len(latencies),
                     percentile(latencies, 50), percentile(latencies, 99)))
    return rows


def fault_spans(events):
    """(inject t, heal t or None) for each inject, paired with the next heal after it."""
    spans, open_at = [], None
    for event in sorted(events, key=lambda e: e["t"]):
        if event.get("kind") == "inject" and open_at is None:
            open_at = event["t"]
        elif event.get("kind") == "heal" and open_at is not None:
            spans.append((open_at, event["t"]))
            open_at = None
    if open_at is not None:
        spans.append((open_at, None))
    return spans


class _Canvas:
    """Maps seconds and values to pixels and collects SVG elements."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.parts = []

    def x(self, second):
        second = min(max(second, 0), self.seconds)
        return LEFT + (WIDTH - LEFT - RIGHT) * second / self.seconds

    def add(self, text):
        self.parts.append(text)

    def text(self, x, y, content, css="label", anchor="start", **attrs):
        extra = "".join(f" {key.replace('_', '-')}={quoteattr(str(value))}" for key, value in attrs.items())
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" class="{css}" text-anchor="{anchor}"{extra}>'
                 f"{escape(content)}</text>")


def _svg(title, body):
    style = (
        "text{font-family:sans-serif;fill:#222}.title{font-size:15px;font-weight:bold}"
        ".label{font-size:10px}.axis{stroke:#999;stroke-width:1}.grid{stroke:#e4e4e4;stroke-width:1}"
        ".event{stroke:%s;stroke-width:1;stroke-dasharray:4 3}.note{font-size:14px;fill:#777}"
        ".mark{font-size:10px;stroke:white;stroke-width:3px;paint-order:stroke}"
    ) % EVENT_COLOUR
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">\n'
        f"<title>{escape(title)}</title>\n<style>{style}</style>\n"
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>\n'
        f'<text x="{LEFT}" y="24" class="title">{escape(title)}</text>\n'
        + "\n".join(body) + "\n</svg>\n"
    )


def _request_panel(canvas, rows):
    top, bottom = TOP
    peak = _nice(max((ok + failed for ok, failed, _, _ in rows), default=1))
    scale = (bottom - top) / peak
    for value in (0, peak / 2, peak):
        y = bottom - value * scale
        canvas.add(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>')
        canvas.text(LEFT - 6, y + 3, f"{value:g}", anchor="end")
    canvas.text(LEFT - 52, top - 8, "requests/s")
    width = max(1.0, canvas.x(1) - canvas.x(0) - 1)
    for second, (ok, failed, _, _) in enumerate(rows):
        x = canvas.x(second)
        if ok:
            canvas.add(f'<rect class="ok" x="{x:.1f}" y="{bottom - ok * scale:.1f}" width="{width:.1f}" '
                       f'height="{ok * scale:.1f}" fill="{OK_COLOUR}"/>')
        if failed:
            y = bottom - (ok + failed) * scale
            canvas.add(f'<rect class="failed" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                       f'height="{failed * scale:.1f}" fill="{FAILED_COLOUR}"/>')
    canvas.add(f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" class="axis"/>')


def _latency_panel(canvas, rows):
    top, bottom = BOTTOM
    highest = max((p99 for _, _, _, p99 in rows if p99 is not None), default=1)
    decades = max(1, math.ceil(math.log10(max(highest, 1)) + 1e-9))  # 1 ms … 10^decades ms
    scale = (bottom - top) / decades

    def y(ms):
        return bottom - math.log10(max(ms, 1)) * scale

    for decade in range(decades + 1):
        canvas.add(f'<line x1="{LEFT}" y1="{y(10 ** decade):.1f}" x2="{WIDTH - RIGHT}" '
                   f'y2="{y(10 ** decade):.1f}" class="grid"/>')
        canvas.text(LEFT - 6, y(10 ** decade) + 3, f"{10 ** decade:g}", anchor="end")
    canvas.text(LEFT - 52, top - 8, "latency ms (log)")
    half = (canvas.x(1) - canvas.x(0)) / 2
    for column, colour, css in ((3, P99_COLOUR, "p99"), (2, P50_COLOUR, "p50")):
        path, pen_down = [], False
        for second, row in enumerate(rows):
            if row[column] is None:
                pen_down = False  # no successful request that second: a gap in the line
                continue
            path.append(f"{'L' if pen_down else 'M'}{canvas.x(second) + half:.1f},{y(row[column]):.1f}")
            pen_down = True
        if path:
            canvas.add(f'<path class="{css}" d="{" ".join(path)}" fill="none" stroke="{colour}" '
                       f'stroke-width="1.5"/>')
    canvas.add(f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" class="axis"/>')


def _time_axis(canvas):
    bottom = BOTTOM[1]
    step = _nice(canvas.seconds / 10)
    tick = 0
    while tick <= canvas.seconds:
        x = canvas.x(tick)
        canvas.add(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" class="axis"/>')
        canvas.text(x, bottom + 15, f"{tick:g}", anchor="middle")
        tick += step
    canvas.text((LEFT + WIDTH - RIGHT) / 2, bottom + 30, "seconds since the load started", anchor="middle")


def _fault(canvas, events, t0):
    for inject, heal in fault_spans(events):
        x1 = canvas.x(inject - t0)
        x2 = canvas.x(heal - t0) if heal is not None else canvas.x(canvas.seconds)
        canvas.add(f'<rect class="fault" x="{x1:.1f}" y="{TOP[0]}" width="{max(x2 - x1, 1):.1f}" '
                   f'height="{BOTTOM[1] - TOP[0]}" fill="{FAULT_COLOUR}"/>')


def _events(canvas, events, t0):
    """A dashed mark per event, then the labels over all marks, on three staggered rows."""
    events = sorted(events, key=lambda e: e["t"])
    for event in events:
        x = canvas.x(event["t"] - t0)
        canvas.add(f'<line class="event" x1="{x:.1f}" y1="{TOP[0] - 4}" x2="{x:.1f}" y2="{BOTTOM[1]}"/>')
    for row, event in enumerate(events):
        x, kind = canvas.x(event["t"] - t0), event.get("kind", "")
        label = event.get("label") or kind
        text = f"{kind}: {label}" if label != kind else label
        anchor = "end" if x > WIDTH - 200 else "start"
        canvas.text(x + (-3 if anchor == "end" else 3), TOP[0] + 10 + 12 * (row % 3), text,
                    css="mark", anchor=anchor, data_kind=kind)


def _legend(canvas):
    y = HEIGHT - 18
    for offset, (colour, name) in enumerate(((OK_COLOUR, "ok"), (FAILED_COLOUR, "failed"),
                                             (P50_COLOUR, "p50 latency"), (P99_COLOUR, "p99 latency"),
                                             (FAULT_COLOUR, "fault (inject → heal)"))):
        x = LEFT + 100 * offset
        canvas.add(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{colour}"/>')
        canvas.text(x + 14, y + 9, name)


def timeline_svg(records, events, title):
    """The timeline of one experiment as an SVG document (a string), about 900×400."""
    records = _requests(records)
    if not records:
        note = f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="note" text-anchor="middle">no requests recorded</text>'
        return _svg(title, [note])
    t0 = min(r["t"] for r in records)
    last = max([r["t"] + r["dt"] for r in records] + [e["t"] for e in events])
    seconds = max(1, math.ceil(last - t0))
    rows = per_second(records, t0, seconds)
    canvas = _Canvas(seconds)
    _fault(canvas, events, t0)  # under the data; the event marks go over it
    _request_panel(canvas, rows)
    _latency_panel(canvas, rows)
    _time_axis(canvas)
    _legend(canvas)
    _events(canvas, events, t0)
    return _svg(title, canvas.parts)

"""The experiment's timeline SVG: well-formed, with the data, the fault and every event on it."""

import xml.etree.ElementTree as ET

from quizstack.chaos.plot import fault_spans, per_second, timeline_svg

SVG = "{http://www.w3.org/2000/svg}"


def rec(t, dt, ok=True):
    return {"t": t, "dt": dt, "kind": "list", "ok": ok, "server": "s1" if ok else None}


# Ten seconds from t=1000: two successes a second, except seconds 4-5 where requests time out.
RECORDS = [rec(1000 + s + half, 0.02) for s in range(10) if s not in (4, 5) for half in (0.0, 0.5)]
RECORDS += [rec(1004.0, 1.5, ok=False), rec(1004.5, 1.2, ok=False)]
EVENTS = [
    {"t": 1003.8, "kind": "inject", "label": "kill s1 & <s2>"},
    {"t": 1004.2, "kind": "detect", "label": "s1 DOWN"},
    {"t": 1006.0, "kind": "heal", "label": "start s1"},
]


def parse(svg):
    return ET.fromstring(svg)


def by_class(root, css):
    return [e for e in root.iter() if e.get("class") == css]


def test_the_timeline_is_an_svg_of_about_900_by_400():
    root = parse(timeline_svg(RECORDS, EVENTS, "s1-kill"))
    assert root.tag == SVG + "svg"
    assert (root.get("width"), root.get("height")) == ("900", "400")
    assert root.find(SVG + "title").text == "s1-kill"


def test_events_are_marked_and_labelled_and_the_fault_is_shaded():
    root = parse(timeline_svg(RECORDS, EVENTS, "s1-kill"))
    marks = by_class(root, "event")
    assert len(marks) == 3
    labels = [e.text for e in by_class(root, "mark")]
    assert labels == ["inject: kill s1 & <s2>", "detect: s1 DOWN", "heal: start s1"]
    [fault] = by_class(root, "fault")
    inject_x, heal_x = float(marks[0].get("x1")), float(marks[2].get("x1"))
    assert float(fault.get("x")) == inject_x
    assert abs(float(fault.get("x")) + float(fault.get("width")) - heal_x) < 0.2


def test_successes_failures_and_latencies_are_drawn_per_second():
    root = parse(timeline_svg(RECORDS, EVENTS, "t"))
    # 8 seconds with successes; the two failures end in seconds 5 and 5 (1005.5, 1005.7).
    assert len(by_class(root, "ok")) == 8
    assert len(by_class(root, "failed")) == 1
    # Latency lines break where a second had no success (seconds 4 and 5): two pieces each.
    for css in ("p50", "p99"):
        [path] = by_class(root, css)
        assert path.get("d").count("M") == 2


def test_per_second_counts_by_completion():
    rows = per_second(RECORDS, 1000.0, 10)
    assert rows[0] == (2, 0, 20.0, 20.0)
    assert rows[4] == (0, 0, None, None)
    assert rows[5][:2] == (0, 2)


def test_a_fault_never_healed_is_shaded_to_the_end():
    assert fault_spans(EVENTS[:2]) == [(1003.8, None)]
    assert fault_spans(EVENTS + [{"t": 1008, "kind": "inject", "label": ""}]) == [(1003.8, 1006.0), (1008, None)]
    root = parse(timeline_svg(RECORDS, EVENTS[:1], "t"))
    [fault] = by_class(root, "fault")
    assert float(fault.get("x")) + float(fault.get("width")) == 900 - 24


def test_empty_input_gives_a_valid_svg_with_a_note():
    root = parse(timeline_svg([], [], "nothing <yet>"))
    assert root.tag == SVG + "svg"
    assert [e.text for e in by_class(root, "note")] == ["no requests recorded"]
    assert root.find(SVG + "title").text == "nothing <yet>"
    assert parse(timeline_svg([], EVENTS, "events only")).tag == SVG + "svg"

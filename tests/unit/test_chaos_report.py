"""The figures of a chaos experiment, on hand-made records whose answers are worked out by hand."""

import pytest

from quizstack.chaos.report import lines, percentile, summarize


def rec(t, dt, ok=True, kind="list", server="s1", retried=False):
    return {"t": t, "dt": dt, "kind": kind, "status": 200 if ok else None, "server": server if ok else None,
            "ok": ok, "err": None if ok else "timeout", "retried": retried}


# A: ok, ends 100.1 · B: ok, ends 100.7 · C: fails after 3 s (ends 104.0) · D: fails, ends 102.5
# E: ok, ends 105.0. The window is 100.0 → 105.0; successes end at 100.1, 100.7, 105.0.
RECORDS = [
    rec(100.0, 0.1),
    rec(100.5, 0.2, kind="show", server="s2"),
    rec(101.0, 3.0, ok=False),
    rec(102.0, 0.5, ok=False, kind="show", retried=True),
    rec(104.5, 0.5, kind="play"),
]
EVENTS = [
    {"t": 101.0, "kind": "inject", "label": "kill s1"},
    {"t": 101.5, "kind": "detect", "label": "s1 DOWN"},
    {"t": 104.0, "kind": "heal", "label": "start s1"},
]


def test_nearest_rank_percentiles():
    assert percentile(list(range(1, 11)), 50) == 5      # rank ceil(5.0) = 5
    assert percentile(list(range(1, 11)), 99) == 10     # rank ceil(9.9) = 10
    assert percentile(list(range(1, 11)), 10) == 1
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([3, 1, 2], 50) == 2               # rank ceil(1.5) = 2
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None


def test_counts_shares_and_the_stall_across_the_gap():
    s = summarize(RECORDS, EVENTS)
    assert s["window"] == {"start": 100.0, "end": 105.0, "seconds": 5.0}
    assert (s["requests"], s["failed"], s["failed_share"], s["retried"]) == (5, 2, 0.4, 1)
    assert s["kinds"] == {"list": {"requests": 2, "failed": 1}, "play": {"requests": 1, "failed": 0},
                          "show": {"requests": 2, "failed": 1}}
    # Failed requests got no answer, so no server: s1 answered A and E, s2 answered B.
    assert s["servers"] == {"s1": {"requests": 2, "share": pytest.approx(2 / 3)},
                            "s2": {"requests": 1, "share": pytest.approx(1 / 3)}}
    assert s["no_server"] == 2
    # Nothing succeeded between B's end (100.7) and E's end (105.0).
    assert s["stall"] == {"seconds": pytest.approx(4.3), "start": 100.7, "end": 105.0}


def test_phases_before_during_and_after_the_fault():
    phases = summarize(RECORDS, EVENTS)["phases"]
    # before: A, B (started before 101.0) over 100.0 → 101.0; ok latencies 0.1 and 0.2 s.
    assert phases["before"] == {"start": 100.0, "end": 101.0, "seconds": 1.0, "requests": 2, "failed": 0,
                                "throughput": 2.0, "latency_ms": {"p50": pytest.approx(100), "p99": pytest.approx(200)}}
    # during: C and D, both failed, over 101.0 → 104.0: no successful latency at all.
    assert phases["during"] == {"start": 101.0, "end": 104.0, "seconds": 3.0, "requests": 2, "failed": 2,
                                "throughput": 0.0, "latency_ms": {"p50": None, "p99": None}}
    # after: E over 104.0 → 105.0.
    assert phases["after"] == {"start": 104.0, "end": 105.0, "seconds": 1.0, "requests": 1, "failed": 0,
                               "throughput": 1.0, "latency_ms": {"p50": pytest.approx(500), "p99": pytest.approx(500)}}


def test_a_fault_never_healed_lasts_to_the_end():
    phases = summarize(RECORDS, EVENTS[:2])["phases"]
    assert (phases["during"]["start"], phases["during"]["end"]) == (101.0, 105.0)
    assert (phases["during"]["requests"], phases["during"]["failed"]) == (3, 2)
    assert phases["during"]["throughput"] == 0.25           # E alone in 4 s
    assert phases["during"]["latency_ms"]["p50"] == pytest.approx(500)
    assert phases["after"] == {"start": None, "end": None, "seconds": 0.0, "requests": 0, "failed": 0,
                               "throughput": None, "latency_ms": {"p50": None, "p99": None}}


def test_without_an_inject_everything_is_before():
    s = summarize(RECORDS, [{"t": 104.0, "kind": "heal", "label": "a heal alone"}])
    before = s["phases"]["before"]
    assert (before["requests"], before["failed"], before["seconds"]) == (5, 2, 5.0)
    assert before["throughput"] == pytest.approx(0.6)       # 3 successes in 5 s
    assert before["latency_ms"] == {"p50": pytest.approx(200), "p99": pytest.approx(500)}  # ranks 2 and 3 of 3
    assert s["phases"]["during"]["requests"] == s["phases"]["after"]["requests"] == 0
    assert s["inject"] is None and s["heal"] is None


def test_when_everything_failed_the_whole_window_is_a_stall():
    s = summarize([rec(10.0, 1.0, ok=False), rec(11.0, 1.0, ok=False), rec(12.0, 1.0, ok=False)], [])
    assert (s["failed"], s["failed_share"]) == (3, 1.0)
    assert s["stall"] == {"seconds": 3.0, "start": 10.0, "end": 13.0}
    assert s["phases"]["before"]["throughput"] == 0.0
    assert s["phases"]["before"]["latency_ms"] == {"p50": None, "p99": None}
    assert s["servers"] == {}


def test_empty_input():
    s = summarize([], [])
    assert (s["requests"], s["failed"], s["failed_share"], s["retried"]) == (0, 0, 0.0, 0)
    assert s["stall"] == {"seconds": 0.0, "start": None, "end": None}
    assert all(s["phases"][p]["requests"] == 0 and s["phases"][p]["throughput"] is None
               for p in ("before", "during", "after"))
    assert lines(s) == ["no requests recorded", "writes   acknowledged none · lost 0"]


def test_acknowledged_and_lost_writes_and_other_lines_skipped():
    acks = [{"ack": "quiz", "id": 12}, {"ack": "quiz", "id": 13}, {"ack": "tip", "quiz": 7}]
    lost = [{"ack": "quiz", "id": 12, "why": "HTTP 404"}, {"ack": "tip", "quiz": 7, "text": "m", "why": "gone"}]
    mixed = RECORDS + acks + [{"done": True, "requests": 5, "seconds": 5.0}]
    s = summarize(mixed, EVENTS, acks, lost)
    assert s["requests"] == 5
    assert s["acks"] == {"quiz": 2, "tip": 1}
    assert s["lost"] == {"count": 2, "by_kind": {"quiz": [12], "tip": [7]}}


def test_a_write_found_missing_by_several_checks_is_lost_once():
    lost = [{"ack": "quiz", "id": 12, "question": "q", "why": "HTTP 404"},
            {"ack": "quiz", "id": 12, "why": "image a.png not served as sent by s2"},
            {"ack": "quiz", "id": 12, "why": "image a.png missing or different on the brick of nas1"},
            {"ack": "tip", "quiz": 7, "text": "m1", "why": "tip not on the quiz's page"},
            {"ack": "tip", "quiz": 7, "text": "m2", "why": "tip not on the quiz's page"}]
    assert summarize([], [], (), lost)["lost"] == {"count": 3, "by_kind": {"quiz": [12], "tip": [7, 7]}}


def test_the_terminal_lines():
    acks = [{"ack": "quiz", "id": 12}, {"ack": "tip", "quiz": 7}]
    out = lines(summarize(RECORDS, EVENTS, acks, [{"ack": "quiz", "id": 12, "why": "HTTP 404"}]))
    assert out == [
        "requests 5 over 5.0 s · failed 2 (40.0%) · retried 1",
        "longest stall 4.30 s (from +0.7 to +5.0 s)",
        "phase      from      to requests failed    ok/s  p50 ms  p99 ms",
        "before     +0.0    +1.0        2      0     2.0     100     200",
        "during     +1.0    +4.0        2      2     0.0       -       -",
        "after      +4.0    +5.0        1      0     1.0     500     500",
        "kinds    list 2 (1 failed) · play 1 · show 2 (1 failed)",
        "servers  s1 66.7% · s2 33.3%",
        "timings  detected 0.5 s after the fault · slowest read 0.50 s (play)",
        "events   +1.0 inject kill s1 · +1.5 detect s1 DOWN · +4.0 heal start s1",
        "writes   acknowledged quiz 1, tip 1 · lost 1: quiz 12",
    ]


def test_timings_and_the_slowest_answers():
    records = [rec(0.0, 0.1, kind="list"), rec(1.0, 2.5, kind="show"), rec(1.2, 4.0, kind="create"),
               rec(2.0, 9.0, kind="login"), rec(3.0, 7.0, kind="tip", ok=False)]
    events = [{"t": 1.0, "kind": "inject", "label": ""}, {"t": 2.25, "kind": "detect", "label": ""},
              {"t": 6.0, "kind": "heal", "label": ""}, {"t": 7.5, "kind": "converged", "label": ""}]
    s = summarize(records, events)
    assert s["timings"] == {"detect": pytest.approx(1.25), "converge": pytest.approx(1.5)}
    # Logins (slow by design: password hashing) and failures are not "answers waited for".
    assert {k: (v["seconds"], v["kind"]) for k, v in s["slowest"].items()} == {
        "read": (2.5, "show"), "write": (4.0, "create")}
    assert summarize(records, [])["timings"] == {"detect": None, "converge": None}


def test_the_longest_time_without_a_saved_write():
    records = [rec(0.0, 0.1, kind="create"), rec(0.5, 0.1, kind="list"), rec(1.0, 0.2, kind="tip"),
               rec(2.0, 0.5, kind="create", ok=False), rec(6.0, 0.3, kind="tip")]
    stall = summarize(records, [])["write_stall"]
    assert stall == {"seconds": pytest.approx(5.1), "start": pytest.approx(1.2), "end": pytest.approx(6.3)}
    assert summarize(records[:2], [])["write_stall"] is None

"""The figures a fault is judged by, from what the clients recorded.

An operator asks of a fault: how many requests failed, how long did users wait
with nothing working, how slow was the service before, during and after, did
the load stay spread over the servers, and was any acknowledged write lost?
`summarize` answers from the load generator's records (load.py) and the
experiment's events, and nothing else: pure functions, no clock, no I/O, so
every figure can be checked by hand. `lines` renders the answer for the
terminal; the CLI prints it.

Definitions:

- The load's window runs from the first request's start to the last one's end.
- A request belongs to the phase in which it *started*: before the first
  inject, during (inject → the first heal after it), after the heal. With no
  inject everything is "before"; with no heal "during" lasts to the end.
- The longest stall is the longest stretch of the window in which no
  successful request completed (its edges: the window's and successes' ends).
- Latency figures are over successful requests (failures are counted apart),
  by the nearest-rank rule: the p-th percentile of n sorted values is the
  value at rank ceil(p/100 · n), 1-based. Throughput is successful requests
  per second of the phase.
"""

import math

PHASES = ("before", "during", "after")


def percentile(values, p):
    """Nearest rank: the value at rank ceil(p/100 * n) of the sorted values; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[rank - 1]


def _requests(records):
    """The request records among whatever was passed (acks and done lines are skipped)."""
    return [r for r in records if "kind" in r and "t" in r and "dt" in r]


def _fault_times(events):
    """(first inject, first heal after it), either None."""
    injects = sorted(e["t"] for e in events if e.get("kind") == "inject")
    inject = injects[0] if injects else None
    heals = sorted(e["t"] for e in events if e.get("kind") == "heal" and inject is not None and e["t"] >= inject)
    return inject, heals[0] if heals else None


def phase_bounds(start, end, inject, heal):
    """{phase: (from, to)} clipped to the window; (None, None) for a phase that did not happen."""
    none = (None, None)
    if inject is None:
        return {"before": (start, end), "during": none, "after": none}
    def clip(t):
        return min(max(t, start), end)

    return {
        "before": (start, clip(inject)),
        "during": (clip(inject), clip(heal) if heal is not None else end),
        "after": (clip(heal), end) if heal is not None else none,
    }


def _phase_of(t, inject, heal):
    if inject is None or t < inject:
        return "before"
    if heal is None or t < heal:
        return "during"
    return "after"


def _phase_figures(records, bounds):
    ok = [r for r in records if r["ok"]]
    start, end = bounds
    seconds = (end - start) if start is not None else 0.0
    return {
        "start": start, "end": end, "seconds": seconds,
        "requests": len(records), "failed": len(records) - len(ok),
        "throughput": len(ok) / seconds if seconds > 0 else None,
        "latency_ms": {
            "p50": _ms(percentile([r["dt"] for r in ok], 50)),
            "p99": _ms(percentile([r["dt"] for r in ok], 99)),
        },
    }


def _ms(seconds):
    return None if seconds is None else seconds * 1000


def longest_stall(records, start, end):
    """The longest stretch of [start, end] with no successful request completing."""
    edges = [start] + sorted(r["t"] + r["dt"] for r in records if r["ok"]) + [end]
    best = {"seconds": 0.0, "start": start, "end": start}
    for before, after in zip(edges, edges[1:]):
        if after - before > best["seconds"]:
            best = {"seconds": after - before, "start": before, "end": after}
    return best


def _by(records, key):
    counts = {}
    for record in records:
        entry = counts.setdefault(record[key], {"requests": 0, "failed": 0})
        entry["requests"] += 1
        entry["failed"] += not record["ok"]
    return dict(sorted(counts.items()))


def _servers(records):
    answered = [r for r in records if r.get("server")]
    counts = {}
    for record in answered:
        counts[record["server"]] = counts.get(record["server"], 0) + 1
    return {name: {"requests": n, "share": n / len(answered)} for name, n in sorted(counts.items())}


def _writes(acks, lost):
    acknowledged = {}
    for ack in acks:
        acknowledged[ack["ack"]] = acknowledged.get(ack["ack"], 0) + 1
    # A write that several checks found missing (its page, a server, a brick) is one lost write.
    writes = {}
    for item in lost:
        ident = item.get("id", item.get("quiz"))
        writes.setdefault((item["ack"], ident, item.get("text") if item["ack"] == "tip" else None), ident)
    by_kind = {}
    for (kind, _, _), ident in writes.items():
        by_kind.setdefault(kind, []).append(ident)
    return dict(sorted(acknowledged.items())), {"count": len(writes), "by_kind": dict(sorted(by_kind.items()))}


def summarize(records, events, acks=(), lost=()):
    """The figures of one experiment (see the module's definitions); a plain dict, JSON-ready.

    ``records``: request records of all clients; ``events``: {"t", "kind", "label"};
    ``acks``: acknowledged writes ({"ack": "quiz"|"tip", ...}); ``lost``: those
    found missing ({"ack", "id" or "quiz", "why"}), each write counted once.
    """
    records = sorted(_requests(records), key=lambda r: r["t"])
    events = sorted(events, key=lambda e: e["t"])
    acknowledged, lost_writes = _writes(acks, lost)
    inject, heal = _fault_times(events)
    if records:
        start, end = records[0]["t"], max(r["t"] + r["dt"] for r in records)
    else:
        start = end = None
    failed = sum(not r["ok"] for r in records)
    summary = {
        "window": {"start": start, "end": end, "seconds": (end - start) if records else 0.0},
        "requests": len(records),
        "failed": failed,
        "failed_share": failed / len(records) if records else 0.0,
        "retried": sum(bool(r.get("retried")) for r in records),
        "kinds": _by(records, "kind"),
        "servers": _servers(records),
        "no_server": sum(not r.get("server") for r in records),
        "stall": longest_stall(records, start, end) if records else {"seconds": 0.0, "start": None, "end": None},
        "inject": inject,
        "heal": heal,
        "events": [{"t": e["t"], "kind": e["kind"], "label": e.get("label", ""),
                    "at": (e["t"] - start) if start is not None else None} for e in events],
        "acks": acknowledged,
        "lost": lost_writes,
    }
    summary["slowest"] = slowest(records)
    summary["write_stall"] = write_stall(records)
    summary["timings"] = timings(events, inject, heal)
    bounds = phase_bounds(start, end, inject, heal) if records else {p: (None, None) for p in PHASES}
    summary["phases"] = {
        phase: _phase_figures([r for r in records if _phase_of(r["t"], inject, heal) == phase], bounds[phase])
        for phase in PHASES
    }
    return summary


WRITES = ("create", "tip")


def slowest(records):
    """The slowest successful read and write: what the unluckiest user waited for an answer."""
    found = {}
    for record in records:
        if not record["ok"] or record["kind"] in ("setup", "login"):
            continue
        kind = "write" if record["kind"] in WRITES else "read"
        if kind not in found or record["dt"] > found[kind]["seconds"]:
            found[kind] = {"seconds": record["dt"], "kind": record["kind"], "t": record["t"],
                           "server": record.get("server")}
    return found


def write_stall(records):
    """The longest stretch between two successful writes (creations and tips) being
    answered, from the first to the last: how long nobody could save anything."""
    ends = sorted(r["t"] + r["dt"] for r in records if r["ok"] and r["kind"] in WRITES)
    if len(ends) < 2:
        return None
    gaps = [(after - before, before, after) for before, after in zip(ends, ends[1:])]
    seconds, start, end = max(gaps)
    return {"seconds": seconds, "start": start, "end": end}


def timings(events, inject, heal):
    """Seconds from the fault to its detection, and from the heal to convergence."""
    def first(kind, after):
        return next((e["t"] for e in events if e["kind"] == kind and after is not None
                     and e["t"] >= after), None)

    detect, converged, fenced = first("detect", inject), first("converged", heal), first("fenced", inject)
    found = {"detect": detect - inject if detect is not None else None,
             "converge": converged - heal if converged is not None else None}
    if fenced is not None:
        found["fenced"] = fenced - inject
    return found


# -- the terminal ----------------------------------------------------------------------------

def _num(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def _at(t, start):
    return "-" if t is None or start is None else f"{t - start:+.1f}"


def lines(summary):
    """The summary as a few aligned lines for the terminal."""
    start = summary["window"]["start"]
    if not summary["requests"]:
        out = ["no requests recorded"]
    else:
        stall = summary["stall"]
        out = [
            f"requests {summary['requests']} over {summary['window']['seconds']:.1f} s · "
            f"failed {summary['failed']} ({100 * summary['failed_share']:.1f}%) · retried {summary['retried']}",
            f"longest stall {stall['seconds']:.2f} s (from {_at(stall['start'], start)} "
            f"to {_at(stall['end'], start)} s)",
            f"{'phase':<7} {'from':>7} {'to':>7} {'requests':>8} {'failed':>6} {'ok/s':>7} "
            f"{'p50 ms':>7} {'p99 ms':>7}",
        ]
        for name in PHASES:
            phase = summary["phases"][name]
            if phase["start"] is None:
                continue
            out.append(f"{name:<7} {_at(phase['start'], start):>7} {_at(phase['end'], start):>7} "
                       f"{phase['requests']:>8} {phase['failed']:>6} {_num(phase['throughput']):>7} "
                       f"{_num(phase['latency_ms']['p50'], 0):>7} {_num(phase['latency_ms']['p99'], 0):>7}")
        out.append("kinds    " + " · ".join(
            f"{kind} {c['requests']}" + (f" ({c['failed']} failed)" if c["failed"] else "")
            for kind, c in summary["kinds"].items()))
        if summary["servers"]:
            out.append("servers  " + " · ".join(
                f"{name} {100 * s['share']:.1f}%" for name, s in summary["servers"].items()))
    parts = []
    if summary.get("timings", {}).get("detect") is not None:
        parts.append(f"detected {summary['timings']['detect']:.1f} s after the fault")
    if summary.get("timings", {}).get("fenced") is not None:
        parts.append(f"fenced {summary['timings']['fenced']:.1f} s after the fault")
    if summary.get("timings", {}).get("converge") is not None:
        parts.append(f"converged {summary['timings']['converge']:.1f} s after the heal")
    if summary.get("write_stall"):
        parts.append(f"longest without a saved write {summary['write_stall']['seconds']:.2f} s")
    for kind, worst in summary.get("slowest", {}).items():
        parts.append(f"slowest {kind} {worst['seconds']:.2f} s ({worst['kind']})")
    if parts:
        out.append("timings  " + " · ".join(parts))
    if summary["events"]:
        out.append("events   " + " · ".join(
            f"{_at(e['t'], start)} {e['kind']}" + (f" {e['label']}" if e["label"] else "")
            for e in summary["events"]))
    acks = ", ".join(f"{kind} {n}" for kind, n in summary["acks"].items()) or "none"
    lost = summary["lost"]
    lost_text = f"lost {lost['count']}" + (": " + ", ".join(
        f"{kind} {' '.join(str(i) for i in ids)}" for kind, ids in lost["by_kind"].items()) if lost["count"] else "")
    out.append(f"writes   acknowledged {acks} · {lost_text}")
    return out

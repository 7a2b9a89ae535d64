"""What each fault cost when it was measured: a lab's chaos runs, else docs/reliability.md.

A lab keeps every experiment's result in `<state>/chaos/<run>/result.json`;
the latest run of each experiment is the figure. Without a lab the report
quotes the figures table and the weak points that docs/reliability.md
publishes (medians over three runs, with the conditions stated there), read
from the file itself so that the report never copies them by hand.
"""

import json
from pathlib import Path

import quizstack

RELIABILITY = Path(quizstack.__file__).resolve().parents[2] / "docs" / "reliability.md"
# The columns of docs/reliability.md's figures table the report shows.
DOC_COLUMNS = ("failed", "longest stall s", "without a saved write s", "detected s", "writes lost")


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def from_docs(path=RELIABILITY):
    """{experiment: {column: text}} from the figures table, and the weak points' bullets.

    Returns ({}, []) when the file is not there (an installed copy without docs).
    """
    try:
        text = Path(path).read_text()
    except OSError:
        return {}, []
    lines = text.splitlines()
    figures, header = {}, None
    for line in lines:
        if line.startswith("| experiment | requests"):
            header = _cells(line)
            continue
        if header is not None:
            if not line.startswith("|"):
                break
            cells = _cells(line)
            if set(cells[0]) <= set("-: "):
                continue
            figures[cells[0].split()[0]] = dict(zip(header, cells))
    weak, inside = [], False
    for line in lines:
        if line.startswith("## "):
            inside = line.strip() == "## Weak points that remain"
            continue
        if inside:
            if line.startswith("- "):
                weak.append(line[2:].strip())
            elif line.startswith("  ") and weak:
                weak[-1] += " " + line.strip()
    return figures, weak


def _seconds(value):
    return "–" if value is None else f"{value:.2f}"


def from_lab(state_dir):
    """{experiment: {column: text}} from the latest run of each experiment in a lab's state."""
    found = {}
    for result in sorted(Path(state_dir, "chaos").glob("*/result.json")):
        try:
            data = json.loads(result.read_text())
        except (OSError, ValueError):
            continue
        summary = data.get("summary") or {}
        timings = summary.get("timings") or {}
        write_stall = summary.get("write_stall") or {}
        found[data.get("experiment", result.parent.name)] = {
            "run": data.get("run", result.parent.name),
            "requests": str(summary.get("requests", "–")),
            "failed": str(summary.get("failed", "–")),
            "longest stall s": _seconds((summary.get("stall") or {}).get("seconds")),
            "without a saved write s": _seconds(write_stall.get("seconds")),
            "detected s": _seconds(timings.get("detect")),
            "writes lost": str((summary.get("lost") or {}).get("count", "–")),
        }
    return found

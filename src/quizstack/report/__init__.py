"""`quizstack report`: the seed's deliverable, generated (Markdown, HTML and the map).

`write(topology, directory, state_dir=None)` writes README.md, report.html and
map.svg into `directory`; nothing here prints. See document.py for what the
document holds and where each part comes from.
"""

import subprocess
from pathlib import Path

from quizstack.deploy.plan import build_plan
from quizstack.errors import CommandError, QuizstackError
from quizstack.report import figures, html
from quizstack.report.document import document
from quizstack.report.trace import trace
from quizstack.topology.graph import to_dot

MAP = "map.svg"


def draw_map(topology, path):
    """The topology's picture, drawn by graphviz from `quizstack map`'s DOT text."""
    argv = ["dot", "-Tsvg", "-o", str(path)]
    try:
        done = subprocess.run(argv, input=to_dot(topology), capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise QuizstackError("report: graphviz's `dot` is not installed (apt-get install graphviz)") from None
    if done.returncode != 0:
        raise CommandError("report", argv, done.returncode, done.stdout + done.stderr)


def markdown(topology, state_dir=None):
    """The report's Markdown: from a lab's chaos results when `state_dir` has any, else the docs."""
    plan = build_plan(topology)
    phases = trace(plan, topology)
    documented, weak = figures.from_docs()
    measured = figures.from_lab(state_dir) if state_dir else {}
    if measured:
        runs = ", ".join(sorted(f"{name} {f['run']}" for name, f in measured.items()))
        source = (f"From this lab's own chaos runs (the latest of each experiment: {runs}); "
                  "`quizstack chaos run NAME` measures again.")
    elif documented:
        measured = documented
        source = ("Quoted from docs/reliability.md: medians over three runs on the complete scenario "
                  "in the lab (one 2-vCPU machine; the conditions and the worst runs are given there). "
                  "Approximate for other scenarios and hardware.")
    else:
        source = "No figures at hand: run `quizstack chaos run NAME` on a lab, then `report --lab`."
    return document(topology, plan, phases, measured, source, weak, MAP)


def write(topology, directory, state_dir=None):
    """Write README.md, report.html and map.svg into `directory`; returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(topology, state_dir)
    draw_map(topology, out / MAP)
    (out / "README.md").write_text(text)
    (out / "report.html").write_text(html.to_html(text, f"QUIZ on {topology.name}"))
    return [out / "README.md", out / "report.html", out / MAP]

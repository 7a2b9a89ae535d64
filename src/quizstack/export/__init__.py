"""Exports: the same service described for another platform, from the same scenario.

Each target is a module with pure functions from (topology, plan, options) to
files; the CLI only writes them: `kubernetes` (manifests, validated offline)
and `compose` (a Docker Compose project, which `quizstack compose` runs here).
"""

TARGETS = ("kubernetes", "compose")

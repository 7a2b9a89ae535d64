"""Exports: the same service described for another platform, from the same scenario.

Each target is a module with pure functions from (topology, plan, options) to
files; the CLI only writes them. `kubernetes` is the first; a `compose`
target belongs beside it.
"""

TARGETS = ("kubernetes",)

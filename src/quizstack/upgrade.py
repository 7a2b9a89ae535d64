"""A rolling upgrade of QUIZ under load: the deployment of another release, measured.

The servers that get a release (full systems, real hosts: deploy/ship.py)
switch to the new one server by server, each drained from the load balancers
first (deploy/web.py); this runs that deployment while the chaos load plays
the users and accounts for every request and acknowledged write, as an
experiment does (chaos/runner.py).
"""

from __future__ import annotations


def under_load(lab, release, settings=None, progress=None):
    """Deploy `release` (ship.Release) to a running lab under load; the experiment's result."""
    from quizstack import stack
    from quizstack.chaos import runner

    result, deployed, began, _ = runner.during(
        lab, f"upgrade-{release.id}", lambda: stack.deploy_lab(lab, progress, release=release),
        settings, progress, label=f"rolling upgrade to release {release.id}")
    result["release"] = release.id
    result["changed"] = len(deployed.changed)
    return result

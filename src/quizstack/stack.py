"""The whole service on a lab: the one flow `quizstack up` and `check` follow.

scenario → topology → lab (hosts exist) → deploy (services configured) →
check (verified). This module only chains the layers; each keeps its own job,
and the command line does the printing.
"""

import sys
import time
from dataclasses import dataclass, field

from quizstack import check, deploy
from quizstack.deploy.plan import build_plan
from quizstack.deploy.secrets import load_or_create


@dataclass
class UpResult:
    url: str = ""
    deployed: deploy.DeployResult = None
    checks: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)


def secrets_of(lab):
    return load_or_create(lab.state_dir / "secrets")


def deploy_lab(lab, progress=None):
    """Configure every host of a running lab; returns what changed."""
    return deploy.deploy(lab.topology, deploy.lab_targets(lab.name, lab.topology),
                         secrets_of(lab), sys.prefix, progress)


def check_lab(lab, ports="1-65535"):
    return check.run_checks(lab, build_plan(lab.topology), venv=sys.prefix, ports=ports)


def up(lab, port=8080, progress=None, run_checks=True, ports="1-65535"):
    """Create or finish the lab, deploy the service, open the forward, check it."""
    result = UpResult()
    # Validate the whole plan before the first namespace exists.
    build_plan(lab.topology)
    started = time.monotonic()
    lab.up(progress=progress)
    result.seconds["lab"] = time.monotonic() - started

    started = time.monotonic()
    result.deployed = deploy_lab(lab, progress)
    result.seconds["deploy"] = time.monotonic() - started

    result.url = lab.open_forward(port=port)
    if run_checks:
        started = time.monotonic()
        if progress:
            progress("check: verifying every requirement from the clients")
        result.checks = check_lab(lab, ports=ports)
        result.seconds["check"] = time.monotonic() - started
    return result

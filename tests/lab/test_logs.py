"""The central logs on the complete scenario, as root.

The shared complete lab (conftest.py) is used as deployed: the logs' check
rows pass (a marked request from c1 found from the balancer and the server
with its id, c1's probe of the database port found as a firewall drop, every
host heard in the last minute); the logs host killed for 10 s under a short
load and healed loses no line of any request; `quizstack logs --request` on
the id a response carried prints the balancer's and the server's lines; bad
arguments fail with one line. The lab is left as it was found (logs running).
"""

import json
import os
import time

import pytest

from quizstack import cli, logs
from quizstack.check import Checker
from quizstack.check.logs import _REQUEST
from quizstack.deploy.plan import build_plan

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")


@pytest.fixture(scope="module")
def checker(complete):
    lab, _ = complete
    return Checker(lab, build_plan(lab.topology))


def test_the_logs_rows_pass(checker):
    rows = checker.logs()
    assert len(rows) == 3
    assert all(r.ok for r in rows), [(r.name, r.detail) for r in rows]


def test_a_request_followed_by_its_id(checker, capsys):
    lab, plan = checker.lab, checker.plan
    done = lab.run(plan.clients[0], ["python3", "-c", _REQUEST, f"{checker.base}/quizzes?follow=me"])
    answer = json.loads(done.stdout)
    assert answer["status"] == 200 and answer["id"] and answer["server"]
    deadline = time.monotonic() + 5
    while True:
        assert cli.main(["--lab", lab.name, "logs", "--request", answer["id"]]) == 0
        lines = capsys.readouterr().out.splitlines()
        hosts = [line.split(" ", 3)[1:3] for line in lines]
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [h for h, program in hosts if program == "haproxy"][:1] in (["lb1"], ["lb2"]), lines
    assert [answer["server"], "quiz"] in hosts, lines
    assert lines == sorted(lines, key=lambda line: line.split(" ", 1)[0])


def test_bad_arguments_fail_with_one_line(checker, capsys):
    name = checker.lab.name
    assert cli.main(["--lab", name, "logs", "nohost"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("quizstack: logs: unknown host 'nohost'") and "\n" not in err
    assert cli.main(["--lab", name, "logs", "--grep", "GET (", "s1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("quizstack: logs: --grep 'GET (' is not a regular expression")
    assert "\n" not in err


def test_the_logs_host_killed_under_load_loses_no_line(checker):
    result = logs.kill_drill(checker.lab, hold=10, warmup=3, after=3, rate=10, wait=90)
    assert result["with_id"] > 100, result
    assert result["lost_balancer"] == 0 and result["lost_server"] == 0, result
    assert not checker.lab.faults()

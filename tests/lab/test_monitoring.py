"""Nagios on the complete scenario, as root: what an operator at a client sees.

The shared complete lab (conftest.py) is used as deployed. Nagios's rows pass
(401 without the login, 200 with it, every host UP and every service OK, read
from Nagios itself through the firewall); stopping s2's app turns Nagios's
s2 /healthz service CRITICAL within 30 s and OK again within 30 s of its
return; and Chromium, through 127.0.0.1 and the firewall, sees every service
OK on Nagios's services page. The lab is left as it was found (s2 running).
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from quizstack.check import Checker, monitoring
from quizstack.deploy import render_monitoring as rm
from quizstack.deploy.plan import build_plan
from quizstack.stack import secrets_of

CHROMIUM = "/usr/bin/chromium"
BOUND = 30.0       # seconds within which Nagios must see a fault, and its end
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")


@pytest.fixture(scope="module")
def checker(complete):
    lab, _ = complete
    return Checker(lab, build_plan(lab.topology))


def healthz(checker, server):
    _, services = monitoring.states(monitoring.fetch(checker))
    return services.get((server, "HTTP /healthz"), ("absent", ""))


def wait_for(checker, server, wanted, bound):
    started, seen = time.monotonic(), None
    while time.monotonic() - started < bound:
        seen = healthz(checker, server)
        if seen[0] == wanted:
            return time.monotonic() - started, seen
        time.sleep(0.5)
    return None, seen


def test_nagios_rows_pass(checker):
    rows = monitoring.monitoring_checks(checker)
    assert len(rows) == 4
    failed = [f"{r.name}: {r.detail}" for r in rows if not r.ok]
    assert not failed
    hosts, checks = rm.watch_list(checker.plan)
    assert f"{len(checks)} services on {len(hosts)} hosts, all OK" in rows[-1].detail


def test_a_stopped_app_server_turns_critical_in_nagios_and_back(checker):
    lab = checker.lab
    assert monitoring.wait_all_ok(checker)[0], "Nagios was not all OK before the fault"
    assert healthz(checker, "s2")[0] == "OK"
    lab.run("s2", ["supervisorctl", "stop", "quiz"])
    try:
        seconds, seen = wait_for(checker, "s2", "CRITICAL", BOUND)
        assert seconds is not None, f"s2 /healthz still {seen} after {BOUND} s"
        assert "8000" in seen[1]                     # the check names what it could not reach
        print(f"s2 stopped: CRITICAL in Nagios after {seconds:.1f} s")
    finally:
        lab.run("s2", ["supervisorctl", "start", "quiz"])
    seconds, seen = wait_for(checker, "s2", "OK", BOUND)
    assert seconds is not None, f"s2 /healthz still {seen} {BOUND} s after it started"
    print(f"s2 started: OK in Nagios after {seconds:.1f} s")


@pytest.fixture
def forward(complete):
    """127.0.0.1:PORT into the lab as c1, to Nagios's web interface (ended by its PID)."""
    lab, _ = complete
    plan = build_plan(lab.topology)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "quizstack.lab.forward", "--port", str(port),
         "--netns", f"/run/netns/qs-{lab.name}-{plan.clients[0]}",
         "--target", f"{plan.management.nagios_address}:{plan.management.nagios_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Chromium is not installed")
def test_the_services_page_in_a_browser_lists_every_service_ok(checker, forward, tmp_path):
    sync_playwright = pytest.importorskip(
        "playwright.sync_api", reason="the playwright python package is not installed").sync_playwright

    seen, _ = monitoring.wait_all_ok(checker)
    _, services = monitoring.states(seen)
    password = secrets_of(checker.lab)["nagios_password"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-gpu",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            # Without the login the page is refused (a browser would ask for one).
            anonymous = browser.new_context()
            assert anonymous.request.get(forward + "/nagios4/").status == 401
            anonymous.close()
            context = browser.new_context(http_credentials={
                "username": rm.NAGIOS_USER, "password": password})
            page = context.new_page()
            page.set_default_timeout(15000)
            response = page.goto(forward + "/nagios4/cgi-bin/status.cgi?host=all&limit=0")
            assert response.status == 200
            page.screenshot(path=str(tmp_path / "nagios-services.png"), full_page=True)
            states = page.eval_on_selector_all(
                "td[class^='status']",
                "cells => cells.map(c => c.className)"
                ".filter(c => /^status(OK|WARNING|CRITICAL|UNKNOWN|PENDING)$/.test(c))")
            assert states and set(states) == {"statusOK"}, sorted(set(states))
            assert len(states) == len(services) == len(rm.watch_list(checker.plan)[1])
            text = page.inner_text("body")
            for name in ("HTTP /healthz", "HAProxy backend s3", "GlusterFS volume nas",
                         "PostgreSQL replication"):
                assert name in text
        finally:
            browser.close()
    assert (tmp_path / "nagios-services.png").stat().st_size > 10000

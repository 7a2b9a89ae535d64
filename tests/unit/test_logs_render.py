"""The central logs' files and rules, rendered from the plans (no root, no rsyslog run)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from quizstack.deploy import ROLES, render
from quizstack.deploy import render_logs as rl
from quizstack.deploy.plan import build_plan
from quizstack.deploy.roles import Context
from quizstack.errors import ScenarioError
from quizstack.topology import load_scenario


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_scenario("complete"))


@pytest.fixture(scope="module")
def pfinal():
    return build_plan(load_scenario("pfinal"))


def test_the_complete_scenario_has_a_logs_host_on_mgmt_only(plan):
    m = plan.management
    assert m.logs == "logs" and str(m.address("logs")) == "10.2.9.4"
    assert plan.lab_addresses["logs"] == (m.address("logs"),)
    assert set(rl.forwarding_hosts(plan)) == set(m.addresses) - {"logs"}
    assert "c1" not in rl.forwarding_hosts(plan)


def test_pfinal_has_no_logs_and_no_logs_phase(pfinal):
    assert pfinal.management is None and rl.forwarding_hosts(pfinal) == ()
    keys = [p.key for role in ROLES for p in role.phases(pfinal, Context({}, "/venv"))]
    assert not [k for k in keys if k.startswith("logs")]
    # Nothing of the logs reaches pfinal's files.
    assert "log prefix" not in render.nftables_conf(pfinal)


def test_the_logs_phases_collector_first(plan):
    from quizstack.deploy import schedule

    phases = [p for role in ROLES for p in role.phases(plan, Context({}, "/venv"))]
    stage = {p.key: i for i, s in enumerate(schedule(phases)) for p in s}
    assert stage["logs: collector"] < stage["logs: forward"]
    assert stage["logs: forward"] < stage["access: sshd"]


def test_a_logs_host_that_is_a_client_is_refused(tmp_path):
    text = Path(load_scenario("complete").source).read_text().replace(
        'roles = ["logs"]\ninterfaces = [{ network = "MGMT", address = "10.2.9.4" }]',
        'roles = ["logs"]\ninterfaces = [{ network = "LAN1", address = "10.2.1.40" }]')
    path = tmp_path / "two.toml"
    path.write_text(text.replace('[hosts.logs]\nroles = ["logs"]', '[hosts.logs]\nroles = ["client", "logs"]'))
    with pytest.raises(ScenarioError, match="logs host logs is a client"):
        build_plan(load_scenario(str(path)))


def test_two_logs_hosts_are_refused(tmp_path):
    text = Path(load_scenario("complete").source).read_text()
    path = tmp_path / "two.toml"
    path.write_text(text + '\n[hosts.logs2]\nroles = ["logs"]\n'
                           'interfaces = [{ network = "MGMT", address = "10.2.9.5" }]\n')
    with pytest.raises(ScenarioError, match="role logs: at most one host"):
        load_scenario(str(path))


def test_a_forwarder_sends_over_relp_with_a_queue_that_never_gives_up(plan):
    text = rl.forwarder_conf(plan, "s1")
    assert 'localHostname="s1"' in text
    assert 'type="omrelp"' in text and 'target="10.2.9.4" port="2514"' in text
    for setting in ('queue.type="LinkedList"', 'queue.filename="to_logs"',
                    'queue.saveOnShutdown="on"', 'action.resumeRetryCount="-1"'):
        assert setting in text
    for glob, _ in rl.FILES:
        assert f'file="{glob}"' in text
    # No kernel log in a namespace, and no /dev/log shared by every lab host.
    assert "imklog" not in text and "imuxsock" not in text
    assert 'module(load="imuxsock"' in rl.forwarder_conf(plan, "s1", journal=True)


def test_the_collector_listens_on_mgmt_and_writes_before_it_acknowledges(plan):
    text = rl.collector_conf(plan)
    assert 'input(type="imrelp" address="10.2.9.4" port="2514"' in text
    assert 'ruleset(name="quizstack_store" queue.type="Direct")' in text
    assert f'file="{rl.MERGED}"' in text
    assert f'{rl.HOSTS_DIR}/%hostname:::secpath-replace%/%$.prog:::secpath-replace%.log' in text
    assert "date-rfc3339,date-utc" in text


@pytest.mark.skipif(not shutil.which("rsyslogd"), reason="rsyslog not installed")
@pytest.mark.parametrize("which", ["collector", "forwarder", "journal"])
def test_rsyslog_accepts_the_files(plan, tmp_path, which):
    text = {"collector": rl.collector_conf(plan), "forwarder": rl.forwarder_conf(plan, "lb1"),
            "journal": rl.forwarder_conf(plan, "lb1", journal=True)}[which]
    needs = ["omrelp"] if which != "collector" else ["imrelp"]
    modules = subprocess.run(["sh", "-c", "ls /usr/lib/*/rsyslog/"], capture_output=True, text=True).stdout
    if not all(f"{m}.so" in modules for m in needs):
        pytest.skip("rsyslog-relp not installed")
    path = tmp_path / "rsyslog.conf"
    path.write_text(text)
    done = subprocess.run(["rsyslogd", "-N1", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_firewall_logs_drops_rate_limited_before_its_policy(plan):
    text = render.nftables_conf(plan)
    for chain in ("input", "forward"):
        body = text.split(f"chain {chain} {{", 1)[1].split("}\n", 1)[0]
        lines = [line.strip() for line in body.strip().splitlines()]
        assert lines[-2].startswith("meta pkttype host tcp dport { 22, 2379, 2380, 5432, 5666, 8008, "
                                    "24007 } limit rate 200/second burst 1000 packets")
        assert lines[-2].endswith('log prefix "quizstack-drop: " group 1 drop')
        assert lines[-1] == ('meta pkttype host limit rate 10/second burst 20 packets '
                             'log prefix "quizstack-drop: " group 1')


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy not installed")
def test_haproxy_names_every_request(plan, pfinal, tmp_path):
    text = render.haproxy_cfg(plan)
    frontend = text.split("frontend quiz\n", 1)[1].split("\n\n", 1)[0]
    assert "http-request set-var(txn.request_id) req.hdr(X-Request-ID) if { src 10.2.2.41 }" in frontend
    assert "http-request set-var(txn.request_id) uuid() unless { var(txn.request_id) -m found }" in frontend
    assert "unique-id-format %[var(txn.request_id)]" in frontend
    assert "http-request set-header X-Request-ID %[unique-id]" in frontend
    assert "http-response set-header X-Request-ID %[unique-id]" in frontend
    (log_format,) = [line for line in frontend.splitlines() if "log-format" in line]
    assert log_format.endswith(' \\"%HM %[var(txn.logged_uri)] %HV\\" id=%ID"')
    # The request line is logged with any API token in it redacted.
    assert ("http-request set-var(txn.logged_uri) url,regsub(token=[^&]*,token=<redacted>,g)"
            in frontend)
    # Without nagios nobody is trusted to bring an id.
    assert "req.hdr(X-Request-ID) if" not in render.haproxy_cfg(pfinal)
    for name, cfg in (("complete", text), ("pfinal", render.haproxy_cfg(pfinal))):
        path = tmp_path / f"{name}.cfg"
        path.write_text(cfg.replace(render.HAPROXY_503, "/dev/null"))
        done = subprocess.run(["haproxy", "-c", "-q", "-f", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_postgresql_logs_connections_and_slow_statements_with_a_logs_host(plan):
    text = render.patroni_yml(plan, "bbdd", {"database_superuser_password": "a",
                                             "database_replication_password": "b",
                                             "database_rewind_password": "c"}, "15")
    assert "    log_line_prefix: '%m [%p] postgres: %q%u@%d '\n" in text
    assert "    log_connections: 'on'\n" in text
    assert f"    log_min_duration_statement: {render.SLOW_STATEMENT_MS}\n" in text


def test_gunicorn_leaves_the_request_log_to_quiz(plan):
    assert "accesslog = None\n" in render.gunicorn_conf(plan, plan.backends[0])


def test_the_drop_reader_writes_what_the_kernel_would():
    import socket
    import struct

    from quizstack.deploy.probes import nflog

    ip = bytes([0x45, 0, 0, 60, 0, 0, 0, 0, 63, 6, 0, 0]) + socket.inet_aton("10.2.1.11") + \
        socket.inet_aton("10.2.4.31")
    tcp = struct.pack(">HHIIBBH", 41000, 5432, 0, 0, 0x50, 0x02, 64240) + b"\0" * 6
    attrs = {nflog.NFULA_PREFIX: b"quizstack-drop: \0", nflog.NFULA_PAYLOAD: ip + tcp}
    assert nflog.describe(attrs) == ("quizstack-drop: IN= OUT= SRC=10.2.1.11 DST=10.2.4.31 LEN=60 "
                                     "TTL=63 PROTO=TCP SPT=41000 DPT=5432 SYN")
    packed = nflog.attribute(nflog.NFULA_PREFIX, b"x\0") + nflog.attribute(nflog.NFULA_PAYLOAD, b"abc")
    assert nflog.attributes(packed) == {nflog.NFULA_PREFIX: b"x\0", nflog.NFULA_PAYLOAD: b"abc"}


def test_the_rotator_keeps_a_bounded_number_of_copies(tmp_path):
    from quizstack.deploy.probes import logs_rotate

    log = tmp_path / "hosts" / "s1" / "quiz.log"
    log.parent.mkdir(parents=True)
    for n in range(6):
        log.write_text("x" * 100 + str(n))
        args = type("A", (), {"dir": str(tmp_path), "max_bytes": 50, "keep": 3,
                              "pidfile": str(tmp_path / "none.pid")})
        assert logs_rotate.once(args) == [str(log)]
    assert sorted(p.name for p in log.parent.iterdir()) == ["quiz.log.1", "quiz.log.2", "quiz.log.3"]
    assert (log.parent / "quiz.log.1").read_text().endswith("5")

"""Balancing policies: the scenario's setting, HAProxy's configuration for each, and the load agent."""

import dataclasses
import http.server
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from quizstack.deploy import render, web
from quizstack.deploy.plan import build_plan
from quizstack.deploy.probes import agent
from quizstack.errors import ScenarioError
from quizstack.topology import load_scenario


@pytest.fixture(scope="module")
def pfinal():
    return build_plan(load_scenario("pfinal"))


def scenario_with(tmp_path, setting):
    """pfinal with one more line in its [service] section."""
    text = open(load_scenario("pfinal").source).read()
    assert "[service]\nport = 80\n" in text
    path = tmp_path / "policy.toml"
    path.write_text(text.replace("[service]\nport = 80\n", f"[service]\nport = 80\n{setting}\n"))
    return str(path)


def backend(cfg):
    """The quiz_servers section of a rendered haproxy.cfg."""
    section = cfg.split("\nbackend quiz_servers\n", 1)[1]
    return "backend quiz_servers\n" + section.split("\n\n", 1)[0]


BACKEND = """backend quiz_servers
    balance {balance}
    option httpchk GET /healthz
    http-check expect status 200
    acl replayable urlp(once) -m found
    acl small req.hdr_val(content-length) lt 120000
    http-request set-timeout server 2s if METH_GET || replayable small
    http-request disable-l7-retry unless METH_GET || replayable small
    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 2{options}
    http-response set-header X-Server %s
    server s1 10.2.3.11:8000 check
    server s2 10.2.3.12:8000 check
    server s3 10.2.3.13:8000 check
"""


# -- the setting ----------------------------------------------------------------------------

def test_round_robin_is_the_default(pfinal):
    assert pfinal.balance == "roundrobin"


@pytest.mark.parametrize("policy", ["roundrobin", "leastconn", "load"])
def test_the_scenario_chooses_the_policy(tmp_path, policy):
    assert build_plan(load_scenario(scenario_with(tmp_path, f'balance = "{policy}"'))).balance == policy


def test_an_unknown_policy_fails_in_one_line_naming_the_file(tmp_path):
    with pytest.raises(ScenarioError) as error:
        build_plan(load_scenario(scenario_with(tmp_path, 'balance = "random"')))
    message = str(error.value)
    assert "policy.toml" in message and "'random'" in message
    assert "roundrobin, leastconn, load" in message and "\n" not in message


# -- HAProxy's configuration ------------------------------------------------------------------

def test_round_robin_is_the_seeds_rotation_without_ramp_or_agent(pfinal):
    assert backend(render.haproxy_cfg(pfinal)) == BACKEND.format(balance="roundrobin", options="")


def test_leastconn_ramps_up_servers_that_come_back(pfinal):
    cfg = render.haproxy_cfg(dataclasses.replace(pfinal, balance="leastconn"))
    assert backend(cfg) == BACKEND.format(balance="leastconn", options=" slowstart 10s")


def test_load_asks_every_servers_agent_each_second(pfinal):
    cfg = render.haproxy_cfg(dataclasses.replace(pfinal, balance="load"))
    assert backend(cfg) == BACKEND.format(
        balance="leastconn",
        options=" slowstart 10s weight 100 agent-check agent-port 8009 agent-inter 1s")


def test_nagios_probes_keep_their_own_round_robin_under_load():
    plan = dataclasses.replace(build_plan(load_scenario("complete")), balance="load")
    watch = render.haproxy_cfg(plan).split("backend quiz_watch\n", 1)[1]
    assert watch.startswith("    balance roundrobin\n")
    assert "agent-check" not in watch and "track quiz_servers/s2" in watch


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed")
@pytest.mark.parametrize("policy", ["roundrobin", "leastconn", "load"])
@pytest.mark.parametrize("scenario", ["pfinal", "complete"])
def test_haproxy_accepts_every_policy(scenario, policy, tmp_path):
    from quiz.unavailable import haproxy_errorfile

    plan = dataclasses.replace(build_plan(load_scenario(scenario)), balance=policy)
    page = tmp_path / "503.http"
    page.write_text(haproxy_errorfile())
    path = tmp_path / "haproxy.cfg"
    path.write_text(render.haproxy_cfg(plan).replace(render.HAPROXY_503, str(page)))
    done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# -- where the agent runs ---------------------------------------------------------------------

def test_the_agent_listens_where_haproxy_reaches_the_server_and_asks_the_apps_database(pfinal):
    s2 = pfinal.backends[1]
    command = web.agent_command(pfinal, s2).split()
    assert command[command.index("--listen") + 1] == "10.2.3.12:8009"
    assert command[command.index("--health") + 1] == "http://10.2.3.12:8000/healthz"
    assert command[command.index("--database") + 1] == "10.2.4.31:5432"
    assert command[command.index("--media") + 1] == "/var/lib/quiz/nas/media"
    assert command[command.index("--threads") + 1] == "8"     # 2 workers x 4 threads


def test_on_a_replicated_database_the_agent_asks_the_local_router():
    plan = build_plan(load_scenario("complete"))
    command = web.agent_command(plan, plan.backends[0]).split()
    assert command[command.index("--database") + 1] == "127.0.0.1:5432"


def test_the_agent_runs_as_www_data_under_systemd():
    unit = render.agent_systemd_unit("/usr/bin/python3 /x/agent.py --listen 10.0.0.1:8009")
    assert "User=www-data\n" in unit and "Restart=always\n" in unit
    assert "ExecStart=/usr/bin/python3 /x/agent.py --listen 10.0.0.1:8009\n" in unit


# -- the agent's answers ----------------------------------------------------------------------

def sample(**changes):
    normal = {"mount": None, "database": True, "health_ms": 4.0, "refused": False,
              "waiting": 0, "threads": 8, "cpu_share": 1.0, "age": 0.3}
    return normal | changes


def test_a_normal_server_is_up_at_full_weight():
    assert agent.answer(sample()) == "up 100% #health 4 ms\n"


def test_after_a_drain_the_agent_says_ready():
    assert agent.answer(sample(), ready=True) == "up ready 100% #health 4 ms\n"


def test_a_slower_health_page_is_a_smaller_weight():
    assert agent.answer(sample(health_ms=50.0)).startswith("up 50% ")
    assert agent.answer(sample(health_ms=250.0)).startswith("up 10% ")
    assert agent.answer(sample(health_ms=1400.0)).startswith("up 2% ")
    assert agent.answer(sample(health_ms=1500.0)).startswith("up 1% #overloaded")


def test_a_cpu_quota_is_a_smaller_weight():
    # `chaos slow s2 --cpu 20` on two CPUs: a tenth of the machine.
    assert agent.answer(sample(cpu_share=0.1)).startswith("up 10% ")
    assert agent.answer(sample(cpu_share=0.001)).startswith("up 1% ")   # never 0 (a drain)


def test_a_swamped_server_drains():
    assert agent.answer(sample(health_ms=None)) == "drain #swamped: no health page in 2 s\n"


def test_an_overloaded_server_that_still_answers_keeps_a_sliver_of_weight():
    # Not a drain: a load every server feels would drain them all, and HAProxy answer 503.
    assert agent.answer(sample(health_ms=2000.0)) == "up 1% #overloaded: health page 2000 ms\n"
    assert agent.answer(sample(waiting=32)) == "up 1% #overloaded: 32 requests waiting\n"
    assert agent.answer(sample(waiting=32), ready=True).startswith("up ready 1% ")
    assert agent.answer(sample(waiting=31)) == "up 100% #health 4 ms\n"


def test_a_server_with_the_drain_file_drains_and_never_says_ready():
    # A scale-in or a rolling restart drained it: saying `ready` would undo that drain.
    line = "drain #draining: the server is leaving or restarting\n"
    assert agent.answer(sample(draining=True)) == line
    assert agent.answer(sample(draining=True), ready=True) == line
    assert agent.answer(sample(draining=True, database=False)) == "down #database not reachable\n"


def test_the_agent_samples_its_drain_file(tmp_path):
    marker = tmp_path / "draining"
    options = agent.argparse.Namespace(health="http://127.0.0.1:9/healthz", mount=str(tmp_path), media=str(tmp_path),
                                       database="127.0.0.1:9", app_port=9, threads=1, drain_file=str(marker))
    assert agent.Agent(options).measure()["draining"] is False
    marker.touch()
    assert agent.Agent(options).measure()["draining"] is True


def test_a_missing_mount_is_down_whatever_the_load():
    assert agent.answer(sample(mount="/var/lib/quiz/nas not mounted", health_ms=None)) == \
        "down #/var/lib/quiz/nas not mounted\n"


def test_a_database_gone_is_down():
    assert agent.answer(sample(database=False)) == "down #database not reachable\n"


def test_an_app_not_listening_is_down():
    assert agent.answer(sample(health_ms=None, refused=True)) == "down #app not listening\n"


def test_no_fresh_measure_is_an_overload():
    assert agent.answer(None) == "up 1% #no fresh measure\n"
    assert agent.answer(sample(age=agent.STALE + 1)) == "up 1% #no fresh measure\n"


# -- what the agent measures ------------------------------------------------------------------

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0C03020A:1F40 00000000:0000 0A 00000000:00000003 00:00000000 00000000    33        0 1 1
   1: 0C03020A:1F49 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 2 1
   2: 0C03020A:1F40 0103020A:A1B2 01 00000000:000001C5 00:00000000 00000000    33        0 3 1
   3: 0C03020A:1F40 0103020A:A1B3 01 00000000:00000000 00:00000000 00000000    33        0 4 1
   4: 0C03020A:D2F0 1F04020A:1538 01 00000000:00000010 00:00000000 00000000    33        0 5 1
"""


def test_waiting_requests_are_the_accept_queue_and_unread_requests():
    # Port 8000 (1F40): 3 connections not accepted yet, one accepted with a request unread;
    # the agent's own port and the database connection do not count.
    assert agent.parse_proc_net_tcp(PROC_NET_TCP, 8000) == 4


@pytest.mark.parametrize("version", [1, 2])
def test_the_cpu_share_is_the_cgroups_quota_over_the_machines_cpus(tmp_path, monkeypatch, version):
    monkeypatch.setattr(agent.os, "cpu_count", lambda: 2)
    proc = tmp_path / "cgroup"
    if version == 1:
        proc.write_text("4:memory:/\n1:cpu:/quizstack-lab-s2\n0::/\n")
        group = tmp_path / "cpu" / "quizstack-lab-s2"
        group.mkdir(parents=True)
        (group / "cpu.cfs_quota_us").write_text("20000\n")
        (group / "cpu.cfs_period_us").write_text("100000\n")
    else:
        proc.write_text("0::/system.slice/quiz.service\n")
        group = tmp_path / "system.slice" / "quiz.service"
        group.mkdir(parents=True)
        (group / "cpu.max").write_text("20000 100000\n")
    assert agent.cpu_share(str(tmp_path), str(proc)) == pytest.approx(0.1)
    (group / ("cpu.cfs_quota_us" if version == 1 else "cpu.max")).write_text(
        "-1\n" if version == 1 else "max 100000\n")
    assert agent.cpu_share(str(tmp_path), str(proc)) == 1.0


def test_a_folder_that_is_not_a_mount_is_a_problem(tmp_path):
    assert agent.mount_problem(str(tmp_path), str(tmp_path)) == f"{tmp_path} not mounted"
    assert agent.mount_problem("/", str(tmp_path / "media")) == f"no {tmp_path / 'media'}"
    assert agent.mount_problem("/", str(tmp_path)) is None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_agent_speaks_haproxys_protocol(tmp_path):
    """The real program on 127.0.0.1: one line per connection, then closed; the
    database's port closing turns the answer to down within a sample or two."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args):
            pass

    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    database = socket.socket()
    database.bind(("127.0.0.1", 0))
    database.listen()
    port = free_port()
    proc = subprocess.Popen([sys.executable, agent.__file__, "--listen", f"127.0.0.1:{port}",
                             "--health", f"http://127.0.0.1:{app.server_port}/healthz",
                             "--mount", "/", "--media", str(tmp_path),
                             "--database", f"127.0.0.1:{database.getsockname()[1]}",
                             "--app-port", str(app.server_port), "--threads", "8"])
    try:
        def ask_until(prefix):
            deadline = time.monotonic() + 10
            line = ""
            while time.monotonic() < deadline:
                line = agent.ask(f"127.0.0.1:{port}")
                if line.startswith(prefix):
                    return line
                time.sleep(0.1)
            raise AssertionError(f"the agent said {line!r}, not {prefix}...")

        line = ask_until("up ")
        assert line.endswith("\n") and line.count("\n") == 1
        assert " ready " in line      # just started: it may have drained the server before
        database.close()
        assert ask_until("down ") == "down #database not reachable\n"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        app.shutdown()


# -- check's balancing row --------------------------------------------------------------------

STAT_HEADER = "# pxname,svname,status,weight,agent_status,last_agt"


def stat(*servers):
    return "\n".join([STAT_HEADER] + [f"quiz_servers,{name},UP,{weight},{status},via agent : {said}"
                                      for name, weight, status, said in servers]
                     + ["quiz_servers,BACKEND,UP,300,,"]) + "\n"


class FakeLab:
    """Answers the balancing row's commands: the client's count and HAProxy's stats."""

    def __init__(self, counts, stats=""):
        self.counts, self.stats = counts, stats

    def run(self, host, argv, timeout=60, check=True):
        import json
        import types

        if "quizstack.check.client" in argv:
            out = json.dumps({"servers": self.counts, "statuses": {"200": sum(self.counts.values())}})
        else:
            out = self.stats
        return types.SimpleNamespace(returncode=0, stdout=out, stderr="")


def balancing_row(plan, counts, stats=""):
    from quizstack.check import Checker

    (row,) = Checker(FakeLab(counts, stats), plan).balancing()
    return row


def test_round_robin_needs_exactly_ten_each(pfinal):
    row = balancing_row(pfinal, {"s1": 10, "s2": 10, "s3": 10})
    assert row.ok and row.name == "30 requests from c1 spread round-robin"
    assert not balancing_row(pfinal, {"s1": 11, "s2": 9, "s3": 10}).ok


def test_leastconn_needs_every_server_to_answer(pfinal):
    plan = dataclasses.replace(pfinal, balance="leastconn")
    row = balancing_row(plan, {"s1": 12, "s2": 8, "s3": 10})
    assert row.ok and row.name == "30 requests from c1 reach every server (balance leastconn)"
    assert not balancing_row(plan, {"s1": 15, "s3": 15}).ok


def test_load_needs_every_agent_heard_by_the_balancer(pfinal):
    plan = dataclasses.replace(pfinal, balance="load")
    counts = {"s1": 10, "s2": 10, "s3": 10}
    heard = stat(("s1", 100, "L7OK", "up (health 3 ms)"), ("s2", 40, "L7OK", "up (health 60 ms)"),
                 ("s3", 100, "L7OK", "up (health 4 ms)"))
    row = balancing_row(plan, counts, heard)
    assert row.ok and "(balance load)" in row.name
    assert "s2 up (health 60 ms), weight 40" in row.detail
    silent = heard.replace("s3,UP,100,L7OK", "s3,UP,100,L4CON")
    assert not balancing_row(plan, counts, silent).ok


def test_an_agent_not_asked_yet_is_awaited_then_judged(pfinal):
    plan = dataclasses.replace(pfinal, balance="load")
    fresh = stat(("s1", 100, "L7OK", "up (health 3 ms)"), ("s2", 100, "L7OK", "up (health 3 ms)"),
                 ("s3", 100, "INI", ""))
    lab = FakeLab({"s1": 10, "s2": 10, "s3": 10}, fresh)
    from quizstack.check import Checker

    checker = Checker(lab, plan)
    started = time.monotonic()
    heard, shown = checker._agents_heard(wait=0.5)
    assert not heard and "s3 INI" in shown and time.monotonic() - started >= 0.5

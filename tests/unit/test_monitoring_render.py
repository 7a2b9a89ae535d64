"""What Nagios watches, and the files of the monitoring, rendered from the plan.

Every host and service of the complete scenario is watched; a server added to
the scenario is watched with nothing else to edit; the seed's own figure has
no Nagios and gets nothing; NRPE answers only Nagios, on the management
network only, with our commands only; the login is a fresh bcrypt hash, never
a package default; the plugins judge what they read as an operator would.
"""

import re

import pytest

from quizstack.deploy import monitoring
from quizstack.deploy import render_monitoring as rm
from quizstack.deploy.plan import build_plan
from quizstack.deploy.probes import check_gluster, check_haproxy_server, check_memory, check_patroni
from quizstack.topology import load_scenario
from quizstack.topology.loader import SCENARIO_DIR

COMPLETE = (SCENARIO_DIR / "complete.toml").read_text()
S4 = '''
[hosts.s4]
roles = ["web"]
interfaces = [
    { network = "LAN3", address = "10.2.3.14" },
    { network = "LAN4", address = "10.2.4.14" },
    { network = "MGMT", address = "10.2.9.34" },
]
routes = [{ to = "10.2.0.0/16", via = "10.2.3.1" }]
'''


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_scenario("complete"))


def with_s4(tmp_path):
    path = tmp_path / "complete-s4.toml"
    path.write_text(COMPLETE.replace("[hosts.nas1]", S4 + "\n[hosts.nas1]", 1))
    return build_plan(load_scenario(str(path)))


def defined(objects, kind):
    """The `define KIND { ... }` blocks of a Nagios objects file, as dicts."""
    blocks = re.findall(r"define %s \{\n(.*?)\n\}" % kind, objects, re.S)
    return [dict(line.strip().split(None, 1) for line in block.splitlines()) for block in blocks]


def services(objects):
    return {(s["host_name"], s["service_description"]): s["check_command"]
            for s in defined(objects, "service") if s.get("register") != "0"}


def test_every_host_behind_the_firewall_is_pinged_over_the_management_network(plan):
    hosts = {h["host_name"]: h["address"] for h in defined(rm.nagios_objects(plan), "host")
             if "host_name" in h}
    expected = {h: str(a) for h, a in plan.management.addresses.items()}
    assert hosts == dict(expected, service="10.2.2.2")
    assert "c1" not in hosts and "c2" not in hosts
    assert all(a.startswith("10.2.9.") for h, a in hosts.items() if h != "service")


def test_every_service_of_the_complete_scenario_is_watched(plan):
    found = services(rm.nagios_objects(plan))
    for host in plan.management.addresses:
        for what in ("disk /", "load", "memory"):
            assert (host, what) in found, (host, what)
    for server in ("s1", "s2", "s3"):
        assert found[(server, "HTTP /healthz")] == "qs-nrpe!healthz"
        for lb in ("lb1", "lb2"):
            assert found[(lb, f"HAProxy backend {server}")] == f"qs-nrpe!backend_{server}"
    for db in ("bbdd", "bbdd2"):
        assert found[(db, "PostgreSQL")] == "qs-nrpe!postgresql"
        assert found[(db, "PostgreSQL replication")] == "qs-nrpe!replication"
    for member in ("bbdd", "bbdd2", "witness"):
        assert (member, "etcd") in found
    for nas in ("nas1", "nas2", "nas3"):
        assert found[(nas, "GlusterFS volume nas")] == "qs-nrpe!gluster_nas"
    assert found[("service", "HTTP")] == "qs-service_http"
    # Nagios checks its own host directly, not through NRPE.
    assert found[("nagios", "disk /")] == "qs-disk"
    assert len(found) == 68     # 17 hosts behind the firewall (logs included) + the service


def test_the_service_address_is_checked_through_the_balancer(plan):
    commands = {c["command_name"]: c["command_line"]
                for c in defined(rm.nagios_objects(plan), "command")}
    assert commands["qs-service_http"].endswith("check_http -I 10.2.2.2 -p 80 -u / -t 5")
    assert "-H $HOSTADDRESS$" in commands["qs-ping"] and "-c $ARG1$" in commands["qs-nrpe"]


def test_checks_every_ten_seconds_confirmed_five_seconds_later(plan):
    objects = rm.nagios_objects(plan)
    for kind in ("host", "service"):
        template = next(b for b in defined(objects, kind) if b.get("register") == "0")
        assert (template["check_interval"], template["retry_interval"],
                template["max_check_attempts"]) == ("10", "5", "2")
    main = rm.nagios_cfg(plan)
    assert "interval_length=1\n" in main and "check_result_reaper_frequency=1\n" in main
    assert "status_update_interval=1\n" in main


def test_nagios_reads_only_our_objects(plan):
    main = rm.nagios_cfg(plan)
    assert [line for line in main.splitlines() if line.startswith(("cfg_file", "cfg_dir"))] == \
        ["cfg_file=/etc/nagios4/quizstack/objects.cfg"]
    assert "localhost.cfg" not in main and "resource_file" not in main
    assert rm.nagios_cfg(plan, objects="/x/.objects.cfg.new").count("cfg_file=/x/.objects.cfg.new") == 1


def test_a_server_added_to_the_scenario_is_watched(tmp_path):
    plan = with_s4(tmp_path)
    objects = rm.nagios_objects(plan)
    found = services(objects)
    assert found[("s4", "HTTP /healthz")] == "qs-nrpe!healthz"
    assert ("lb1", "HAProxy backend s4") in found and ("lb2", "HAProxy backend s4") in found
    assert {"host_name": "s4"}.items() <= next(
        h for h in defined(objects, "host") if h.get("host_name") == "s4").items()
    assert "-I 10.2.3.14 -p 8000 -u /healthz" in rm.nrpe_cfg(plan, "s4")
    assert "quiz_servers s4" in rm.nrpe_cfg(plan, "lb2") and "quiz_servers s4" in rm.sudoers(plan, "lb2")
    assert "s4" in rm.nrpe_hosts(plan)


def test_pfinal_has_no_nagios_and_gets_nothing():
    plan = build_plan(load_scenario("pfinal"))
    assert rm.watch_list(plan) == ((), ())
    assert rm.nagios_objects(plan) == "" and rm.nrpe_hosts(plan) == ()
    assert monitoring.phases(plan, None) == []


def test_nrpe_listens_on_the_management_network_and_answers_only_nagios(plan):
    cfg = rm.nrpe_cfg(plan, "s2")
    settings = dict(line.split("=", 1) for line in cfg.splitlines()
                    if "=" in line and not line.startswith(("#", "command[")))
    assert settings["server_address"] == "10.2.9.32"
    assert settings["allowed_hosts"] == "10.2.9.3"
    assert settings["server_port"] == "5666"
    assert settings["dont_blame_nrpe"] == "0" and settings["allow_bash_command_substitution"] == "0"
    assert settings["nrpe_user"] == "nagios"
    assert "include" not in cfg and "$ARG" not in cfg
    commands = dict(re.findall(r"^command\[(\w+)\]=(.*)$", cfg, re.M))
    assert set(commands) == {"disk", "load", "memory", "healthz"}
    assert commands["healthz"].endswith("check_http -I 10.2.3.12 -p 8000 -u /healthz -e 200 -t 5")


def test_nagios_itself_runs_no_nrpe(plan):
    assert "nagios" not in rm.nrpe_hosts(plan)
    assert set(rm.nrpe_hosts(plan)) == set(plan.management.addresses) - {"nagios"}


def test_only_the_root_checks_get_sudo_each_with_its_exact_line(plan):
    assert rm.sudoers(plan, "s1") == "" and rm.sudoers(plan, "fw1") == ""
    rules = [line for line in rm.sudoers(plan, "lb1").splitlines() if line.startswith("nagios ")]
    assert rules == [f"nagios ALL=(root) NOPASSWD: /usr/bin/python3 "
                     f"/var/lib/quizstack/probes/check_haproxy_server.py /run/haproxy/admin.sock "
                     f"quiz_servers {s}" for s in ("s1", "s2", "s3")]
    assert "ALL=(ALL)" not in rm.sudoers(plan, "nas1") and "*" not in rm.sudoers(plan, "nas1")
    assert "check_gluster.py nas 3" in rm.sudoers(plan, "nas1")


def test_the_web_interface_asks_everyone_for_the_login(plan):
    conf = rm.apache_conf(plan, "/usr/lib/apache2/modules/libphp8.2.so")
    assert "Listen 10.2.2.41:80\n" in conf and conf.count("Listen ") == 1
    location = conf.split("<Location />", 1)[1].split("</Location>", 1)[0]
    assert "AuthType Basic" in location and "Require valid-user" in location
    assert f"AuthUserFile {rm.HTPASSWD}" in location
    # Nothing of Debian's defaults: no Include of its sites, confs or modules.
    assert "Include" not in conf and "php_module" in conf
    cgi = rm.cgi_cfg()
    assert "use_authentication=1\n" in cgi
    assert "authorized_for_all_hosts=nagiosadmin\n" in cgi
    assert "authorized_for_all_services=nagiosadmin\n" in cgi


def test_the_login_is_a_fresh_bcrypt_hash_of_the_labs_password():
    line = rm.htpasswd_line("nagiosadmin", "s3cret-per-lab")
    user, hashed = line.split(":", 1)
    assert user == "nagiosadmin" and hashed.startswith("$2y$10$")
    assert rm.htpasswd_matches(line, "nagiosadmin", "s3cret-per-lab")
    assert not rm.htpasswd_matches(line, "nagiosadmin", "nagiosadmin")
    assert not rm.htpasswd_matches(line, "nagiosadmin", "nagios")
    assert not rm.htpasswd_matches(line, "admin", "s3cret-per-lab")
    assert rm.htpasswd_line("nagiosadmin", "s3cret-per-lab") != line   # salted
    assert not rm.htpasswd_matches("nagiosadmin:{SHA}x", "nagiosadmin", "x")


def test_forced_checks_name_each_host():
    text = rm.external_commands(["s1", "service"], 1700000000)
    assert text == ("[1700000000] SCHEDULE_FORCED_HOST_CHECK;s1;1700000000\n"
                    "[1700000000] SCHEDULE_FORCED_HOST_SVC_CHECKS;s1;1700000000\n"
                    "[1700000000] SCHEDULE_FORCED_HOST_CHECK;service;1700000000\n"
                    "[1700000000] SCHEDULE_FORCED_HOST_SVC_CHECKS;service;1700000000\n")


# -- the plugins ---------------------------------------------------------------------------

def test_memory_plugin():
    fields = check_memory.meminfo("MemTotal: 1000000 kB\nMemFree: 10 kB\nMemAvailable: 80000 kB\n")
    state, line = check_memory.verdict(fields, 10, 5)
    assert state == check_memory.WARNING and line.startswith("MEMORY WARNING - 8% available")
    assert check_memory.verdict({"MemTotal": 100, "MemAvailable": 50}, 10, 5)[0] == check_memory.OK
    assert check_memory.verdict({"MemTotal": 100, "MemAvailable": 4}, 10, 5)[0] == check_memory.CRITICAL
    assert check_memory.verdict({}, 10, 5)[0] == check_memory.UNKNOWN


def stat_line(backend, server, status, check="L7OK"):
    fields = [""] * 40
    fields[0], fields[1], fields[17], fields[36] = backend, server, status, check
    return ",".join(fields)


def test_haproxy_plugin():
    stat = "\n".join([stat_line("quiz_servers", "s1", "UP"), stat_line("quiz_servers", "s2", "DOWN", "L4CON"),
                      stat_line("quiz_servers", "s3", "UP 1/2"), stat_line("quiz_servers", "BACKEND", "UP")])
    verdict = check_haproxy_server.verdict
    found = check_haproxy_server.server_state
    assert verdict(found(stat, "quiz_servers", "s1"), "quiz_servers", "s1")[0] == 0
    state, line = verdict(found(stat, "quiz_servers", "s2"), "quiz_servers", "s2")
    assert state == 2 and "s2 is DOWN in quiz_servers (last check: L4CON)" in line
    assert verdict(found(stat, "quiz_servers", "s3"), "quiz_servers", "s3")[0] == 1
    assert verdict(found(stat, "quiz_servers", "s4"), "quiz_servers", "s4")[0] == 2


STATUS_DETAIL = """Status of volume: nas
------------------------------------------------------------------------------
Brick                : Brick 10.2.4.21:/var/lib/quizstack/bricks/nas
TCP Port             : 49152
Online               : Y
Pid                  : 100
------------------------------------------------------------------------------
Brick                : Brick 10.2.4.22:/var/lib/quizstack/bricks/nas
TCP Port             : N/A
Online               : N
------------------------------------------------------------------------------
Brick                : Brick 10.2.4.23:/var/lib/quizstack/bricks/nas
Online               : Y
"""

HEAL = """Brick 10.2.4.21:/var/lib/quizstack/bricks/nas
Status: Connected
Total Number of entries: 2
Number of entries in heal pending: 2
Number of entries in split-brain: 0
Number of entries possibly healing: 0

Brick 10.2.4.22:/var/lib/quizstack/bricks/nas
Status: Transport endpoint is not connected
Total Number of entries: -
Number of entries in heal pending: -
Number of entries in split-brain: -
Number of entries possibly healing: -
"""


def test_gluster_plugin():
    bricks = check_gluster.bricks_online(STATUS_DETAIL)
    assert bricks == {"10.2.4.21:/var/lib/quizstack/bricks/nas": True,
                      "10.2.4.22:/var/lib/quizstack/bricks/nas": False,
                      "10.2.4.23:/var/lib/quizstack/bricks/nas": True}
    assert check_gluster.heal_counts(HEAL) == (2, 0, 1)
    state, line = check_gluster.verdict("nas", 3, bricks, (2, 0, 1))
    assert state == 2 and "2/3 bricks online" in line and "offline: 10.2.4.22" in line
    every = {b: True for b in bricks}
    assert check_gluster.verdict("nas", 3, every, (2, 0, 0))[0] == 1
    assert check_gluster.verdict("nas", 3, every, (0, 1, 0))[0] == 2
    assert check_gluster.verdict("nas", 3, every, (0, 0, 0))[0] == 0


def test_patroni_plugin():
    leader = {"name": "bbdd", "role": "leader", "state": "running"}
    sync = {"name": "bbdd2", "role": "sync_standby", "state": "streaming", "lag": 0}
    assert check_patroni.verdict([leader, sync], 2)[0] == 0
    assert check_patroni.verdict([leader, dict(sync, role="replica")], 2)[0] == 1
    assert check_patroni.verdict([leader], 2)[0] == 1
    assert check_patroni.verdict([sync], 2)[0] == 2
    assert check_patroni.verdict([], 2)[0] == 2


def test_a_lab_host_reports_only_a_load_far_past_the_machines_work():
    from quizstack.deploy.plan import build_plan
    from quizstack.topology import load_scenario

    plan = build_plan(load_scenario("complete"))
    real = rm.nrpe_cfg(plan, "s1")
    lab = rm.nrpe_cfg(plan, "s1", shared_kernel=True)
    assert "check_load -r -w 8,6,4 -c 16,12,8" in real
    assert "check_load -r -w 32,28,24 -c 64,56,48" in lab
    assert "check_load -r -w 32,28,24" in rm.nagios_objects(plan, shared_kernel=True)

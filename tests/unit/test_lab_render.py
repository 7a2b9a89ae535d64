"""What a lab host boots with and how a lab is wired, as pure text.

These are the renderers and plans the lab feeds to supervisord, /etc and
iproute2; checking them here needs no root and no namespace.
"""

import configparser

import pytest

from quizstack.errors import LabError
from quizstack.lab import plan, render, state
from quizstack.topology import load_scenario


@pytest.fixture(scope="module")
def topo():
    return load_scenario("pfinal")


def test_supervisord_conf_uses_debian_paths():
    conf = configparser.ConfigParser(inline_comment_prefixes=(";",))
    conf.read_string(render.supervisord_conf("s1"))
    assert conf["unix_http_server"]["file"] == "/run/supervisor.sock"
    assert conf["supervisorctl"]["serverurl"] == "unix:///run/supervisor.sock"
    assert conf["include"]["files"] == "/etc/supervisor/conf.d/*.conf"
    assert conf["supervisord"]["logfile"] == "/var/log/supervisor/supervisord.log"
    assert conf["supervisord"]["childlogdir"] == "/var/log/supervisor"
    assert conf["supervisord"]["nodaemon"] == "true"
    assert "rpcinterface:supervisor" in conf


def test_etc_hosts_lists_every_host(topo):
    text = render.etc_hosts(topo, "pfinal")
    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert "127.0.0.1\tlocalhost" in lines
    assert "10.2.1.11\tc1 c1-lan1" in lines
    assert "10.2.1.1\tfw fw-lan1" in lines
    assert "10.2.2.1\tfw-lan2" in lines
    assert "10.2.3.11\ts1 s1-lan3" in lines
    assert "10.2.4.11\ts1-lan4" in lines
    assert "10.2.4.31\tbbdd bbdd-lan4" in lines
    names = [l.split("\t")[1].split()[0] for l in lines if l.startswith("10.")]
    assert sorted(n for n in names if "-" not in n) == sorted(topo.hosts)


def test_etc_hostname(topo):
    assert render.etc_hostname(topo.hosts["nas2"]) == "nas2\n"


def test_names_carry_the_lab_name(topo):
    assert plan.lab_netns("t1") == "qs-t1"
    assert plan.host_netns("t1", "s1") == "qs-t1-s1"
    assert plan.all_netns("t1", topo)[:3] == ["qs-t1", "qs-t1-c1", "qs-t1-c2"]
    assert len(plan.all_netns("t1", topo)) == 12


@pytest.mark.parametrize("name", ["pfinal", "t12345", "lab_2"])
def test_valid_lab_names(name):
    assert plan.check_lab_name(name) == name


@pytest.mark.parametrize("name", ["", "a-b", "Lab", "1lab", "x" * 17, "a/b"])
def test_invalid_lab_names(name):
    with pytest.raises(LabError, match="invalid lab name"):
        plan.check_lab_name(name)


def test_bridge_batch(topo):
    lines = plan.bridge_batch("t1", topo).splitlines()
    assert lines[0] == "link set lo up"
    assert "link add br-LAN4 type bridge forward_delay 0 stp_state 0" in lines
    assert "link add fw-1 type veth peer name eth1 address 02:51:0a:02:02:01 netns qs-t1-fw" in lines
    assert "link set fw-1 master br-LAN2 up" in lines
    assert "link add bbdd-0 type veth peer name eth0 address 02:51:0a:02:04:1f netns qs-t1-bbdd" in lines
    # One veth pair per interface, 16 in pfinal.
    assert sum(1 for l in lines if "type veth" in l) == 16
    # Interface names fit Linux's 15 characters.
    assert all(len(l.split()[2]) <= 15 for l in lines if l.startswith("link add"))


def test_host_batch_for_the_firewall(topo):
    assert plan.host_batch(topo.hosts["fw"]) == (
        "link set lo up\n"
        "link set eth0 addrgenmode none\n"
        "link set eth0 up\n"
        "address add 10.2.1.1/24 dev eth0\n"
        "link set eth1 addrgenmode none\n"
        "link set eth1 up\n"
        "address add 10.2.2.1/24 dev eth1\n"
        "route add 10.2.3.0/24 via 10.2.2.2\n"
        "route add 10.2.4.0/24 via 10.2.2.2\n"
    )


def test_host_batch_has_no_default_route(topo):
    for host in topo.hosts.values():
        text = plan.host_batch(host)
        assert "default" not in text and "0.0.0.0/0" not in text


def test_forward_enters_as_c1_towards_the_lb_behind_the_firewall(topo):
    assert plan.forward_target(topo) == ("c1", "10.2.2.2")


def test_state_records_each_resource_once():
    st = state.new_state("t1", "pfinal", "/x/pfinal.toml")
    assert state.add_created(st, {"kind": "netns", "name": "qs-t1"})
    assert not state.add_created(st, {"kind": "netns", "name": "qs-t1"})
    state.add_created(st, {"kind": "netns", "name": "qs-t1-c1"})
    state.add_created(st, {"kind": "init", "host": "c1"})
    state.add_created(st, {"kind": "forward"})
    assert [e["name"] for e in state.created(st, "netns")] == ["qs-t1", "qs-t1-c1"]


def test_teardown_is_reverse_order_processes_first():
    st = state.new_state("t1", "pfinal", "/x/pfinal.toml")
    for entry in ({"kind": "netns", "name": "qs-t1"}, {"kind": "netns", "name": "qs-t1-c1"},
                  {"kind": "init", "host": "c1"}, {"kind": "init", "host": "c2"},
                  {"kind": "forward"}):
        state.add_created(st, entry)
    assert state.teardown_order(st) == [
        {"kind": "forward"},
        {"kind": "init", "host": "c2"}, {"kind": "init", "host": "c1"},
        {"kind": "netns", "name": "qs-t1-c1"}, {"kind": "netns", "name": "qs-t1"},
    ]


def test_state_file_round_trip(tmp_path):
    st = state.new_state("t1", "pfinal", "/x/pfinal.toml")
    state.add_created(st, {"kind": "netns", "name": "qs-t1"})
    path = tmp_path / "state.json"
    state.save(path, st)
    assert state.load(path) == st
    assert not (tmp_path / "state.json.tmp").exists()
    assert state.load(tmp_path / "missing.json") is None

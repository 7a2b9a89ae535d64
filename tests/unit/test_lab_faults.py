"""Fault injection's pure parts: parameters, names, link batches, the heal order.

The faults themselves need root and a lab (tests/lab/test_faults.py); what
is decided before anything touches the kernel is checked here.
"""

import pytest

from quizstack.errors import LabError
from quizstack.lab import faults, state
from quizstack.topology import load_scenario


@pytest.mark.parametrize("value, percent", [(1, 1), (20, 20), (100, 100), ("35", 35), (" 20% ", 20)])
def test_a_cpu_percentage_is_a_whole_number_from_1_to_100(value, percent):
    assert faults.check_percent(value) == percent


@pytest.mark.parametrize("value", [0, 101, -5, True, 20.5, "x", "", "0", None])
def test_a_bad_cpu_percentage_says_what_is_wanted(value):
    with pytest.raises(LabError, match=r"^bad CPU percentage .*: a whole number from 1 to 100 \(of one CPU\)$"):
        faults.check_percent(value)


def test_params_are_checked_per_kind():
    assert faults.check_params("kill", {}) == {}
    assert faults.check_params("slow", {"cpu": "20"}) == {"cpu": 20}
    assert faults.check_params("stop", {"service": "web:gunicorn"}) == {"service": "web:gunicorn"}
    cases = [
        ("melt", {}, "unknown fault 'melt' (faults: kill, cut, freeze, slow, stop)"),
        ("cut", {"cpu": 5}, "fault cut takes no cpu"),
        ("slow", {"cpu": 5, "service": "x"}, "fault slow takes no service (only cpu)"),
        ("slow", {}, "fault slow needs cpu (a percentage of one CPU, 1..100)"),
        ("stop", {"service": None}, "fault stop needs service (a program of the host's: supervisord's, or a systemd unit on a full system)"),
        ("stop", {"service": "a b"}, "bad program name 'a b'"),
    ]
    for kind, params, message in cases:
        with pytest.raises(LabError) as info:
            faults.check_params(kind, params)
        assert str(info.value) == message


def test_cgroups_are_named_after_lab_and_host():
    assert faults.cgroup_name("pfinal", "s1") == "quizstack-pfinal-s1"
    assert faults.cgroup_path("/sys/fs/cgroup/freezer", "t1", "nas-2") == "/sys/fs/cgroup/freezer/quizstack-t1-nas-2"
    assert faults.cgroup_path("/sys/fs/cgroup", "t1", "s1") == "/sys/fs/cgroup/quizstack-t1-s1"


def test_cpu_quota_is_a_share_of_one_period():
    assert faults.CFS_PERIOD_US == 100_000
    assert faults.cpu_quota_us(20) == 20_000
    assert faults.cpu_quota_us(100) == 100_000


def test_links_are_switched_on_the_bridge_side():
    topo = load_scenario("pfinal")
    assert faults.link_batch(topo.host("s1"), up=False) == "link set s1-0 down\nlink set s1-1 down\n"
    assert faults.link_batch(topo.host("c1"), up=True) == "link set c1-0 up\n"


def test_heal_thaws_first_and_starts_programs_last():
    active = [
        {"kind": "stop", "host": "s1", "service": "web"},
        {"kind": "kill", "host": "s2"},
        {"kind": "cut", "host": "c1"},
        {"kind": "slow", "host": "s3", "cpu": 20},
        {"kind": "freeze", "host": "lb"},
    ]
    steps = faults.heal_plan(active)
    assert [(step, [f["host"] for f in group]) for step, group in steps] == [
        ("thaw", ["lb"]), ("unslow", ["s3"]), ("links", ["s2", "c1"]), ("boot", ["s2"]), ("start", ["s1"]),
    ]
    assert faults.heal_plan([]) == []
    assert [step for step, _ in faults.heal_plan([{"kind": "cut", "host": "c1"}])] == ["links"]


def test_state_records_faults_and_removes_healed_cgroups():
    st = state.new_state("t1", "pfinal", "/x/pfinal.toml")
    assert st["faults"] == []
    cgroup = {"kind": "cgroup", "controller": "freezer", "path": "/sys/fs/cgroup/freezer/quizstack-t1-s1"}
    for entry in ({"kind": "netns", "name": "qs-t1"}, {"kind": "init", "host": "s1"}, cgroup):
        state.add_created(st, entry)
    assert state.teardown_order(st) == [{"kind": "init", "host": "s1"}, cgroup,
                                        {"kind": "netns", "name": "qs-t1"}]
    assert state.remove_created(st, cgroup)
    assert not state.remove_created(st, cgroup)
    assert state.created(st, "cgroup") == []

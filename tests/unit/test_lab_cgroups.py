"""Cgroup layouts, on fake cgroup file systems: what is detected, what a fault
would use, what it says when something is missing, and which files get written.

Each fake machine is a folder standing for /sys/fs/cgroup plus a mounts file
like /proc/self/mounts; tests/lab/test_faults.py does the same for real.
"""

import os
import subprocess
import threading
import time
import types

import pytest

from quizstack.errors import LabError
from quizstack.lab import cgroups, faults, state, system

V1 = ("cpu", "cpuacct", "freezer", "memory", "pids")
V2_CONTROLLERS = "cpuset cpu io memory pids"


def fake_machine(tmp_path, kind, v2_controllers=V2_CONTROLLERS, child_files=("cgroup.freeze", "cgroup.kill")):
    """A cgroup file system of the given layout under tmp_path/cgroup; returns (root, mounts file)."""
    root = tmp_path / "cgroup"
    root.mkdir()
    lines = ["proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0",
             "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0"]
    if kind in ("v1", "hybrid"):
        lines.append(f"tmpfs {root} tmpfs ro,nosuid,nodev,noexec,mode=755 0 0")
        for name in V1 + ("systemd",):
            hierarchy = root / name
            hierarchy.mkdir()
            (hierarchy / "cgroup.procs").write_text("1\n")
            option = "name=systemd" if name == "systemd" else name
            lines.append(f"cgroup {hierarchy} cgroup rw,nosuid,nodev,noexec,relatime,{option} 0 0")
    if kind in ("v2", "hybrid"):
        v2 = root if kind == "v2" else root / "unified"
        v2.mkdir(exist_ok=True)
        (v2 / "cgroup.controllers").write_text(v2_controllers + "\n")
        (v2 / "cgroup.subtree_control").write_text("\n")
        (v2 / "cgroup.procs").write_text("1\n")
        child = v2 / "init.scope"       # what any running system has; shows the kernel's files
        child.mkdir()
        for name in child_files:
            (child / name).write_text("0\n")
        lines.append(f"cgroup2 {v2} cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0")
    mounts = tmp_path / "mounts"
    mounts.write_text("\n".join(lines) + "\n")
    return str(root), str(mounts)


@pytest.fixture(autouse=True)
def unforced(monkeypatch):
    monkeypatch.delenv(cgroups.ENV, raising=False)


@pytest.fixture
def written(monkeypatch):
    """Every cgroup file write, in order, as (path, value); the files are written too."""
    log = []

    def write(path, value):
        log.append((str(path), value))
        with open(path, "r+") as f:
            if path.endswith("cgroup.subtree_control"):     # as the kernel shows it: the enabled ones
                value = " ".join(f.read().split() + [value.removeprefix("+")])
                f.seek(0)
            f.write(value)
            f.truncate()

    monkeypatch.setattr(cgroups, "write", write)
    return log


# -- detection ------------------------------------------------------------------------


def test_a_v1_machine_has_its_controllers_and_no_v2(tmp_path):
    root, mounts = fake_machine(tmp_path, "v1")
    layout = cgroups.detect(root, mounts)
    assert layout.kind == "v1" and layout.v2 is None and layout.v2_controllers == frozenset()
    assert layout.v1 == {**{c: f"{root}/{c}" for c in V1}, "name=systemd": f"{root}/systemd"}
    assert (layout.mechanism("freeze"), layout.mechanism("slow")) == ("v1", "v1")
    assert not layout.cgroup_kill
    assert [layout.missing(k) for k in ("freeze", "slow", "kill", "cut")] == [None] * 4


def test_a_v2_machine_has_the_unified_hierarchy_at_the_root(tmp_path):
    root, mounts = fake_machine(tmp_path, "v2")
    layout = cgroups.detect(root, mounts)
    assert layout.kind == "v2" and layout.v2 == root and layout.v1 == {}
    assert layout.v2_controllers == {"cpuset", "cpu", "io", "memory", "pids"}
    assert layout.v2_freeze and layout.v2_kill and layout.cgroup_kill
    assert (layout.mechanism("freeze"), layout.mechanism("slow")) == ("v2", "v2")
    assert [layout.missing(k) for k in ("freeze", "slow", "kill")] == [None] * 3


def test_a_hybrid_machine_uses_its_v1_controllers_and_kills_through_v2(tmp_path):
    root, mounts = fake_machine(tmp_path, "hybrid", v2_controllers="hugetlb")
    layout = cgroups.detect(root, mounts)
    assert layout.kind == "hybrid" and layout.v2 == f"{root}/unified"
    assert layout.v2_controllers == {"hugetlb"} and layout.v1["freezer"] == f"{root}/freezer"
    assert (layout.mechanism("freeze"), layout.mechanism("slow")) == ("v1", "v1")
    assert layout.cgroup_kill


def test_co_mounted_controllers_and_escaped_mount_points_are_read_as_the_kernel_means_them(tmp_path):
    root = tmp_path / "cg root"
    (root / "cpu,cpuacct").mkdir(parents=True)
    escaped = str(root).replace(" ", "\\040")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup {escaped}/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0\n"
                      f"cgroup /elsewhere/freezer cgroup rw,freezer 0 0\n")
    layout = cgroups.detect(str(root), str(mounts))
    assert layout.v1 == {"cpu": f"{root}/cpu,cpuacct", "cpuacct": f"{root}/cpu,cpuacct"}
    assert layout.kind == "v1" and layout.mechanism("slow") == "v1"
    # A freezer mounted outside the root is not this machine's layout.
    assert layout.mechanism("freeze") is None


def test_without_any_cgroup_file_system_freeze_and_slow_say_what_they_need(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\n")
    layout = cgroups.detect("/sys/fs/cgroup", str(mounts))
    assert layout.kind == "none"
    assert layout.missing("freeze") == (
        "fault freeze needs a freezer: neither the cgroup v1 freezer hierarchy (/sys/fs/cgroup/freezer) "
        "nor a cgroup v2 hierarchy (none is mounted under /sys/fs/cgroup)")
    assert layout.missing("slow") == (
        "fault slow needs a cpu controller: neither the cgroup v1 cpu hierarchy (/sys/fs/cgroup/cpu) "
        "nor a cgroup v2 hierarchy (none is mounted under /sys/fs/cgroup)")
    assert layout.missing("kill") is None


def test_a_v2_machine_without_the_cpu_controller_refuses_slow_naming_what_it_offers(tmp_path):
    root, mounts = fake_machine(tmp_path, "v2", v2_controllers="")
    layout = cgroups.detect(root, mounts)
    assert layout.mechanism("slow") is None and layout.mechanism("freeze") == "v2"
    assert layout.missing("slow") == (
        f"fault slow needs a cpu controller: neither the cgroup v1 cpu hierarchy ({root}/cpu) "
        f"nor cpu in the cgroup v2 root's cgroup.controllers ({root}/cgroup.controllers: none)")


def test_a_kernel_without_cgroup_freeze_is_named(tmp_path):
    root, mounts = fake_machine(tmp_path, "v2", child_files=())
    layout = cgroups.detect(root, mounts)
    assert not layout.v2_freeze and not layout.v2_kill and not layout.cgroup_kill
    assert layout.missing("freeze") == (
        f"fault freeze needs a freezer: neither the cgroup v1 freezer hierarchy ({root}/freezer) "
        f"nor cgroup.freeze in the cgroup v2 hierarchy at {root} (Linux 5.2 or later)")
    assert layout.missing("kill") is None      # SIGKILL per process instead


def test_with_no_child_cgroup_to_look_at_the_kernel_release_decides(tmp_path, monkeypatch):
    root, mounts = fake_machine(tmp_path, "v2")
    for name in os.listdir(f"{root}/init.scope"):
        os.remove(f"{root}/init.scope/{name}")
    os.rmdir(f"{root}/init.scope")
    monkeypatch.setattr(cgroups, "kernel_release", lambda: (5, 10))
    layout = cgroups.detect(root, mounts)
    assert layout.v2_freeze and not layout.v2_kill


# -- QUIZSTACK_CGROUP --------------------------------------------------------------------


def test_forcing_v2_on_a_hybrid_machine_freezes_through_unified_and_refuses_slow(tmp_path, monkeypatch):
    root, mounts = fake_machine(tmp_path, "hybrid", v2_controllers="hugetlb")
    monkeypatch.setenv("QUIZSTACK_CGROUP", "v2")
    layout = cgroups.detect(root, mounts)
    assert layout.forced == "v2"
    assert layout.mechanism("freeze") == "v2" and layout.missing("freeze") is None
    assert layout.mechanism("slow") is None
    assert layout.missing("slow") == (
        f"QUIZSTACK_CGROUP=v2 chooses cgroup v2, and fault slow needs cpu in the cgroup v2 root's "
        f"cgroup.controllers ({root}/unified/cgroup.controllers: hugetlb); "
        f"the cpu controller is held by the v1 hierarchy at {root}/cpu")


def test_forcing_v1_on_a_v2_machine_refuses_freeze_and_turns_cgroup_kill_off(tmp_path, monkeypatch):
    root, mounts = fake_machine(tmp_path, "v2")
    monkeypatch.setenv("QUIZSTACK_CGROUP", "v1")
    layout = cgroups.detect(root, mounts)
    assert layout.mechanism("freeze") is None and not layout.cgroup_kill
    assert layout.missing("freeze") == (
        f"QUIZSTACK_CGROUP=v1 chooses cgroup v1, and fault freeze needs the cgroup v1 freezer "
        f"hierarchy ({root}/freezer), which is not mounted")


def test_forcing_an_unknown_version_refuses_every_cgroup_fault(tmp_path, monkeypatch):
    root, mounts = fake_machine(tmp_path, "hybrid")
    monkeypatch.setenv("QUIZSTACK_CGROUP", "v3")
    layout = cgroups.detect(root, mounts)
    message = ("QUIZSTACK_CGROUP='v3' is not a cgroup version this project knows "
               "(v1 or v2; unset: the v1 controllers where mounted, else v2)")
    assert [layout.missing(k) for k in ("freeze", "slow", "kill")] == [message] * 3
    assert layout.missing("cut") is None


# -- the records a fault writes -------------------------------------------------------------


def test_fault_records_follow_the_layout(tmp_path, monkeypatch):
    root, mounts = fake_machine(tmp_path, "hybrid", v2_controllers="hugetlb")
    hybrid = cgroups.detect(root, mounts)
    assert faults.cgroup_entry(hybrid, "t1", "freeze", "s1") == {
        "kind": "cgroup", "controller": "freezer", "path": f"{root}/freezer/quizstack-t1-s1",
        "host": "s1", "fault": "freeze"}
    slow = faults.cgroup_entry(hybrid, "t1", "slow", "s1", system_host=True)
    assert slow["path"] == f"{root}/cpu/quizstack-t1-s1"      # v1: a full system's processes move in too
    monkeypatch.setenv("QUIZSTACK_CGROUP", "v2")
    forced = cgroups.detect(root, mounts)
    assert faults.cgroup_entry(forced, "t1", "freeze", "s1", home=f"{root}/unified/user.slice") == {
        "kind": "cgroup", "controller": "v2", "path": f"{root}/unified/quizstack-t1-s1",
        "host": "s1", "fault": "freeze", "home": f"{root}/unified/user.slice"}
    # A full system is frozen where its keeper put it.
    assert faults.cgroup_entry(forced, "t1", "freeze", "bbdd", system_host=True) == {
        "kind": "cgroup", "controller": "v2", "path": f"{root}/unified/quizstack/t1/bbdd",
        "host": "bbdd", "fault": "freeze", "in_place": True}
    with pytest.raises(LabError, match=r"^QUIZSTACK_CGROUP=v2 chooses cgroup v2, and fault slow needs cpu"):
        faults.cgroup_entry(forced, "t1", "slow", "s1")


def test_a_v2_namespace_host_goes_home_to_the_v2_root_when_nothing_else_is_known(tmp_path):
    root, mounts = fake_machine(tmp_path, "v2")
    entry = faults.cgroup_entry(cgroups.detect(root, mounts), "t1", "slow", "s1")
    assert entry["path"] == f"{root}/quizstack-t1-s1" and entry["home"] == root


def test_records_of_earlier_versions_are_still_understood():
    assert faults.fault_of("t1", {"kind": "cgroup", "controller": "freezer",
                                  "path": "/sys/fs/cgroup/freezer/quizstack-t1-nas-2"}) == ("freeze", "nas-2")
    assert faults.fault_of("t1", {"kind": "cgroup", "controller": "cpu",
                                  "path": "/sys/fs/cgroup/cpu/quizstack-t1-s1"}) == ("slow", "s1")
    assert faults.fault_of("t1", {"kind": "cgroup", "controller": "v2", "fault": "slow", "host": "s1",
                                  "path": "/sys/fs/cgroup/quizstack-t1-s1",
                                  "home": "/sys/fs/cgroup"}) == ("slow", "s1")


def test_the_process_cgroup_is_read_from_the_v2_line(tmp_path):
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text("9:name=systemd:/x\n4:memory:/y\n0::/user.slice/session-1.scope\n")
    (proc / "43").mkdir()
    (proc / "43" / "cgroup").write_text("0::/\n")
    assert cgroups.cgroup_of(42, "/sys/fs/cgroup", str(proc)) == "/sys/fs/cgroup/user.slice/session-1.scope"
    assert cgroups.cgroup_of(43, "/sys/fs/cgroup/unified", str(proc)) == "/sys/fs/cgroup/unified"
    assert cgroups.cgroup_of(44, "/sys/fs/cgroup", str(proc)) is None


def test_full_system_keepers_join_every_hierarchy_nspawn_uses(tmp_path):
    for kind, expected in (("v1", ["systemd"]), ("v2", []), ("hybrid", ["unified", "systemd"])):
        machine = tmp_path / kind
        machine.mkdir()
        root, mounts = fake_machine(machine, kind)
        roots = system.cgroup_roots(cgroups.detect(root, mounts))
        assert roots == ([f"{root}/{d}" for d in expected] or [root]), kind


# -- the operations, on the files ------------------------------------------------------------


def make_cgroup(path, **files):
    os.makedirs(path)
    for name, text in files.items():
        with open(os.path.join(path, name.replace("__", ".")), "w") as f:
            f.write(text)
    return str(path)


def test_v2_freeze_writes_cgroup_freeze_and_waits_for_the_kernel_to_say_frozen(tmp_path, written):
    path = make_cgroup(tmp_path / "quizstack-t1-s1", cgroup__freeze="0", cgroup__events="populated 1\nfrozen 0\n")
    # The kernel stops the tasks a moment later.
    later = threading.Timer(0.1, lambda: open(f"{path}/cgroup.events", "w").write("populated 1\nfrozen 1\n"))
    started = time.monotonic()
    later.start()
    cgroups.freeze(path, timeout=5)
    assert time.monotonic() - started >= 0.1
    assert written == [(f"{path}/cgroup.freeze", "1")]
    cgroups.thaw(path)
    assert written[-1] == (f"{path}/cgroup.freeze", "0")


def test_a_v2_freeze_that_does_not_happen_says_what_it_last_saw(tmp_path, written):
    path = make_cgroup(tmp_path / "stuck", cgroup__freeze="0", cgroup__events="populated 1\nfrozen 0\n")
    with pytest.raises(LabError, match=r"^\S+/stuck did not freeze in 0.2 s \(frozen 0\): "
                                        r"a process stuck in the kernel\?$"):
        cgroups.freeze(path, timeout=0.2)


def test_v1_freeze_writes_freezer_state(tmp_path, written):
    path = make_cgroup(tmp_path / "quizstack-t1-s1", freezer__state="THAWED")
    cgroups.freeze(path)
    cgroups.thaw(path)
    assert written == [(f"{path}/freezer.state", "FROZEN"), (f"{path}/freezer.state", "THAWED")]
    with pytest.raises(LabError, match="neither cgroup.freeze .* nor freezer.state"):
        cgroups.freeze(make_cgroup(tmp_path / "plain"))
    cgroups.thaw(str(tmp_path / "gone"))          # nothing to do, no error


def test_cpu_limits_in_both_versions(tmp_path, written):
    v1 = make_cgroup(tmp_path / "v1", cpu__cfs_period_us="100000", cpu__cfs_quota_us="-1")
    v2 = make_cgroup(tmp_path / "v2", cpu__max="max 100000")
    cgroups.limit_cpu(v1, 20_000, 100_000)
    cgroups.limit_cpu(v2, 20_000, 100_000)
    cgroups.unlimit_cpu(v1)
    cgroups.unlimit_cpu(v2)
    assert written == [(f"{v1}/cpu.cfs_period_us", "100000"), (f"{v1}/cpu.cfs_quota_us", "20000"),
                       (f"{v2}/cpu.max", "20000 100000"),
                       (f"{v1}/cpu.cfs_quota_us", "-1"), (f"{v2}/cpu.max", "max")]


def test_the_cpu_controller_is_enabled_down_from_the_root(tmp_path, written):
    root = make_cgroup(tmp_path / "v2", cgroup__controllers="cpu memory", cgroup__subtree_control="memory")
    make_cgroup(f"{root}/quizstack", cgroup__controllers="memory", cgroup__subtree_control="")
    make_cgroup(f"{root}/quizstack/t1", cgroup__controllers="", cgroup__subtree_control="cpu")
    cgroups.enable("cpu", root, f"{root}/quizstack/t1/bbdd")
    assert written == [(f"{root}/cgroup.subtree_control", "+cpu"),
                       (f"{root}/quizstack/cgroup.subtree_control", "+cpu")]
    written.clear()
    cgroups.enable("cpu", root, f"{root}/quizstack-t1-s1")     # enabled already at the root
    assert written == []


def test_enabling_a_controller_the_root_does_not_offer_is_refused(tmp_path, written):
    root = make_cgroup(tmp_path / "unified", cgroup__controllers="hugetlb", cgroup__subtree_control="")
    with pytest.raises(LabError, match=r"^the cgroup v2 root offers no cpu controller "
                                        r"\(\S+/unified/cgroup.controllers: hugetlb\)$"):
        cgroups.enable("cpu", root, f"{root}/quizstack-t1-s1")
    assert written == []


def test_kill_writes_cgroup_kill_where_there_is_one(tmp_path, written):
    path = make_cgroup(tmp_path / "keeper", cgroup__kill="0", cgroup__procs="")
    cgroups.kill(path)
    assert written == [(f"{path}/cgroup.kill", "1")]


@pytest.mark.parametrize("has_file", [False, True])
def test_without_cgroup_kill_each_member_gets_sigkill(tmp_path, written, has_file):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        path = make_cgroup(tmp_path / "keeper", cgroup__procs="")
        if has_file:
            (tmp_path / "keeper" / "cgroup.kill").write_text("0")
        make_cgroup(f"{path}/payload", cgroup__procs=f"{sleeper.pid}\n")
        cgroups.kill(path, use_file=False)
        assert sleeper.wait(timeout=5) == -9
        assert written == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_remove_tolerates_a_cgroup_never_made(tmp_path):
    assert cgroups.remove(str(tmp_path / "never")) is False
    os.mkdir(tmp_path / "empty")
    assert cgroups.remove(str(tmp_path / "empty"), home=str(tmp_path / "gone")) is True
    assert not (tmp_path / "empty").exists()


def test_a_v2_cgroup_shared_by_freeze_and_slow_goes_with_the_last_of_them(tmp_path, written, monkeypatch):
    path = make_cgroup(tmp_path / "quizstack-t1-s1", cgroup__freeze="1", cpu__max="20000 100000")
    removed = []
    monkeypatch.setattr(cgroups, "remove", lambda p, home=None, timeout=0: removed.append((p, home)) or True)
    st = state.new_state("t1", "x", "x.toml")
    freeze = {"kind": "cgroup", "controller": "v2", "path": path, "host": "s1", "fault": "freeze",
              "home": f"{tmp_path}/user.slice"}
    for entry in (freeze, dict(freeze, fault="slow")):
        state.add_created(st, entry)
    lab = types.SimpleNamespace(name="t1")
    faults.thaw_all(st)
    assert written == [(f"{path}/cgroup.freeze", "0")]
    assert faults.remove_cgroups(lab, st) == 1
    assert written[1:] == [(f"{path}/cgroup.freeze", "0"), (f"{path}/cpu.max", "max")]
    assert removed == [(path, f"{tmp_path}/user.slice")]
    assert state.created(st, "cgroup") == []


def test_a_full_systems_keeper_cgroup_is_thawed_in_place_and_never_removed(tmp_path, written, monkeypatch):
    path = make_cgroup(tmp_path / "quizstack" / "t1" / "bbdd", cgroup__freeze="1")
    monkeypatch.setattr(cgroups, "remove", lambda *a, **k: pytest.fail("the keeper's cgroup is not a fault's"))
    st = state.new_state("t1", "x", "x.toml")
    state.add_created(st, {"kind": "cgroup", "controller": "v2", "path": path, "host": "bbdd",
                           "fault": "freeze", "in_place": True})
    assert faults.remove_cgroups(types.SimpleNamespace(name="t1"), st) == 0
    assert written == [(f"{path}/cgroup.freeze", "0")] and os.path.isdir(path)
    assert state.created(st, "cgroup") == []


def test_a_cgroup_is_found_by_name_under_every_hierarchy(tmp_path):
    from quizstack.lab.cgroups import Layout

    for d in ("unified/x", "freezer/x", "cpu,cpuacct", "cpu,cpuacct/x", "memory"):
        (tmp_path / d).mkdir(parents=True)
    layout = Layout(kind="hybrid", root=str(tmp_path), v2=str(tmp_path / "unified"),
                    v1={"freezer": str(tmp_path / "freezer"), "cpu": str(tmp_path / "cpu,cpuacct"),
                        "cpuacct": str(tmp_path / "cpu,cpuacct"), "memory": str(tmp_path / "memory")})
    assert layout.hierarchies()[0] == str(tmp_path / "unified")
    assert len(layout.hierarchies()) == 4
    assert layout.named("x") == [str(tmp_path / p) for p in ("unified/x", "cpu,cpuacct/x", "freezer/x")]
    assert Layout(kind="v2", root=str(tmp_path), v2=str(tmp_path)).named("unified") == [str(tmp_path / "unified")]

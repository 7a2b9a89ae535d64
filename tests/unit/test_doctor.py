"""`quizstack doctor`: the judges on captured text, and what the command line makes of them (no root)."""

import json
import os
from types import SimpleNamespace

import pytest

from quizstack import cli, doctor
from quizstack.doctor import MISSING, OK, WARN, Item, Result
from quizstack.topology import load_scenario

BOOKWORM = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""
TRIXIE = """\
PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
NAME="Debian GNU/Linux"
VERSION_ID="13"
VERSION="13 (trixie)"
VERSION_CODENAME=trixie
DEBIAN_VERSION_FULL=13.1
ID=debian
"""
UBUNTU = """\
PRETTY_NAME="Ubuntu 24.04.2 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.2 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
"""
FILESYSTEMS_WITHOUT_OVERLAY = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n\text4\nnodev\tfuse\n"


def test_debian_12_and_13_are_supported_and_anything_else_is_a_warning_saying_so():
    assert doctor.judge_release(BOOKWORM) == Result("Debian", OK, "Debian 12 (bookworm)")
    assert doctor.judge_release(TRIXIE) == Result("Debian", OK, "Debian 13 (trixie)")
    ubuntu = doctor.judge_release(UBUNTU)
    assert ubuntu.status == WARN and ubuntu.detail.startswith("Ubuntu 24.04.2 LTS: not Debian")
    sid = doctor.judge_release('PRETTY_NAME="Debian GNU/Linux forky/sid"\nID=debian\n')
    assert sid.status == WARN and "Debian 12 and 13 only" in sid.detail
    assert doctor.judge_release(None).status == WARN


@pytest.mark.parametrize("text, version", [
    ("nftables v1.0.6 (Lester Gooch #5)", (1, 0, 6)),
    ("nftables v1.1.3 (Commodore Bullmoose #4)", (1, 1, 3)),
    ("nftables v0.9.8 (E.D.S.)", (0, 9, 8)),
])
def test_nft_versions(text, version):
    assert doctor.nft_version(text) == version


@pytest.mark.parametrize("text, version", [
    ("ip utility, iproute2-6.1.0, libbpf 1.1.0", (6, 1, 0)),
    ("ip utility, iproute2-6.15.0, libbpf 1.5.0", (6, 15, 0)),
    ("ip utility, iproute2-ss190107", None),
])
def test_iproute2_versions(text, version):
    assert doctor.iproute2_version(text) == version


def test_versions_judged_present_tested_older_or_absent():
    assert doctor.judge_nftables("nftables v1.0.6 (Lester Gooch #5)\n").status == OK
    assert doctor.judge_nftables("nftables v1.1.3 (Commodore Bullmoose #4)\n").detail.startswith("1.1.3")
    old = doctor.judge_nftables("nftables v0.9.8 (E.D.S.)")
    assert old.status == WARN and "older than Debian 12's 1.0.6" in old.detail
    absent = doctor.judge_nftables(None)
    assert absent.status == MISSING and absent.fix.startswith("apt-get install nftables")
    assert doctor.judge_iproute2("ip utility, iproute2-6.15.0, libbpf 1.5.0").status == OK
    assert doctor.judge_iproute2("ip utility, iproute2-ss190107").status == WARN
    assert doctor.judge_iproute2(None).status == MISSING


def test_overlayfs_missing_from_proc_filesystems_unless_a_module_brings_it():
    result = doctor.judge_overlay(FILESYSTEMS_WITHOUT_OVERLAY)
    assert result.status == MISSING and "modprobe overlay" in result.fix
    assert doctor.judge_overlay(FILESYSTEMS_WITHOUT_OVERLAY + "nodev\toverlay\n").status == OK
    dep = "kernel/fs/overlayfs/overlay.ko.xz:\nkernel/fs/fuse/fuse.ko.xz:\n"
    assert doctor.judge_overlay(FILESYSTEMS_WITHOUT_OVERLAY, dep).status == OK
    assert doctor.judge_fuse(False, "").status == MISSING
    assert doctor.judge_fuse(True).status == OK


def test_a_refused_bridge_or_veth_names_the_kernel_feature():
    # What ip prints when the kernel knows no such link type (the veth line, 2).
    output = ("Error: Unknown device type.\nCommand failed -:2\n"
              "Cannot find device \"qsdoctor-v0\"\nCommand failed -:3\n")
    assert doctor.batch_failures(output) == {2: "Error: Unknown device type.",
                                             3: 'Cannot find device "qsdoctor-v0"'}
    veth = doctor.judge_link("veth", (1, output))
    assert veth.status == MISSING and "Unknown device type" in veth.detail and "CONFIG_VETH" in veth.fix
    # The veth's absence also fails the attach line: not the bridge's fault.
    assert doctor.judge_link("bridge", (1, output)).status == OK
    bridge = doctor.judge_link("bridge", (1, "Error: Unknown device type.\nCommand failed -:1\n"))
    assert bridge.status == MISSING and "modprobe bridge" in bridge.fix
    assert doctor.judge_link("bridge", (0, "")).status == OK
    assert doctor.judge_link("bridge", None).status == WARN          # not root: not tried


def test_a_refused_firewall_ruleset_says_what_nft_said():
    output = ('/dev/stdin:14:9-99: Error: Could not process rule: No such file or directory\n'
              '        meta pkttype host limit rate 10/second burst 20 packets log prefix "x" group 1\n'
              '        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n')
    result = doctor.judge_nf_tables((1, output))
    assert result.status == MISSING
    assert result.detail.startswith("the kernel refused a firewall ruleset: Could not process rule: "
                                    "No such file or directory: `meta pkttype host")
    assert doctor.judge_nf_tables((0, "")).status == OK


def test_setup_sh_lists_every_package_the_deployment_needs():
    listed = doctor.setup_sh_packages(doctor.SETUP_SH.read_text())
    assert set(doctor.up_packages()) <= set(listed)
    assert "chromium" in listed and "chromium" not in doctor.up_packages()


def test_missing_packages_are_one_line_and_the_fix_is_setup_sh():
    wanted = ["python3", "postgresql", "haproxy", "supervisor"]
    result = doctor.judge_packages(wanted, wanted + ["chromium", "wrk"], {"python3", "wrk"}, True)
    assert result == Result("packages", MISSING, "not installed: postgresql, haproxy, supervisor "
                            "(and, for the tests and exports, chromium)", "run ./setup.sh")
    only_extra = doctor.judge_packages(wanted, wanted + ["chromium"], set(wanted), True)
    assert only_extra.status == WARN and only_extra.detail.endswith("chromium")
    without_setup = doctor.judge_packages(wanted, [], {"python3", "haproxy", "supervisor"}, False)
    assert without_setup.fix == "apt-get install --no-install-recommends postgresql"
    assert doctor.judge_packages(wanted, [], set(wanted), False).status == OK


def test_lock_layouts():
    assert doctor.judge_locks(True, "symlink", "/run/lock").detail == "/var/lock -> /run/lock"
    assert doctor.judge_locks(True, "dir", None).status == OK
    assert doctor.judge_locks(False, "symlink", None).fix == "mkdir -m 1777 /run/lock"
    assert doctor.judge_locks(True, "absent", None).fix == "ln -s /run/lock /var/lock"
    shared = doctor.judge_locks(True, "symlink", "/srv/locks")
    assert shared.status == MISSING and "share the machine's lock files" in shared.detail


def test_a_missing_cgroup_controller_is_a_warning_naming_it():
    class Layout:
        kind = "v2"

        def missing(self, fault):
            return {"slow": "fault slow needs a cpu controller: neither ... nor ..."}.get(fault)

    result = doctor.judge_cgroups(Layout())
    assert result.status == WARN and result.detail.startswith("v2: slow: fault slow needs a cpu controller")
    whole = SimpleNamespace(kind="hybrid", missing=lambda fault: None)
    assert doctor.judge_cgroups(whole) == Result("cgroups", OK, "hybrid: what the faults freeze, "
                                                                "slow and kill need")


def test_python_and_namespace_limits():
    assert doctor.judge_python((3, 11, 2), "/usr").status == OK
    assert doctor.judge_python((3, 9, 2), "/usr").status == MISSING
    assert doctor.judge_python((3, 12, 1), "/root/.pyenv/versions/3.12.1").status == WARN
    low = doctor.judge_namespaces(set(doctor.NAMESPACES), {"net": 10, "pid": None})
    assert low.status == MISSING and low.fix == "sysctl -w user.max_net_namespaces=10000"
    assert doctor.judge_namespaces({"net", "mnt"}, {}).detail.startswith("no uts, ipc, pid namespaces")


def test_the_port_held_by_someone_else_is_a_warning_naming_them():
    ss = 'LISTEN 0 128 127.0.0.1:8080 0.0.0.0:* users:(("python3",pid=4242,fd=3))\n'
    held = doctor.judge_port(8080, False, None, ss)
    assert held.status == WARN and "python3 (pid 4242)" in held.detail and "--port" in held.fix
    assert doctor.judge_port(8080, False, "complete").detail == "127.0.0.1:8080 is lab complete's forward"


# -- the command line ------------------------------------------------------------------


def _item(name, status, essential=True, fix=None):
    return Item(name, lambda m: Result(name, status, f"{name} {status}", fix), essential)


def test_doctor_prints_one_line_per_item_and_fails_on_a_missing_one(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "ITEMS", [
        _item("root", OK), _item("overlayfs", MISSING, fix="modprobe overlay"),
        _item("cgroups", WARN, essential=False, fix="see docs")])
    assert cli.main(["doctor"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  ok       root       root ok",
                     "  MISSING  overlayfs  overlayfs missing; fix: modprobe overlay",
                     "  warn     cgroups    cgroups warn; fix: see docs",
                     "doctor: 1 ok, 1 warning(s), 1 missing"]
    assert cli.main(["doctor", "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert found[1] == {"name": "overlayfs", "status": "missing", "detail": "overlayfs missing",
                        "fix": "modprobe overlay"}


def test_warnings_alone_exit_0(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "ITEMS", [_item("root", OK), _item("port 8080", WARN, essential=False)])
    assert cli.main(["doctor"]) == 0


def test_up_refuses_before_anything_starts_with_every_missing_line(monkeypatch, capsys, tmp_path):
    from quizstack import stack

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("QUIZSTACK_STATE_ROOT", str(tmp_path))
    monkeypatch.setattr(stack, "up", lambda *a, **k: pytest.fail("up started"))
    monkeypatch.setattr(doctor, "ITEMS", [
        _item("root", OK), _item("veth", MISSING, fix="modprobe veth"),
        _item("packages", MISSING, fix="run ./setup.sh"),
        _item("slow", MISSING, essential=False), _item("port 8080", WARN, essential=False)])
    assert cli.main(["up", "--lab", "never"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("quizstack: this machine lacks what the lab needs")
    assert "\n  veth: veth missing; fix: modprobe veth\n" in err
    assert "\n  packages: packages missing; fix: run ./setup.sh" in err
    assert "slow" not in err and "port 8080" not in err          # not up's essentials
    assert not (tmp_path / "never").exists()


def test_full_system_hosts_make_their_tools_essential(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(doctor, "ITEMS", [_item("root", OK)])
    monkeypatch.setattr(doctor, "check_full_systems",
                        lambda m: Result("full-system hosts", WARN, "no mmdebstrap",
                                         "apt-get install mmdebstrap"))
    doctor.require(load_scenario("complete"))                      # namespace hosts only
    with pytest.raises(doctor.QuizstackError, match="full-system hosts: no mmdebstrap"):
        doctor.require(load_scenario("systems"))

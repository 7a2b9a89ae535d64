"""`quizstack doctor` on this machine, as root: setup.sh prepared it, so nothing is missing,
and its tries in throwaway namespaces leave nothing behind in the machine's own."""

import os
import subprocess

import pytest

from quizstack import cli, doctor
from quizstack.topology import load_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the doctor's tries need root (namespaces)")


def _machine_network():
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    names = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    return [line.split(":")[1].strip() for line in links.stdout.splitlines()], names


def test_doctor_finds_nothing_missing_on_a_machine_setup_sh_prepared(capsys):
    before = _machine_network()
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == len(doctor.ITEMS) + 1 and lines[-1].endswith(" 0 missing")
    assert "MISSING" not in out
    for item in ("bridge", "veth", "nf_tables"):
        assert any(line.split()[:2] == ["ok", item] for line in lines), out
    # The bridge, veth and ruleset were made in namespaces that died with their process.
    assert _machine_network() == before


def test_up_finds_its_essentials_here():
    doctor.require(load_scenario("complete"))

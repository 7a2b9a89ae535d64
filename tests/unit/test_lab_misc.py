"""The map's DOT text, process records, and the CLI's one-line errors."""

import os
import shutil
import subprocess

import pytest

from quizstack import cli
from quizstack.lab import procs
from quizstack.topology import load_scenario
from quizstack.topology.graph import to_dot


@pytest.fixture(scope="module")
def dot_text():
    return to_dot(load_scenario("pfinal"))


def test_map_has_networks_hosts_and_addresses(dot_text):
    assert dot_text.startswith('graph "pfinal" {')
    assert '"net:LAN1" [shape=box' in dot_text
    assert 'label="LAN4\\n10.2.4.0/24"' in dot_text
    assert 'label="fw\\nfirewall\\n(forwards)"' in dot_text
    # Edges carry the address; s1 sits between LAN3 and LAN4.
    assert '"net:LAN3" -- "host:s1" [label="eth0 10.2.3.11"];' in dot_text
    assert '"host:s1" -- "net:LAN4" [label="eth1 10.2.4.11"];' in dot_text
    assert '"host:c1" -- "net:LAN1" [label="eth0 10.2.1.11"];' in dot_text
    assert dot_text.count(" -- ") == 16


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_map_is_valid_graphviz(dot_text):
    svg = subprocess.run(["dot", "-Tsvg"], input=dot_text, capture_output=True, text=True, check=True)
    assert "<svg" in svg.stdout and "10.2.4.31" in svg.stdout


def test_map_command_writes_svg(tmp_path, capsys):
    if shutil.which("dot") is None:
        pytest.skip("graphviz not installed")
    out = tmp_path / "pfinal.svg"
    assert cli.main(["map", "pfinal", "--output", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml")
    assert str(out) in capsys.readouterr().out


def test_process_records_of_this_process():
    rec = procs.record(os.getpid())
    assert rec["pid"] == os.getpid() and procs.alive(rec)
    assert not procs.alive(dict(rec, start=rec["start"] + 1))   # a reused pid is not ours
    assert not procs.alive(None)
    assert not procs.is_namespace_init(os.getpid())


def test_bad_scenario_is_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(open(load_scenario("pfinal").source).read().replace('"10.2.4.23"', '"10.2.4.22"'))
    assert cli.main(["up", str(bad), "--lab", "never"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"quizstack: {bad}: host nas3: address 10.2.4.22 already used by nas2"


def test_lab_commands_need_root(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("QUIZSTACK_STATE_ROOT", str(tmp_path))
    assert cli.main(["up", "--lab", "never"]) == 1
    assert capsys.readouterr().err.strip() == "quizstack: the lab needs root (namespaces, mounts)"
    assert cli.main(["--lab", "never", "status"]) == 1
    assert "the lab needs root" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_exec_needs_a_command(capsys):
    assert cli.main(["exec", "c1"]) == 1
    assert "no command given" in capsys.readouterr().err


def test_the_map_of_the_complete_scenario_shows_the_floating_addresses():
    text = to_dot(load_scenario("complete"))
    assert '"vip:lb:LAN2" [shape=diamond' in text and "10.2.2.2" in text
    assert '"vip:fw:LAN1" -- "host:fw2" [style=dashed' in text
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

"""`quizstack scale` on the complete lab, as root, under the chaos load.

Uses the complete lab shared by the lab tests (conftest.py) and leaves it
with its three servers. The load is the chaos experiments' (scripted users
on c1 and c2 through the firewall, reading and writing); every write it was
acknowledged is verified afterwards.
"""

import os

import pytest

from quizstack import cli, scale, stack
from quizstack.chaos import runner
from quizstack.check import parse_haproxy_stat
from quizstack.deploy.plan import build_plan
from quizstack.topology.scale import scaled_text

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")

LOAD = runner.Settings(warmup=2.0, after=2.0, rate=10.0, workers=4, writes=0.15)


def servers_up(lab):
    plan = build_plan(lab.topology)
    seen = {}
    for lb in plan.lb_hosts:
        seen[lb] = parse_haproxy_stat(scale.haproxy_admin(lab, lb, "show stat"), "quiz_servers")
    return seen


def test_a_bad_count_fails_in_one_line_before_anything_changes(complete, capsys):
    lab, _ = complete
    before = lab.scenario_text
    assert cli.main(["scale", "--lab", lab.name, "web=0"]) == 1
    err = capsys.readouterr().err
    assert "web=0: the service needs at least one web host" in err and err.count("\n") == 1
    assert cli.main(["scale", "--lab", lab.name, "web=300"]) == 1
    err = capsys.readouterr().err
    assert "no free address left" in err and err.count("\n") == 1
    assert cli.main(["scale", "--lab", lab.name, "db=2"]) == 1
    assert lab.scenario_text == before
    assert [h.name for h in lab.topology.with_role("web")] == ["s1", "s2", "s3"]


def test_scale_out_and_back_in_under_load_fails_no_request(complete, tmp_path):
    lab, first = complete
    out = scale.under_load(lab, 4, LOAD)
    summary = out["summary"]
    assert out["added"] == ["s4"] and out["lost"] == []
    assert summary["failed"] == 0, summary["kinds"]
    assert "s4" in out["serving_after"] and "s4" in summary["servers"]
    assert all(set(found) == {"s1", "s2", "s3", "s4"} and set(found.values()) == {"UP"}
               for found in servers_up(lab).values())
    assert "[hosts.s4]" in lab.scenario_text

    # The lab knows: stop and start, and a second up, keep four servers.
    lab.stop()
    lab.start()
    port = first.url.rsplit(":", 1)[1].strip("/")
    stack.up(lab, port=port, run_checks=False)
    assert [h.name for h in lab.topology.with_role("web")] == ["s1", "s2", "s3", "s4"]
    assert all(set(found) == {"s1", "s2", "s3", "s4"} for found in servers_up(lab).values())

    # A scenario file with one more server (s5), given to up: converged to.
    text, added, _ = scaled_text(lab.scenario_text, lab.topology, "web", 5)
    assert added == ["s5"]
    path = tmp_path / "five.toml"
    path.write_text(text)
    assert cli.main(["up", str(path), "--lab", lab.name, "--port", port, "--no-check"]) == 0
    assert [h.name for h in lab.topology.with_role("web")] == ["s1", "s2", "s3", "s4", "s5"]
    assert all(set(found) == {"s1", "s2", "s3", "s4", "s5"} for found in servers_up(lab).values())

    back = scale.under_load(lab, 3, LOAD)
    assert back["removed"] == ["s4", "s5"] and back["lost"] == []
    assert back["summary"]["failed"] == 0, back["summary"]["kinds"]
    assert all(set(found) == {"s1", "s2", "s3"} for found in servers_up(lab).values())
    assert "s4" not in lab.status()["hosts"][-1]["name"]
    assert "[hosts.s4]" not in lab.scenario_text
    # Everything still checks out (the round-robin over three again).
    failed = [f"{r.group}: {r.name}: {r.detail}" for r in stack.check_lab(lab, ports=None)
              if not r.ok]
    assert not failed

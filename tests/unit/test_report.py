"""quizstack report: every host with its addresses, packages and files; secrets masked; it follows the scenario."""

import re
from pathlib import Path

import pytest

import quizstack
from quizstack.deploy import packages
from quizstack.deploy.plan import build_plan
from quizstack.report import figures, html, markdown
from quizstack.report.trace import SECRET, trace
from quizstack.topology import load_scenario
from quizstack.topology.scale import scaled_text
from quizstack.topology.loader import scenario_path


@pytest.fixture(scope="module", params=["pfinal", "complete"])
def reported(request):
    topo = load_scenario(request.param)
    return topo, markdown(topo)


def _host_section(text, host):
    return re.search(rf"^### {host}\n(.*?)(?=^### |^## )", text, re.S | re.M).group(1)


def test_every_host_is_listed_with_its_addresses_packages_and_files(reported):
    topo, text = reported
    plan = build_plan(topo)
    phases = trace(plan, topo)
    wanted = packages.per_host(phases)
    for host in topo.hosts.values():
        section = _host_section(text, host.name)
        for iface in host.interfaces:
            assert f"{iface.network} {iface.address} ({iface.name})" in section, host.name
        if "client" in host.roles:
            assert "nothing deployed" in section
            continue
        assert f"`apt-get install {' '.join(wanted[host.name])}`" in section
        files = {f.path for p in phases for h, w in p.work.items() if h == host.name for f in w.files}
        if not files:
            assert "No file of its own" in section, host.name
        for path in files:
            assert f"| `{path}` |" in section, (host.name, path)


def test_the_rendered_files_are_there_with_secrets_masked(reported):
    topo, text = reported
    assert "### /etc/haproxy/haproxy.cfg" in text
    assert "### /etc/nftables.conf" in text
    assert f"DJANGO_SECRET_KEY='{SECRET}'" in text
    assert f"postgresql://quiz:{SECRET}@" in text
    # Nothing of this machine: no checkout path, no real key.
    assert str(Path(quizstack.__file__).resolve().parents[2]) not in text
    assert "PRIVATE KEY-----" not in text


def test_the_steps_follow_the_deployment_order(reported):
    topo, text = reported
    steps = text[text.index("## Installing"):text.index("## Operating")]
    order = [m.group(1) for m in re.finditer(r"^\*\*([a-z]+: [a-z ]+)\*\*", steps, re.M)]
    assert order.index("database: postgresql") < order.index("web: migrate") < order.index("web: gunicorn")
    assert order.index("loadbalancer: haproxy") < order.index("firewall: nftables")
    if topo.name == "complete":
        assert order[-1] == "access: sshd"


def test_the_weak_points_quote_the_measured_figures(reported):
    topo, text = reported
    documented, weak = figures.from_docs()
    assert documented["web-kill"]["failed"] == "0" and weak
    row = next(line for line in text.splitlines() if line.startswith("| `db-kill`"))
    assert documented["db-kill"]["without a saved write s"] in row
    if topo.name == "pfinal":
        assert "| load balancer | lb | the service stops while it is down |" in text


def test_a_labs_chaos_results_take_the_place_of_the_docs(tmp_path):
    run = tmp_path / "chaos" / "20261127-101010-web-kill"
    run.mkdir(parents=True)
    (run / "result.json").write_text('{"experiment": "web-kill", "run": "20261127-101010-web-kill", '
                                     '"summary": {"requests": 500, "failed": 3, "stall": {"seconds": 1.5}, '
                                     '"timings": {"detect": 1.25}, "lost": {"count": 0}}}')
    text = markdown(load_scenario("pfinal"), tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| `web-kill`"))
    assert "| 3 | 1.50 | – | 1.25 | 0 |" in row
    assert "this lab's own chaos runs" in text
    assert "| `lb-kill` | the active load balancer's power cut | not measured |" in text


def test_the_report_follows_the_scenario(tmp_path):
    source = scenario_path("pfinal")
    topo = load_scenario("pfinal")
    bigger = tmp_path / "pfinal.toml"
    bigger.write_text(scaled_text(source.read_text(), topo, "web", 4)[0])
    text = markdown(load_scenario(bigger))
    assert "### s4" in text and "over 4 app servers (s1, s2, s3, s4)" in text
    assert "server s4 10.2.3.14:8000" in text


def test_the_html_has_the_tables_the_code_and_the_picture():
    page = html.to_html("# T\n\n![map](map.svg)\n\n| a | b |\n|---|---|\n| `x<y` | **z** |\n\n"
                        "```\nif a < b:\n```\n\n- one\n- two\n", "T")
    assert '<img src="map.svg" alt="map">' in page
    assert "<td><code>x&lt;y</code></td><td><strong>z</strong></td>" in page
    assert "<pre><code>if a &lt; b:</code></pre>" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page


def test_the_cli_writes_markdown_html_and_the_map(tmp_path, capsys):
    from quizstack.cli import main

    assert main(["report", "pfinal", "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "map.svg", "report.html"]
    assert (tmp_path / "map.svg").read_text().lstrip().startswith("<?xml")
    assert '<img src="map.svg"' in (tmp_path / "report.html").read_text()

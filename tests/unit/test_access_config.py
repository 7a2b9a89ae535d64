"""SSH by keys only: what each host's sshd accepts, and the operators' ssh_config.

Pure renders of the complete plan; the keys are generated into a temporary
folder with ssh-keygen (no root needed).
"""

import os
import shutil
import stat

import pytest

from quizstack.deploy import access, sshkeys
from quizstack.deploy.plan import build_plan
from quizstack.topology import load_scenario

pytestmark = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="ssh-keygen not installed")


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_scenario("complete"))


@pytest.fixture(scope="module")
def keys(plan, tmp_path_factory):
    return sshkeys.load_or_create(tmp_path_factory.mktemp("secrets"), plan.management.addresses)


def options(text):
    return [line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#")]


def test_a_server_listens_on_its_management_address_only_and_takes_keys_only(plan):
    conf = options(access.sshd_conf(plan, "s1"))
    assert ["ListenAddress", "10.2.9.31"] in conf
    assert [o for o in conf if o[0] == "ListenAddress"] == [["ListenAddress", "10.2.9.31"]]
    for wanted in (["PasswordAuthentication", "no"], ["KbdInteractiveAuthentication", "no"],
                   ["PermitRootLogin", "prohibit-password"], ["AllowTcpForwarding", "no"],
                   ["AuthorizedKeysFile", "/etc/ssh/quizstack/authorized_keys/%u"]):
        assert wanted in conf


def test_ges_listens_where_the_clients_reach_it_and_takes_rsa_keys_only(plan):
    conf = options(access.sshd_conf(plan, "ges"))
    assert [o[1] for o in conf if o[0] == "ListenAddress"] == ["10.2.2.31", "10.2.9.2"]
    assert ["PubkeyAcceptedAlgorithms", "rsa-sha2-512,rsa-sha2-256"] in conf
    assert ["PasswordAuthentication", "no"] in conf


def test_the_keys_are_private_rsa_for_operators_and_one_host_key_per_host(plan, keys):
    assert keys.operator.public.startswith("ssh-rsa ")
    assert keys.management.public.startswith("ssh-ed25519 ")
    assert set(keys.hosts) == set(plan.management.addresses)
    assert len({k.public for k in keys.hosts.values()}) == len(keys.hosts)
    for pair in (keys.operator, keys.management, keys.hosts["s1"]):
        assert stat.S_IMODE(os.stat(pair.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys.directory).st_mode) == 0o700


def test_the_keys_are_kept_across_runs(plan, keys):
    again = sshkeys.load_or_create(os.path.dirname(keys.directory), plan.management.addresses)
    assert again.operator.public == keys.operator.public
    assert again.hosts["nas2"].public == keys.hosts["nas2"].public


def test_ges_reaches_every_other_host_by_name_with_pinned_host_keys(plan, keys):
    conf = access.ges_client_conf(plan)
    assert "Host s3\n    HostName 10.2.9.33\n" in conf and "Host ges\n" not in conf
    assert "StrictHostKeyChecking yes" in conf
    known = access.ges_known_hosts(plan, keys)
    blob = keys.hosts["fw2"].public.split()[1]
    assert f"fw2,10.2.9.12 ssh-ed25519 {blob}" in known


def test_the_operators_config_jumps_through_ges(plan, keys):
    conf = access.controller_ssh_config(plan, keys, ges_proxy="nsenter --net=/run/netns/x nc %h %p")
    ges_block = conf.split("Host ges\n", 1)[1].split("\n\n", 1)[0]
    assert "HostName 10.2.2.31" in ges_block and keys.operator.path in ges_block
    assert "ProxyCommand nsenter --net=/run/netns/x nc %h %p" in ges_block
    s2_block = conf.split("Host s2\n", 1)[1].split("\n\n", 1)[0]
    assert f"ProxyCommand ssh -F {keys.directory}/ssh_config -W %h:%p ges" in s2_block
    assert keys.management.path in s2_block
    assert "StrictHostKeyChecking yes" in conf


def test_pfinal_has_no_access_role():
    assert access.phases(build_plan(load_scenario("pfinal")), None) == []


def test_the_firewall_opens_ssh_to_ges_and_nagios_web_and_nothing_else(plan):
    from quizstack.check import open_addresses
    from quizstack.deploy import render

    rules = render.nftables_conf(plan)
    forward = rules.split("chain forward", 1)[1].split("}\n", 1)[0]
    opened = [line.strip().split(" tcp flags")[0] for line in forward.splitlines()
              if "ct state new accept" in line]
    assert opened == ['iifname { "eth0" } ip daddr 10.2.2.2 tcp dport 80',
                      'iifname { "eth0" } ip daddr 10.2.2.31 tcp dport 22',
                      'iifname { "eth0" } ip daddr 10.2.2.41 tcp dport 80']
    assert open_addresses(plan) == {"10.2.2.2": 80, "10.2.2.31": 22, "10.2.2.41": 80}
    # The firewall itself: SSH from ges only, ping and NRPE from nagios only.
    inbound = rules.split("chain input", 1)[1].split("chain forward", 1)[0]
    assert "ip saddr 10.2.9.2 ip daddr 10.2.9.0/24 tcp dport 22" in inbound
    assert "ip saddr 10.2.9.3 ip daddr 10.2.9.0/24 tcp dport 5666" in inbound
    assert "tcp dport 22" not in inbound.replace("ip saddr 10.2.9.2 ip daddr 10.2.9.0/24 tcp dport 22", "")


def test_nagios_probes_never_shift_the_users_round_robin(plan):
    from quizstack.deploy import render

    cfg = render.haproxy_cfg(plan)
    assert "    use_backend quiz_watch if { src 10.2.2.41 }\n" in cfg
    watch = cfg.split("backend quiz_watch\n", 1)[1]
    assert "server s2 10.2.3.12:8000 track quiz_servers/s2" in watch
    pfinal = render.haproxy_cfg(build_plan(load_scenario("pfinal")))
    assert "quiz_watch" not in pfinal

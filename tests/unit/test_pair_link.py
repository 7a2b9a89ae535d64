"""A pair's own link: its members' VRRP and sync out of everybody else's reach.

The complete scenario gives each pair a small network that only its two
members are on (FWLINK, LBLINK); the loader refuses a link with a stranger
on it or a member off it, the plan sends the pair's adverts and
conntrackd's sync there, keepalived speaks unicast to the peer's link
address and counts only its adverts, and nftables takes VRRP (and the
firewalls' sync) on the link from the peer only. The forged adverts the
check sends (check/pairguard.py) are built here bit by bit.
"""

import shutil
import subprocess
from ipaddress import IPv4Address

import pytest

from quizstack.check import pairguard
from quizstack.deploy import render
from quizstack.deploy.plan import build_plan
from quizstack.errors import ScenarioError
from quizstack.topology import load_scenario, parse_scenario
from quizstack.topology.graph import to_dot
from quizstack.topology.loader import SCENARIO_DIR

COMPLETE = (SCENARIO_DIR / "complete.toml").read_text()


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_scenario("complete"))


def replace(old, new, text=COMPLETE):
    assert text.count(old) == 1, old
    return text.replace(old, new)


def error_of(text):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="bad.toml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("bad.toml: "), message
    return message


# -- the scenario and the plan -------------------------------------------------------------


def test_each_pair_has_a_link_of_its_own(plan):
    topo = load_scenario("complete")
    assert (topo.floating["fw"].link, topo.floating["lb"].link) == ("FWLINK", "LBLINK")
    assert [h.name for h in topo.hosts_on("FWLINK")] == ["fw1", "fw2"]
    assert [h.name for h in topo.hosts_on("LBLINK")] == ["lb1", "lb2"]
    fw, lb = plan.pairs
    assert (fw.sync_network, fw.link, lb.sync_network, lb.link) == ("FWLINK", True, "LBLINK", True)
    assert lb.own["lb2"]["LBLINK"] == IPv4Address("10.2.6.2") and lb.interface("lb1", "LBLINK") == "eth3"
    # The floating addresses stay where the others reach them.
    assert [n for n, _ in fw.addresses] == ["LAN1", "LAN2"] and plan.lb_address == IPv4Address("10.2.2.2")


def test_without_a_link_the_pair_talks_on_the_network_it_shares():
    text = replace('link = "FWLINK"\n', "").replace('link = "LBLINK"\n', "")
    plan = build_plan(parse_scenario(text, source="nolink.toml"))
    assert [(p.sync_network, p.link) for p in plan.pairs] == [("LAN2", False), ("LAN2", False)]
    assert "unicast_src_ip 10.2.2.21" in render.keepalived_conf(plan.pairs[1], "lb1", "/bin/true")


def test_a_stranger_on_the_link_is_refused():
    text = replace('    { network = "MGMT", address = "10.2.9.3" },\n',
                   '    { network = "MGMT", address = "10.2.9.3" },\n'
                   '    { network = "LBLINK", address = "10.2.6.3" },\n')
    assert "floating lb: link LBLINK: host nagios is on it too: only lb1, lb2 may be" in error_of(text)


def test_a_member_off_the_link_is_refused():
    text = replace('    { network = "LBLINK", address = "10.2.6.2" },\n', "")
    assert error_of(text) == "bad.toml: floating lb: link LBLINK: host lb2 has no interface on it"


@pytest.mark.parametrize("old, new, message", [
    ('link = "LBLINK"', 'link = "NOPE"', "floating lb: link: unknown network 'NOPE'"),
    ('link = "LBLINK"', "link = 3", "floating lb: link: must be a string"),
    # A shared network is no link: its first stranger is named.
    ('link = "LBLINK"', 'link = "LAN2"', "floating lb: link LAN2: host fw1 is on it too"),
    ('{ network = "LAN3", address = "10.2.3.1" }', '{ network = "LBLINK", address = "10.2.6.3" }',
     "floating lb: link LBLINK: floating address 10.2.6.3 is on it"),
])
def test_link_mistakes(old, new, message):
    assert message in error_of(replace(old, new))


def test_the_map_draws_a_link_dashed_and_says_whose_it_is():
    text = to_dot(load_scenario("complete"))
    assert ('"net:LBLINK" [shape=box, style="rounded,filled,dashed", fillcolor="#f3f4f6", '
            'label="LBLINK\\n10.2.6.0/29\\nlb\'s own link"];') in text
    assert '"host:fw2" -- "net:FWLINK" [label="eth3 10.2.5.2"];' in text
    assert 'label="LAN2\\n10.2.2.0/24"];' in text


# -- keepalived, conntrackd, nftables ------------------------------------------------------


def test_keepalived_speaks_unicast_to_the_peer_on_the_link(plan):
    fw, lb = plan.pairs
    conf = render.keepalived_conf(lb, "lb1", "/bin/true")
    assert ("    interface eth3\n    virtual_router_id 2\n    priority 150\n    advert_int 0.2\n"
            "    unicast_src_ip 10.2.6.1\n    unicast_peer {\n        10.2.6.2 min_ttl 255\n    }\n"
            "    check_unicast_src\n") in conf
    # The addresses on their own interfaces; both service sides tracked.
    assert "        10.2.2.2/24 dev eth0\n        10.2.3.1/24 dev eth1\n" in conf
    assert "    track_interface {\n        eth0\n        eth1\n    }\n" in conf
    conf = render.keepalived_conf(fw, "fw2", "/bin/true")
    assert "interface eth3\n" in conf and "unicast_src_ip 10.2.5.2\n" in conf
    assert "        10.2.5.1 min_ttl 255\n" in conf and "10.2.5.2 min_ttl" not in conf
    assert "        10.2.1.1/24 dev eth0\n        10.2.2.1/24 dev eth1\n" in conf


@pytest.mark.skipif(not shutil.which("keepalived") or not shutil.which("unshare"),
                    reason="keepalived or unshare is not installed")
def test_keepalived_accepts_the_members_configuration(plan, tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(render.keepalived_conf(plan.pairs[1], "lb2", "/bin/true", notify="/bin/true"))
    # Its interfaces must exist: a network namespace of its own with eth0, eth1, eth3.
    script = ("for i in 0 1 3; do ip link add eth$i type veth peer name peer$i || exit 9; done; "
              f"exec keepalived --config-test --use-file {path}")
    done = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True)
    if done.returncode != 0 and ("Operation not permitted" in done.stderr or done.returncode == 9):
        pytest.skip("a network namespace needs root")
    assert done.returncode == 0, done.stderr


def test_conntrackd_syncs_on_the_link(plan):
    fw = plan.pairs[0]
    one = render.conntrackd_conf(fw, "fw1")
    assert ("        IPv4_address 10.2.5.1\n        IPv4_Destination_Address 10.2.5.2\n"
            "        Port 3780\n        Interface eth3\n") in one


def test_the_firewalls_take_vrrp_and_the_sync_on_the_link_from_the_peer_only(plan):
    rules = render.nftables_conf(plan)
    peer = 'iifname { "eth3" } ip saddr { 10.2.5.1, 10.2.5.2 } fib saddr type != local'
    assert (f"        iif \"lo\" accept\n"
            "        # The pair's own traffic: on its link, from the other member only.\n"
            f"        {peer} ip protocol vrrp accept\n"
            f"        {peer} udp dport 3780 accept\n"
            "        ip protocol vrrp drop\n"
            "        udp dport 3780 drop\n"
            "        ct state established,related accept\n") in rules
    assert rules.count("vrrp accept") == 1 and "counter" not in rules


def test_the_balancers_filter_drops_vrrp_but_from_the_peer_on_the_link(plan):
    rules = render.pair_nftables_conf(plan.pairs[1])
    assert rules.startswith("#!/usr/sbin/nft -f\n")
    assert ("table inet quizstack_pair\ndelete table inet quizstack_pair\n\n"
            "table inet quizstack_pair {\n    chain input {\n"
            "        type filter hook input priority filter; policy accept;\n") in rules
    assert ('        iifname { "eth3" } ip saddr { 10.2.6.1, 10.2.6.2 } fib saddr type != local '
            "ip protocol vrrp accept\n        ip protocol vrrp counter drop\n    }\n}\n") in rules
    # It filters VRRP only: the balancers forward the service, untouched.
    assert "forward" not in rules and "flush" not in rules and "3780" not in rules


@pytest.mark.skipif(not shutil.which("nft") or not shutil.which("unshare"),
                    reason="nftables or unshare is not installed")
def test_nft_loads_the_balancers_filter_again_and_again(plan, tmp_path):
    path = tmp_path / "nftables.conf"
    path.write_text(render.pair_nftables_conf(plan.pairs[1]))
    # Loaded twice in a fresh namespace: the second load replaces the first, and
    # a table of someone else's stays.
    script = (f"nft add table inet other && nft -c -f {path} && nft -f {path} && nft -f {path} "
              "&& nft list ruleset")
    done = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True)
    if "Operation not permitted" in done.stderr:
        pytest.skip("a network namespace needs root")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("table inet quizstack_pair") == 1 and "table inet other" in done.stdout


# -- the forged adverts --------------------------------------------------------------------


def test_the_internet_checksum():
    # RFC 1071's example words, and an odd length padded with a zero byte.
    assert pairguard.internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert pairguard.internet_checksum(b"\x01") == pairguard.internet_checksum(b"\x01\x00")


def test_a_vrrp_advert_has_its_fields_at_the_right_bits():
    advert = pairguard.vrrp_advert(2, 255, ["10.2.2.2/24", "10.2.3.1"], "10.2.6.2", "10.2.6.1",
                                   interval_cs=20)
    assert len(advert) == 8 + 2 * 4
    assert advert[0] >> 4 == 3 and advert[0] & 0x0F == 1            # version 3, advertisement
    assert advert[1:4] == bytes([2, 255, 2])                        # VRID, priority, count
    assert advert[4] >> 4 == 0                                      # reserved bits
    assert int.from_bytes(advert[4:6], "big") & 0x0FFF == 20        # 0.2 s in centiseconds
    assert advert[8:] == IPv4Address("10.2.2.2").packed + IPv4Address("10.2.3.1").packed
    assert pairguard.vrrp_advert(1, 100, ["10.0.0.1"], "1.1.1.1", "2.2.2.2",
                                 interval_cs=4095)[4:6] == b"\x0f\xff"


def test_the_advert_checksum_covers_the_ipv4_pseudo_header():
    source, destination = "10.2.6.2", "224.0.0.18"
    advert = pairguard.vrrp_advert(2, 255, ["10.2.2.2", "10.2.3.1"], source, destination)
    pseudo = (IPv4Address(source).packed + IPv4Address(destination).packed
              + bytes([0, 112]) + len(advert).to_bytes(2, "big"))
    assert pairguard.internet_checksum(pseudo + advert) == 0
    # The same message to another destination needs another checksum.
    other = pairguard.vrrp_advert(2, 255, ["10.2.2.2", "10.2.3.1"], source, "10.2.6.1")
    assert other[:6] == advert[:6] and other[6:8] != advert[6:8] and other[8:] == advert[8:]


def test_the_checksum_matches_a_real_keepalived_advert():
    # Captured on LBLINK in the lab: lb2's unicast advert to lb1 (keepalived
    # 2.2.7, VRID 2, priority 100, 0.2 s, the lb pair's two addresses).
    captured = bytes.fromhex("45c0002403630000ff7097400a0206020a020601"
                             "31026402001431590a0202020a020301")
    header, advert = captured[:20], captured[20:]
    assert pairguard.internet_checksum(header) == 0
    source, destination = str(IPv4Address(header[12:16])), str(IPv4Address(header[16:20]))
    assert (source, destination, header[8], header[9]) == ("10.2.6.2", "10.2.6.1", 255, 112)
    built = pairguard.vrrp_advert(2, 100, ["10.2.2.2", "10.2.3.1"], source, destination, 20)
    assert built == advert
    # The same header but for keepalived's packet id (ours leaves it to the kernel).
    packet = pairguard.ipv4_packet(source, destination, built)
    assert packet[:4] == captured[:4] and packet[6:10] == captured[6:10]
    assert packet[12:] == captured[12:] and packet[4:6] == b"\0\0"


def test_the_ipv4_header_is_whole_and_checksummed():
    packet = pairguard.ipv4_packet("10.2.6.2", "224.0.0.18", b"\x31\x02\xff\x01\x00\x14\x00\x00")
    assert packet[0] == 0x45 and packet[1] == 0xC0
    assert int.from_bytes(packet[2:4], "big") == len(packet) == 28
    assert (packet[8], packet[9]) == (255, 112)
    assert packet[12:16] == IPv4Address("10.2.6.2").packed and packet[16:20] == bytes([224, 0, 0, 18])
    assert pairguard.internet_checksum(packet[:20]) == 0


def test_the_forged_adverts_name_the_pairs_vrid_and_addresses(plan):
    lb = plan.pairs[1]
    sources = ["10.2.6.2", "10.2.2.22", "10.2.2.41"]
    destinations = ["224.0.0.18", "10.2.2.21", "10.2.2.22"]
    packets = pairguard.forged_adverts(lb, sources, destinations)
    assert len(packets) == 9 and [d for _, d in packets[:3]] == destinations
    for data, destination in packets:
        advert = data[20:]
        assert advert[:4] == bytes([0x31, 2, 255, 2]) and advert[4:6] == b"\x00\x14"
        assert advert[8:] == IPv4Address("10.2.2.2").packed + IPv4Address("10.2.3.1").packed
        assert data[16:20] == IPv4Address(destination).packed
    assert packets[0][0][12:16] == IPv4Address("10.2.6.2").packed


def test_the_attack_comes_from_nagios_on_the_network_both_pairs_share(plan):
    topo = load_scenario("complete")
    for pair in plan.pairs:
        host, iface, network = pairguard.attacker(plan, topo, pair)
        assert (host, iface.name, str(iface.address), network) == ("nagios", "eth0", "10.2.2.41", "LAN2")


def test_the_injector_is_valid_python():
    compile(pairguard.INJECTOR, "injector", "exec")

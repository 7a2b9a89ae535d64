"""Parsers of captured command output and the SCRAM verifier, pure."""

from quizstack.check import parse_haproxy_stat, parse_nmap_grepable, protected_addresses
from quizstack.deploy.plan import build_plan
from quizstack.deploy.secrets import load_or_create, scram_verifier, verifier_matches
from quizstack.deploy.storage import pool_members, volume_info
from quizstack.topology import load_scenario

POOL = """UUID					Hostname 	State
7a9eba05-991e-465d-8128-917e29d0af40	10.2.4.22	Connected 
86e21d36-8efe-4c16-a942-dad360d1473b	10.2.4.23	Disconnected 
e817aebf-ebf0-41bb-9178-3b24872343ab	localhost	Connected 
""".splitlines()

VOLUME = """
Volume Name: nas
Type: Replicate
Volume ID: 7c1c1e0e-0000-4000-8000-000000000000
Status: Started
Snapshot Count: 0
Number of Bricks: 1 x 3 = 3
Transport-type: tcp
Bricks:
Brick1: 10.2.4.21:/var/lib/quizstack/bricks/nas
Brick2: 10.2.4.22:/var/lib/quizstack/bricks/nas
Brick3: 10.2.4.23:/var/lib/quizstack/bricks/nas
Options Reconfigured:
network.ping-timeout: 5
""".splitlines()

NMAP = """# Nmap 7.93 scan initiated as: nmap -n -Pn -sS -oG - 10.2.2.2 10.2.4.31
Host: 10.2.2.2 ()	Status: Up
Host: 10.2.2.2 ()	Ports: 80/open/tcp//http///	Ignored State: filtered (65534)
Host: 10.2.4.31 ()	Status: Up
Host: 10.2.4.31 ()	Ports: 5432/open/tcp//postgresql///, 22/closed/tcp//ssh///
# Nmap done at Fri Nov 27 03:30:00 2026 -- 2 IP addresses (2 hosts up) scanned in 3.1 seconds
"""


def test_pool_list_parser_ignores_localhost():
    assert pool_members(POOL) == {"10.2.4.22": "Connected", "10.2.4.23": "Disconnected"}


def test_volume_info_parser():
    info = volume_info(VOLUME)
    assert info["Status"] == "Started"
    assert info["bricks"] == [f"10.2.4.2{i}:/var/lib/quizstack/bricks/nas" for i in (1, 2, 3)]
    assert volume_info([])["bricks"] == []


def test_nmap_parser_reports_open_ports_and_every_answer():
    hosts = parse_nmap_grepable(NMAP)
    assert hosts["10.2.2.2"] == {"up": True, "open": [80], "answered": {"open": 1}}
    assert hosts["10.2.4.31"]["open"] == [5432]
    assert hosts["10.2.4.31"]["answered"] == {"open": 1, "closed": 1}


def test_nmap_parser_counts_answers_folded_into_the_ignored_state():
    # What a scan through a firewall that forwards everything shows for s1.
    line = ("Host: 10.2.3.11 ()\tPorts: 8000/open/tcp//http-alt///\t"
            "Ignored State: closed (65534)\n")
    assert parse_nmap_grepable(line)["10.2.3.11"]["answered"] == {"open": 1, "closed": 65534}


def test_protected_addresses_exclude_the_clients():
    addresses = protected_addresses(build_plan(load_scenario("pfinal")))
    assert "10.2.1.11" not in addresses and "10.2.1.12" not in addresses
    assert "10.2.1.1" in addresses and "10.2.4.31" in addresses
    assert len(addresses) == 14


def test_scram_verifier_round_trip():
    verifier = scram_verifier("s3cret", salt=b"0123456789abcdef")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert verifier_matches(verifier, "s3cret")
    assert not verifier_matches(verifier, "other")
    assert not verifier_matches("md5abcdef", "s3cret")


def test_secrets_are_generated_once_with_mode_0600(tmp_path):
    first = load_or_create(tmp_path / "secrets")
    second = load_or_create(tmp_path / "secrets")
    assert first == second and len(first["database_password"]) >= 24
    mode = (tmp_path / "secrets" / "secrets.json").stat().st_mode & 0o777
    assert mode == 0o600


STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight
quiz,FRONTEND,,,0,1,4096,12,0,0,0,0,0,,,,,OPEN,
quiz_servers,s1,0,0,0,1,,4,0,0,,0,,0,0,0,0,UP,1
quiz_servers,s2,0,0,0,1,,4,0,0,,0,,0,0,0,0,DOWN,1
quiz_servers,BACKEND,0,0,0,1,410,8,0,0,0,0,,0,0,0,0,UP,2
"""


def test_haproxy_stat_parser_lists_servers_of_one_backend():
    assert parse_haproxy_stat(STAT, "quiz_servers") == {"s1": "UP", "s2": "DOWN"}
    assert parse_haproxy_stat(STAT, "other") == {}

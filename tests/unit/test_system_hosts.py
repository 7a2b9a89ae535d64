"""Full-system hosts, the pure parts: the scenario's kind, the base's key, the door's rules."""

import asyncio

import pytest

from quizstack.errors import ScenarioError
from quizstack.lab import aptproxy, sysimage, system
from quizstack.topology import parse_scenario
from quizstack.topology.loader import scenario_path

MIRRORS = ["http://deb.debian.org/debian", "http://deb.debian.org/debian-security"]


def pfinal_text(**replace):
    text = scenario_path("pfinal").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def test_hosts_are_namespace_hosts_unless_the_scenario_says_otherwise():
    topo = parse_scenario(pfinal_text())
    assert {h.kind for h in topo.hosts.values()} == {"namespace"}
    assert not any(h.system for h in topo.hosts.values())


def test_a_scenario_makes_every_host_a_system_and_a_host_can_stay_a_namespace():
    text = pfinal_text(**{'name = "pfinal"': 'name = "pfinal"\nhosts = "system"',
                          '[hosts.c1]\n': '[hosts.c1]\nkind = "namespace"\n'})
    topo = parse_scenario(text)
    assert topo.host("c1").kind == "namespace"
    assert topo.host("s1").system and topo.host("bbdd").system


def test_an_unknown_kind_is_refused_with_the_known_ones():
    with pytest.raises(ScenarioError, match=r"host s1: kind: unknown kind of host 'vm' "
                                            r"\(known: namespace, system\)"):
        parse_scenario(pfinal_text(**{'[hosts.s1]\n': '[hosts.s1]\nkind = "vm"\n'}))


def test_the_machine_mirrors_are_read_from_both_source_formats(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# a comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n"
        "deb https://secure.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian/\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n")
    mirrors = sysimage.machine_mirrors(tmp_path)
    # https is left out: the door speaks plain HTTP only.
    assert mirrors == ["http://mirror.example/debian", "http://deb.debian.org/debian",
                       "http://deb.debian.org/debian-security"]
    assert sysimage.debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path):
    (tmp_path / "sources.list").write_text("deb https://only.secure/debian bookworm main\n")
    with pytest.raises(Exception, match="need a Debian mirror over http://"):
        sysimage.debian_mirror(tmp_path)


def test_the_base_is_rebuilt_when_its_package_list_sources_or_release_change():
    key = sysimage.base_key(MIRRORS[0])
    assert key == sysimage.base_key(MIRRORS[0])
    assert key != sysimage.base_key(MIRRORS[0], packages=sysimage.PACKAGES + ("vim",))
    assert key != sysimage.base_key(MIRRORS[0], sources=["deb http://x/ y z"])
    assert key != sysimage.base_key("http://other.example/debian")
    assert key != sysimage.base_key(MIRRORS[0], suite="trixie")


def test_a_release_is_given_per_scenario_or_per_system_host_and_checked():
    text = pfinal_text(**{'name = "pfinal"': 'name = "pfinal"\nhosts = "system"\nrelease = "trixie"',
                          '[hosts.c1]\n': '[hosts.c1]\nkind = "namespace"\n',
                          '[hosts.bbdd]\n': '[hosts.bbdd]\nrelease = "bookworm"\n'})
    topo = parse_scenario(text)
    assert topo.host("s1").release == "trixie" and topo.host("bbdd").release == "bookworm"
    assert topo.host("c1").release == ""        # a namespace host runs the machine's own
    assert parse_scenario(pfinal_text()).host("s1").release == ""
    with pytest.raises(ScenarioError, match=r"\[scenario\] release: unknown Debian release 'sid' "
                                            r"\(supported: bookworm, trixie\)"):
        parse_scenario(pfinal_text(**{'name = "pfinal"': 'name = "pfinal"\nrelease = "sid"'}))
    with pytest.raises(ScenarioError, match=r"host s1: release applies to full-system hosts only"):
        parse_scenario(pfinal_text(**{'[hosts.s1]\n': '[hosts.s1]\nrelease = "trixie"\n'}))


def test_the_base_holds_no_identity_and_sends_apt_through_the_door(tmp_path):
    root = tmp_path / "root"
    for d in ("etc/apt/apt.conf.d", "etc/systemd/system", "etc/ssh", "var/lib/dbus"):
        (root / d).mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (root / "etc/hostname").write_text("builder\n")
    (root / "etc/machine-id").write_text("0123\n")
    (root / "etc/apt/sources.list").write_text("deb http://deb.debian.org/debian bookworm main\n")
    (root / "etc/apt/sources.list.d").mkdir()
    (root / "etc/apt/sources.list.d/debian.sources").write_text("Types: deb\n")
    lines = ["deb http://deb.debian.org/debian trixie main",
             "deb http://deb.debian.org/debian-security trixie-security main"]
    sysimage._customize(root, MIRRORS[0], lines, "trixie")
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert not (root / "etc/hostname").exists()
    assert (root / "etc/machine-id").read_text() == ""
    # The machine's mirrors for the host's own release, whatever the machine runs.
    assert not list((root / "etc/apt/sources.list.d").iterdir())
    sources = (root / "etc/apt/sources.list").read_text().splitlines()
    assert [s for s in sources if not s.startswith("#")] == lines
    assert '"suite": "trixie"' in (root / "etc/quizstack-base").read_text()
    conf = (root / "etc/apt/apt.conf.d/80quizstack").read_text()
    assert 'Proxy "http://127.0.0.1:3142/"' in conf
    socket_unit = (root / "etc/systemd/system/quizstack-apt-proxy.socket").read_text()
    assert "ListenStream=127.0.0.1:3142" in socket_unit
    assert (root / "etc/systemd/system/sockets.target.wants/quizstack-apt-proxy.socket").is_symlink()
    service = (root / "etc/systemd/system/quizstack-apt-proxy.service").read_text()
    assert f"systemd-socket-proxyd {sysimage.DOOR_DIR}/{sysimage.DOOR_SOCKET}" in service
    assert (root / "etc/systemd/system/apt-daily.timer").resolve().as_posix() == "/dev/null"


@pytest.mark.parametrize("url, ok", [
    ("http://deb.debian.org/debian/dists/bookworm/InRelease", True),
    ("http://deb.debian.org/debian-security/dists/bookworm-security/InRelease", True),
    ("http://deb.debian.org/debianx/pool/a.deb", False),        # not under a mirror's path
    ("http://deb.debian.org/debian/../etc/passwd", False),
    # Encoded, the same climb: judged as the mirror decodes it.
    ("http://deb.debian.org/debian/%2e%2e/etc/passwd", False),
    ("http://deb.debian.org/debian/%2E%2e%2Fetc/passwd", False),
    ("http://deb.debian.org/debian/%252e%252e/etc/passwd", False),   # encoded twice
    ("http://deb.debian.org/debian/pool/main/f/foo/foo_1%3a2.0_amd64.deb", True),  # an epoch
    ("http://deb.debian.org:8080/debian/pool/a.deb", False),    # another port
    ("http://example.com/debian/pool/a.deb", False),
    ("https://deb.debian.org/debian/pool/a.deb", False),
    ("/debian/pool/a.deb", False),                              # not a proxy request
])
def test_the_door_opens_only_on_the_mirrors(url, ok):
    assert aptproxy.allowed(url, MIRRORS) is ok


def test_the_door_rewrites_a_proxy_request_for_the_mirror():
    method, url, version, headers = aptproxy.parse_head(
        b"GET http://deb.debian.org/debian/pool/a.deb?x=1 HTTP/1.1\r\nHost: deb.debian.org\r\n"
        b"Proxy-Connection: keep-alive\r\nRange: bytes=10-\r\nUser-Agent: Debian APT-HTTP/1.3")
    head = aptproxy.upstream_head(method, url, headers).decode()
    assert head.startswith("GET /debian/pool/a.deb?x=1 HTTP/1.1\r\nHost: deb.debian.org\r\n")
    assert "Range: bytes=10-\r\n" in head and "Proxy-Connection" not in head
    assert head.endswith("Connection: close\r\n\r\n")


def test_the_door_refuses_what_is_not_a_mirror_read(tmp_path):
    async def ask(request: bytes) -> bytes:
        path = str(tmp_path / "door.sock")
        server = await asyncio.start_unix_server(
            lambda r, w: aptproxy.handle(r, w, MIRRORS), path=path)
        async with server:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(request)
            await writer.drain()
            answer = await reader.read()
            writer.close()
        return answer

    forbidden = asyncio.run(ask(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"))
    assert forbidden.startswith(b"HTTP/1.1 403 ")
    post = asyncio.run(ask(b"POST http://deb.debian.org/debian/ HTTP/1.1\r\n\r\n"))
    assert post.startswith(b"HTTP/1.1 405 ")
    garbage = asyncio.run(ask(b"hello\r\n\r\n"))
    assert garbage.startswith(b"HTTP/1.1 400 ")


def test_nspawn_boots_the_hosts_tree_in_the_labs_namespace_with_the_door_read_only(tmp_path):
    spec = system.spec_for("lab1", "s1", tmp_path / "s1", tmp_path / "base",
                           "/run/netns/qs-lab1-s1", tmp_path / "door")
    argv = system.nspawn_argv(spec)
    assert argv[0] == "systemd-nspawn" and "--boot" in argv
    assert "--register=no" in argv and "--keep-unit" in argv
    assert "--network-namespace-path=/run/netns/qs-lab1-s1" in argv
    assert f"--directory={tmp_path}/s1/system/root" in argv
    assert f"--bind-ro={tmp_path}/door:{sysimage.DOOR_DIR}" in argv
    assert spec["cgroup"] == "/quizstack/lab1/s1" and spec["machine"] == "qs-lab1-s1"


def test_each_release_is_fetched_from_the_machine_mirrors_whatever_release_they_named():
    from quizstack import debian

    assert debian.archive_lines("trixie", MIRRORS) == [
        "deb http://deb.debian.org/debian trixie main",
        "deb http://deb.debian.org/debian trixie-updates main",
        "deb http://deb.debian.org/debian-security trixie-security main"]
    assert debian.archive_lines("bookworm", MIRRORS[:1])[-1] == \
        "deb http://deb.debian.org/debian bookworm-updates main"
    with pytest.raises(debian.ReleaseError, match="no Debian mirror"):
        debian.archive_lines("trixie", MIRRORS[1:])


@pytest.mark.parametrize("text, codename", [
    ('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_CODENAME=trixie\n', "trixie"),
    ('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n', "bookworm"),
    ('ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n', "noble"),
    ('ID=fedora\nVERSION_ID=41\n', None),
])
def test_a_machine_release_is_read_from_os_release(text, codename):
    from quizstack import debian

    assert debian.codename_of(debian.parse_os_release(text)) == codename

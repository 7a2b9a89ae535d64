"""The packages each phase relies on: every phase has its list, and setup.sh installs them all."""

from quizstack.deploy import ROLES, packages
from quizstack.deploy.plan import build_plan
from quizstack.doctor import SETUP_SH, setup_sh_packages
from quizstack.report.trace import masked_context
from quizstack.topology import load_scenario


def setup_packages():
    return set(setup_sh_packages(SETUP_SH.read_text()))


def _phases(name):
    topo = load_scenario(name)
    plan = build_plan(topo)
    return [p for role in ROLES for p in role.phases(plan, masked_context(topo))]


def test_every_phase_of_both_scenarios_has_its_packages():
    keys = {p.key for name in ("pfinal", "complete") for p in _phases(name)}
    assert keys <= set(packages.PACKAGES), f"no package list for {sorted(keys - set(packages.PACKAGES))}"


def test_setup_sh_installs_every_package_the_roles_rely_on():
    named = set(packages.BASE) | {p for found in packages.PACKAGES.values() for p in found}
    missing = named - setup_packages()
    assert not missing, f"setup.sh does not install {sorted(missing)}"


def test_a_host_gets_the_packages_of_its_phases():
    found = packages.per_host(_phases("complete"))
    assert "patroni" in found["bbdd"] and "glusterfs-server" not in found["bbdd"]
    assert {"haproxy", "keepalived", "netcat-openbsd"} <= set(found["lb1"])
    assert {"nftables", "keepalived", "conntrackd"} <= set(found["fw1"])
    assert "c1" not in found
    pfinal = packages.per_host(_phases("pfinal"))
    assert "keepalived" not in pfinal["lb"] and "patroni" not in pfinal["bbdd"]


def test_namespace_hosts_are_checked_on_this_machine_and_others_get_a_phase():
    from quizstack.deploy import install
    from quizstack.deploy.roles import Phase

    phases = [Phase("storage", "glusterd", ("nas1", "nas2"), None),
              Phase("firewall", "nftables", ("fw",), None)]
    # Every host shares this machine's /usr: no phase (setup.sh installed them here).
    assert install.phase(phases, shared={"nas1", "nas2", "fw"}) is None
    found = install.phase(phases, shared={"nas1", "nas2"})
    assert found.key == "packages: install" and found.hosts == ("fw",)


def test_a_package_missing_on_this_machine_is_named():
    import pytest

    from quizstack.deploy import install
    from quizstack.errors import DeployError

    with pytest.raises(DeployError, match="no-such-package-here.*run ./setup.sh"):
        install.verify_here(["python3", "no-such-package-here"])

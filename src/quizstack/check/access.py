"""The operators' way in, checked as an operator would use it.

From the first client, through the firewall: ges takes the operators' key
and refuses passwords; from ges, every host answers SSH by name; the clients
reach no other sshd. The connections start in the client's network
namespace (the lab's ssh_config enters it for the first hop), so they cross
the firewall like an operator's laptop on LAN1.
"""

import subprocess

SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=5")


def _ssh(config, target, *command, options=(), timeout=60):
    argv = ["ssh", "-F", str(config), *SSH_OPTIONS, *options, target, *command]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 255, "", f"no answer within {timeout} s")


def _last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def access_checks(checker, config):
    """Rows for ges and SSH; `config` is the lab's ssh_config (stack.lab_ssh_config)."""
    plan = checker.plan
    m = plan.management
    if not m or not m.ges:
        return []
    client = plan.clients[0]
    rows = []
    login = _ssh(config, m.ges, "hostname")
    rows.append(checker.row(
        "access", f"{client} logs in to ges ({m.ges_address}:22) with the operators' RSA key",
        login.returncode == 0 and login.stdout.strip() == m.ges,
        login.stdout.strip() or _last_line(login.stderr)))

    refused = _ssh(config, m.ges, "true", options=(
        "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive"))
    said = _last_line(refused.stderr)
    rows.append(checker.row(
        "access", "ges refuses password and keyboard-interactive login",
        refused.returncode != 0 and "Permission denied (publickey)" in said, said))

    # From ges, every host by its name, with ges's key (BatchMode: no prompt).
    loop = " & ".join(f"echo {h}=$(ssh {h} hostname 2>&1 | tail -n 1)" for h in m.managed) + "; wait"
    hops = _ssh(config, m.ges, loop, timeout=120)
    answered = dict(line.split("=", 1) for line in hops.stdout.splitlines() if "=" in line)
    wrong = [f"{h}: {answered.get(h) or 'no answer'}" for h in m.managed if answered.get(h) != h]
    rows.append(checker.row(
        "access", f"from ges, SSH by name to every host ({len(m.managed)})",
        hops.returncode == 0 and not wrong,
        "; ".join(wrong) if wrong else f"{len(m.managed)} answered with their own name"))

    targets = sorted({str(a) for host, addresses in plan.lab_addresses.items()
                      if host not in plan.clients for a in addresses})
    from quizstack.check import QUICK_RTT, parse_nmap_grepable

    scan = checker._run(client, ["nmap", "-n", "-Pn", "-sS", "--disable-arp-ping", "-p", "22",
                                 "--max-retries", "1", "-T5", *QUICK_RTT, "-oG", "-", *targets],
                        timeout=120)

    open_ssh = sorted(a for a, h in parse_nmap_grepable(scan.stdout).items() if 22 in h["open"])
    rows.append(checker.row(
        "access", f"{client} reaches no sshd but ges's ({len(targets)} addresses)",
        scan.returncode == 0 and open_ssh == [str(m.ges_address)],
        f"port 22 open on: {', '.join(open_ssh) or 'none'}"))
    return rows

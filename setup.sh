#!/usr/bin/env bash
# Sets up everything quizstack needs on a Debian 12 or 13 machine, as root:
# the Debian packages of the services it runs and tests with, and a
# virtual environment (.venv) holding quizstack itself. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi

packages=(
    python3 python3-venv iproute2 iputils-ping procps util-linux kmod
    postgresql haproxy nftables supervisor glusterfs-server glusterfs-client
    nmap wrk chromium graphviz openssh-server netcat-openbsd curl sudo keepalived conntrackd
    patroni python3-etcd etcd-server etcd-client
    nagios4 nagios-nrpe-server nagios-nrpe-plugin monitoring-plugins apache2 apache2-utils
    rsyslog rsyslog-relp
    docker.io docker-compose mmdebstrap
    systemd-container netbase
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    # The services run inside lab hosts, under each host's own init: keep
    # the package scripts from starting them on the machine itself.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
fi

# Debian's own interpreter, not one under /root: the app servers run from
# this environment as www-data, who must be able to read it.
python=/usr/bin/python3
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')" != /usr ]; then
    echo "setup.sh: recreating .venv with $python"
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/pip install -q -e '.[test]'
echo "setup.sh: ready (.venv/bin/quizstack)"

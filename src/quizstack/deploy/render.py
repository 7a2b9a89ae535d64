"""Every configuration file the deployment writes, as pure functions of the plan.

Nothing here touches a host: each function returns the text of one file, so
the files are tested against expected output in tests/unit, and the roles
only decide where a text goes and which checker (`haproxy -c`, `nft -c`, ...)
must accept it before it goes live.
"""

HEADER = "# Written by quizstack from the scenario; changes here are overwritten.\n"


def postgresql_conf(plan):
    """A conf.d drop-in: listen only where the app servers reach the database."""
    return HEADER + (
        f"listen_addresses = '{plan.database_address}'\n"
        f"port = {plan.database_port}\n"
        "password_encryption = 'scram-sha-256'\n"
        # Three servers with a few persistent connections each, plus checks.
        "max_connections = 100\n"
    )


def pg_hba_conf(plan):
    """Local administration by peer; the app role only from the app servers' subnet."""
    return HEADER + (
        "# TYPE  DATABASE        USER            ADDRESS                 METHOD\n"
        "local   all             postgres                                peer\n"
        f"host    {plan.database_name:<15} {plan.database_user:<15} "
        f"{str(plan.app_subnet):<23} scram-sha-256\n"
    )


def haproxy_cfg(plan):
    """Round-robin over every app server, health-checked on /healthz.

    Retries with redispatch make a server that dies between two health checks
    cost a retry on another server instead of a failed request; the response
    header X-Server names the server that answered, which is what the
    round-robin check counts.
    """
    servers = "".join(
        f"    server {b.name} {b.address}:{plan.app_port} check\n" for b in plan.backends
    )
    return HEADER + (
        "global\n"
        "    log stdout format raw local0\n"
        "    stats socket /run/haproxy/admin.sock mode 660 level admin\n"
        "    stats timeout 30s\n"
        "    maxconn 4096\n"
        "\n"
        "defaults\n"
        "    mode http\n"
        "    log global\n"
        "    option httplog\n"
        "    option dontlognull\n"
        "    timeout connect 2s\n"
        "    timeout client 30s\n"
        "    timeout server 30s\n"
        "    timeout http-request 10s\n"
        "    retries 3\n"
        "    option redispatch 1\n"
        "    retry-on conn-failure empty-response response-timeout 502 503 504\n"
        "\n"
        "frontend quiz\n"
        f"    bind {plan.lb_address}:{plan.port}\n"
        "    option forwardfor\n"
        "    http-request set-header X-Forwarded-Proto http\n"
        "    default_backend quiz_servers\n"
        "\n"
        "backend quiz_servers\n"
        "    balance roundrobin\n"
        "    option httpchk GET /healthz\n"
        "    http-check expect status 200\n"
        "    default-server inter 1s fall 2 rise 1\n"
        "    http-response set-header X-Server %s\n"
        f"{servers}"
    )


def nftables_conf(plan):
    """Default drop: clients may only ping the load balancer and open its service port.

    The firewall itself accepts nothing from anyone (not even SSH); replies to
    allowed connections come back through the forward chain's conntrack rule.
    """
    outside = ", ".join(f'"{name}"' for name, _ in plan.fw_outside)
    return (
        "#!/usr/sbin/nft -f\n" + HEADER +
        "flush ruleset\n"
        "\n"
        "table inet quizstack {\n"
        "    chain input {\n"
        "        type filter hook input priority filter; policy drop;\n"
        "        iif \"lo\" accept\n"
        "    }\n"
        "\n"
        "    chain forward {\n"
        "        type filter hook forward priority filter; policy drop;\n"
        "        ct state established,related accept\n"
        "        ct state invalid drop\n"
        f"        iifname {{ {outside} }} ip daddr {plan.lb_address} tcp dport {plan.port} "
        "ct state new accept\n"
        f"        iifname {{ {outside} }} ip daddr {plan.lb_address} icmp type echo-request accept\n"
        "    }\n"
        "\n"
        "    chain output {\n"
        "        type filter hook output priority filter; policy accept;\n"
        "    }\n"
        "}\n"
    )


def database_url(plan, password):
    return (f"postgresql://{plan.database_user}:{password}@{plan.database_address}:"
            f"{plan.database_port}/{plan.database_name}")


def app_environment(plan, secrets):
    """The QUIZ server's environment (secret: written with mode 0600)."""
    return {
        "DATABASE_URL": database_url(plan, secrets["database_password"]),
        "DJANGO_SECRET_KEY": secrets["django_secret_key"],
        "DJANGO_ALLOWED_HOSTS": "*",
        "QUIZ_MEDIA_ROOT": plan.media_root,
        "DJANGO_SETTINGS_MODULE": "quiz.settings",
    }


def env_file(environment):
    """KEY=value lines, read by the server's wrapper and by systemd's EnvironmentFile."""
    return HEADER + "".join(f"{k}={v}\n" for k, v in sorted(environment.items()))


def gunicorn_conf(plan, backend):
    return HEADER + (
        f"bind = '{backend.address}:{plan.app_port}'\n"
        f"workers = {plan.workers}\n"
        "worker_class = 'sync'\n"
        "user = 'www-data'\n"
        "group = 'www-data'\n"
        "accesslog = '-'\n"
        "errorlog = '-'\n"
        "timeout = 30\n"
        "graceful_timeout = 10\n"
        # Only the load balancer reaches the servers, so its X-Forwarded-* are trusted.
        f"forwarded_allow_ips = '{plan.lb_backend_address}'\n"
    )


def supervisor_program(name, command, *, user=None, oneshot=False,
                       stopsignal="TERM", priority=500):
    """A program section for supervisord, the init of lab hosts."""
    lines = [
        HEADER.rstrip("\n").replace("# ", "; ", 1),
        f"[program:{name}]",
        f"command={command}",
        f"priority={priority}",
        "autostart=true",
        f"stopsignal={stopsignal}",
        "stopasgroup=true",
        "killasgroup=true",
        "stdout_logfile=/var/log/supervisor/%(program_name)s.log",
        "redirect_stderr=true",
    ]
    if oneshot:
        lines += ["autorestart=false", "startsecs=0", "exitcodes=0"]
    else:
        # Generous retries: after a host starts, a program may come up before what it
        # needs (the mount before the storage nodes answer); it simply tries again.
        lines += ["autorestart=true", "startsecs=1", "startretries=30"]
    if user:
        lines.append(f"user={user}")
    return "\n".join(lines) + "\n"


def quiz_systemd_unit(command, mount):
    """The app server as a systemd unit, for real Debian hosts."""
    return HEADER + (
        "[Unit]\n"
        "Description=QUIZ application server (gunicorn)\n"
        "After=network-online.target remote-fs.target\n"
        f"RequiresMountsFor={mount}\n"
        "\n"
        "[Service]\n"
        "EnvironmentFile=/etc/quiz/quiz.env\n"
        f"ExecStart={command}\n"
        "Restart=always\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def glusterfs_client_command(plan):
    """The FUSE client in the foreground, with every storage node as a volfile server.

    Naming all of them is what backup-volfile-servers does: if the first node
    is down at mount time, the client asks the next. A client that died leaves
    a dead mount behind ("transport endpoint is not connected"); it is lazily
    unmounted first, so a restart of the program always mounts afresh.
    """
    servers = " ".join(f"--volfile-server={address}" for _, address in plan.storage_hosts)
    mount = plan.mount
    return ("/bin/sh -c '"
            f"umount -l {mount} 2>/dev/null; mkdir -p {mount} && "
            f"exec /usr/sbin/glusterfs -N {servers} --volfile-id={plan.volume} {mount}'")


def fstab_line(plan):
    first, *others = [str(address) for _, address in plan.storage_hosts]
    backups = ":".join(others)
    options = "defaults,_netdev" + (f",backup-volfile-servers={backups}" if backups else "")
    return f"{first}:/{plan.volume} {plan.mount} glusterfs {options} 0 0\n"

"""The service as a Docker Compose project, from the scenario and its plan.

What stands in for what (docs/export.md says why, and what is lost):

- the scenario's networks the service uses → Compose networks with the same
  subnets, every container at its scenario address (so HAProxy's
  configuration is the very text the lb role renders, `bind` and `server`
  lines included); the networks behind the balancer are `internal`;
- the firewall → one published port, on 127.0.0.1 of the Docker host only,
  to the balancer's service port: the firewall's one rule;
- the HAProxy pair → one HAProxy container (render.haproxy_cfg, unchanged);
- s1…sN → one QUIZ container each, gunicorn with render.gunicorn_conf;
- PostgreSQL (one host, or the Patroni pair) → one PostgreSQL container with
  render.postgresql_conf and render.pg_hba_conf;
- the GlusterFS volume → a named volume mounted by every server at the
  mount point the roles use (one Docker host: the shared volume is as safe
  as that host's disk);
- migrate and seed → every server runs them before serving (QUIZ's lock
  makes that safe), as the roles run them on the first.

Secrets never enter the compose file: it names files under `secrets/` that
`write` generates (mode 0600, in a 0700 folder, kept on a second export)
and Compose mounts at /run/secrets; the containers' entrypoints read them.
Everything here is pure but `write`: (topology, plan, Options) → dicts and
texts.
"""

import dataclasses
import hashlib
import json
import os
import secrets as random
from dataclasses import dataclass
from ipaddress import IPv4Address

import quizstack
from quiz.unavailable import haproxy_errorfile
from quizstack.deploy import render
from quizstack.errors import QuizstackError
from quizstack.export.yamltext import dump_all

# The base image: a Debian root file system made by mmdebstrap from the
# machine's mirror and imported (`docker import`); QUIZ's image is built on it.
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "postgresql", "haproxy", "glusterfs-server",
                 "glusterfs-client")
STORAGES = ("glusterfs", "volume")       # GlusterFS containers as in the lab, or one shared volume
# admin_password: QUIZ's administrator (`quizstack compose` checks log in with it);
# only the seed step sees it, never the running servers.
SECRETS = ("db_password", "django_secret_key", "admin_password")
VENV = "/opt/quiz"
PGDATA = "/var/lib/quiz-db/data"
CONFIG_DIRS = {"haproxy": "/etc/haproxy", "gunicorn": "/etc/quiz", "postgres": "/etc/quiz-db"}
PASSWORD_MARK = "@PASSWORD@"      # where the entrypoint puts the password into the database URL
META = "quizstack.json"


class ExportError(QuizstackError):
    """A scenario the Compose export cannot carry, or options it cannot honour."""


@dataclass(frozen=True)
class Options:
    name: str = ""                 # the Compose project's name; default quiz-<scenario>
    port: int = 8080               # the published port on the Docker host's 127.0.0.1
    image: str = f"quizstack/quiz:{quizstack.__version__}"
    storage: str = "glusterfs"     # one of STORAGES


def project_name(topology, options):
    if options.storage not in STORAGES:
        raise ExportError(f"storage {options.storage!r}: one of {', '.join(STORAGES)}")
    if not 0 < int(options.port) < 65536:
        raise ExportError(f"port {options.port}: give a TCP port, 1-65535")
    name = options.name or f"quiz-{topology.name}"
    if not name.replace("-", "").isalnum() or not name[0].isalnum() or name != name.lower() \
            or len(name) > 40:
        raise ExportError(f"project name {name!r}: lower-case letters, digits and '-', "
                          "starting with a letter or digit, at most 40 characters")
    return name


def base_tag():
    """The base image's tag: a digest of what goes into its root file system."""
    digest = hashlib.sha256(json.dumps([SUITE, BASE_PACKAGES]).encode()).hexdigest()[:12]
    return f"quizstack/base:{digest}"


def _network_of(topology, address):
    for name, network in topology.networks.items():
        if IPv4Address(address) in network.subnet:
            return name
    raise ExportError(f"{topology.name}: address {address} is on none of the scenario's networks")


def _gateway(topology, network):
    """The Docker bridge's own address: the highest one no host or floating group uses."""
    used = {IPv4Address(a) for addresses in _all_addresses(topology) for a in addresses}
    subnet = topology.networks[network].subnet
    for candidate in reversed(list(subnet.hosts())):
        if candidate not in used:
            return candidate
    raise ExportError(f"{topology.name}: network {network} has no free address for Docker's bridge")


def _all_addresses(topology):
    yield from (tuple(i.address for i in h.interfaces) for h in topology.hosts.values())
    yield from (tuple(a.address for a in g.addresses) for g in topology.floating.values())


def single_database(plan):
    """The plan with its first database host alone: Compose runs one PostgreSQL."""
    return dataclasses.replace(plan, database_hosts=plan.database_hosts[:1],
                               database_addresses=plan.database_addresses[:1])


def placement(topology, plan, options=Options()):
    """{service: {network: address}}: where each container sits, as in the scenario."""
    if plan.balance == "load":
        raise ExportError(f"{topology.name}: balance = \"load\" needs the load agent beside every "
                          "server, which the Compose export does not run; use roundrobin or leastconn")
    front = _network_of(topology, plan.lb_address)
    backend_net = _network_of(topology, plan.backends[0].address)
    db_net = _network_of(topology, plan.database_address)
    lb = plan.lb_hosts[0]
    found = {lb: {front: plan.lb_address, backend_net: plan.lb_backend_addresses[0]}}
    for backend in plan.backends:
        found[backend.name] = {backend_net: backend.address,
                               db_net: topology.hosts[backend.name].address_on(db_net)}
    found[plan.database_host] = {db_net: plan.database_address}
    if options.storage == "glusterfs":
        storage_net = _network_of(topology, plan.storage_hosts[0][1])
        for name, address in plan.storage_hosts:
            found[name] = {storage_net: address}
        for backend in plan.backends:
            found[backend.name].setdefault(
                storage_net, topology.hosts[backend.name].address_on(storage_net))
    return found


def networks(topology, plan, options=Options()):
    """The Compose networks: the scenario's subnets; only the balancer's front one is not internal."""
    front = _network_of(topology, plan.lb_address)
    used = []
    for where in placement(topology, plan, options).values():
        used += [n for n in where if n not in used]
    found = {}
    for name in sorted(used):
        subnet = topology.networks[name].subnet
        found[name] = {
            "driver": "bridge",
            "internal": name != front,
            "ipam": {"config": [{"subnet": str(subnet), "gateway": str(_gateway(topology, name))}]},
            "labels": {"quizstack.scenario": topology.name,
                       "quizstack.description": topology.networks[name].description or name},
        }
    return found


# Failures in the first minutes do not count (a success counts at once): the first
# start makes the database and migrates it, on a busy machine in more than a minute.
START_PERIOD = "180s"


HAPROXY_ANSWERS = ("import socket; s = socket.socket(socket.AF_UNIX); s.settimeout(2); "
                   "s.connect('/run/haproxy/admin.sock'); s.sendall(b'show info\\n'); "
                   "assert s.recv(4096).startswith(b'Name: HAProxy')")


def _health(url, interval="2s"):
    """A check from inside the container: its own server answers `url` with 2xx."""
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)"
    return {"test": ["CMD", "python3", "-c", probe], "interval": interval, "timeout": "3s",
            "retries": 3, "start_period": START_PERIOD}


def _attach(where):
    return {net: {"ipv4_address": str(address)} for net, address in where.items()}


def database_url_template(plan):
    """QUIZ's DATABASE_URL with a mark where the entrypoint puts the password (read from its secret)."""
    return render.database_url(single_database(plan), PASSWORD_MARK)


def _storage_services(topology, plan, where, labels, options):
    """GlusterFS as in the lab: glusterd on every storage node, a brick each in a volume of
    its own; the first node makes the volume (the storage role's steps) and is healthy once
    every brick is online."""
    found = {}
    first = plan.storage_hosts[0][0]
    gluster = "gluster --mode=script"
    bricks = len(plan.storage_hosts)
    for name, address in plan.storage_hosts:
        ready = f"{gluster} pool list >/dev/null"
        if name == first:
            # $$: Compose's own escape of a dollar sign (it reads $NAME as its variables).
            ready = (f"[ $$({gluster} volume status {plan.volume} detail | grep -c '^Online.*: Y') "
                     f"-ge {bricks} ]")
        found[name] = {
            "image": options.image,
            "hostname": name,
            "init": True,
            "command": ["quiz-nas"],
            "environment": {"QUIZ_BRICK": plan.brick,
                            "QUIZ_VOLUME": plan.volume if name == first else "",
                            "QUIZ_REPLICA": str(plan.replica),
                            "QUIZ_PEERS": " ".join(str(a) for _, a in plan.storage_hosts),
                            "QUIZ_PING_TIMEOUT": str(plan.ping_timeout)},
            # glusterd keeps trusted.* extended attributes on the brick: CAP_SYS_ADMIN.
            "cap_add": ["SYS_ADMIN"],
            "volumes": [f"brick-{name}:{plan.brick.rsplit('/', 1)[0]}", f"glusterd-{name}:/var/lib/glusterd"],
            "networks": _attach(where[name]),
            "healthcheck": {"test": ["CMD", "sh", "-c", ready], "interval": "2s", "timeout": "5s",
                            "retries": 3, "start_period": START_PERIOD},
            "restart": "unless-stopped",
            "labels": labels | {"quizstack.role": "storage"},
        }
    return found


def services(topology, plan, options):
    where = placement(topology, plan, options)
    labels = {"quizstack.scenario": topology.name}
    db = plan.database_host
    app_env = {
        "DJANGO_SETTINGS_MODULE": "quiz.settings",
        "DJANGO_ALLOWED_HOSTS": "*",
        "QUIZ_MEDIA_ROOT": plan.media_root,
        "QUIZ_DATABASE_URL": database_url_template(plan),
        "QUIZ_DEMO_USERS": "1" if plan.demo else "0",
        "QUIZ_MAX_BODY": str(render.MAX_BODY),
        "PYTHONUNBUFFERED": "1",
    }
    if options.storage == "glusterfs":
        # The web role's own mount: glusterfs in the foreground, every node a volfile server.
        app_env = app_env | {"QUIZ_MOUNT_COMMAND": render.glusterfs_client_command(plan),
                             "QUIZ_MOUNT": plan.mount}
    found = {db: {
        "image": options.image,
        "hostname": db,
        "init": True,
        "command": ["quiz-db"],
        "environment": {"PGDATA": PGDATA, "QUIZ_DB_NAME": plan.database_name,
                        "QUIZ_DB_USER": plan.database_user},
        "secrets": ["db_password"],
        "volumes": ["database:/var/lib/quiz-db", f"./postgres:{CONFIG_DIRS['postgres']}:ro"],
        "networks": _attach(where[db]),
        "healthcheck": {"test": ["CMD", "pg_isready", "-q", "-h", str(plan.database_address),
                                 "-p", str(plan.database_port), "-d", plan.database_name,
                                 "-U", plan.database_user],
                        "interval": "2s", "timeout": "3s", "retries": 3, "start_period": START_PERIOD},
        "restart": "unless-stopped",
        # PostgreSQL's fast shutdown (SIGTERM is its "smart" one, which waits for every client).
        "stop_signal": "SIGINT",
        "stop_grace_period": "30s",
        "labels": labels | {"quizstack.role": "database"},
    }}
    glusterfs = options.storage == "glusterfs"
    if glusterfs:
        found |= _storage_services(topology, plan, where, labels, options)
    for backend in plan.backends:
        config = f"./gunicorn/{backend.name}.conf.py:{CONFIG_DIRS['gunicorn']}/gunicorn.conf.py:ro"
        found[backend.name] = {
            "image": options.image,
            "hostname": backend.name,
            "init": True,
            "command": ["quiz-server"],
            "environment": app_env,
            "secrets": list(SECRETS),
            "volumes": [config] if glusterfs else [f"uploads:{plan.mount}", config],
            "networks": _attach(where[backend.name]),
            "depends_on": {name: {"condition": "service_healthy"}
                           for name in (db, *(n for n, _ in plan.storage_hosts if glusterfs))},
            "healthcheck": _health(f"http://{backend.address}:{plan.app_port}/healthz"),
            "restart": "unless-stopped",
            "stop_grace_period": "15s",
            "labels": labels | {"quizstack.role": "web"},
        }
        if glusterfs:
            # The FUSE mount of the volume, inside the container.
            found[backend.name] |= {"cap_add": ["SYS_ADMIN"], "devices": ["/dev/fuse:/dev/fuse"]}
    lb = plan.lb_hosts[0]
    found[lb] = {
        "image": options.image,
        "hostname": lb,
        "init": True,
        # The role's own command: the stats socket's folder, then HAProxy's master.
        "command": ["/bin/sh", "-c", "mkdir -p /run/haproxy && exec /usr/sbin/haproxy -W -db "
                                     f"-f {CONFIG_DIRS['haproxy']}/haproxy.cfg"],
        "volumes": [f"./haproxy/haproxy.cfg:{CONFIG_DIRS['haproxy']}/haproxy.cfg:ro",
                    f"./haproxy/quiz-503.http:{render.HAPROXY_503}:ro"],
        "networks": _attach(where[lb]),
        # The firewall's one rule: the service port, and nothing else, from outside;
        # here "outside" is the Docker host's loopback only.
        "ports": [f"127.0.0.1:{options.port}:{plan.port}"],
        "depends_on": {b.name: {"condition": "service_healthy"} for b in plan.backends},
        # Healthy: HAProxy answers on its socket, as the lb role's keepalived asks. Not a
        # request through it: that would take a turn in the round-robin every 2 s (the lab
        # keeps even Nagios's probes out of the users' rotation).
        "healthcheck": {"test": ["CMD", "python3", "-c", HAPROXY_ANSWERS], "interval": "2s",
                        "timeout": "3s", "retries": 3, "start_period": START_PERIOD},
        "restart": "unless-stopped",
        "labels": labels | {"quizstack.role": "loadbalancer"},
    }
    return found


def compose_file(topology, plan, options=Options()):
    """The docker-compose.yml as a dict (the Compose specification, read by docker-compose 1.29)."""
    labels = {"quizstack.scenario": topology.name}
    volumes = {"database": {"labels": labels}}
    if options.storage == "glusterfs":
        for name, _ in plan.storage_hosts:
            volumes[f"brick-{name}"] = {"labels": labels | {"quizstack.brick-of": plan.volume}}
            volumes[f"glusterd-{name}"] = {"labels": labels}
    else:
        volumes["uploads"] = {"labels": labels | {"quizstack.stands-for": f"GlusterFS volume {plan.volume}"}}
    return {
        "services": services(topology, plan, options),
        "networks": networks(topology, plan, options),
        "volumes": volumes,
        "secrets": {name: {"file": f"./secrets/{name}"} for name in SECRETS},
    }


def dockerfile(options=Options()):
    return "\n".join([
        "# QUIZ's image: Debian's Python with QUIZ and its dependencies from wheels made",
        "# on the Docker host (no network in the build). Written by `quizstack export compose`.",
        f"FROM {base_tag()}",
        "COPY wheels/ /tmp/wheels/",
        f"RUN python3 -m venv {VENV} \\",
        # The folder holds the whole closure (pip wheel resolved it): nothing else is looked for.
        f" && {VENV}/bin/pip install --no-index --no-deps --no-cache-dir /tmp/wheels/*.whl \\",
        " && rm -rf /tmp/wheels",
        "COPY bin/ /usr/local/bin/",
        f"ENV PATH={VENV}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \\",
        "    DJANGO_SETTINGS_MODULE=quiz.settings PYTHONUNBUFFERED=1",
        f'LABEL org.opencontainers.image.title="QUIZ" org.opencontainers.image.version="{quizstack.__version__}"',
        "",
    ])


_READ_SECRETS = '''
def secret(name):
    with open(f"/run/secrets/{name}") as f:
        return f.read().strip()
'''

SERVER_ENTRYPOINT = '''#!/opt/quiz/bin/python
"""A QUIZ server: secrets into the environment, the media folder, migrate and seed, then gunicorn.

Written by `quizstack export compose`. Every server migrates and seeds before
serving: QUIZ takes a PostgreSQL advisory lock, so one does the work and the
others find it done (the roles run it on the first server only).
"""
import os
import shlex
import shutil
import subprocess
import time
''' + _READ_SECRETS + f'''

env = dict(os.environ)
mount = env.pop("QUIZ_MOUNT", "")
if mount:
    # The GlusterFS volume, mounted as the web role mounts it (glusterfs in the foreground,
    # left running beside gunicorn, which reaps it if it ends).
    subprocess.Popen(shlex.split(env.pop("QUIZ_MOUNT_COMMAND")), stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not os.path.ismount(mount):
        if time.monotonic() > deadline:
            raise SystemExit(f"quiz-server: the volume is not mounted on {{mount}} after 120 s")
        time.sleep(0.2)
env["DATABASE_URL"] = env.pop("QUIZ_DATABASE_URL").replace({PASSWORD_MARK!r}, secret("db_password"))
env["DJANGO_SECRET_KEY"] = secret("django_secret_key")
media = env["QUIZ_MEDIA_ROOT"]
os.makedirs(media, exist_ok=True)
shutil.chown(media, "www-data", "www-data")
subprocess.run(["{VENV}/bin/django-admin", "migrate", "--noinput"], env=env, check=True)
# Only the seed sees the administrator's password (a teaching setup keeps the seed's own).
demo = env.get("QUIZ_DEMO_USERS") == "1"
subprocess.run(["{VENV}/bin/django-admin", "seed"], check=True,
               env=env if demo else dict(env, QUIZ_ADMIN_PASSWORD=secret("admin_password")))
os.execve("{VENV}/bin/gunicorn", ["gunicorn", "-c", "{CONFIG_DIRS['gunicorn']}/gunicorn.conf.py",
                                   "quiz.wsgi:application"], env)
'''

DATABASE_ENTRYPOINT = '''#!/usr/bin/python3
"""PostgreSQL for QUIZ: a cluster made on the first start, then the server in the foreground.

Written by `quizstack export compose`. The settings are the roles' own
(render.postgresql_conf, render.pg_hba_conf), mounted read-only; the app's
role and database are made once, its password read from the secret.
"""
import glob
import os
import pwd
import shutil
import subprocess
''' + _READ_SECRETS + f'''

data = os.environ["PGDATA"]
name, user = os.environ["QUIZ_DB_NAME"], os.environ["QUIZ_DB_USER"]
bin_dir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
conf = "{CONFIG_DIRS['postgres']}"


def as_postgres(argv, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, **kw)


for folder in (os.path.dirname(data), "/run/postgresql"):
    os.makedirs(folder, exist_ok=True)
    shutil.chown(folder, "postgres", "postgres")
if not os.path.exists(os.path.join(data, "PG_VERSION")):
    as_postgres([f"{{bin_dir}}/initdb", "-D", data, "--auth-local=peer", "--auth-host=scram-sha-256",
                 "--encoding=UTF8", "--locale=C.UTF-8", "--data-checksums"])
    # The password is URL-safe (letters, digits, '-', '_'): safe in a quoted literal.
    sql = (f"CREATE ROLE {{user}} LOGIN PASSWORD '{{secret('db_password')}}';\\n"
           f"CREATE DATABASE {{name}} OWNER {{user}};\\n")
    as_postgres([f"{{bin_dir}}/postgres", "--single", "-D", data, "postgres"], input=sql.encode(),
                stdout=subprocess.DEVNULL)
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(f"include '{{conf}}/postgresql.conf'\\n")
# PostgreSQL itself is what Docker's init starts, so the stop
# signal (SIGINT: a fast shutdown) reaches it, not a wrapper.
account = pwd.getpwnam("postgres")
os.initgroups("postgres", account.pw_gid)
os.setgid(account.pw_gid)
os.setuid(account.pw_uid)
os.execv(f"{{bin_dir}}/postgres", [f"{{bin_dir}}/postgres", "-D", data, "-c", f"hba_file={{conf}}/pg_hba.conf"])
'''


STORAGE_ENTRYPOINT = '''#!/usr/bin/python3
"""A GlusterFS storage node: glusterd; on the first node, the volume made as the storage role makes it.

Written by `quizstack export compose`. glusterd runs as a child; this process
passes it the stop signals and ends with it. The first node (QUIZ_VOLUME set)
probes the others until each is a connected peer, creates the volume with one
brick per node (`force`: the bricks are on the node's own file system), starts
it, and sets network.ping-timeout, each only when not done yet.
"""
import os
import signal
import subprocess
import sys
import time

GLUSTER = ["gluster", "--mode=script"]
env = os.environ
os.makedirs(os.path.dirname(env["QUIZ_BRICK"]), exist_ok=True)
glusterd = subprocess.Popen(["/usr/sbin/glusterd", "-N", "--log-file=-"])
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda number, _: glusterd.send_signal(number))


def gluster(*args):
    return subprocess.run(GLUSTER + list(args), capture_output=True, text=True)


def until(what, test, limit=180):
    deadline = time.monotonic() + limit
    while not test():
        if glusterd.poll() is not None or time.monotonic() > deadline:
            print(f"quiz-nas: gave up waiting for {what}", file=sys.stderr, flush=True)
            return False
        time.sleep(0.5)
    return True


volume = env.get("QUIZ_VOLUME")
if volume and until("glusterd", lambda: gluster("pool", "list").returncode == 0):
    peers = env["QUIZ_PEERS"].split()
    for peer in peers[1:]:
        until(f"peer {peer}", lambda: gluster("peer", "probe", peer).returncode == 0)
    connected = lambda: gluster("pool", "list").stdout.count("Connected") >= len(peers)
    if until("every peer connected", connected):
        if "Brick1" not in gluster("volume", "info", volume).stdout:
            bricks = [f"{peer}:{env['QUIZ_BRICK']}" for peer in peers]
            gluster("volume", "create", volume, "replica", env["QUIZ_REPLICA"], *bricks, "force")
        if "Status: Started" not in gluster("volume", "info", volume).stdout:
            gluster("volume", "start", volume)
        gluster("volume", "set", volume, "network.ping-timeout", env["QUIZ_PING_TIMEOUT"])
sys.exit(glusterd.wait())
'''


def gitignore():
    return "# Generated at `quizstack compose up` or by export; never committed.\nsecrets/\nimage/wheels/\n"


def meta(topology, plan, options, scenario):
    """What the runner needs besides the compose file (quizstack.json)."""
    return {"name": project_name(topology, options), "scenario": scenario,
            "port": options.port, "image": options.image, "base": base_tag(),
            "packages": list(BASE_PACKAGES), "suite": SUITE,
            "loadbalancer": plan.lb_hosts[0], "servers": list(plan.web_hosts),
            "database": plan.database_host, "media_root": plan.media_root,
            "storage": options.storage,
            "storage_hosts": [n for n, _ in plan.storage_hosts] if options.storage == "glusterfs" else []}


def files(topology, plan, options=Options(), scenario=None):
    """{relative path: text} of the whole export, secrets excepted."""
    project_name(topology, options)
    found = {
        "docker-compose.yml": dump_all([compose_file(topology, plan, options)]),
        ".env": f"COMPOSE_PROJECT_NAME={project_name(topology, options)}\n",
        ".gitignore": gitignore(),
        "haproxy/haproxy.cfg": render.haproxy_cfg(plan),
        "haproxy/quiz-503.http": haproxy_errorfile(),
        "postgres/postgresql.conf": render.postgresql_conf(single_database(plan)),
        "postgres/pg_hba.conf": render.pg_hba_conf(plan),
        "image/Dockerfile": dockerfile(options),
        "image/bin/quiz-server": SERVER_ENTRYPOINT,
        "image/bin/quiz-db": DATABASE_ENTRYPOINT,
        "image/bin/quiz-nas": STORAGE_ENTRYPOINT,
        META: json.dumps(meta(topology, plan, options, scenario or topology.name), indent=2) + "\n",
    }
    for backend in plan.backends:
        found[f"gunicorn/{backend.name}.conf.py"] = render.gunicorn_conf(plan, backend)
    return found


def write(directory, topology, plan, options=Options(), scenario=None):
    """Write the export into `directory`; generate the secrets there unless present. Returns the paths."""
    texts = files(topology, plan, options, scenario)
    written = []
    for relative, text in texts.items():
        path = os.path.join(directory, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", newline="") as f:      # byte for byte (the 503 page is CRLF)
            f.write(text)
        if relative.startswith("image/bin/"):
            os.chmod(path, 0o755)
        written.append(path)
    written += ensure_secrets(directory)
    return written


def ensure_secrets(directory):
    """secrets/<name>, 0600 in a 0700 folder: made once with Python's `secrets`, then kept."""
    folder = os.path.join(directory, "secrets")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    paths = []
    for name in SECRETS:
        path = os.path.join(folder, name)
        if not os.path.exists(path) or not open(path).read().strip():
            value = random.token_urlsafe(50 if name == "django_secret_key" else 24)
            fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
            os.replace(path + ".new", path)
        os.chmod(path, 0o600)
        paths.append(path)
    return paths

"""The service as Kubernetes manifests, from the scenario and its plan.

What stands in for what (docs/export.md says why):

- the app servers → a Deployment of QUIZ, one replica per app server of the
  scenario, ready and alive on `/healthz`, spread over nodes, with a
  PodDisruptionBudget and a HorizontalPodAutoscaler;
- the HAProxy pair → a Service and an Ingress (the cluster's ingress
  controller balances; its timeouts follow HAProxy's);
- the firewall → NetworkPolicies: default deny; only the ingress controller
  reaches QUIZ, only QUIZ (and its migration Job) reaches the database;
- PostgreSQL under Patroni → a CloudNativePG `Cluster`, as many instances as
  the scenario has database hosts, one synchronous standby when there are
  two or more (not strict, like our Patroni's), failover by the operator;
- the GlusterFS volume → a ReadWriteMany PersistentVolumeClaim;
- the first server's `migrate` and `seed` → a Job.

Secrets are never written: the manifests name Secrets that `create-secrets.sh`
(written beside them, holding no secret) creates in the cluster with values
made at that moment. Everything here is a pure function of (topology, plan,
Options) returning plain dicts; `files` lays them out as files' text, and
`validate` checks them offline against the Kubernetes schemas that the
kubernetes-validate package ships.
"""

import hashlib
from dataclasses import dataclass

import quizstack
from quizstack.deploy import render
from quizstack.errors import QuizstackError
from quizstack.export.yamltext import dump_all

KUBERNETES_VERSION = "1.32"      # the schemas the export is validated against by default
CNPG_API = "postgresql.cnpg.io/v1"
APP_SECRET = "quiz-django"       # key: secret-key
DB_SECRET = "quiz-db-app"        # kubernetes.io/basic-auth: username, password (CloudNativePG's initdb owner)
DB_CLUSTER = "quiz-db"
UPLOADS = "quiz-uploads"
# CloudNativePG fixes these itself (it owns the listening address and port).
CNPG_FIXED = ("listen_addresses", "port")


class ExportError(QuizstackError):
    """A manifest that fails validation, or options the export cannot honour."""


@dataclass(frozen=True)
class Options:
    image: str = f"quizstack/quiz:{quizstack.__version__}"
    namespace: str = ""                    # default: quiz-<scenario>
    host: str = ""                         # the Ingress's host name; empty: any
    ingress_class: str = "nginx"
    ingress_namespace: str = "ingress-nginx"   # where the ingress controller's pods run
    operator_namespace: str = "cnpg-system"    # where CloudNativePG's operator runs
    storage_class: str = ""                # a ReadWriteMany class for the uploads; empty: the cluster's default
    uploads_size: str = "10Gi"
    database_size: str = "10Gi"
    max_replicas: int = 0                  # the autoscaler's ceiling; 0: three times the servers


def _labels(topology, component, **extra):
    return {"app.kubernetes.io/name": "quiz", "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "quizstack", "quizstack/scenario": topology.name, **extra}


def _meta(name, namespace, labels):
    return {"name": name, "namespace": namespace, "labels": labels}


def namespace_of(topology, options):
    return options.namespace or f"quiz-{topology.name}"


def _postgres_parameters(plan):
    """The server settings our roles write (render.postgresql_conf), those the operator lets us set."""
    found = {}
    for line in render.postgresql_conf(plan).splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and not key.startswith("#") and key not in CNPG_FIXED:
            found[key] = value.strip().strip("'")
    return found


def database_cluster(topology, plan, options):
    ns = namespace_of(topology, options)
    instances = len(plan.database_hosts)
    spec = {
        "instances": instances,
        "primaryUpdateStrategy": "unsupervised",
        "postgresql": {"parameters": _postgres_parameters(plan)},
        "bootstrap": {"initdb": {"database": plan.database_name, "owner": plan.database_user,
                                 "secret": {"name": DB_SECRET}, "dataChecksums": True}},
        "storage": {"size": options.database_size},
        # One instance per node, as bbdd and bbdd2 are separate hosts.
        "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname",
                     "podAntiAffinityType": "required"},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    }
    if instances > 1:
        # A commit waits for one standby when there is one; alone, the primary
        # goes on (Patroni's synchronous_mode without strict, as in the lab).
        spec["minSyncReplicas"] = 0
        spec["maxSyncReplicas"] = 1
    if options.storage_class:
        spec["storage"]["storageClass"] = options.storage_class
    return {"apiVersion": CNPG_API, "kind": "Cluster",
            "metadata": _meta(DB_CLUSTER, ns, _labels(topology, "database") | {"app.kubernetes.io/name": DB_CLUSTER}),
            "spec": spec}


def uploads_claim(topology, plan, options):
    spec = {"accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": options.uploads_size}}}
    if options.storage_class:
        spec["storageClassName"] = options.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(UPLOADS, namespace_of(topology, options), _labels(topology, "uploads")),
            "spec": spec}


def _environment(plan):
    """QUIZ's environment (docs/app.md), its secrets by reference only."""
    env = [
        {"name": "DJANGO_SETTINGS_MODULE", "value": "quiz.settings"},
        {"name": "DJANGO_SECRET_KEY",
         "valueFrom": {"secretKeyRef": {"name": APP_SECRET, "key": "secret-key"}}},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": DB_SECRET, "key": "password"}}},
        # Kubernetes expands $(DB_PASSWORD), defined above: the URL never holds the password itself.
        # CloudNativePG's `-rw` Service always points at the primary (our router's job in the lab).
        {"name": "DATABASE_URL", "value": f"postgresql://{plan.database_user}:$(DB_PASSWORD)@"
                                           f"{DB_CLUSTER}-rw:{plan.database_port}/{plan.database_name}"},
        {"name": "QUIZ_MEDIA_ROOT", "value": plan.media_root},
        {"name": "DJANGO_ALLOWED_HOSTS", "value": "*"},
        {"name": "QUIZ_DB_WAIT_LIMIT", "value": "1.5"},
        {"name": "QUIZ_DEMO_USERS", "value": "1" if plan.demo else "0"},
    ]
    if plan.replicated:
        # `-r`: any running instance, for reads while there is no primary (the lab's port 5433).
        env.insert(4, {"name": "DATABASE_READ_URL",
                       "value": f"postgresql://{plan.database_user}:$(DB_PASSWORD)@{DB_CLUSTER}-r:"
                                f"{plan.database_port}/{plan.database_name}"})
    return env


def _pod_security():
    # www-data's ids, as on the lab's servers; the group owns the uploads volume.
    return {"runAsNonRoot": True, "runAsUser": 33, "runAsGroup": 33, "fsGroup": 33}


def _container_security():
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def _volumes():
    return [{"name": "uploads", "persistentVolumeClaim": {"claimName": UPLOADS}},
            {"name": "tmp", "emptyDir": {}}]


def _mounts(plan):
    return [{"name": "uploads", "mountPath": plan.mount}, {"name": "tmp", "mountPath": "/tmp"}]


def app_deployment(topology, plan, options):
    ns = namespace_of(topology, options)
    labels = _labels(topology, "server")
    selector = {"app.kubernetes.io/name": "quiz", "app.kubernetes.io/component": "server"}
    # gunicorn as the roles run it (render.gunicorn_conf): workers × threads, gthread.
    command = ["gunicorn", "quiz.wsgi:application", "--bind", f"0.0.0.0:{plan.app_port}",
               "--workers", str(plan.workers), "--error-logfile", "-", "--timeout", "30",
               "--graceful-timeout", "10"]
    if plan.threads > 1:
        command += ["--worker-class", "gthread", "--threads", str(plan.threads)]
    # The mount mirrors the lab: the uploads folder exists only on the volume.
    init = {"name": "media-folder", "image": options.image,
            "command": ["python3", "-c", f"import os; os.makedirs({plan.media_root!r}, exist_ok=True)"],
            "volumeMounts": _mounts(plan), "securityContext": _container_security(),
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}}
    memory = 128 + 96 * plan.workers
    container = {
        "name": "quiz", "image": options.image, "command": command,
        "ports": [{"name": "http", "containerPort": plan.app_port}],
        "env": _environment(plan),
        "volumeMounts": _mounts(plan),
        # Ready: HAProxy's health check (every 0.5 s, out after 2 misses), at the kubelet's pace.
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2,
                           "timeoutSeconds": 1, "failureThreshold": 2, "successThreshold": 1},
        # Alive: /healthz answers 503 while the database is away; only a pod
        # that fails for a minute is restarted, never all at once in a failover.
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                          "timeoutSeconds": 2, "failureThreshold": 6, "initialDelaySeconds": 10},
        "resources": {"requests": {"cpu": f"{250 * plan.workers}m", "memory": f"{memory}Mi"},
                      "limits": {"memory": f"{2 * memory}Mi"}},
        "securityContext": _container_security(),
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta("quiz", ns, labels),
            "spec": {
                "replicas": len(plan.backends),
                "selector": {"matchLabels": selector},
                # A server joins before one leaves: capacity never drops during a rollout.
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "quiz",
                        "automountServiceAccountToken": False,
                        "securityContext": _pod_security(),
                        "terminationGracePeriodSeconds": 30,
                        "topologySpreadConstraints": [{
                            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector}}],
                        "initContainers": [init],
                        "containers": [container],
                        "volumes": _volumes(),
                    }}}}


def service_account(topology, options):
    return {"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
            "metadata": _meta("quiz", namespace_of(topology, options), _labels(topology, "server"))}


def app_service(topology, plan, options):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta("quiz", namespace_of(topology, options), _labels(topology, "server")),
            "spec": {"type": "ClusterIP",
                     "selector": {"app.kubernetes.io/name": "quiz", "app.kubernetes.io/component": "server"},
                     "ports": [{"name": "http", "port": plan.port, "targetPort": "http", "protocol": "TCP"}]}}


def disruption_budget(topology, plan, options):
    servers = len(plan.backends)
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta("quiz", namespace_of(topology, options), _labels(topology, "server")),
            "spec": {"minAvailable": max(1, servers - 1),
                     "selector": {"matchLabels": {"app.kubernetes.io/name": "quiz",
                                                  "app.kubernetes.io/component": "server"}}}}


def autoscaler(topology, plan, options):
    servers = len(plan.backends)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta("quiz", namespace_of(topology, options), _labels(topology, "server")),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "quiz"},
                     "minReplicas": servers, "maxReplicas": options.max_replicas or 3 * servers,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}}


def ingress(topology, plan, options):
    rule = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": "quiz", "port": {"number": plan.port}}}}]}}
    if options.host:
        rule["host"] = options.host
    # ingress-nginx's names for what HAProxy does in the lab: a server that
    # does not accept in 0.5 s (nginx counts whole seconds: 1) is tried once
    # more elsewhere; writes wait at most 10 s; nginx never replays a POST.
    annotations = {
        "nginx.ingress.kubernetes.io/proxy-connect-timeout": "1",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "10",
        "nginx.ingress.kubernetes.io/proxy-next-upstream": "error timeout http_502",
        "nginx.ingress.kubernetes.io/proxy-next-upstream-tries": "3",
        "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
    } if options.ingress_class == "nginx" else {}
    metadata = _meta("quiz", namespace_of(topology, options), _labels(topology, "server"))
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata,
            "spec": {"ingressClassName": options.ingress_class, "rules": [rule]}}


def migrate_job(topology, plan, options):
    """`quizstack app migrate` and `seed`, once per image (the app's lock makes reruns safe)."""
    ns = namespace_of(topology, options)
    tag = hashlib.sha1(options.image.encode()).hexdigest()[:8]
    labels = _labels(topology, "migrate")
    container = {"name": "migrate", "image": options.image,
                 "command": ["sh", "-c", "quizstack app migrate && quizstack app seed"],
                 # Only the seed sees the administrator's password, never a server.
                 "env": _environment(plan) + ([] if plan.demo else [
                     {"name": "QUIZ_ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {
                         "name": APP_SECRET, "key": "admin-password"}}}]),
                 "volumeMounts": _mounts(plan),
                 "securityContext": _container_security(),
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                               "limits": {"memory": "256Mi"}}}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": _meta(f"quiz-migrate-{tag}", ns, labels),
            "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": 86400,
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "restartPolicy": "OnFailure", "serviceAccountName": "quiz",
                         "automountServiceAccountToken": False, "securityContext": _pod_security(),
                         "containers": [container], "volumes": _volumes()}}}}


def network_policies(topology, plan, options):
    """The firewall's rule, in the cluster: nothing moves unless named here."""
    ns = namespace_of(topology, options)
    labels = _labels(topology, "network")
    quiz = {"app.kubernetes.io/name": "quiz"}            # the servers and the migration Job
    servers = {"app.kubernetes.io/name": "quiz", "app.kubernetes.io/component": "server"}
    database = {"cnpg.io/cluster": DB_CLUSTER}
    db_port = {"protocol": "TCP", "port": plan.database_port}
    dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                   "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
           "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}

    def policy(name, selector, types, ingress=None, egress=None):
        spec = {"podSelector": {"matchLabels": selector} if selector else {}, "policyTypes": types}
        if ingress is not None:
            spec["ingress"] = ingress
        if egress is not None:
            spec["egress"] = egress
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": _meta(name, ns, labels), "spec": spec}

    def namespace(name):
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}

    return [
        # Default drop, both ways, for every pod of the namespace (the firewall's policy).
        policy("default-deny", None, ["Ingress", "Egress"]),
        policy("dns", None, ["Egress"], egress=[dns]),
        # The only way in: the ingress controller to QUIZ's port (the firewall's one rule).
        policy("quiz-from-ingress", servers, ["Ingress"], ingress=[{
            "from": [namespace(options.ingress_namespace)],
            "ports": [{"protocol": "TCP", "port": plan.app_port}]}]),
        policy("quiz-to-database", quiz, ["Egress"], egress=[{
            "to": [{"podSelector": {"matchLabels": database}}], "ports": [db_port]}]),
        # The database: QUIZ, its own instances (replication) and the operator
        # (its status port, 8000) reach it; it reaches its peers and the API server.
        policy("database", database, ["Ingress", "Egress"],
               ingress=[{"from": [{"podSelector": {"matchLabels": quiz}}], "ports": [db_port]},
                        {"from": [{"podSelector": {"matchLabels": database}}], "ports": [db_port]},
                        {"from": [namespace(options.operator_namespace)],
                         "ports": [{"protocol": "TCP", "port": 8000}, db_port]}],
               egress=[{"to": [{"podSelector": {"matchLabels": database}}], "ports": [db_port]},
                       # CloudNativePG's instance manager watches the Kubernetes API
                       # (its consensus): the API server's address differs per cluster.
                       {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}]),
    ]


def namespace_object(topology, options):
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace_of(topology, options),
                         "labels": {"app.kubernetes.io/part-of": "quizstack",
                                    "quizstack/scenario": topology.name}}}


def manifests(topology, plan, options=Options()):
    """{file name: [objects]} in the order `kubectl apply -f DIR` takes them."""
    return {
        "00-namespace.yaml": [namespace_object(topology, options)],
        "10-database.yaml": [database_cluster(topology, plan, options)],
        "20-uploads.yaml": [uploads_claim(topology, plan, options)],
        "30-app.yaml": [service_account(topology, options), app_deployment(topology, plan, options),
                        app_service(topology, plan, options), disruption_budget(topology, plan, options),
                        autoscaler(topology, plan, options)],
        "40-migrate.yaml": [migrate_job(topology, plan, options)],
        "50-ingress.yaml": [ingress(topology, plan, options)],
        "60-network.yaml": network_policies(topology, plan, options),
    }


def secrets_script(topology, plan, options=Options()):
    """A script that creates the Secrets the manifests name, with values made as it runs.

    It holds no secret: each value comes from Python's `secrets` at the moment
    it runs and goes straight to the cluster; a Secret that exists is kept.
    """
    ns = namespace_of(topology, options)
    token = "python3 -c 'import secrets; print(secrets.token_urlsafe({n}))'"
    return "\n".join([
        "#!/bin/sh",
        f"# Creates the Secrets the manifests of scenario {topology.name} name, in namespace {ns},",
        "# with random values made now (URL-safe: they go into the database URL as they are).",
        "# A Secret that exists is kept. Written by `quizstack export kubernetes`; holds no secret.",
        "set -eu",
        f'ns="${{NAMESPACE:-{ns}}}"',
        'kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"',
        f'kubectl -n "$ns" get secret {APP_SECRET} >/dev/null 2>&1 || \\',
        f'    kubectl -n "$ns" create secret generic {APP_SECRET} \\',
        f'        --from-literal=secret-key="$({token.format(n=50)})" \\',
        f'        --from-literal=admin-password="$({token.format(n=24)})"',
        f'kubectl -n "$ns" get secret {DB_SECRET} >/dev/null 2>&1 || \\',
        f'    kubectl -n "$ns" create secret generic {DB_SECRET} --type=kubernetes.io/basic-auth \\',
        f'        --from-literal=username={plan.database_user} \\',
        f'        --from-literal=password="$({token.format(n=24)})"',
        f'kubectl -n "$ns" label secret {APP_SECRET} {DB_SECRET} app.kubernetes.io/part-of=quizstack '
        '--overwrite >/dev/null',
        "",
    ])


def files(topology, plan, options=Options()):
    """{file name: text} of the whole export."""
    found = {name: dump_all(objects) for name, objects in manifests(topology, plan, options).items()}
    found["create-secrets.sh"] = secrets_script(topology, plan, options)
    return found


# -- validation ---------------------------------------------------------------------------


def check_cluster(obj):
    """The fields of CloudNativePG's Cluster the export relies on (not its published schema)."""
    problems = []
    spec = obj.get("spec") or {}
    if obj.get("apiVersion") != CNPG_API:
        problems.append(f"apiVersion {obj.get('apiVersion')!r}, expected {CNPG_API}")
    if not isinstance(spec.get("instances"), int) or spec["instances"] < 1:
        problems.append("spec.instances must be a positive integer")
    if not (spec.get("storage") or {}).get("size"):
        problems.append("spec.storage.size is missing")
    initdb = (spec.get("bootstrap") or {}).get("initdb") or {}
    if not initdb.get("database") or not initdb.get("owner"):
        problems.append("spec.bootstrap.initdb needs database and owner")
    if spec.get("minSyncReplicas", 0) > spec.get("maxSyncReplicas", 0) or \
            spec.get("maxSyncReplicas", 0) >= max(1, spec.get("instances", 1)):
        problems.append("synchronous replicas must be fewer than the instances, min <= max")
    return problems


def crd_schemas(crd_documents):
    """{(apiVersion, kind): openAPIV3Schema} from CustomResourceDefinition objects."""
    found = {}
    for crd in crd_documents:
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"].get("versions", []):
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                found[(f"{group}/{version['name']}", kind)] = schema
    return found


def _custom(obj, schemas):
    """Problems of a custom resource: its CRD's schema when given, else our own field check."""
    schema = schemas.get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        if obj.get("kind") == "Cluster" and obj.get("apiVersion", "").startswith("postgresql.cnpg.io/"):
            return check_cluster(obj), "checked for the fields the export uses (no CRD schema given)"
        return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')}"], ""
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(obj)], "validated against its CRD's schema"


def can_validate():
    """Whether the schemas are at hand (the kubernetes-validate package)."""
    import importlib.util

    return importlib.util.find_spec("kubernetes_validate") is not None


def is_custom(obj):
    """Whether an object is a custom resource: its API group is not one of Kubernetes's own."""
    api = obj.get("apiVersion", "")
    group = api.split("/")[0] if "/" in api else ""
    return "." in group and not group.endswith(".k8s.io")


def validate(objects, version=KUBERNETES_VERSION, crds=()):
    """Check every object offline; returns one line per object; raises ExportError on a problem.

    Built-in kinds go through kubernetes-validate's schemas of `version`
    (strict: an unknown field is an error); custom resources through the
    CustomResourceDefinitions given (`crds`, parsed documents), else a check of
    the fields the export relies on.
    """
    try:
        import kubernetes_validate
    except ImportError:
        raise ExportError("validation needs the kubernetes-validate package "
                          "(pip install -e '.[test]' installs it)") from None
    schemas = crd_schemas(crds)
    lines, problems = [], []
    if version.lstrip("v").count(".") < 1:
        raise ExportError(f"Kubernetes version {version!r}: give major.minor, e.g. {KUBERNETES_VERSION}")
    for obj in objects:
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        if is_custom(obj):
            found, how = _custom(obj, schemas)
            problems += [f"{name}: {p}" for p in found]
            lines.append(f"{name}: {how}")
            continue
        try:
            checked = kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.utils.VersionNotSupportedError:
            raise ExportError(f"kubernetes-validate {kubernetes_validate.__version__} has no schemas "
                              f"for Kubernetes {version}") from None
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(top)"
            problems.append(f"{name}: {where}: {exc.message}")
            continue
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
            problems.append(f"{name}: {exc.message}")
            continue
        lines.append(f"{name}: valid for Kubernetes {checked}")
    if problems:
        raise ExportError("invalid manifest(s): " + "; ".join(problems))
    return lines


def read_crds(paths):
    """The documents of CRD files (YAML, as projects publish them), for `validate`."""
    try:
        import yaml
    except ImportError:
        raise ExportError("reading CRD files needs PyYAML (pip install -e '.[test]' installs it)") from None
    documents = []
    for path in paths:
        try:
            with open(path) as f:
                documents += [d for d in yaml.safe_load_all(f) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise ExportError(f"{path}: cannot read CRDs ({exc})") from None
    return documents

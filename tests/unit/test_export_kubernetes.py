"""quizstack export kubernetes: valid manifests for both scenarios, broken ones refused, no secret in them."""

import copy
import json

import pytest

from quizstack.deploy.plan import build_plan
from quizstack.export import kubernetes as k8s
from quizstack.topology import load_scenario

yaml = pytest.importorskip("yaml")
pytest.importorskip("kubernetes_validate")


def _export(name, **options):
    topo = load_scenario(name)
    plan = build_plan(topo)
    return topo, plan, k8s.files(topo, plan, k8s.Options(**options))


def _objects(files):
    return [d for name, text in files.items() if name.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("name", ["pfinal", "complete"])
def test_the_files_validate_against_the_kubernetes_schemas(name):
    topo, plan, files = _export(name)
    objects = _objects(files)        # read back from the files' text, as kubectl would
    lines = k8s.validate(objects, k8s.KUBERNETES_VERSION)
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Deployment", "Service", "Ingress", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "NetworkPolicy", "PersistentVolumeClaim", "Job",
            "Cluster"} <= kinds
    assert sum("valid for Kubernetes 1.32" in line for line in lines) == len(objects) - 1


@pytest.mark.parametrize("name", ["pfinal", "complete"])
def test_the_service_follows_the_scenario(name):
    topo, plan, files = _export(name)
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _objects(files)}
    deployment = objects[("Deployment", "quiz")]
    assert deployment["spec"]["replicas"] == len(plan.backends)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["image"] == "quizstack/quiz:0.1.0"
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["value"].startswith(f"postgresql://{plan.database_user}:$(DB_PASSWORD)@quiz-db-rw:")
    assert ("DATABASE_READ_URL" in env) == plan.replicated
    assert env["DJANGO_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == k8s.APP_SECRET
    cluster = objects[("Cluster", "quiz-db")]
    assert cluster["spec"]["instances"] == len(plan.database_hosts)
    assert cluster["spec"].get("maxSyncReplicas", 0) == (1 if plan.replicated else 0)
    claim = objects[("PersistentVolumeClaim", "quiz-uploads")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert objects[("PodDisruptionBudget", "quiz")]["spec"]["minAvailable"] == len(plan.backends) - 1


def test_the_network_policies_deny_by_default_and_name_every_path():
    _, plan, files = _export("complete")
    policies = {o["metadata"]["name"]: o["spec"] for o in _objects(files) if o["kind"] == "NetworkPolicy"}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    into_quiz = policies["quiz-from-ingress"]["ingress"]
    assert into_quiz == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}}], "ports": [{"protocol": "TCP", "port": 8000}]}]
    clients = [f["podSelector"]["matchLabels"] for rule in policies["database"]["ingress"]
               for f in rule["from"] if "podSelector" in f]
    assert clients == [{"app.kubernetes.io/name": "quiz"}, {"cnpg.io/cluster": "quiz-db"}]


def test_a_deployment_without_containers_fails_validation():
    _, _, files = _export("pfinal")
    deployment = next(o for o in _objects(files) if o["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    del broken["spec"]["template"]["spec"]["containers"]
    with pytest.raises(k8s.ExportError, match="'containers' is a required property"):
        k8s.validate([broken])


def test_a_wrong_api_version_or_an_unknown_field_fails_validation():
    _, _, files = _export("pfinal")
    deployment = next(o for o in _objects(files) if o["kind"] == "Deployment")
    wrong = dict(deployment, apiVersion="apps/v1beta9")
    with pytest.raises(k8s.ExportError, match="Couldn't find schema for kind Deployment"):
        k8s.validate([wrong])
    typo = copy.deepcopy(deployment)
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    with pytest.raises(k8s.ExportError, match="replica"):
        k8s.validate([typo])


def test_a_custom_resource_is_checked_against_a_crd_when_given():
    _, _, files = _export("complete")
    cluster = next(o for o in _objects(files) if o["kind"] == "Cluster")
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "spec": {"group": "postgresql.cnpg.io", "names": {"kind": "Cluster"}, "versions": [
               {"name": "v1", "schema": {"openAPIV3Schema": {
                   "type": "object", "properties": {"spec": {
                       "type": "object", "required": ["instances"],
                       "properties": {"instances": {"type": "integer", "maximum": 1}}}}}}}]}}
    with pytest.raises(k8s.ExportError, match="spec.instances: 2 is greater than the maximum of 1"):
        k8s.validate([cluster], crds=[crd])
    broken = copy.deepcopy(cluster)
    del broken["spec"]["storage"]
    with pytest.raises(k8s.ExportError, match="spec.storage.size is missing"):
        k8s.validate([broken])


def test_no_secret_is_written_and_the_script_makes_them_at_apply_time():
    _, plan, files = _export("complete", host="quiz.example.org")
    text = "".join(files.values())
    assert "Secret" not in {o["kind"] for o in _objects(files)}
    assert "stringData" not in text and "\ndata:" not in text
    for env in (c.get("env", []) for o in _objects(files) if o["kind"] in ("Deployment", "Job")
                for c in o["spec"]["template"]["spec"]["containers"]):
        secret_names = {"DJANGO_SECRET_KEY", "DB_PASSWORD"}
        assert all("valueFrom" in e for e in env if e["name"] in secret_names)
    script = files["create-secrets.sh"]
    assert "secrets.token_urlsafe" in script
    assert f"create secret generic {k8s.DB_SECRET} --type=kubernetes.io/basic-auth" in script


def test_the_cli_writes_the_files_and_validates(tmp_path, capsys):
    from quizstack.cli import main

    assert main(["export", "kubernetes", "pfinal", "-o", str(tmp_path / "k8s")]) == 0
    out = capsys.readouterr().out
    assert "Deployment/quiz: valid for Kubernetes 1.32" in out
    names = sorted(p.name for p in (tmp_path / "k8s").iterdir())
    assert names[0] == "00-namespace.yaml" and "create-secrets.sh" in names
    assert (tmp_path / "k8s" / "create-secrets.sh").stat().st_mode & 0o111
    assert main(["export", "kubernetes", "pfinal", "-o", str(tmp_path / "x"),
                 "--kubernetes-version", "9.99"]) == 1
    assert "no schemas for Kubernetes 9.99" in capsys.readouterr().err

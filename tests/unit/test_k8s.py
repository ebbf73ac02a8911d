"""deploy/k8s/ is what an operator applies: valid Kubernetes objects (checked against the API's own
schemas, oldest and newest supported release), a Deployment with probes per service, and settings
the code knows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from gongji.services import SERVICES
from gongji.settings import Settings

from tests.unit.test_deploy import COMING, compose, gongji_services, unknown_settings

K8S = Path(__file__).parents[2] / "deploy" / "k8s"
#: The oldest Kubernetes the manifests target (autoscaling/v2, policy/v1) and the newest schemas known.
VERSIONS = ("1.25.0", "1.37.0")


def objects() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        found += [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    return found


def by_kind(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects() if o["kind"] == kind}


def containers() -> list[dict]:
    pods = [o["spec"]["template"]["spec"] for o in objects() if o["kind"] in ("Deployment", "Job")]
    return [c for pod in pods for c in pod["containers"]]


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_for_the_kubernetes_api(version):
    for obj in objects():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} (Kubernetes {version}): {error.message} "
                        f"at {'.'.join(map(str, error.path))}")


def test_every_service_has_a_deployment_with_probes_on_healthz():
    deployments = by_kind("Deployment")
    runs = {}
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == "run", name
        runs[container["args"][1]] = container
    assert set(SERVICES) <= set(runs) <= set(SERVICES) | COMING
    compose_runs = {tuple(s["command"]) for s in gongji_services(compose()).values()}
    assert {("run", name) for name in runs} | {("topics", "create")} == compose_runs, "compose and k8s differ"
    config = by_kind("ConfigMap")["gongji-config"]["data"]
    for service, container in runs.items():
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == int(config["GONGJI_METRICS_PORT"]), service
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, (service, probe)
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"], service
    assert config["GONGJI_METRICS_HOST"] == "0.0.0.0"


def test_one_image_for_everything_and_the_topics_job_runs_first():
    assert {c["image"] for c in containers()} == {"gongji:0.1.0"}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert [i["name"] for i in kustomization["images"]] == ["gongji"]
    (job_container,) = by_kind("Job")["gongji-topics"]["spec"]["template"]["spec"]["containers"]
    assert job_container["args"] == ["topics", "create"]


def test_settlement_is_scaled_no_further_than_its_partitions_and_drained_one_at_a_time():
    config = by_kind("ConfigMap")["gongji-config"]["data"]
    settlement = by_kind("Deployment")["gongji-settlement"]
    assert settlement["spec"]["replicas"] > 1
    hpa = by_kind("HorizontalPodAutoscaler")["gongji-settlement"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gongji-settlement"
    assert settlement["spec"]["replicas"] <= hpa["spec"]["maxReplicas"] <= int(config["GONGJI_PARTITIONS"])
    pdb = by_kind("PodDisruptionBudget")["gongji-settlement"]
    assert pdb["spec"]["selector"] == settlement["spec"]["selector"]


def test_services_select_their_pods_and_the_dashboard_is_served():
    deployments = by_kind("Deployment")
    for name, service in by_kind("Service").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        assert "metrics" in {p["name"] for p in service["spec"]["ports"]}, name
    dashboard = {p["name"]: p["port"] for p in by_kind("Service")["gongji-dashboard"]["spec"]["ports"]}
    (container,) = deployments["gongji-dashboard"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert dashboard["http"] == int(env["GONGJI_DASHBOARD_PORT"]) and env["GONGJI_DASHBOARD_HOST"] == "0.0.0.0"


def test_the_database_url_comes_from_the_secret_and_every_variable_is_a_setting():
    secret = by_kind("Secret")["gongji-secrets"]
    config = by_kind("ConfigMap")["gongji-config"]["data"]
    assert set(secret["stringData"]) == {"GONGJI_DATABASE_URL", "GONGJI_METRICS_TOKEN", "GONGJI_DASHBOARD_TOKEN",
                                         "GONGJI_PSEUDONYM_KEY"}
    names = set(config) | set(secret["stringData"])
    for container in containers():
        for ref in container.get("envFrom", ()):
            assert ref["configMapRef"]["name"] == "gongji-config"
        for variable in container.get("env", ()):
            names.add(variable["name"])
            if "valueFrom" in variable:
                assert variable["valueFrom"]["secretKeyRef"] == {"name": "gongji-secrets", "key": variable["name"]}
    (ledger,) = by_kind("Deployment")["gongji-ledger"]["spec"]["template"]["spec"]["containers"]
    assert "GONGJI_DATABASE_URL" in {v["name"] for v in ledger["env"]}
    # Metrics off loopback (GONGJI_METRICS_HOST 0.0.0.0, for the kubelet's probes and Prometheus) need
    # a token: every service has it, the dashboard its own credential and pseudonym key too.
    assert config["GONGJI_METRICS_HOST"] == "0.0.0.0"
    for container in containers():
        if container["args"][:1] == ["run"]:
            assert "GONGJI_METRICS_TOKEN" in {v["name"] for v in container.get("env", ())}, container["name"]
    (dashboard,) = by_kind("Deployment")["gongji-dashboard"]["spec"]["template"]["spec"]["containers"]
    assert {"GONGJI_DASHBOARD_TOKEN", "GONGJI_PSEUDONYM_KEY"} <= {v["name"] for v in dashboard["env"]}
    assert unknown_settings(names) == []
    settings = Settings(**{k.removeprefix("GONGJI_").lower(): v for k, v in config.items()})
    assert settings.redis_cluster and settings.replication_factor == 3 and settings.topic_min_insync_replicas == 2


def test_kubectl_builds_the_kustomization():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in objects())

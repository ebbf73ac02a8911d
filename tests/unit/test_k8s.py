"""deploy/k8s/ is what an operator applies: valid Kubernetes objects (checked against the API's own
schemas, oldest and newest supported release), a Deployment with probes per service, and settings
the code knows."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

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
    jobs = {tuple(o["spec"]["template"]["spec"]["containers"][0]["args"]) for o in objects() if o["kind"] == "Job"}
    assert {("run", name) for name in runs} | jobs == compose_runs, "compose and k8s differ"
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


def pod_specs() -> dict[str, dict]:
    """{workload: pod template spec} of every object that runs pods, whatever its kind."""
    found = {}
    for obj in objects():
        spec = obj.get("spec", {})
        if obj["kind"] == "Pod":
            pod = spec
        elif obj["kind"] == "CronJob":
            pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        elif "template" in spec:
            pod = spec["template"]["spec"]
        else:
            continue
        found[obj["metadata"]["name"]] = pod
    return found


def pod_labels() -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
            for o in objects() if "template" in o.get("spec", {})}


def environment(container: dict) -> dict[str, str]:
    """The container's variables: the ConfigMap's, then its own `env` (which wins)."""
    env = dict(by_kind("ConfigMap")["gongji-config"]["data"])
    env.update({v["name"]: v.get("value") for v in container.get("env", ())})
    return env


WORKLOADS = {f"gongji-{name}" for name in SERVICES} | {"gongji-topics", "gongji-ledger-migrate"}


def test_every_workload_runs_unprivileged_without_a_token_under_runtime_default_seccomp():
    pods = pod_specs()
    assert WORKLOADS <= set(pods), f"no workload for {WORKLOADS - set(pods)}"
    for name, pod in pods.items():
        assert pod.get("automountServiceAccountToken") is False, f"{name}: a service account token is mounted"
        assert not (pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC")), name
        context = pod.get("securityContext", {})
        assert context.get("runAsNonRoot") is True and context.get("runAsUser", 0) > 0, f"{name}: runAsNonRoot"
        assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, f"{name}: seccompProfile"
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{name}/{container['name']}"
            own = container.get("securityContext", {})
            assert own.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert own.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
            assert own.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities not all dropped"
            assert not own.get("capabilities", {}).get("add") and not own.get("privileged"), where
            assert own.get("runAsNonRoot", True) is True and own.get("runAsUser", 1) != 0, where
            assert own.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}, where


def documented_secrets() -> dict[str, set[str]]:
    """{Secret: its keys} as the `kubectl create secret generic` commands of deploy/README.md make them."""
    text = (K8S.parent / "README.md").read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if match := re.search(r"kubectl -n gongji create secret generic (\S+)(.*)", line):
            found[match[1]] = set(re.findall(r"--from-file=([\w.-]+)=", match[2]))
    return found


def test_every_secret_is_a_file_of_the_pods_own_secret_created_by_a_documented_command():
    """No Secret (nor any value of one) in the repository; a pod reads its credentials as files of
    its own Secret (one per workload: no pod can read another's), mounted read-only and not
    world-readable, through the `_FILE` settings; deploy/README.md creates each key a pod names."""
    assert by_kind("Secret") == {}, "a Secret in the repository: create it with the documented command"
    documented = documented_secrets()
    used = set()
    for name, pod in pod_specs().items():
        volumes = {v["name"]: v for v in pod.get("volumes", ())}
        for container in pod["containers"]:
            mounts = {}
            for mount in container.get("volumeMounts", ()):
                if secret := volumes[mount["name"]].get("secret"):
                    assert mount.get("readOnly") is True, f"{name}: {mount['mountPath']} writable"
                    assert secret.get("defaultMode", 0o644) & 0o007 == 0, f"{name}: secret files world-readable"
                    mounts[mount["mountPath"]] = secret["secretName"]
            assert set(mounts.values()) <= {name}, f"{name} mounts another workload's Secret {mounts}"
            for variable in container.get("env", ()):
                key = variable["name"]
                assert "secretKeyRef" not in variable.get("valueFrom", {}), f"{name}: {key} from a Secret as a variable"
                # GONGJI_INPUT_SIGNING_KEY names a key by its id; the secret is in the keys file's own file.
                assert not re.search(r"(PASSWORD|TOKEN|_KEY|SECRET)$", key) or key == "GONGJI_INPUT_SIGNING_KEY", \
                    f"{name}: {key} holds a secret in the manifest"
                assert not re.search(r"://[^/@\s]*:[^/@\s]*@", variable.get("value") or ""), f"{name}: {key} has a password"
                if key.endswith("_FILE") and key != "GONGJI_KAFKA_SSL_CAFILE":
                    path = PurePosixPath(variable["value"])
                    secret = mounts.get(str(path.parent))
                    assert secret, f"{name}: {key}={path} is not a file of a mounted Secret"
                    assert path.name in documented.get(secret, set()), \
                        f"{name}: deploy/README.md creates no key {path.name} in Secret {secret}"
                    used.add((secret, path.name))
    assert {(s, k) for s, keys in documented.items() for k in keys} == used, "documented keys nobody reads"
    config = by_kind("ConfigMap")["gongji-config"]["data"]
    assert not [k for k, v in config.items() if re.search(r"PASSWORD|TOKEN|://[^/@\s]*:[^/@\s]*@", f"{k}={v}")]


def test_each_workload_has_its_own_principals_and_its_settings_are_valid():
    from gongji.local.store_users import REDIS_RULES

    redis_users = set()
    for name, pod in pod_specs().items():
        (container,) = pod["containers"]
        env = environment(container)
        assert unknown_settings(env) == [], name
        assert env["GONGJI_KAFKA_SSL_CAFILE"], name
        if name != "gongji-ledger-migrate":  # which never dials Kafka
            assert env["GONGJI_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
            assert env["GONGJI_KAFKA_SASL_USERNAME"] == name, f"{name} is not Kafka principal {name}"
        if "GONGJI_REDIS_USERNAME" in env:
            assert env["GONGJI_REDIS_USERNAME"] == name and env["GONGJI_REDIS_PASSWORD_FILE"], name
            redis_users.add(name.removeprefix("gongji-"))
        fields = {k.removeprefix("GONGJI_").lower(): v for k, v in env.items()}
        settings = Settings(**fields)
        assert settings.redis_url.startswith("rediss://") and settings.redis_cluster, name
    assert redis_users == set(REDIS_RULES), "the Redis users of deploy/redis/users.acl.example"
    (ledger,) = pod_specs()["gongji-ledger"]["containers"]
    (migrate,) = pod_specs()["gongji-ledger-migrate"]["containers"]
    assert environment(ledger)["GONGJI_DATABASE_URL"].startswith("postgresql://gongji_ledger@")
    assert "GONGJI_LEDGER_MIGRATION_URL" not in environment(ledger), "the service does not migrate"
    assert environment(migrate)["GONGJI_LEDGER_MIGRATION_URL"].startswith("postgresql://gongji_ledger_owner@")
    assert environment(migrate)["GONGJI_LEDGER_WRITER_ROLE"] == "gongji_ledger"
    assert migrate["args"] == ["ledger", "migrate"]
    for url in (environment(ledger)["GONGJI_DATABASE_URL"], environment(migrate)["GONGJI_LEDGER_MIGRATION_URL"]):
        assert "sslmode=verify-full" in url, url
    # Metrics off loopback (GONGJI_METRICS_HOST 0.0.0.0, for the kubelet's probes and Prometheus) need
    # a token: every service has one, the dashboard its own credential and pseudonym key too.
    assert by_kind("ConfigMap")["gongji-config"]["data"]["GONGJI_METRICS_HOST"] == "0.0.0.0"
    for name, pod in pod_specs().items():
        (container,) = pod["containers"]
        if container["args"][:1] == ["run"]:
            assert environment(container).get("GONGJI_METRICS_TOKEN_FILE"), f"{name}: /metrics without a token"
    (dashboard,) = pod_specs()["gongji-dashboard"]["containers"]
    assert environment(dashboard)["GONGJI_DASHBOARD_TOKEN_FILE"] and environment(dashboard)["GONGJI_PSEUDONYM_KEY_FILE"]
    roles = (K8S.parent / "postgres" / "roles.sql").read_text()
    assert "CREATE ROLE gongji_ledger_owner" in roles and "CREATE ROLE gongji_ledger " in roles


def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", ()):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", ())
        if not {"In": lambda: labels.get(key) in values, "NotIn": lambda: labels.get(key) not in values,
                "Exists": lambda: key in labels, "DoesNotExist": lambda: key not in labels}[operator]():
            return False
    return True


def reachable(labels: dict, direction: str) -> set[tuple[str, str, int]] | None:
    """What NetworkPolicies let a pod with `labels` reach (Egress) or be reached from (Ingress):
    {(namespace/app of the peer, protocol, port)}; None when no policy isolates it that way."""
    allowed, isolated = set(), False
    for policy in by_kind("NetworkPolicy").values():
        spec = policy["spec"]
        if direction not in spec["policyTypes"] or not selects(spec["podSelector"], labels):
            continue
        isolated = True
        for rule in spec.get(direction.lower(), ()):
            peers, ports = rule.get("to" if direction == "Egress" else "from"), rule.get("ports")
            assert peers and ports, f"{policy['metadata']['name']}: a rule without peers or ports opens everything"
            for peer in peers:
                assert set(peer) == {"namespaceSelector", "podSelector"}, f"{policy['metadata']['name']}: {peer}"
                namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                pods = peer["podSelector"]["matchLabels"]
                app = pods.get("app.kubernetes.io/name") or pods["k8s-app"]
                allowed |= {(f"{namespace}/{app}", p.get("protocol", "TCP"), p["port"]) for p in ports}
    return allowed if isolated else None


def test_network_policies_let_each_workload_reach_exactly_what_it_needs():
    config = by_kind("ConfigMap")["gongji-config"]["data"]
    (deny,) = [p for p in by_kind("NetworkPolicy").values() if p["spec"]["podSelector"] == {}
               and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"], "default-deny allows something"
    kafka_ports = {int(a.rsplit(":", 1)[1]) for a in config["GONGJI_KAFKA_BOOTSTRAP_SERVERS"].split(",")}
    (kafka_port,) = kafka_ports
    redis_port = int(re.search(r":(\d+)/", config["GONGJI_REDIS_URL"])[1])
    dns = {("kube-system/kube-dns", "UDP", 53), ("kube-system/kube-dns", "TCP", 53)}
    scrape = {("monitoring/prometheus", "TCP", int(config["GONGJI_METRICS_PORT"]))}
    for name, labels in pod_labels().items():
        (container,) = pod_specs()[name]["containers"]
        env = environment(container)
        expected = set(dns)
        if name != "gongji-ledger-migrate":
            expected.add(("kafka/kafka", "TCP", kafka_port))
        if "GONGJI_REDIS_USERNAME" in container_env_names(container):
            expected.add(("redis/redis", "TCP", redis_port))
        if name in ("gongji-ledger", "gongji-ledger-migrate", "gongji-dashboard"):
            url = env.get("GONGJI_LEDGER_MIGRATION_URL") or env["GONGJI_DATABASE_URL"]
            expected.add(("postgres/postgres", "TCP", int(re.search(r":(\d+)/", url)[1])))
        assert reachable(labels, "Egress") == expected, name
        ingress = set()
        if any(p["name"] == "metrics" for p in container.get("ports", ())):
            ingress |= scrape
        if name == "gongji-dashboard":
            ingress.add(("ingress-nginx/ingress-nginx", "TCP", int(env["GONGJI_DASHBOARD_PORT"])))
        if name == "gongji-gateway":  # the hospitals' systems, through the ingress controller
            ingress.add(("ingress-nginx/ingress-nginx", "TCP", int(env["GONGJI_GATEWAY_PORT"])))
        assert reachable(labels, "Ingress") == ingress, name


def container_env_names(container: dict) -> set[str]:
    return {v["name"] for v in container.get("env", ())}


def test_kubectl_builds_the_kustomization():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in objects())

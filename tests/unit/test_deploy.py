"""docker-compose.yml runs what the code defines, and is a file Docker Compose accepts (there is no
Docker engine here to run it: `docker-compose config` validates it, references included)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gongji.services import SERVICES
from gongji.settings import Settings

ROOT = Path(__file__).parents[2]
#: Services issue 5 is adding beside this change: `gongji run` knows them once they are merged.
COMING = {"ledger", "fraud", "dashboard"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_env(secrets_dir: Path | str = "/nonexistent/gongji-secrets") -> dict[str, str]:
    """The environment `docker-compose config` needs: the folder of the secret files."""
    return {**os.environ, "GONGJI_SECRETS_DIR": str(secrets_dir)}


def one_shot(service: dict) -> bool:
    """A job that runs once and exits (topics, ledger migrate, kafka-setup): no health check."""
    return service.get("restart") == "no"


def gongji_services(spec: dict) -> dict[str, dict]:
    """The compose services that run the Gongji image, by name."""
    return {name: s for name, s in spec["services"].items() if s.get("image", "").startswith("gongji")}


def unknown_settings(variables) -> list[str]:
    """The GONGJI_ variables among `variables` that name no Settings field (nested with `__`)."""
    unknown = []
    for variable in variables:
        if not variable.startswith("GONGJI_"):
            continue
        path = variable.removeprefix("GONGJI_").lower().split("__")
        model = Settings
        for part in path:
            fields = getattr(model, "model_fields", {})
            if part not in fields:
                unknown.append(variable)
                break
            model = fields[part].annotation if part in fields else None
    return unknown


def test_compose_file_is_valid_for_docker_compose():
    """`make test` installs Debian's docker-compose when it is missing and it may (root, apt);
    elsewhere the check is skipped, except in CI, where a missing validator is a failure."""
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed: `make test` installs it with apt-get as root")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    result = subprocess.run([tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, env=compose_env())
    assert result.returncode == 0, result.stderr


def test_the_compose_check_catches_a_broken_file(tmp_path):
    """The validator above truly validates: an undefined dependency and a bad key are refused."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose not installed")
    spec = compose()
    spec["services"]["settlement"]["depends_on"]["kafka-9"] = {"condition": "service_healthy"}
    spec["services"]["clearing"]["replicas"] = 2
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(spec))
    result = subprocess.run([tool, "-f", str(tmp_path / "docker-compose.yml"), "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, env=compose_env())
    assert result.returncode != 0
    assert "replicas" in result.stderr or "kafka-9" in result.stderr


def test_compose_runs_every_service_the_cli_defines_and_only_those():
    spec = compose()
    commands = {name: tuple(s.get("command", ())) for name, s in gongji_services(spec).items()}
    run = {command[1] for command in commands.values() if command[:1] == ("run",)}
    assert set(SERVICES) <= run, f"no container runs `gongji run` {set(SERVICES) - run}"
    assert run <= set(SERVICES) | COMING, f"`gongji run` knows no {run - set(SERVICES) - COMING}"
    assert {"ledger", "fraud", "dashboard"} <= run
    for name, command in commands.items():
        assert command[:1] == ("run",) and len(command) == 2 or command in (("topics", "create"), ("ledger", "migrate")), \
            (name, command)


def test_every_service_waits_for_the_topics_job():
    spec = compose()
    services = gongji_services(spec)
    assert services["topics"]["command"] == ["topics", "create"] and services["topics"]["restart"] == "no"
    for name, service in services.items():
        if service["command"][0] == "run":
            assert service["depends_on"]["topics"] == {"condition": "service_completed_successfully"}, name


def test_compose_kafka_is_three_brokers_replicating_every_topic_three_times():
    spec = compose()
    brokers = [name for name, s in spec["services"].items() if "KAFKA_PROCESS_ROLES" in s.get("environment", {})]
    assert len(brokers) == 3
    for name in brokers:
        env = spec["services"][name]["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3 and env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
    for name, service in gongji_services(spec).items():
        env = service["environment"]
        assert env["GONGJI_REPLICATION_FACTOR"] == "3" and env["GONGJI_TOPIC_MIN_INSYNC_REPLICAS"] == "2", name
        settings = Settings(**{k.removeprefix("GONGJI_").lower(): v for k, v in env.items()
                               if k.removeprefix("GONGJI_").lower() in Settings.model_fields})
        assert settings.replication_factor == 3 and settings.partitions > 1


def test_settlement_is_scaled_out_and_every_container_is_health_checked():
    spec = compose()
    assert spec["services"]["settlement"]["deploy"]["replicas"] > 1
    for name, service in spec["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name} has no health check"
        if check.get("disable"):  # only a one-shot job, done when it exits 0
            assert one_shot(service), name
            continue
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    for name, service in gongji_services(spec).items():
        if one_shot(service):
            continue
        env = service["environment"]
        # The health check runs inside the container: metrics stay on its loopback, open without a token.
        assert env.get("GONGJI_METRICS_HOST", "127.0.0.1") == "127.0.0.1", name
        assert f"127.0.0.1:{env['GONGJI_METRICS_PORT']}/healthz" in " ".join(service["healthcheck"]["test"]), name
        assert "curl" not in " ".join(service["healthcheck"]["test"]), "the slim image has no curl"


def test_redis_persists_postgres_serves_the_ledger_and_the_dashboard_is_published():
    spec = compose()
    services = spec["services"]
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes" and redis[redis.index("--appendfsync") + 1] == "everysec"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert services["ledger"]["environment"]["GONGJI_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in services["ledger"]["environment"]["GONGJI_DATABASE_URL"]
    assert services["ledger"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    port = services["dashboard"]["environment"]["GONGJI_DASHBOARD_PORT"]
    assert services["dashboard"]["environment"]["GONGJI_DASHBOARD_HOST"] == "0.0.0.0"
    assert f"127.0.0.1:{port}:{port}" in services["dashboard"]["ports"]  # published on the host's loopback only
    dashboard = services["dashboard"]["environment"]  # a credential and a pseudonym key, from secret files
    assert dashboard["GONGJI_DASHBOARD_TOKEN_FILE"] == "/run/secrets/dashboard-token"
    assert dashboard["GONGJI_PSEUDONYM_KEY_FILE"] == "/run/secrets/pseudonym-key"
    assert {s if isinstance(s, str) else s["source"] for s in services["dashboard"]["secrets"]} <= set(spec["secrets"])


def test_every_gongji_variable_in_compose_is_a_setting():
    for name, service in gongji_services(compose()).items():
        assert unknown_settings(service["environment"]) == [], name


# --- the image: hash-locked dependencies, a base pinned by digest, a non-root user -----------------

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (version, hashes)} of a `--generate-hashes` lock file."""
    from packaging.utils import canonicalize_name

    entries, current = {}, None
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("--hash") else line.strip()
        if not line:
            continue
        if line.startswith("--hash="):
            assert current is not None, f"{path.name}: a hash before any requirement"
            entries[current][1].append(line.removeprefix("--hash=").rstrip(" \\"))
            continue
        requirement = line.rstrip(" \\")
        name, _, version = requirement.partition("==")
        assert version and ";" not in version, f"{path.name}: {requirement} is not pinned with =="
        current = canonicalize_name(name.split("[")[0])
        entries[current] = (version, [])
    return entries


def dockerfile_images() -> list[str]:
    """The image of every FROM line, with ARG defaults filled in."""
    args, images = {}, []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["ARG"] and "=" in words[1]:
            name, _, value = words[1].partition("=")
            args[name] = value
        elif words[:1] == ["FROM"]:
            image = words[1]
            for name, value in args.items():
                image = image.replace("${" + name + "}", value).replace("$" + name, value)
            images.append(image)
    return images


def test_the_locks_pin_every_dependency_of_pyproject_with_hashes():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for lock_name, requirements in (("requirements.lock", project["project"]["dependencies"]),
                                    ("build-requirements.lock", project["build-system"]["requires"])):
        lock = locked(ROOT / "deploy" / lock_name)
        for text in requirements:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            assert name in lock, f"deploy/{lock_name} has no {name}: run deploy/lock.sh"
            assert requirement.specifier.contains(lock[name][0], prereleases=True), \
                f"deploy/{lock_name} pins {name}=={lock[name][0]}, pyproject asks {text}: run deploy/lock.sh"
            for extra in requirement.extras:  # psycopg[binary] → psycopg-binary, at the same version
                assert lock.get(canonicalize_name(f"{name}-{extra}"), ("",))[0] == lock[name][0], (name, extra)
        for name, (version, hashes) in lock.items():
            assert hashes and all(h.startswith("sha256:") and len(h) == 71 for h in hashes), (lock_name, name)


def test_the_image_installs_only_from_the_locks_on_a_base_pinned_by_digest_as_a_non_root_user():
    import re

    images = dockerfile_images()
    assert images, "no FROM line"
    for image in images:
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), f"{image} is not pinned by digest"
    text = DOCKERFILE.read_text()
    installs = [line for line in text.replace("\\\n", " ").splitlines() if "pip install" in line]
    for command in (part for line in installs for part in line.split("&&") if "pip install" in part):
        if "--no-deps" in command and "/wheels/" in command:
            continue  # Gongji's own wheel, built in the image from the copied sources
        assert "--require-hashes" in command and " -r deploy/" in command and ".lock" in command, command
    assert "--no-build-isolation" in text, "building Gongji must not fetch setuptools unlocked"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "the image runs as a numeric non-root user"


# --- compose: every credential a file of a secret, none with a default, every link TLS ---------------

#: Secrets several containers share: the CA's certificate (public; it is a file like the others).
SHARED_SECRETS = {"ca"}
CA_FILE = "GONGJI_KAFKA_SSL_CAFILE"


def mounted_secrets(service: dict) -> dict[str, str]:
    """{file name under /run/secrets: compose secret} of a service."""
    found = {}
    for secret in service.get("secrets", ()):
        source, target = (secret, secret) if isinstance(secret, str) else (secret["source"], secret.get("target", secret["source"]))
        found[target] = source
    return found


def test_compose_has_no_default_for_any_secret_and_stops_without_them():
    import re

    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"\$\{[A-Z0-9_]+:?-", text), "a ${VAR:-default}: a missing secret must stop compose"
    spec = compose()
    for name, secret in spec["secrets"].items():
        assert secret["file"].startswith("${GONGJI_SECRETS_DIR:?"), name
    for name, service in spec["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert not re.search(r"(PASSWORD|TOKEN|SECRET)$", key), f"{name}: {key} in the environment"
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", str(value)), f"{name}: {key} carries a password"
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose not installed")
    env = {k: v for k, v in os.environ.items() if k != "GONGJI_SECRETS_DIR"}
    result = subprocess.run([tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0 and "GONGJI_SECRETS_DIR" in result.stderr, result.stderr


def test_each_compose_service_reads_only_its_own_credentials_as_files():
    from gongji.local.store_users import REDIS_RULES

    spec = compose()
    for name, service in gongji_services(spec).items():
        env, mounted = service["environment"], mounted_secrets(service)
        principal = f"gongji-{name}"
        own = {"settlement": {"input-keys", "input-compose-key", "input-gateway-key"}, "dashboard": {"dashboard-token", "pseudonym-key", "postgres-reader-password"},
               "ledger-migrate": {"postgres-owner-password"}}.get(name, set())
        for source in mounted.values():  # the shared CA, its own passwords (named after it), its own keys
            assert source in SHARED_SECRETS | own or f"-{name}-" in f"-{source}-", f"{name} mounts {source}"
        for key, value in env.items():
            if key.endswith("_FILE") and value:
                path = Path(value)
                assert str(path.parent) == "/run/secrets" and path.name in mounted, f"{name}: {key}={value} is no secret of it"
        if name == "ledger-migrate":  # never dials Kafka
            assert env["GONGJI_KAFKA_SECURITY_PROTOCOL"] == "SSL" and "GONGJI_KAFKA_SASL_USERNAME" not in env
        else:
            assert env["GONGJI_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["GONGJI_KAFKA_SASL_USERNAME"] == principal
            assert mounted["kafka-password"] == f"kafka-{name}-password", name
        assert env[CA_FILE] == "/run/secrets/ca.pem" and mounted["ca.pem"] == "ca"
        if name in REDIS_RULES:
            assert env["GONGJI_REDIS_USERNAME"] == principal and mounted["redis-password"] == f"redis-{name}-password"
        else:
            assert "GONGJI_REDIS_USERNAME" not in env and "redis-password" not in mounted, name
        assert env["GONGJI_REDIS_URL"].startswith("rediss://"), name
        fields = {k.removeprefix("GONGJI_").lower(): v for k, v in env.items()}
        Settings(**fields)  # valid as it stands: the service would start on these
    services = spec["services"]
    assert services["ledger"]["environment"]["GONGJI_DATABASE_URL"].startswith("postgresql://gongji_ledger@")
    assert mounted_secrets(services["ledger"])["database-password"] == "postgres-ledger-password"
    migrate = services["ledger-migrate"]["environment"]
    assert migrate["GONGJI_LEDGER_MIGRATION_URL"].startswith("postgresql://gongji_ledger_owner@")
    assert migrate["GONGJI_LEDGER_WRITER_ROLE"] == "gongji_ledger"
    for url in (services["ledger"]["environment"]["GONGJI_DATABASE_URL"], migrate["GONGJI_LEDGER_MIGRATION_URL"]):
        assert "sslmode=verify-full" in url and "sslrootcert=/run/secrets/ca.pem" in url
    assert services["ledger"]["depends_on"]["ledger-migrate"] == {"condition": "service_completed_successfully"}
    # The dashboard's period view: the reader role, over verified TLS, once the tables exist.
    dashboard = services["dashboard"]
    assert dashboard["environment"]["GONGJI_DATABASE_URL"].startswith("postgresql://gongji_ledger_reader@")
    assert "sslmode=verify-full" in dashboard["environment"]["GONGJI_DATABASE_URL"]
    assert mounted_secrets(dashboard)["database-password"] == "postgres-reader-password"
    assert dashboard["depends_on"]["ledger-migrate"] == {"condition": "service_completed_successfully"}


def test_every_secret_file_a_container_names_is_mounted_in_it():
    """Each /run/secrets/<file> in a container's environment, command or health check (URLs
    included) is one of the secrets it mounts, under that name."""
    import re

    for name, service in compose()["services"].items():
        text = yaml.safe_dump({k: service.get(k) for k in ("environment", "command", "entrypoint", "healthcheck")})
        named = set(re.findall(r"/run/secrets/([\w.-]+)", text))
        assert named <= set(mounted_secrets(service)), f"{name} names {named - set(mounted_secrets(service))}"


def test_compose_kafka_authenticates_every_client_and_allows_only_what_the_acls_say():
    import re

    spec = compose()
    services = spec["services"]
    brokers = {n: s for n, s in services.items() if "KAFKA_PROCESS_ROLES" in s.get("environment", {})}
    clients = {n: s for n, s in gongji_services(spec).items() if s["environment"]["GONGJI_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"}
    for name, broker in brokers.items():
        env = broker["environment"]
        protocols = dict(pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert "PLAINTEXT" not in protocols.values() and "SASL_PLAINTEXT" not in protocols.values(), name
        for listener, protocol in protocols.items():
            if protocol == "SSL":
                assert env[f"KAFKA_LISTENER_NAME_{listener}_SSL_CLIENT_AUTH"] == "required", (name, listener)
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert set(env["KAFKA_SUPER_USERS"].split(";")) == {f"User:{b}" for b in brokers} | {"User:gongji-admin"}
        client_port = {l.split("://")[0]: int(l.rsplit(":", 1)[1]) for l in env["KAFKA_LISTENERS"].split(",")}
        sasl = [listener for listener, protocol in protocols.items() if protocol == "SASL_SSL"]
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        for client in clients.values():
            ports = {int(a.rsplit(":", 1)[1]) for a in client["environment"]["GONGJI_KAFKA_BOOTSTRAP_SERVERS"].split(",")}
            assert ports == {client_port[listener] for listener in sasl}
            assert client["environment"]["GONGJI_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert mounted_secrets(broker)["kafka.pem"] == f"{name}-keystore"
    setup = services["kafka-setup"]
    assert "./deploy/kafka-acls.sh:/etc/gongji/kafka-acls.sh:ro" in setup["volumes"]
    principals = re.search(r"for principal in ([^;]+);", (ROOT / "deploy/compose/kafka-setup.sh").read_text())[1].split()
    assert {f"gongji-{p}" for p in principals} == {c["environment"]["GONGJI_KAFKA_SASL_USERNAME"] for c in clients.values()}
    assert {f"kafka-{p}-password" for p in principals} <= set(mounted_secrets(setup).values())
    assert services["topics"]["depends_on"]["kafka-setup"] == {"condition": "service_completed_successfully"}


def test_compose_redis_and_postgres_take_users_from_the_secrets_and_speak_tls():
    spec = compose()
    redis, postgres = spec["services"]["redis"], spec["services"]["postgres"]
    command = redis["command"]
    assert command[:3] == ["sh", "/etc/gongji/redis/start.sh", "/etc/gongji/redis/users.acl.example"]
    assert "./deploy/redis:/etc/gongji/redis:ro" in redis["volumes"] and "--tls" in command
    from gongji.local.store_users import REDIS_RULES
    assert {f"redis-{s}-password" for s in REDIS_RULES} <= set(mounted_secrets(redis).values())
    assert "--user gongji-" in redis["healthcheck"]["test"][1] and "--tls" in redis["healthcheck"]["test"][1]
    env = postgres["environment"]
    assert "POSTGRES_PASSWORD" not in env and env["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    assert "POSTGRES_HOST_AUTH_METHOD" not in env
    assert "hba_file=/etc/gongji/postgres/pg_hba.compose.conf" in postgres["command"]
    assert postgres["command"][:2] == ["sh", "/etc/gongji/postgres/start.sh"]
    assert "./deploy/postgres/init-roles.sh:/docker-entrypoint-initdb.d/10-gongji-roles.sh:ro" in postgres["volumes"]
    lines = [line.split() for line in (ROOT / "deploy/postgres/pg_hba.compose.conf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines and all(line == ["local", "all", "postgres", "peer"] or (line[0] == "hostssl" and line[-1] == "scram-sha-256")
                         for line in lines), lines
    assert {line[2] for line in lines if line[0] == "hostssl"} == {"gongji_ledger_owner", "gongji_ledger", "gongji_ledger_reader"}


def test_the_secrets_script_makes_every_file_compose_names(tmp_path):
    """deploy/compose/secrets.sh, run for real: every secret file compose names exists and is not
    empty, no two passwords are the same, each server's certificate is signed by the CA for the
    name the clients dial, and compose accepts the file with that folder."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    folder = tmp_path / "secrets"
    result = subprocess.run(["sh", str(ROOT / "deploy/compose/secrets.sh"), str(folder)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert folder.stat().st_mode & 0o077 == 0, "the secrets folder is open to the host's other users"
    spec = compose()
    files = {name: folder / secret["file"].split("}/", 1)[1] for name, secret in spec["secrets"].items()}
    for name, path in files.items():
        assert path.is_file() and path.stat().st_size > 0, f"{name}: {path.name} not made"
    passwords = [path.read_text() for name, path in files.items() if name.endswith("-password")]
    assert len(set(passwords)) == len(passwords) and all(len(p) >= 32 for p in passwords)
    for host in ("kafka-1", "kafka-2", "kafka-3", "redis", "postgres"):
        certificate = folder / f"{host}.crt"
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(folder / "ca.pem"), "-verify_hostname", host,
                                   str(certificate)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    again = subprocess.run(["sh", str(ROOT / "deploy/compose/secrets.sh"), str(folder)], capture_output=True, text=True)
    assert again.returncode == 0 and [p.read_text() for n, p in files.items() if n.endswith("-password")] == passwords
    tool = shutil.which("docker-compose")
    if tool:
        result = subprocess.run([tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60, env=compose_env(folder))
        assert result.returncode == 0, result.stderr

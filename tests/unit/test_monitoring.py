"""deploy/monitoring: the alert rules pass `promtool check rules` and their own `promtool test rules`,
the dashboard's queries parse, and every metric they name is one a service exports (read from the
services' own registries, so a renamed metric fails here, not on a centre's wall)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from redis.asyncio import Redis

from gongji.clearing.service import ClearingService
from gongji.common.avro import SchemaCatalog
from gongji.dashboard.service import Dashboard
from gongji.fraud.service import FraudService
from gongji.ledger.service import LedgerService
from gongji.settings import Settings
from gongji.settlement.policy import load_policy_book
from gongji.settlement.service import SettlementService

pytestmark = pytest.mark.unit

MONITORING = Path(__file__).parents[2] / "deploy" / "monitoring"
RULES, RULE_TESTS, DASHBOARD = MONITORING / "rules.yml", MONITORING / "rules.test.yml", MONITORING / "grafana-dashboard.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
PROMETHEUS_OWN = {"up"}
NAME = re.compile(r"(?<![\w-])(gongji_[a-z0-9_]+|up)\b(?!\s*\()")


def registries() -> dict[str, object]:
    settings = Settings(dashboard_token="t" * 43, pseudonym_key="k" * 43)
    catalog, redis = SchemaCatalog(), Redis()
    return {
        "settlement": SettlementService(settings, catalog, load_policy_book(), redis).metrics.registry,
        "ledger": LedgerService(settings, catalog, store=None).metrics.registry,
        "clearing": ClearingService(settings, catalog, redis).metrics.registry,
        "fraud": FraudService(settings, catalog).metrics.registry,
        "dashboard": Dashboard(settings, catalog).metrics.registry,
    }


def exported() -> set[str]:
    """Every sample name some service's /metrics can carry."""
    names = set()
    for registry in registries().values():
        for family in registry.collect():
            names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def named(exprs: list[str]) -> set[str]:
    return {match for expr in exprs for match in NAME.findall(expr)}


def test_every_metric_the_rules_and_the_dashboard_name_is_exported():
    names = named(rule_exprs() + dashboard_exprs())
    assert {"gongji_fund_paid_fen_total", "gongji_settled_claims_total", "gongji_healthy",
            "gongji_ledger_posted_fen_total", "gongji_batch_seconds_bucket"} <= names  # the reading works
    assert names - exported() - PROMETHEUS_OWN == set()


def test_a_metric_no_service_exports_is_caught():
    assert named(['rate(gongji_settlements_paid_total[5m])']) - exported() == {"gongji_settlements_paid_total"}


def test_the_alerts_the_issue_asks_for_are_there():
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert {"GongjiConsumerLag", "GongjiDeadLetters", "GongjiRetryStorm", "GongjiServiceStalled",
            "GongjiLedgerImbalance", "GongjiFraudSignals"} <= alerts


promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                              reason="promtool not installed (make test installs Debian's prometheus)")


@promtool
def test_promtool_checks_and_tests_the_rules():
    for argv in (["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]):
        done = subprocess.run(["promtool", *argv], cwd=MONITORING, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@promtool
def test_the_dashboards_queries_are_promql(tmp_path):
    """Each panel's query, as a recording rule: promtool parses it as Prometheus would."""
    rules = [{"record": f"gongji:panel_{n}", "expr": expr} for n, expr in enumerate(dashboard_exprs())]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": [{"record": "x", "expr": "sum(("}]}]}))
    assert subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True).returncode != 0


SCRAPE = MONITORING / "prometheus.yml"


def test_the_scrape_config_has_a_job_per_service_on_its_headless_metrics_service():
    """Each service is scraped as gongji-<service> (the rules' `job`), through the SRV record of a
    headless Service of that name in deploy/k8s with a port named `metrics`."""
    from gongji.services import SERVICES
    from tests.unit.test_k8s import by_kind

    config = yaml.safe_load(SCRAPE.read_text())
    assert config["rule_files"] == [RULES.name]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {f"gongji-{service}" for service in SERVICES}
    services = by_kind("Service")
    for name, job in jobs.items():
        (sd,) = job["dns_sd_configs"]
        assert sd["type"] == "SRV" and sd["names"] == [f"_metrics._tcp.{name}.gongji.svc"], name
        service = services[name]["spec"]
        assert service["clusterIP"] == "None", f"{name}: a virtual IP would scrape one replica at random"
        assert "metrics" in {port["name"] for port in service["ports"]}, name
        assert job["authorization"]["credentials_file"].endswith("gongji-metrics-token"), name


@promtool
def test_promtool_checks_the_scrape_config(tmp_path):
    """`promtool check config` as an operator runs it: the token file present, rules.yml beside."""
    token = tmp_path / "token"
    token.write_text("t" * 43)
    (tmp_path / RULES.name).write_text(RULES.read_text())
    config = tmp_path / SCRAPE.name
    config.write_text(SCRAPE.read_text().replace("/etc/prometheus/secrets/gongji-metrics-token", str(token)))
    done = subprocess.run(["promtool", "check", "config", config.name], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    config.write_text(config.read_text().replace("type: SRV", "type: SRVX"))
    assert subprocess.run(["promtool", "check", "config", config.name], cwd=tmp_path, capture_output=True).returncode != 0

"""docker-compose.yml, the gateway, Prometheus, Alertmanager and Grafana agree with each other.

No Docker engine runs here, so the stack is checked by structure: every file a
service mounts exists, every host:port one component dials is a service of the
compose file listening on that port, Prometheus and Alertmanager accept their
configs (promtool, amtool), and the collector accepts the environment each
replica gets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from collector.prometheus import render
from llmspans.collector.config import load_settings

from .conftest import ROOT, run_tool

COMPOSE_FILE = ROOT / "docker-compose.yml"
GATEWAY_FILE = ROOT / "collector" / "gateway" / "otelcol.yaml"
PROMETHEUS_FILE = ROOT / "collector" / "prometheus" / "prometheus.yml"
ALERTMANAGER_FILE = ROOT / "collector" / "alertmanager" / "alertmanager.yml"
DATASOURCES_FILE = ROOT / "collector" / "grafana" / "provisioning" / "datasources" / "llmspans.yaml"
PROVIDERS_FILE = ROOT / "collector" / "grafana" / "provisioning" / "dashboards" / "llmspans.yaml"
DOCKERFILE = ROOT / "collector" / "Dockerfile"
COLLECTOR_SERVICES = ("collector-1", "collector-2")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = load(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def dockerfile_env() -> dict[str, str]:
    """The ENV of collector/Dockerfile (continuation lines joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[key] = value
    return env


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def host_port(address: str) -> tuple[str, int]:
    if "//" in address:
        parsed = urlparse(address)
        assert parsed.hostname is not None and parsed.port is not None, address
        return parsed.hostname, parsed.port
    host, _, port = address.rpartition(":")
    return host, int(port)


def listening_ports(service: str, services: dict[str, dict[str, Any]]) -> set[int]:
    """The ports a compose service listens on inside the network."""
    if service in COLLECTOR_SERVICES:
        env = collector_env(service, services)
        return {
            port_of(env["LLMSPANS_COLLECTOR__RECEIVERS__GRPC__ENDPOINT"]),
            port_of(env["LLMSPANS_COLLECTOR__RECEIVERS__HTTP__ENDPOINT"]),
            port_of(env["LLMSPANS_COLLECTOR__METRICS__PROMETHEUS__ENDPOINT"]),
        }
    if service == "gateway":
        gateway = load(GATEWAY_FILE)
        protocols = gateway["receivers"]["otlp"]["protocols"]
        return {
            port_of(protocols["grpc"]["endpoint"]),
            port_of(protocols["http"]["endpoint"]),
            port_of(gateway["service"]["telemetry"]["metrics"]["address"]),
            port_of(gateway["extensions"]["health_check"]["endpoint"]),
        }
    if service == "alert-sink":
        listen = next(a for a in services[service]["entrypoint"] if ":" in a)
        return {port_of(listen)}
    # Images of other projects listen on their documented default ports.
    defaults = {
        "jaeger": {16686, 4317, 4318},
        "prometheus": {9090},
        "alertmanager": {9093},
        "grafana": {3000},
    }
    return defaults[service]


def collector_env(service: str, services: dict[str, dict[str, Any]]) -> dict[str, str]:
    environment = services[service]["environment"]
    return {**dockerfile_env(), **{k: str(v) for k, v in environment.items()}}


def assert_dials(address: str, services: dict[str, dict[str, Any]], who: str) -> None:
    host, port = host_port(address)
    assert host in services, f"{who} dials {address}: no service {host!r} in docker-compose.yml"
    assert port in listening_ports(host, services), f"{who} dials {address}: {host} not on {port}"


def test_every_config_file_parses() -> None:
    for path in (
        COMPOSE_FILE,
        GATEWAY_FILE,
        PROMETHEUS_FILE,
        ALERTMANAGER_FILE,
        DATASOURCES_FILE,
        PROVIDERS_FILE,
        ROOT / "collector" / "prometheus" / "profiles.yaml",
        ROOT / "collector" / "prometheus" / "rules.yml",
    ):
        assert isinstance(load(path), dict), path


def test_every_file_compose_mounts_or_builds_exists(services: dict[str, dict[str, Any]]) -> None:
    mounts = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
                mounts += 1
        build = service.get("build")
        if build is not None:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
    assert mounts >= 7


def test_dockerfile_copies_what_exists() -> None:
    copies = re.findall(r"^COPY (.+) \S+$", DOCKERFILE.read_text(), flags=re.M)
    sources = [s for line in copies for s in line.split()]
    assert {"pyproject.toml", "llmspans"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
    exposed = {
        int(p) for p in re.findall(r"^EXPOSE (.+)$", DOCKERFILE.read_text(), re.M)[0].split()
    }
    env = dockerfile_env()
    assert exposed == {
        port_of(env["LLMSPANS_COLLECTOR__RECEIVERS__GRPC__ENDPOINT"]),
        port_of(env["LLMSPANS_COLLECTOR__RECEIVERS__HTTP__ENDPOINT"]),
        port_of(env["LLMSPANS_COLLECTOR__METRICS__PROMETHEUS__ENDPOINT"]),
    }


@pytest.mark.parametrize("service", COLLECTOR_SERVICES)
def test_the_collector_accepts_each_replicas_environment(
    service: str, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = collector_env(service, services)
    for key, value in env.items():
        if key.startswith("LLMSPANS_COLLECTOR__"):
            monkeypatch.setenv(key, value)
    settings = load_settings(None)
    assert settings.receivers.grpc is not None and settings.receivers.http is not None
    assert settings.receivers.grpc.endpoint.startswith("0.0.0.0:")
    assert settings.metrics.service_instance_id == service
    assert settings.exporters, "a replica must forward its traces"
    for exporter in settings.exporters:
        endpoint = getattr(exporter, "endpoint", None)
        assert endpoint is not None
        assert_dials(endpoint, services, service)


def test_the_gateway_balances_whole_traces_over_the_replicas(
    services: dict[str, dict[str, Any]],
) -> None:
    gateway = load(GATEWAY_FILE)
    balancer = gateway["exporters"]["loadbalancing"]
    assert balancer["routing_key"] == "traceID"
    assert "otlp" in balancer["protocol"]
    hostnames = balancer["resolver"]["static"]["hostnames"]
    assert sorted(h.split(":")[0] for h in hostnames) == sorted(COLLECTOR_SERVICES)
    for hostname in hostnames:
        assert_dials(hostname, services, "gateway")
        # the OTLP protocol of the balancer is gRPC: the replicas' gRPC port
        env = collector_env(hostname.split(":")[0], services)
        assert port_of(hostname) == port_of(env["LLMSPANS_COLLECTOR__RECEIVERS__GRPC__ENDPOINT"])
    pipeline = gateway["service"]["pipelines"]["traces"]
    assert pipeline["exporters"] == ["loadbalancing"]
    assert pipeline["receivers"] == ["otlp"]
    for processor in pipeline["processors"]:
        assert processor in gateway["processors"]
    for extension in gateway["service"]["extensions"]:
        assert extension in gateway["extensions"]
    assert services["gateway"]["volumes"][0].startswith("./collector/gateway/otelcol.yaml:")
    published = {int(p.split(":")[0]) for p in services["gateway"]["ports"]}
    assert published == {4317, 4318}


def test_prometheus_scrapes_the_replicas_and_alerts_to_alertmanager(
    services: dict[str, dict[str, Any]],
) -> None:
    config = load(PROMETHEUS_FILE)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    collector_job = jobs["llmspans-collector"]
    targets = [t for sc in collector_job["static_configs"] for t in sc["targets"]]
    assert sorted(t.split(":")[0] for t in targets) == sorted(COLLECTOR_SERVICES)
    profile = render.load_profile("production")
    assert re.fullmatch(profile.collector.job_regex, "llmspans-collector")
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                if not target.startswith("localhost:"):
                    assert_dials(target, services, f"prometheus job {job['job_name']}")
    for manager in config["alerting"]["alertmanagers"]:
        for static in manager["static_configs"]:
            for target in static["targets"]:
                assert_dials(target, services, "prometheus alerting")
    # the rule file Prometheus loads is the committed rules.yml, mounted where it looks
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("."))
    assert mounts["./collector/prometheus/rules.yml"] in config["rule_files"]
    assert mounts["./collector/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    config = load(PROMETHEUS_FILE)
    config["rule_files"] = [str(ROOT / "collector" / "prometheus" / "rules.yml")]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    result = run_tool("promtool", "check", "config", str(copy), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_alertmanager_accepts_its_config_and_routes_pages(
    services: dict[str, dict[str, Any]],
) -> None:
    result = run_tool("amtool", "check-config", str(ALERTMANAGER_FILE), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = load(ALERTMANAGER_FILE)
    receivers = {r["name"]: r for r in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    for route in config["route"].get("routes", []):
        assert route["receiver"] in receivers
    for receiver in receivers.values():
        for hook in receiver.get("webhook_configs", []):
            assert_dials(hook["url"], services, f"alertmanager receiver {receiver['name']}")
    assert {"pipeline", "stage"} <= set(config["route"]["group_by"])
    # every alert name an inhibit rule mentions exists in the rules
    alerts = {
        r["alert"]
        for g in load(ROOT / "collector" / "prometheus" / "rules.yml")["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            found = re.match(r'alertname="(\w+)"', matcher)
            if found:
                assert found.group(1) in alerts, matcher


def test_grafana_provisioning_points_at_the_stack(services: dict[str, dict[str, Any]]) -> None:
    datasources = load(DATASOURCES_FILE)["datasources"]
    by_uid = {d["uid"]: d for d in datasources}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["jaeger"]["type"] == "jaeger"
    for source in datasources:
        assert_dials(source["url"], services, f"grafana datasource {source['name']}")
    destinations = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert [d["datasourceUid"] for d in destinations] == ["jaeger"]
    assert destinations[0]["name"] == "trace_id"  # the label the collector's exemplars carry

    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provider = load(PROVIDERS_FILE)["providers"][0]
    assert mounts["./collector/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./collector/grafana/provisioning/datasources"].endswith("datasources")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    relative = Path(home).relative_to(provider["options"]["path"])
    assert (ROOT / "collector" / "grafana" / "dashboards" / relative).is_file()


def test_the_traffic_generator_sends_to_the_gateway(services: dict[str, dict[str, Any]]) -> None:
    args = services["traffic"]["entrypoint"]
    assert args[:3] == ["python", "-m", "llmspans.collector.traffic"]
    endpoint = next(a.split("=", 1)[1] for a in args if a.startswith("--endpoint="))
    assert_dials(endpoint, services, "traffic")
    assert any(a == "--phase=spike=600" for a in args)
    assert "--spike-stage=retrieval" in args

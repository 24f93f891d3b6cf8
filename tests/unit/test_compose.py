"""docker-compose.yml stays in lockstep with stack/ and with the CLI's defaults (no Docker engine needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from k2.cli.main import local_defaults
from k2.stack.resolve import load_components, load_versions
from k2.stack.services import CONFIG_DIR, Ports

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
VERSIONS = load_versions()


def _tag(service: str) -> str:
    return str(SERVICES[service]["image"]).rsplit(":", 1)[1]


def _host_ports(service: str) -> dict[int, int]:
    """container port -> host port."""
    mapping = {}
    for entry in SERVICES[service].get("ports", []):
        host, container = str(entry).split(":")
        mapping[int(container)] = int(host)
    return mapping


def test_every_service_has_a_healthcheck() -> None:
    missing = [name for name, spec in SERVICES.items() if "healthcheck" not in spec]
    assert not missing, f"services without healthcheck: {missing}"


def test_required_services_exist() -> None:
    expected = {
        "kafka",
        "registry",
        "connect",
        "catalog",
        "minio",
        "ksqldb-server",
        "ksqldb-cli",
        "kafka-ui",
        "maintainer",
    }
    assert expected <= set(SERVICES)


@pytest.mark.parametrize(
    ("service", "version_key"),
    [("kafka", "kafka"), ("registry", "apicurio"), ("catalog", "iceberg")],
)
def test_images_use_the_pinned_versions(service: str, version_key: str) -> None:
    assert _tag(service) == VERSIONS[version_key]


def test_connect_image_is_built_from_the_pinned_artifacts() -> None:
    build = SERVICES["connect"]["build"]
    assert build["args"]["KAFKA_VERSION"] == VERSIONS["kafka"]
    dockerfile = (ROOT / build["dockerfile"]).read_text()
    assert f"ARG KAFKA_VERSION={VERSIONS['kafka']}" in dockerfile
    assert "FROM apache/kafka:${KAFKA_VERSION}" in dockerfile
    resolve_line = next(line for line in dockerfile.splitlines() if "stack/resolve.py" in line and "RUN" in line)
    plugins = {name for name, c in load_components().items() if c.kind == "plugin"}
    assert set(resolve_line.split()[-len(plugins) :]) == plugins, "the image must install every plugin component"
    assert "stack/config/connect-distributed.properties" in dockerfile


def test_connect_environment_fills_every_worker_variable() -> None:
    lines = (CONFIG_DIR / "connect-distributed.properties").read_text().splitlines()
    worker = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    needed = set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", worker))
    assert needed, "the worker file should take its per-environment values from ${env:...}"
    assert needed <= set(SERVICES["connect"]["environment"])


@pytest.mark.parametrize(
    ("service", "container_port", "port_name"),
    [
        ("kafka", 9092, "kafka"),
        ("registry", 8080, "registry"),
        ("connect", 8083, "connect"),
        ("catalog", 8181, "catalog"),
    ],
)
def test_host_ports_equal_the_local_stack_defaults(service: str, container_port: int, port_name: str) -> None:
    assert _host_ports(service)[container_port] == getattr(Ports(), port_name)


def test_cli_defaults_reach_the_compose_services(tmp_path: Path) -> None:
    defaults = local_defaults(tmp_path)
    assert defaults["bootstrap_servers"].endswith(f":{_host_ports('kafka')[9092]}")
    assert defaults["registry_url"] == f"http://127.0.0.1:{_host_ports('registry')[8080]}/apis/ccompat/v7"
    assert defaults["connect_url"] == f"http://127.0.0.1:{_host_ports('connect')[8083]}"
    assert defaults["catalog_uri"] == f"http://127.0.0.1:{_host_ports('catalog')[8181]}"
    assert defaults["ksql_url"] == f"http://127.0.0.1:{_host_ports('ksqldb-server')[8088]}"


def test_in_network_urls_point_at_real_services_and_ports() -> None:
    """Every http://host:port inside the file names a Compose service on a port it listens on."""
    listening = {
        "kafka": {29092, 9092, 9093},
        "registry": {8080},
        "connect": {8083},
        "catalog": {8181},
        "minio": {9000, 9001},
        "ksqldb-server": {8088},
    }
    text = (ROOT / "docker-compose.yml").read_text()
    for host, port in re.findall(r"(?:https?://|@|BOOTSTRAPSERVERS: |SERVERS: )([a-z][a-z0-9-]*):(\d+)", text):
        if host in ("localhost", "0.0.0.0"):
            continue
        assert host in SERVICES, f"{host}:{port} names no Compose service"
        assert int(port) in listening[host], f"{host} does not listen on {port}"


def test_ui_and_ksqldb_use_the_registry_confluent_api() -> None:
    registry = "http://registry:8080/apis/ccompat/v7"
    assert SERVICES["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_SCHEMAREGISTRY"] == registry
    assert SERVICES["ksqldb-server"]["environment"]["KSQL_KSQL_SCHEMA_REGISTRY_URL"] == registry
    assert SERVICES["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_KAFKACONNECT_0_ADDRESS"] == "http://connect:8083"
    assert SERVICES["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_KSQLDBSERVER"] == "http://ksqldb-server:8088"


def test_no_secret_is_written_in_the_file() -> None:
    minio = SERVICES["minio"]["environment"]
    assert str(minio["MINIO_ROOT_PASSWORD"]).startswith("${MINIO_ROOT_PASSWORD:?"), (
        "the password must come from the environment"
    )


def test_maintainer_runs_the_local_stacks_command_against_the_compose_catalog() -> None:
    from k2.stack.services import MAINTAINER_INTERVAL_DEFAULT, maintainer_command
    from k2.stack.services import SERVICES as LOCAL

    maintainer = SERVICES["maintainer"]
    assert maintainer["command"] == maintainer_command(
        "http://catalog:8181", "/tmp/k2-maintainer.heartbeat", MAINTAINER_INTERVAL_DEFAULT
    )
    assert "/tmp/k2-maintainer.heartbeat" in " ".join(maintainer["healthcheck"]["test"])
    assert maintainer["depends_on"]["catalog"]["condition"] == "service_healthy"
    local = next(s for s in LOCAL if s.name == "maintainer")
    assert set(local.depends_on) == set(maintainer["depends_on"])
    dockerfile = (ROOT / maintainer["build"]["dockerfile"]).read_text()
    assert "pip install" in dockerfile and 'ENTRYPOINT ["python"]' in dockerfile


def test_the_catalog_backend_is_configured_as_in_the_local_stack() -> None:
    from k2.stack.services import CATALOG_BACKEND_ENV

    environment = {key: str(value) for key, value in SERVICES["catalog"]["environment"].items()}
    assert CATALOG_BACKEND_ENV.items() <= environment.items()

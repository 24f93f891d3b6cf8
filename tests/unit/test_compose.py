"""docker-compose.yml stays in lockstep with stack/ and with the CLI's defaults (no Docker engine needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from k2.cli.main import local_defaults
from k2.stack.resolve import load_components, load_go_tools, load_versions
from k2.stack.services import (
    ALERTS_FLAGS,
    CONFIG_DIR,
    JMX_RULES,
    METRICS_FLAGS,
    Ports,
    local_scrape_targets,
    render_scrape_config,
)

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
        "jmx-exporter",
        "metrics",
        "alerts",
        "supervisor",
    }
    assert expected <= set(SERVICES)


def test_every_local_stack_service_has_its_compose_service() -> None:
    from k2.stack.services import SERVICES as LOCAL

    assert {svc.name for svc in LOCAL} <= set(SERVICES), "a service of `k2 stack up` is missing from Compose"


def test_every_service_is_restarted_when_it_exits() -> None:
    # The local stack's supervisor restarts a process that exits; Docker's restart policy does it here.
    assert {name: spec.get("restart") for name, spec in SERVICES.items()} == dict.fromkeys(SERVICES, "unless-stopped")


def test_connect_runs_the_local_stacks_heap_and_exits_on_out_of_memory() -> None:
    from k2.stack.services import CONNECT_JVM_FLAGS

    assert "-XX:+ExitOnOutOfMemoryError" in CONNECT_JVM_FLAGS
    assert str(SERVICES["connect"]["environment"]["KAFKA_HEAP_OPTS"]).split() == list(CONNECT_JVM_FLAGS)
    dockerfile = (ROOT / "stack" / "connect.Dockerfile").read_text()
    assert f'KAFKA_HEAP_OPTS="{" ".join(CONNECT_JVM_FLAGS)}"' in dockerfile
    # The image's start script picks G1 only while KAFKA_JVM_PERFORMANCE_OPTS is unset, as the local stack runs it.
    assert "KAFKA_JVM_PERFORMANCE_OPTS" not in SERVICES["connect"]["environment"]
    assert "KAFKA_JVM_PERFORMANCE_OPTS" not in dockerfile


def test_the_supervisor_restarts_connectors_with_the_local_stacks_command() -> None:
    from k2.stack.services import supervisor_command

    supervisor = SERVICES["supervisor"]
    command = supervisor_command("http://connect:8083", "/tmp/k2-supervisor.heartbeat", Ports().supervisor, "0.0.0.0")
    assert supervisor["command"] == command
    assert "--no-services" in command, "Docker restarts containers; the supervisor only connectors"
    assert _host_ports("supervisor")[Ports().supervisor] == Ports().supervisor
    assert "/tmp/k2-supervisor.heartbeat" in " ".join(supervisor["healthcheck"]["test"])
    assert supervisor["depends_on"]["connect"]["condition"] == "service_healthy"
    assert (
        supervisor["build"] == SERVICES["maintainer"]["build"]
        and supervisor["image"] == SERVICES["maintainer"]["image"]
    )


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
    assert _tag("connect") == f"{VERSIONS['kafka']}-iceberg-{VERSIONS['iceberg_sink']}", "the tag names what it holds"
    sink = [c for c in load_components()["iceberg-sink"].coordinates if c.group == "org.apache.iceberg"]
    assert sink and {c.version for c in sink} == {VERSIONS["iceberg_sink"]}, sink


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
        ("kafka", 9404, "kafka_jmx"),
        ("connect", 9405, "connect_jmx"),
        ("metrics", 8428, "metrics"),
        ("alerts", 8880, "alerts"),
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
        "supervisor": {9465},
        "metrics": {8428},
        "alerts": {8880},
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
        "http://catalog:8181",
        "/tmp/k2-maintainer.heartbeat",
        MAINTAINER_INTERVAL_DEFAULT,
        Ports().maintainer,
        "0.0.0.0",
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


# -- metrics: the same JMX exporter, scrape jobs and alert rules as the local stack -------------------


def _mounts(service: str) -> dict[str, str]:
    """bind-mounted source (relative to the repository) or volume name -> path in the container."""
    mounts = {}
    for entry in SERVICES[service].get("volumes", []):
        source, target = str(entry).split(":")[:2]
        mounts[source.removeprefix("./")] = target
    return mounts


def _flags(service: str) -> dict[str, str]:
    return dict(str(arg).partition("=")[::2] for arg in SERVICES[service]["command"])


def test_the_jmx_exporter_is_the_pinned_agent_from_maven_central() -> None:
    version = VERSIONS["jmx_exporter"]
    (coordinate,) = load_components()["jmx-exporter"].coordinates
    assert (coordinate.group, coordinate.artifact, coordinate.version) == (
        "io.prometheus.jmx",
        "jmx_prometheus_javaagent",
        version,
    )
    script = " ".join(SERVICES["jmx-exporter"]["command"])
    assert f"https://repo.maven.apache.org/maven2/{Path(coordinate.path).parent}/" in script
    assert f"jar=jmx_prometheus_javaagent-{version}.jar" in script and "sha1sum -c" in script
    assert _mounts("jmx-exporter")["jmx-exporter"] == "/opt/jmx"


@pytest.mark.parametrize("jvm", ["kafka", "connect"])
def test_broker_and_worker_run_the_agent_with_the_local_stacks_rules_and_port(jvm: str) -> None:
    args = str(SERVICES[jvm]["environment"]["EXTRA_ARGS"]).split()
    (agent,) = [arg for arg in args if arg.startswith("-javaagent:")]
    jar, _, options = agent.removeprefix("-javaagent:").partition("=")
    port, rules = options.split(":")
    assert jar == f"/opt/jmx/jmx_prometheus_javaagent-{VERSIONS['jmx_exporter']}.jar"
    assert int(port) == getattr(Ports(), f"{jvm}_jmx")
    mounts = _mounts(jvm)
    assert mounts[f"stack/config/{JMX_RULES[jvm]}"] == rules, "the same rules file as `k2 stack up`"
    assert mounts["jmx-exporter"] == "/opt/jmx"
    assert SERVICES[jvm]["depends_on"]["jmx-exporter"]["condition"] == "service_healthy"
    name = {"kafka": "kafkaServer", "connect": "connectDistributed"}[jvm]
    assert args[:2] == ["-name", name], "EXTRA_ARGS replaces the start script's default, which it must keep"


@pytest.mark.parametrize(("service", "tool"), [("metrics", "victoria-metrics"), ("alerts", "vmalert")])
def test_metrics_images_are_the_pinned_go_programs(service: str, tool: str) -> None:
    assert _tag(service) == VERSIONS["victoriametrics"] == load_go_tools()[tool].version
    assert SERVICES[service]["image"].split(":")[0] == f"victoriametrics/{tool}"


def _jobs(text: str) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}


def test_the_metrics_server_scrapes_the_local_stacks_jobs_at_compose_addresses() -> None:
    mounts, flags = _mounts("metrics"), _flags("metrics")
    assert flags["-promscrape.config"] == mounts["stack/config/scrape.yml"]
    assert set(METRICS_FLAGS) <= set(SERVICES["metrics"]["command"])
    assert flags["-httpListenAddr"] == f":{Ports().metrics}"
    # VictoriaMetrics fills %{VAR} from its environment, as `k2 stack up` fills them with loopback ports.
    environment = {key: str(value) for key, value in SERVICES["metrics"]["environment"].items()}
    local = local_scrape_targets(Ports(), {})
    assert set(environment) == set(local), "every target of scrape.yml, and nothing else"
    compose_jobs = _jobs(render_scrape_config(environment))
    local_jobs = _jobs(render_scrape_config(local))
    assert (
        set(compose_jobs)
        == set(local_jobs)
        == {
            "kafka",
            "connect",
            "k2-producer",
            "maintainer",
            "registry",
            "supervisor",
        }
    )
    listening = {
        "kafka": Ports().kafka_jmx,
        "connect": Ports().connect_jmx,
        "maintainer": Ports().maintainer,
        "registry": 8080,
        "supervisor": Ports().supervisor,
    }
    for name, job in compose_jobs.items():
        assert {k: v for k, v in job.items() if k != "static_configs"} == {
            k: v for k, v in local_jobs[name].items() if k != "static_configs"
        }
        (target,) = job["static_configs"][0]["targets"]
        host, port = target.split(":")
        if host == "host.docker.internal":  # the producer runs on the host, as with the local stack
            assert int(port) == 9091 and "host.docker.internal:host-gateway" in SERVICES["metrics"]["extra_hosts"]
            continue
        assert host in SERVICES and listening[host] == int(port), f"{name}: nothing listens at {target}"


def test_vmalert_evaluates_the_local_stacks_rules_against_the_metrics_server() -> None:
    mounts, flags = _mounts("alerts"), _flags("alerts")
    assert flags["-rule"] == mounts["stack/config/alerts.yml"]
    assert set(ALERTS_FLAGS) <= set(SERVICES["alerts"]["command"])
    metrics = f"http://metrics:{Ports().metrics}"
    assert flags["-datasource.url"] == flags["-remoteWrite.url"] == flags["-remoteRead.url"] == metrics
    assert SERVICES["alerts"]["depends_on"]["metrics"]["condition"] == "service_healthy"


def test_the_alert_rules_name_every_alert_the_stack_promises() -> None:
    groups = yaml.safe_load((CONFIG_DIR / "alerts.yml").read_text())["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    assert set(alerts) == {
        "ProducerDown",
        "ProducerDisconnected",
        "UnrecoveredGap",
        "DeadLettersGrowing",
        "ConnectorTaskNotRunning",
        "SinkLagHigh",
        "TableStale",
        "MaintainerFailing",
        "SupervisorDown",
        "SinkTaskRestarted",
        "ServiceRestarted",
        "RestartsGivenUp",
    }
    assert 'up{job="k2-producer"}' in alerts["ProducerDown"]["expr"], "the job name of scrape.yml"
    assert (alerts["ProducerDown"]["for"], alerts["SinkLagHigh"]["for"]) == ("1m", "5m")


def test_the_exporter_rules_keep_lowercase_names_and_produce_the_series_the_alerts_read() -> None:
    text = {jvm: (CONFIG_DIR / name).read_text() for jvm, name in JMX_RULES.items()}
    for jvm, body in text.items():
        assert yaml.safe_load(body)["lowercaseOutputName"] is True, jvm
    names = {rule["name"] for rule in yaml.safe_load(text["connect"])["rules"]}
    alerts = (CONFIG_DIR / "alerts.yml").read_text()
    for series in (
        "kafka_connect_task_status",
        "kafka_connect_connector_status",
        "kafka_connect_sink_consumer_records_lag",
    ):
        assert series in names and series in alerts


def test_grafana_reads_the_metrics_server_and_the_generated_dashboards() -> None:
    grafana = SERVICES["grafana"]
    mounts = {str(volume).split(":")[0]: str(volume).split(":")[1] for volume in grafana["volumes"]}
    assert mounts["./stack/grafana/dashboards"] == "/var/lib/grafana/dashboards/k2"
    provisioning = ROOT / "stack" / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "k2.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://metrics:8428" and "metrics" in SERVICES
    provider = yaml.safe_load((provisioning / "dashboards" / "k2.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/k2"
    assert "-vmui.customDashboardsPath=/etc/k2/dashboards" in SERVICES["metrics"]["command"]
    assert "./stack/dashboards:/etc/k2/dashboards:ro" in SERVICES["metrics"]["volumes"]
    password = str(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"])
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:-${MINIO_ROOT_PASSWORD:?"), "a secret, never a default"

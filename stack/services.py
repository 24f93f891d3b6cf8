"""The services of the K2 local stack: how each is prepared, started and checked.

Every service is a plain process on loopback: the JVMs run from jars resolved by ``resolve.py`` (the
broker and the Connect worker with the Prometheus JMX exporter attached); the maintainer is
`k2 tables maintain --watch` itself, run by this Python against the stack's catalog; the metrics server
(VictoriaMetrics) and the alert evaluator (vmalert) are Go programs ``resolve.py`` builds once.
The supervisor is `k2 stack supervise`, likewise a Python process of this stack: it restarts the others
when they die or (the Connect worker) stop answering, and K2's failed connectors (``supervisor.py``).
The declarative parts (broker and worker properties, logging, JMX exporter rules, scrape jobs, alert
rules) live in ``stack/config/``, shared with docker-compose.yml; this module only fills in ports and paths.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2.producer.defaults import METRICS_PORT as PRODUCER_METRICS_DEFAULT
from k2.producer.defaults import METRICS_PORT_ENV as PRODUCER_METRICS_ENV

from .exceptions import StackError
from .ports import HOST, Ports, urls
from .resolve import Component, GoTool, component_dir, go_tool_path, load_components, load_go_tools

CONFIG_DIR = Path(__file__).with_name("config")
JAVA_DIR = Path(__file__).with_name("java")
MIN_JAVA = 17
# The maintainer's cycle; its health check wants a heartbeat within three cycles (and a minute's grace).
MAINTAINER_INTERVAL_ENV = "K2_MAINTAINER_INTERVAL"
MAINTAINER_INTERVAL_DEFAULT = "60s"
# The metrics server's flags that do not depend on where it runs (Compose's command carries the same).
DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"  # also generated for Compose's Grafana
METRICS_FLAGS = ("-retentionPeriod=7d", "-promscrape.config.strictParse=true", "-search.latencyOffset=5s")
# vmalert's, likewise; rules are evaluated every 15 s unless a group in alerts.yml says otherwise.
ALERTS_FLAGS = ("-notifier.blackhole", "-evaluationInterval=15s")


@dataclass(frozen=True)
class Context:
    """Where the stack lives: state directory, artifact cache, ports and the Java to run."""

    home: Path
    cache: Path
    ports: Ports
    java: str = "java"
    # None: the warehouse is a directory under home. "s3://bucket/prefix": S3-compatible storage at
    # s3_endpoint, with credentials from the standard AWS_* variables of the catalog's environment.
    warehouse_uri: str | None = None
    s3_endpoint: str | None = None

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def warehouse(self) -> Path:
        return self.data / "warehouse"

    def lib(self, component: Component) -> Path:
        return component_dir(self.cache, component) / component.output_subdir


def http_ok(url: str) -> bool:
    import requests  # here, not at the top: every `k2` command imports this module

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def kafka_ok(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    quiet = logging.getLogger("k2.stack.kafka-health")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000}, logger=quiet)
    try:
        admin.list_topics(timeout=3)
        return True
    except Exception:  # KafkaException or a timeout: not ready yet
        return False


@dataclass(frozen=True)
class Launch:
    """What a service needs to start, as its ``prepare`` works it out: the process's arguments, the
    variables added to the caller's environment, and the directory it runs in."""

    command: list[str]
    env: dict[str, str]
    workdir: Path


@dataclass(frozen=True)
class Service:
    """One process of the stack."""

    name: str  # also its own field in Ports, the port it listens on
    component: str | None  # the jars it runs from (stack/artifacts.toml); None for a Python process
    depends_on: tuple[str, ...]
    health: Callable[[Context], bool] = field(repr=False)
    # Gets the service's component, or None when it has none.
    prepare: Callable[[Context, Any], Launch] = field(repr=False)
    # Other fields of Ports it listens on (the Kafka controller, a JMX exporter).
    extra_ports: tuple[str, ...] = ()
    # The Go program it runs ([go.*] in stack/artifacts.toml); None for the JVMs and the maintainer.
    tool: str | None = None
    # What status shows as its URL when ports.urls() has no client URL for it.
    status_url: Callable[[Context], str] | None = field(default=None, repr=False)

    def url(self, ctx: Context) -> str:
        return self.status_url(ctx) if self.status_url else urls(ctx.ports)[self.name]

    def port_names(self) -> tuple[str, ...]:
        """Every field of Ports this service listens on, its own port first."""
        return (self.name, *self.extra_ports)


def _java_args(ctx: Context, heap: str) -> list[str]:
    return [ctx.java, f"-Xmx{heap}", "-XX:+UseG1GC", f"-Djava.io.tmpdir={ctx.home / 'tmp'}"]


# The Connect worker's heap and what it does when the heap runs out; docker-compose.yml gives the same flags
# (KAFKA_HEAP_OPTS; the image's start script keeps G1, as here) and tests/unit/test_compose.py checks it.
# -XX:+ExitOnOutOfMemoryError: without it an OutOfMemoryError kills only the thread that met it. Measured
# before (issue 19): the sink's task died of one in ParquetWriter.<init> and stayed FAILED; after
# `k2 connectors restart` the next one killed the worker's herder thread, and the JVM lived on with a REST
# API that never answered again. A JVM that exits is what the supervisor and Docker's restart policy restart.
# -Xmx1g, measured with benchmarks/sink_memory.py (live heap = used right after a forced full GC): an idle
# worker holds 115 MB; landing a 10,000,000-trade backlog of 1,000 symbols over two days (32 open writers,
# 10-s commits) at most 209 MB live, 736 MB used at the peak (garbage G1 had not collected yet). What grows
# with the input is each open writer's row group and dictionaries; the sink's PARQUET_ROW_GROUP_BYTES
# (connect/variables.toml) bounds them: with every trade held in the 32 writers by a 10-min commit interval,
# 215 MB live at 2 MB row groups against 568 MB, still growing, at Iceberg's default 128 MB.
CONNECT_HEAP = "1g"
CONNECT_JVM_FLAGS = (f"-Xmx{CONNECT_HEAP}", "-XX:+ExitOnOutOfMemoryError")


# The JMX exporter's rules per JVM (stack/config/), mounted into the same JVMs by Compose.
JMX_RULES = {"kafka": "jmx-kafka.yml", "connect": "jmx-connect.yml"}


def jmx_agent_jar(ctx: Context) -> Path:
    lib = ctx.lib(load_components()["jmx-exporter"])
    jars = sorted(lib.glob("jmx_prometheus_javaagent-*.jar"))
    if not jars:
        raise StackError(f"no jmx_prometheus_javaagent jar in {lib}; run `k2 stack reset --cache` and retry")
    return jars[-1]


def jmx_agent_arg(ctx: Context, jvm: str) -> str:
    """``-javaagent:<jar>=127.0.0.1:<port>:<rules>``: the exporter serves /metrics on loopback only."""
    port = getattr(ctx.ports, f"{jvm}_jmx")
    return f"-javaagent:{jmx_agent_jar(ctx)}={HOST}:{port}:{CONFIG_DIR / JMX_RULES[jvm]}"


def _prepare_kafka(ctx: Context, component: Component) -> Launch:
    workdir = ctx.home / "kafka"
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = ctx.data / "kafka"
    properties = workdir / "server.properties"
    template = (CONFIG_DIR / "kafka-server.properties").read_text()
    properties.write_text(
        template.format(host=HOST, kafka_port=ctx.ports.kafka, controller_port=ctx.ports.controller, data_dir=data_dir)
    )
    classpath = f"{ctx.lib(component)}/*"
    log4j = f"-Dlog4j2.configurationFile={CONFIG_DIR / 'log4j2.properties'}"
    if not (data_dir / "meta.properties").is_file():
        # First start: format KRaft storage with a fresh cluster id (single voter, dynamic quorum).
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        fmt = [ctx.java, log4j, "-cp", classpath, "kafka.tools.StorageTool", "format"]
        fmt += ["-t", cluster_id, "-c", str(properties), "--standalone"]
        done = subprocess.run(fmt, capture_output=True, text=True)
        if done.returncode != 0:
            log = ctx.logs / "kafka-format.log"
            log.write_text(done.stdout + done.stderr)
            raise StackError(f"formatting Kafka storage in {data_dir} failed; see {log}")
    cmd = _java_args(ctx, "1g") + [jmx_agent_arg(ctx, "kafka"), log4j, "-cp", classpath, "kafka.Kafka", str(properties)]
    return Launch(cmd, {}, workdir)


def _prepare_registry(ctx: Context, component: Component) -> Launch:
    dist = ctx.lib(component)
    runners = sorted(dist.glob("apicurio-registry-app-*-runner.jar"))
    if not runners:
        raise StackError(f"no apicurio-registry-app runner jar in {dist}; run `k2 stack reset --cache` and retry")
    db = ctx.data / "registry" / "registry"
    db.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "quarkus.http.host": HOST,
        "quarkus.http.port": ctx.ports.registry,
        # Persistent storage: an H2 database file under the state directory, so schema ids survive restarts.
        "apicurio.storage.kind": "sql",
        "apicurio.storage.sql.kind": "h2",
        "apicurio.datasource.url": f"jdbc:h2:file:{db};DB_CLOSE_ON_EXIT=FALSE",
        "apicurio.datasource.username": "sa",
        # Confluent clients expect the ccompat API to hand out content ids (the default in 3.x).
        "apicurio.ccompat.legacy-id-mode.enabled": "false",
        "apicurio.rest.deletion.artifact.enabled": "true",
        "apicurio.rest.deletion.artifact-version.enabled": "true",
    }
    cmd = _java_args(ctx, "512m") + [f"-D{key}={value}" for key, value in settings.items()]
    cmd += ["-jar", str(runners[-1])]
    workdir = ctx.home / "registry"
    workdir.mkdir(parents=True, exist_ok=True)
    return Launch(cmd, {}, workdir)


# The catalog's SQLite backend, the same in Compose. One connection: with the default two, a sink commit
# and a maintainer commit (or a create) met SQLITE_BUSY, and the lock the other connection kept failed
# every later sink commit with HTTP 500 until a restart (seen in a soak). SQLite has one writer anyway.
CATALOG_BACKEND_ENV = {"CATALOG_CLIENTS": "1"}


def _prepare_catalog(ctx: Context, component: Component) -> Launch:
    lib = ctx.lib(component)
    classes = component_dir(ctx.cache, component) / "launcher"
    source = JAVA_DIR / "K2RestCatalogServer.java"
    compiled = classes / "org" / "apache" / "iceberg" / "rest" / "K2RestCatalogServer.class"
    if not compiled.is_file() or compiled.stat().st_mtime < source.stat().st_mtime:
        javac = _javac_for(ctx.java)
        done = subprocess.run(
            [javac, "-d", str(classes), "-cp", f"{lib}/*", str(source)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise StackError(f"compiling {source.name} failed: {(done.stderr or done.stdout).strip()[:300]}")
    (ctx.data / "catalog").mkdir(parents=True, exist_ok=True)
    env = {
        "CATALOG_URI": f"jdbc:sqlite:file:{ctx.data / 'catalog' / 'catalog.db'}",
        **CATALOG_BACKEND_ENV,
        "CATALOG_REST_PORT": str(ctx.ports.catalog),
        "CATALOG_REST_HOST": HOST,
    }
    if ctx.warehouse_uri and ctx.warehouse_uri.startswith("s3://"):
        if not ctx.s3_endpoint:
            raise StackError("an s3:// warehouse needs --s3-endpoint (or K2_S3_ENDPOINT), e.g. http://127.0.0.1:9000")
        env |= {
            "CATALOG_WAREHOUSE": ctx.warehouse_uri,
            "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
            "CATALOG_S3_ENDPOINT": ctx.s3_endpoint,
            "CATALOG_S3_PATH__STYLE__ACCESS": "true",
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
        }
    else:
        ctx.warehouse.mkdir(parents=True, exist_ok=True)
        env["CATALOG_WAREHOUSE"] = str(ctx.warehouse)
    cmd = _java_args(ctx, "512m") + ["-cp", f"{classes}:{lib}/*", "org.apache.iceberg.rest.K2RestCatalogServer"]
    return Launch(cmd, env, ctx.data / "catalog")


def _prepare_connect(ctx: Context, component: Component) -> Launch:
    components = load_components()
    workdir = ctx.home / "connect"
    plugins = workdir / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    for entry in plugins.iterdir():
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
    for name, plugin in components.items():
        if plugin.kind == "plugin":
            (plugins / name).symlink_to(ctx.lib(plugin), target_is_directory=True)
    env = {
        "K2_CONNECT_BOOTSTRAP_SERVERS": f"{HOST}:{ctx.ports.kafka}",
        "K2_CONNECT_LISTENERS": f"http://{HOST}:{ctx.ports.connect}",
        "K2_CONNECT_ADVERTISED_HOST": HOST,
        "K2_CONNECT_REGISTRY_API_URL": f"http://{HOST}:{ctx.ports.registry}/apis/registry/v2",
        # The Iceberg sink reads local warehouse paths through Hadoop; keep its temp files in the state dir.
        "HADOOP_USER_NAME": os.environ.get("HADOOP_USER_NAME", "k2"),
    }
    log4j = f"-Dlog4j2.configurationFile={CONFIG_DIR / 'log4j2.properties'}"
    cmd = _java_args(ctx, CONNECT_HEAP) + ["-XX:+ExitOnOutOfMemoryError", jmx_agent_arg(ctx, "connect"), log4j]
    cmd += ["-cp", f"{ctx.lib(component)}/*"]
    cmd += ["org.apache.kafka.connect.cli.ConnectDistributed", str(CONFIG_DIR / "connect-distributed.properties")]
    return Launch(cmd, env, workdir)


# -- metrics ------------------------------------------------------------------------------------------
SCRAPE_TEMPLATE = CONFIG_DIR / "scrape.yml"
ALERT_RULES = CONFIG_DIR / "alerts.yml"
_SCRAPE_TARGET = re.compile(r'"%\{(K2_SCRAPE_[A-Z_]+)\}"')


def _loopback_port(env: Mapping[str, str], var: str, default: int) -> int | None:
    raw = env.get(var) or ""
    if raw.strip() == "":
        return default
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{var}={raw!r} is not a port number (use 1-65535, or 0 for none)") from None
    if not 0 <= port < 65536:
        raise StackError(f"{var}={port} is out of range (use 1-65535, or 0 for none)")
    return port or None


def local_scrape_targets(ports: Ports, env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The address behind each ``%{K2_SCRAPE_*}`` placeholder of stack/config/scrape.yml in the local
    stack (Compose gives them as environment variables of its metrics service); None: nothing to scrape."""
    env = os.environ if env is None else env
    # The producer runs outside the stack; the metrics server scrapes it where `k2 produce` serves /metrics
    # (0 turns its metrics off: then nothing is scraped).
    producer = _loopback_port(env, PRODUCER_METRICS_ENV, PRODUCER_METRICS_DEFAULT)
    return {
        "K2_SCRAPE_KAFKA": f"{HOST}:{ports.kafka_jmx}",
        "K2_SCRAPE_CONNECT": f"{HOST}:{ports.connect_jmx}",
        "K2_SCRAPE_PRODUCER": f"{HOST}:{producer}" if producer else None,
        "K2_SCRAPE_MAINTAINER": f"{HOST}:{ports.maintainer}",
        "K2_SCRAPE_REGISTRY": f"{HOST}:{ports.registry}",
        "K2_SCRAPE_SUPERVISOR": f"{HOST}:{ports.supervisor}",
    }


def render_scrape_config(targets: Mapping[str, str | None], template: str | None = None) -> str:
    """stack/config/scrape.yml with each ``"%{K2_SCRAPE_*}"`` target filled in (None leaves the job
    without targets). VictoriaMetrics does the same substitution from its environment in Compose."""
    text = SCRAPE_TEMPLATE.read_text() if template is None else template

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in targets:
            raise StackError(f"{SCRAPE_TEMPLATE.name}: no target for %{{{name}}}")
        value = targets[name]
        return f'"{value}"' if value else ""

    return _SCRAPE_TARGET.sub(fill, text)


def go_binary(ctx: Context, tool: str) -> Path:
    tools: dict[str, GoTool] = load_go_tools()
    binary = go_tool_path(ctx.cache, tools[tool])
    if not binary.is_file():
        raise StackError(f"{tool} is not built ({binary} is missing); run `k2 stack up` with Go on PATH")
    return binary


def _prepare_metrics(ctx: Context, component: Component | None) -> Launch:
    workdir = ctx.home / "metrics"
    workdir.mkdir(parents=True, exist_ok=True)
    scrape = workdir / "scrape.yml"
    scrape.write_text(
        f"# Generated by `k2 stack up` from {SCRAPE_TEMPLATE}; do not edit.\n"
        + render_scrape_config(local_scrape_targets(ctx.ports))
    )
    cmd = [
        str(go_binary(ctx, "victoria-metrics")),
        f"-httpListenAddr={HOST}:{ctx.ports.metrics}",
        f"-promscrape.config={scrape}",
        f"-storageDataPath={ctx.data / 'metrics'}",
        f"-vmui.customDashboardsPath={DASHBOARDS_DIR}",  # the Dashboards tab of http://127.0.0.1:8428/vmui
        *METRICS_FLAGS,
    ]
    return Launch(cmd, {}, workdir)


def _prepare_alerts(ctx: Context, component: Component | None) -> Launch:
    workdir = ctx.home / "alerts"
    workdir.mkdir(parents=True, exist_ok=True)
    metrics = f"http://{HOST}:{ctx.ports.metrics}"
    cmd = [
        str(go_binary(ctx, "vmalert")),
        f"-httpListenAddr={HOST}:{ctx.ports.alerts}",
        f"-rule={ALERT_RULES}",
        f"-datasource.url={metrics}",
        # Alert states are written to the metrics server and read back after a restart.
        f"-remoteWrite.url={metrics}",
        f"-remoteRead.url={metrics}",
        f"-external.url=http://{HOST}:{ctx.ports.alerts}",
        *ALERTS_FLAGS,
    ]
    return Launch(cmd, {}, workdir)


def maintainer_heartbeat(ctx: Context) -> Path:
    return ctx.run / "maintainer.heartbeat"


def _maintainer_interval(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(MAINTAINER_INTERVAL_ENV) or MAINTAINER_INTERVAL_DEFAULT


def maintainer_command(
    catalog_uri: str, heartbeat: str, interval: str, metrics_port: int, metrics_host: str = HOST
) -> list[str]:
    """The maintainer's arguments after the interpreter: the same in the local stack and in Compose (where
    its metrics listen on every interface of its container, for the metrics server to scrape)."""
    return [
        "-m",
        "k2.cli",
        "--catalog-uri",
        catalog_uri,
        "tables",
        "maintain",
        "--watch",
        "--interval",
        interval,
        "--heartbeat",
        heartbeat,
        "--metrics-port",
        str(metrics_port),
        "--metrics-host",
        metrics_host,
    ]


def _prepare_maintainer(ctx: Context, component: Component | None) -> Launch:
    heartbeat = maintainer_heartbeat(ctx)
    heartbeat.unlink(missing_ok=True)  # healthy only once this process has reached the catalog
    cmd = [
        sys.executable,
        *maintainer_command(
            f"http://{HOST}:{ctx.ports.catalog}", str(heartbeat), _maintainer_interval(), ctx.ports.maintainer
        ),
    ]
    workdir = ctx.home / "maintainer"
    workdir.mkdir(parents=True, exist_ok=True)
    return Launch(cmd, {"PYTHONUNBUFFERED": "1"}, workdir)


def _maintainer_ok(ctx: Context) -> bool:
    try:
        age = time.time() - maintainer_heartbeat(ctx).stat().st_mtime
    except OSError:
        return False
    seconds = _interval_seconds(_maintainer_interval())
    return age < 3 * seconds + 60


def _interval_seconds(text: str) -> float:
    from k2.connect.exceptions import ConnectError
    from k2.connect.units import duration_seconds

    try:
        return duration_seconds(text)
    except ConnectError as exc:
        raise StackError(f"{MAINTAINER_INTERVAL_ENV}: {exc}") from None


# The supervisor checks every 10 s; its health check wants a heartbeat within three checks and a minute.
SUPERVISOR_INTERVAL = "10s"


def supervisor_heartbeat(ctx: Context) -> Path:
    return ctx.run / "supervisor.heartbeat"


def supervisor_command(
    connect_url: str, heartbeat: str, metrics_port: int, metrics_host: str = HOST, home: str | None = None
) -> list[str]:
    """The supervisor's arguments after the interpreter. With ``home`` (the local stack) it also restarts
    that stack's processes; without (Compose, where Docker's restart policy restarts dead containers) it
    restarts connectors only. The same function builds Compose's command (tests/unit/test_compose.py)."""
    root = ["-m", "k2.cli", *(["--home", home] if home else []), "--connect-url", connect_url]
    options = ["--interval", SUPERVISOR_INTERVAL, "--heartbeat", heartbeat]
    options += ["--metrics-port", str(metrics_port), "--metrics-host", metrics_host]
    return [*root, "stack", "supervise", *([] if home else ["--no-services"]), *options]


def _prepare_supervisor(ctx: Context, component: Component | None) -> Launch:
    heartbeat = supervisor_heartbeat(ctx)
    heartbeat.unlink(missing_ok=True)  # healthy only once this process has written one
    # --home and --connect-url given, so a K2_HOME or K2_CONNECT_URL of the caller's shell cannot point it
    # at another stack.
    cmd = [
        sys.executable,
        *supervisor_command(
            f"http://{HOST}:{ctx.ports.connect}", str(heartbeat), ctx.ports.supervisor, home=str(ctx.home)
        ),
    ]
    workdir = ctx.home / "supervisor"
    workdir.mkdir(parents=True, exist_ok=True)
    return Launch(cmd, {"PYTHONUNBUFFERED": "1"}, workdir)


def _supervisor_ok(ctx: Context) -> bool:
    try:
        age = time.time() - supervisor_heartbeat(ctx).stat().st_mtime
    except OSError:
        return False
    fresh = age < 3 * _interval_seconds(SUPERVISOR_INTERVAL) + 60
    return fresh and http_ok(urls(ctx.ports)["supervisor"])


def _javac_for(java: str) -> str:
    resolved = shutil.which(java) or java
    sibling = Path(os.path.realpath(resolved)).with_name("javac")
    if sibling.is_file():
        return str(sibling)
    found = shutil.which("javac")
    if not found:
        raise StackError("javac was not found: the Iceberg REST catalog launcher needs a JDK 17+ (not only a JRE)")
    return found


SERVICES: tuple[Service, ...] = (
    Service(
        name="kafka",
        component="kafka",
        depends_on=(),
        health=lambda ctx: kafka_ok(f"{HOST}:{ctx.ports.kafka}"),
        prepare=_prepare_kafka,
        extra_ports=("controller", "kafka_jmx"),
    ),
    Service(
        name="registry",
        component="apicurio-registry",
        depends_on=(),
        health=lambda ctx: (
            http_ok(f"http://{HOST}:{ctx.ports.registry}/health/ready")
            and http_ok(f"http://{HOST}:{ctx.ports.registry}/apis/ccompat/v7/subjects")
        ),
        prepare=_prepare_registry,
    ),
    Service(
        name="catalog",
        component="iceberg-rest",
        depends_on=(),
        health=lambda ctx: http_ok(f"http://{HOST}:{ctx.ports.catalog}/v1/config"),
        prepare=_prepare_catalog,
    ),
    Service(
        name="connect",
        component="kafka",
        depends_on=("kafka", "registry"),
        # /connectors answers only once the worker has joined its group and read its config topic.
        health=lambda ctx: http_ok(f"http://{HOST}:{ctx.ports.connect}/connectors"),
        prepare=_prepare_connect,
        extra_ports=("connect_jmx",),
    ),
    Service(
        name="maintainer",
        component=None,
        depends_on=("catalog",),
        # A heartbeat file it rewrites after every table and cycle: alive, reaching the catalog, not stuck.
        # Its port serves only metrics, so status shows the heartbeat file.
        health=_maintainer_ok,
        prepare=_prepare_maintainer,
        status_url=lambda ctx: str(maintainer_heartbeat(ctx)),
    ),
    Service(
        name="metrics",
        component=None,
        depends_on=(),
        health=lambda ctx: http_ok(f"http://{HOST}:{ctx.ports.metrics}/health"),
        prepare=_prepare_metrics,
        tool="victoria-metrics",
    ),
    Service(
        name="alerts",
        component=None,
        depends_on=("metrics",),
        health=lambda ctx: http_ok(f"http://{HOST}:{ctx.ports.alerts}/health"),
        prepare=_prepare_alerts,
        tool="vmalert",
    ),
    # Last: started once what it watches is up, and stopped first by `down` (which stops in reverse order),
    # so it never restarts a service `down` is stopping. Not dependent on metrics/alerts, which may be skipped.
    Service(
        name="supervisor",
        component=None,
        depends_on=("kafka", "registry", "catalog", "connect"),
        # Its port serves its metrics; its health is the heartbeat file and the metrics answering.
        health=_supervisor_ok,
        prepare=_prepare_supervisor,
    ),
)

SERVICE_NAMES = tuple(svc.name for svc in SERVICES)


def service(name: str) -> Service:
    for candidate in SERVICES:
        if candidate.name == name:
            return candidate
    raise StackError(f"unknown service {name!r}; services are: {', '.join(SERVICE_NAMES)}")


_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output ("1.8.0_392" is 8, "17.0.15" is 17)."""
    match = _JAVA_VERSION.search(version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def find_java(env: Mapping[str, str] | None = None) -> str:
    """The java executable to run (JAVA_HOME first, then PATH), checked to be Java 17 or newer."""
    env = os.environ if env is None else env
    java_home = env.get("JAVA_HOME")
    candidate = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java", path=env.get("PATH"))
    where = f"JAVA_HOME={java_home}" if java_home else "PATH"
    if not candidate or not Path(candidate).is_file():
        raise StackError(
            f"Java {MIN_JAVA}+ is required but no java was found on {where}; "
            f"install a JDK {MIN_JAVA} (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
        )
    done = subprocess.run([candidate, "-version"], capture_output=True, text=True)
    major = java_major(done.stderr + done.stdout)
    if major is None or major < MIN_JAVA:
        found = f"Java {major}" if major else "an unrecognised Java"
        raise StackError(
            f"Java {MIN_JAVA}+ is required but {candidate} is {found}; "
            f"install a JDK {MIN_JAVA}+ or point JAVA_HOME at one"
        )
    return candidate


def find_go(env: Mapping[str, str] | None = None) -> str | None:
    """The go executable on PATH, or None: the Go programs of the stack are then skipped, not fatal."""
    env = os.environ if env is None else env
    return shutil.which("go", path=env.get("PATH"))


def find_maven(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    found = shutil.which("mvn", path=env.get("PATH"))
    if not found:
        raise StackError(
            "Maven is required to download the stack's jars but mvn was not found on PATH; "
            "install it (apt-get install maven) and retry"
        )
    return found

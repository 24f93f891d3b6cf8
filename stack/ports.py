"""The local stack's ports and client URLs, and where its state lives: everything a `k2` command needs to
find the stack, without importing what starts it (every command imports this at start-up)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .exceptions import StackError

HOST = "127.0.0.1"
PORTS_FILE = "ports.json"


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the local stack. Each can be set by a flag or a ``K2_*_PORT`` variable."""

    kafka: int = 9092
    controller: int = 9093
    registry: int = 8081
    connect: int = 8083
    catalog: int = 8181
    maintainer: int = 9464  # the maintainer's metrics (`k2 tables maintain --metrics-port`)
    kafka_jmx: int = 9404  # the broker's JMX exporter (/metrics)
    connect_jmx: int = 9405  # the Connect worker's JMX exporter (/metrics)
    metrics: int = 8428  # VictoriaMetrics
    alerts: int = 8880  # vmalert
    supervisor: int = 9465  # the supervisor's metrics (`k2 stack supervise --metrics-port`)

    ENV = {
        "kafka": "K2_KAFKA_PORT",
        "controller": "K2_CONTROLLER_PORT",
        "registry": "K2_REGISTRY_PORT",
        "connect": "K2_CONNECT_PORT",
        "catalog": "K2_CATALOG_PORT",
        "maintainer": "K2_MAINTAINER_PORT",
        "kafka_jmx": "K2_KAFKA_JMX_PORT",
        "connect_jmx": "K2_CONNECT_JMX_PORT",
        "metrics": "K2_METRICS_PORT",
        "alerts": "K2_ALERTS_PORT",
        "supervisor": "K2_SUPERVISOR_PORT",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: int | None) -> Ports:
        """Ports from flags (``overrides``) over environment variables over defaults."""
        env = os.environ if env is None else env
        values: dict[str, int] = {}
        for name, var in cls.ENV.items():
            flag = overrides.get(name)
            raw: object = flag if flag is not None else env.get(var)
            if raw is None or raw == "":
                continue
            try:
                port = int(str(raw))
            except ValueError:
                raise StackError(f"{var}={raw!r} is not a port number (use 1-65535)") from None
            if not 0 < port < 65536:
                raise StackError(f"{name} port {port} is out of range (use 1-65535, via {port_flag(name)} or {var})")
            values[name] = port
        ports = replace(cls(), **values)
        seen: dict[int, str] = {}
        for name in cls.ENV:
            port = getattr(ports, name)
            if port in seen:
                raise StackError(f"{seen[port]} and {name} are both set to port {port}; give each its own port")
            seen[port] = name
        return ports

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.ENV}


def port_flag(name: str) -> str:
    """The `k2 stack up` option for a port of ``Ports`` (kafka_jmx: --kafka-jmx-port)."""
    return f"--{name.replace('_', '-')}-port"


def urls(ports: Ports) -> dict[str, str]:
    """The client-facing address of each service, as the CLI's connection options expect them, and
    of the metrics endpoints (the JMX exporters' /metrics, the metrics server, the alert evaluator)."""
    return {
        "kafka": f"{HOST}:{ports.kafka}",
        "registry": f"http://{HOST}:{ports.registry}/apis/ccompat/v7",
        "connect": f"http://{HOST}:{ports.connect}",
        "catalog": f"http://{HOST}:{ports.catalog}",
        "kafka_jmx": f"http://{HOST}:{ports.kafka_jmx}/metrics",
        "connect_jmx": f"http://{HOST}:{ports.connect_jmx}/metrics",
        "metrics": f"http://{HOST}:{ports.metrics}",
        "alerts": f"http://{HOST}:{ports.alerts}",
        "supervisor": f"http://{HOST}:{ports.supervisor}/metrics",
    }


def default_home(env: dict[str, str] | os._Environ[str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("K2_HOME") or ".k2").resolve()


def recorded_ports(home: Path) -> dict[str, int]:
    """Ports the last ``up`` used in this state directory (so ``status``/``down`` need no flags)."""
    try:
        data = json.loads((home / PORTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: int(v) for k, v in data.items() if k in Ports.ENV}


def stack_ports(
    home: Path, env: Mapping[str, str] | None = None, flags: Mapping[str, int | None] | None = None
) -> Ports:
    """The stack's ports: flags over K2_*_PORT variables over the ports the last `up` recorded in
    ``home`` over the defaults, so `status`, `down` and every client agree with how it was started."""
    env = os.environ if env is None else env
    recorded = {Ports.ENV[k]: str(v) for k, v in recorded_ports(home).items()}
    return Ports.from_env(recorded | {k: v for k, v in env.items() if k in Ports.ENV.values()}, **(flags or {}))


# What listens on each port, for help texts and errors.
PORT_ROLES = {
    "kafka": "the Kafka broker",
    "controller": "the Kafka controller",
    "registry": "the schema registry (Apicurio)",
    "connect": "the Kafka Connect worker's REST API",
    "catalog": "the Iceberg REST catalog",
    "maintainer": "the maintainer's metrics",
    "kafka_jmx": "the broker's JMX exporter",
    "connect_jmx": "the Connect worker's JMX exporter",
    "metrics": "the metrics server (VictoriaMetrics: UI, scrapes, dashboards)",
    "alerts": "the alert rules (vmalert)",
    "supervisor": "the supervisor's metrics",
}

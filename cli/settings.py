"""Connection settings shared by every command."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Settings:
    """Connection settings shared by every command (flag > K2_* environment > local stack default)."""

    home: Path
    bootstrap_servers: str
    registry_url: str
    connect_url: str
    ksql_url: str
    catalog_uri: str
    verbose: bool
    # The connection settings given by a flag or K2_* variable rather than defaulted to the local stack.
    given: frozenset[str] = field(default=frozenset())


def uses_local_stack(settings: Settings) -> bool:
    """True when every service URL is the local stack's default (no flag or K2_* variable moved one)."""
    return not settings.given & {"bootstrap_servers", "registry_url", "connect_url", "catalog_uri"}


def reachable(settings: Settings) -> list[dict[str, Any]]:
    """Each service at the URL the settings give, and whether it answers (Compose, a remote cluster)."""
    from k2.stack.services import http_ok, kafka_ok

    checks = {
        "kafka": (settings.bootstrap_servers, lambda: kafka_ok(settings.bootstrap_servers)),
        "registry": (settings.registry_url, lambda: http_ok(settings.registry_url.rstrip("/") + "/subjects")),
        "connect": (settings.connect_url, lambda: http_ok(settings.connect_url)),
        "catalog": (settings.catalog_uri, lambda: http_ok(settings.catalog_uri.rstrip("/") + "/v1/config")),
    }
    return [
        {"service": n, "url": url, "state": "answering" if ok() else "not answering"} for n, (url, ok) in checks.items()
    ]

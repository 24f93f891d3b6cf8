"""Connection settings shared by every command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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

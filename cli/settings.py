"""Connection settings shared by every command."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    # The connection settings given by a flag or K2_* variable rather than defaulted to the local stack.
    given: frozenset[str] = field(default=frozenset())

"""What the unit tests of the local stack run it with: ports no stack uses, and a PATH of fake programs."""

from __future__ import annotations

import stat
from pathlib import Path

from k2.stack.ports import Ports

# Ports far from the defaults, so a developer's running stack does not interfere.
# Ports no stack uses, below the kernel's ephemeral range (32768-60999): a port in that range can be taken
# at any moment by an outbound connection of some process (a running stack's JVM held 39464 once).
AWAY_PORTS = {
    "K2_KAFKA_PORT": "17092",
    "K2_CONTROLLER_PORT": "17093",
    "K2_REGISTRY_PORT": "17081",
    "K2_CONNECT_PORT": "17083",
    "K2_CATALOG_PORT": "17181",
    "K2_MAINTAINER_PORT": "17464",
    "K2_KAFKA_JMX_PORT": "17404",
    "K2_CONNECT_JMX_PORT": "17405",
    "K2_METRICS_PORT": "17428",
    "K2_ALERTS_PORT": "17880",
    "K2_SUPERVISOR_PORT": "17465",
}


def away_ports() -> Ports:
    """AWAY_PORTS as Ports."""
    return Ports.from_env(AWAY_PORTS)


def path_with(tmp_path: Path, programs: dict[str, str]) -> str:
    """A PATH holding only the given shell scripts, for faking a missing or old Java/Maven."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in programs.items():
        script = bin_dir / name
        script.write_text("#!/bin/sh\n" + body + "\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir)

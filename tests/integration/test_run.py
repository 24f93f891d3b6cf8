"""`k2 run` is the other commands in order: with given URLs (Compose, a remote cluster) it uses those
services and never starts, or needs, the local stack."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LocalStack

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "producer" / "samples" / "binance-trades-sample.jsonl"


def _k2(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _given(local_stack: LocalStack, home: Path) -> dict[str, str]:
    """The test stack's services named by K2_* URLs, and a state directory with no stack in it."""
    # The stack's ports go (the URLs name the services), but not the producer's metrics port: the
    # default, 9091, may be a user's producer on this machine.
    env = {k: v for k, v in local_stack.env.items() if not k.endswith("_PORT") or k == "K2_PRODUCER_METRICS_PORT"}
    return env | {
        "K2_HOME": str(home),
        "K2_BOOTSTRAP_SERVERS": local_stack.bootstrap_servers,
        "K2_REGISTRY_URL": local_stack.registry_url,
        "K2_CONNECT_URL": local_stack.connect_url,
        "K2_CATALOG_URI": local_stack.catalog_uri,
    }


def _records(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_run_with_given_urls_uses_them_and_starts_nothing(local_stack: LocalStack, tmp_path: Path) -> None:
    home = tmp_path / "no-stack-here"
    done = _k2(_given(local_stack, home), "run", "--replay", str(SAMPLE), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    records = _records(done.stdout)
    services = {r["service"]: r["state"] for r in records if "service" in r}
    assert services == dict.fromkeys(("kafka", "registry", "connect", "catalog"), "answering")
    assert not (home / "run").exists() and not (home / "ports.json").exists(), "the local stack was touched"
    assert any(r.get("connector") == "k2-iceberg-trades" and r.get("state") == "RUNNING" for r in records)
    landed = re.search(r"([\d,]+) of this run's ([\d,]+) trades queryable", done.stderr)
    assert landed and landed.group(1) == landed.group(2) != "0", done.stderr


def test_run_with_an_unreachable_url_is_one_line_and_changes_nothing(local_stack: LocalStack, tmp_path: Path) -> None:
    env = _given(local_stack, tmp_path / "home") | {"K2_CONNECT_URL": "http://127.0.0.1:9"}
    done = _k2(env, "run", "--standin", timeout=120)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: connect not answering at the given URL(s); `k2 run` starts the local stack only when no "
        "connection option or K2_*_URL / K2_BOOTSTRAP_SERVERS / K2_CATALOG_URI is set"
    ]
    assert "Topics" not in done.stderr, "no step ran after the services check"


def test_run_next_to_services_on_the_default_ports_uses_them(local_stack: LocalStack, tmp_path: Path) -> None:
    """As next to Docker Compose: nothing of this state directory runs, but the local ports answer."""
    env = {k: v for k, v in local_stack.env.items() if not k.startswith("K2_") or k.endswith("_PORT")}
    env["K2_HOME"] = str(tmp_path / "fresh")
    done = _k2(env, "run", "--dry-run", "--format", "json", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Services already answer on the local ports" in done.stderr
    assert "Dry run: nothing was changed" in done.stderr
    assert not (tmp_path / "fresh" / "run").exists()
    # Each step printed its own dry-run rows, and none of them changed anything.
    tables = [json.loads(chunk) for chunk in re.findall(r"^\[.*?^\]", done.stdout, re.DOTALL | re.MULTILINE)]
    topics = next(t for t in tables if t and "topic" in t[0] and "partitions" in t[0])
    assert {row["action"] for row in topics} <= {"unchanged", "would create", "would update"}, topics
    connectors = next(t for t in tables if t and "connector" in t[0])
    assert all(str(row["result"]).startswith("Valid") for row in connectors), connectors

"""The real local stack for integration tests: started once per session through the real `k2` command.

It lives in <repo>/.k2-test on ports away from the defaults, so a developer's own stack (./.k2 on the
default ports) is never touched; `.ci/run` stops it even when tests fail. K2_TEST_HOME and
K2_TEST_PORT_OFFSET move it (another state directory, every port shifted), so two test runs on one
machine do not collide. K2_TEST_REUSE=1 is the fast local loop: the stack of K2_TEST_HOME is kept (not
reset first, not stopped after; `k2 stack up` starts only what is not running). CI never sets it, so
it starts from nothing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
TEST_HOME = Path(os.environ.get("K2_TEST_HOME") or ROOT / ".k2-test").resolve()
_OFFSET = int(os.environ.get("K2_TEST_PORT_OFFSET") or 0)
REUSE = os.environ.get("K2_TEST_REUSE") == "1"
TEST_PORTS = {
    "K2_KAFKA_PORT": str(29092 + _OFFSET),
    "K2_CONTROLLER_PORT": str(29093 + _OFFSET),
    "K2_REGISTRY_PORT": str(28081 + _OFFSET),
    "K2_CONNECT_PORT": str(28083 + _OFFSET),
    "K2_CATALOG_PORT": str(28181 + _OFFSET),
    "K2_MAINTAINER_PORT": str(29464 + _OFFSET),
    "K2_KAFKA_JMX_PORT": str(29404 + _OFFSET),
    "K2_CONNECT_JMX_PORT": str(29405 + _OFFSET),
    "K2_METRICS_PORT": str(28428 + _OFFSET),
    "K2_ALERTS_PORT": str(28880 + _OFFSET),
    "K2_SUPERVISOR_PORT": str(29465 + _OFFSET),
}
# Producers in tests serve no metrics (K2_PRODUCER_METRICS_PORT=0) unless a test asks for them on this
# port, the one `k2 stack up` puts in the metrics server's k2-producer scrape job.
PRODUCER_METRICS_PORT = str(29091 + _OFFSET)


@dataclass
class LocalStack:
    home: Path
    env: dict[str, str]
    bootstrap_servers: str
    registry_url: str
    connect_url: str
    catalog_uri: str
    first_up: subprocess.CompletedProcess[str]
    first_up_seconds: float

    def k2(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run the real CLI, as a user would, against the test stack."""
        up = args[:2] == ("stack", "up")
        return subprocess.run(
            [sys.executable, "-m", "k2.cli", *args],
            env={**self.env, "K2_PRODUCER_METRICS_PORT": PRODUCER_METRICS_PORT} if up else self.env,
            stdin=subprocess.DEVNULL,  # never a terminal: commands that ask must refuse instead
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def unique(prefix: str) -> str:
    """A name no other test (or earlier run) uses, for topics, subjects, connectors and tables."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_") or k == "K2_CACHE_DIR"}
    # No producer metrics unless a test asks (K2_PRODUCER_METRICS_PORT): 9091 may be a developer's producer.
    env.update(TEST_PORTS, K2_HOME=str(TEST_HOME), K2_PRODUCER_METRICS_PORT="0")
    # Credentials for the S3 test's local moto server, made up per run: the Connect worker inherits
    # them and resolves the connector's ${env:AWS_*} references; they are written nowhere.
    env.update(AWS_ACCESS_KEY_ID=f"k2it{secrets.token_hex(4)}", AWS_SECRET_ACCESS_KEY=secrets.token_hex(16))
    stack = LocalStack(
        home=TEST_HOME,
        env=env,
        bootstrap_servers=f"127.0.0.1:{TEST_PORTS['K2_KAFKA_PORT']}",
        registry_url=f"http://127.0.0.1:{TEST_PORTS['K2_REGISTRY_PORT']}/apis/ccompat/v7",
        connect_url=f"http://127.0.0.1:{TEST_PORTS['K2_CONNECT_PORT']}",
        catalog_uri=f"http://127.0.0.1:{TEST_PORTS['K2_CATALOG_PORT']}",
        first_up=subprocess.CompletedProcess([], 0),
        first_up_seconds=0.0,
    )
    if not REUSE:  # from nothing: no state left by an earlier run
        reset = stack.k2("stack", "reset", "--yes")
        assert reset.returncode == 0, reset.stderr
    started = time.monotonic()
    stack.first_up = stack.k2("stack", "up", "--timeout", "600", "--format", "json")
    stack.first_up_seconds = time.monotonic() - started
    if stack.first_up.returncode != 0:
        pytest.fail(f"k2 stack up failed: {stack.first_up.stderr.strip()}")
    try:
        yield stack
    finally:
        if not REUSE:
            stack.k2("stack", "down")


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.fixture
def moto_s3(local_stack: LocalStack) -> Iterator[str]:
    """moto's S3 server (from PyPI; an S3 API, not a stand-in of ours) with an empty bucket k2-it; yields
    its endpoint. The test stack's made-up AWS_* credentials are the bucket owner's."""
    import socket

    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        s3_port = int(sock.getsockname()[1])
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        _wait_http(endpoint)
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=local_stack.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=local_stack.env["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket="k2-it")
        yield endpoint
    finally:
        moto.terminate()
        moto.wait(30)

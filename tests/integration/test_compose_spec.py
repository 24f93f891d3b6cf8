"""docker-compose.yml as Docker Compose itself reads it: loaded by compose-spec's own loader (the code
`docker compose config` runs; stack/composecheck, built with Go), not only by a YAML parser. Skipped in
one line without Go, like the metrics server. Integration, not unit: the build fetches compose-go through
the Go module proxy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "stack" / "composecheck"
COMPOSE = ROOT / "docker-compose.yml"
# What the file requires from a user's environment (README, "With Docker Compose"); a stand-in value.
REQUIRED = {"MINIO_ROOT_PASSWORD": "not-a-secret-composecheck"}


@pytest.fixture(scope="module")
def composecheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go not found: docker-compose.yml not loaded with compose-spec's loader")
    binary = tmp_path_factory.mktemp("composecheck") / "composecheck"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=SOURCE, capture_output=True, text=True, timeout=900
    )
    assert built.returncode == 0, built.stderr
    return binary


def load(binary: Path, compose: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith(("MINIO_", "GRAFANA_"))}
    return subprocess.run([str(binary), str(compose)], env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def project(composecheck: Path) -> dict[str, Any]:
    loaded = load(composecheck, COMPOSE, **REQUIRED)
    assert loaded.returncode == 0, loaded.stderr
    return dict(json.loads(loaded.stdout))


def test_compose_loads_and_every_dependency_waits_for_a_healthcheck(project: dict[str, Any]) -> None:
    services = project["services"]
    assert {"kafka", "registry", "catalog", "connect", "maintainer", "supervisor", "metrics", "alerts"} <= set(services)
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            assert needed in services, (name, needed)
            if how["condition"] == "service_healthy":
                assert services[needed].get("healthcheck"), f"{name} waits for {needed}, which has no healthcheck"


def test_every_image_is_pinned_and_every_long_running_service_restarts(project: dict[str, Any]) -> None:
    for name, service in project["services"].items():
        image = service.get("image", "")
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (name, image)
    runs_once = {name for name, service in project["services"].items() if service.get("restart") in (None, "no")}
    assert {"kafka", "registry", "catalog", "connect", "maintainer", "supervisor"}.isdisjoint(runs_once)


def test_the_secret_is_interpolated_from_the_environment_never_written_in_the_file(
    project: dict[str, Any],
) -> None:
    assert REQUIRED["MINIO_ROOT_PASSWORD"] in json.dumps(project)
    assert REQUIRED["MINIO_ROOT_PASSWORD"] not in COMPOSE.read_text()


def test_without_the_password_the_loader_refuses_in_one_line(composecheck: Path) -> None:
    loaded = load(composecheck, COMPOSE)
    assert loaded.returncode == 1
    assert loaded.stdout == ""
    assert len(loaded.stderr.strip().splitlines()) == 1
    assert "MINIO_ROOT_PASSWORD" in loaded.stderr


def test_an_invalid_file_is_refused_by_the_schema(composecheck: Path, tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  kafka:\n    image: apache/kafka:4.1.1\n    helthcheck:\n      test: [CMD, true]\n")
    loaded = load(composecheck, broken)
    assert loaded.returncode == 1
    assert "helthcheck" in loaded.stderr

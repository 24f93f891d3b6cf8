"""The local stack's services as declared, and what `k2 stack up` decides before it starts anything."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from k2.cli.main import cli
from k2.stack.exceptions import StackError
from k2.stack.manager import PLAN_COLUMNS, Stack, Step
from k2.stack.ports import Ports
from k2.stack.services import Context, Service, service

from .stack_env import AWAY_PORTS, away_ports, path_with


def test_status_shows_each_service_at_its_client_url_and_the_maintainer_at_its_heartbeat(tmp_path: Path) -> None:
    the_stack = Stack(Context(tmp_path, tmp_path / "cache", Ports()))
    assert {state.service: state.url for state in the_stack.states()} == {
        "kafka": "127.0.0.1:9092",
        "registry": "http://127.0.0.1:8081/apis/ccompat/v7",
        "catalog": "http://127.0.0.1:8181",
        "connect": "http://127.0.0.1:8083",
        "maintainer": str(tmp_path / "run" / "maintainer.heartbeat"),
        "metrics": "http://127.0.0.1:8428",
        "alerts": "http://127.0.0.1:8880",
        "supervisor": "http://127.0.0.1:9465/metrics",
    }


def _stack(tmp_path: Path) -> Stack:
    return Stack(Context(tmp_path / "home", tmp_path / "cache", away_ports()))


def test_a_plan_reads_as_the_rows_the_dry_run_prints(tmp_path: Path) -> None:
    plan = _stack(tmp_path).plan(["connect"])
    assert [step.service.name for step in plan] == ["kafka", "registry", "connect"]
    assert [dict(step) for step in plan] == [step.row() for step in plan]
    assert list(plan[0]) == list(PLAN_COLUMNS) == ["service", "url", "state", "action"]
    assert plan[0]["action"] == "would download kafka from Maven Central, then start"
    assert not (tmp_path / "home").exists(), "planning changes nothing"


def test_a_service_asked_for_by_name_that_cannot_start_fails_in_the_dry_run_as_in_up(tmp_path: Path) -> None:
    real_java = os.path.realpath(shutil.which("java") or "/usr/bin/java")
    env = {
        "PATH": path_with(tmp_path, {"java": f'exec "{real_java}" "$@"'}),  # no Go
        "JAVA_HOME": "",
        "K2_HOME": str(tmp_path / "home"),
        "K2_CACHE_DIR": str(tmp_path / "cache"),
        **AWAY_PORTS,
    }
    reason = "alerts cannot start: Go not found; install Go 1.26+ (https://go.dev/dl), then `k2 stack up` again"
    dry = CliRunner().invoke(cli, ["stack", "up", "alerts", "--dry-run", "--format", "json"], env=env)
    assert dry.exit_code == 1, dry.output
    actions = {row["service"]: row["action"] for row in json.loads(dry.output)}
    assert actions == {"metrics": f"would skip: {reason.split(': ', 1)[1]}", "alerts": f"would fail: {reason}"}
    up = CliRunner().invoke(cli, ["stack", "up", "alerts"], env=env)
    assert (up.exit_code, up.output.strip()) == (1, f"Error: {reason}")
    assert not (tmp_path / "cache").exists(), "refused before any download"


def test_up_carries_out_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    the_stack = _stack(tmp_path)
    answering = replace(service("catalog"), health=lambda ctx: True)
    plan = [
        Step(service("kafka"), "", "running", "keep"),
        Step(answering, "", "crashed", "start"),
        Step(service("metrics"), "", "stopped", "skip", "Go not found"),
    ]
    spawned: list[str] = []

    def spawn(self: Stack, svc: Service, component: object) -> None:
        spawned.append(svc.name)
        (self.ctx.run / f"{svc.name}.json").write_text(json.dumps({"pid": os.getpid()}))  # this process stands in

    monkeypatch.setattr(Stack, "plan", lambda self, only=(): plan)
    monkeypatch.setattr(Stack, "ensure_artifacts", lambda self, progress: None)
    monkeypatch.setattr(Stack, "_spawn", spawn)
    monkeypatch.setattr("k2.stack.manager.find_java", lambda: "java")
    the_stack.up(timeout=5, progress=lambda _: None)
    home = tmp_path / "home"
    assert spawned == ["catalog"], "only the step that starts starts; the running kafka is left alone"
    assert (home / "run" / "metrics.skipped").read_text() == "Go not found\n"
    assert json.loads((home / "ports.json").read_text())["catalog"] == 17181
    assert json.loads((home / "warehouse.json").read_text()) == {"warehouse_uri": None, "s3_endpoint": None}


def test_up_refuses_a_failing_step_before_changing_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    the_stack = _stack(tmp_path)
    (tmp_path / "home" / "run").mkdir(parents=True)
    (tmp_path / "home" / "run" / "catalog.json").write_text('{"pid": 1, "ticks": 1}')
    plan = [
        Step(service("catalog"), "", "crashed", "start"),
        Step(service("connect"), "", "stopped", "fail", "port 17083 is in use by another process", "connect"),
    ]
    monkeypatch.setattr(Stack, "plan", lambda self, only=(): plan)
    monkeypatch.setattr("k2.stack.manager.find_java", lambda: "java")
    with pytest.raises(
        StackError,
        match=r"^port 17083 for the Kafka Connect worker's REST API is already in use by .*--connect-port or K2_",
    ):
        the_stack.up(timeout=5, progress=lambda _: None)
    assert (tmp_path / "home" / "run" / "catalog.json").exists(), "the crashed catalog's record is kept"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "home" / "ports.json").exists()


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def test_the_dry_run_fails_as_up_would_without_java_or_maven(tmp_path: Path) -> None:
    base = {"JAVA_HOME": "", "K2_HOME": str(tmp_path / "home"), "K2_CACHE_DIR": str(tmp_path / "cache"), **AWAY_PORTS}
    no_java = {**base, "PATH": path_with(_dir(tmp_path / "a"), {"mvn": "exit 0"})}
    dry = CliRunner().invoke(cli, ["stack", "up", "--dry-run", "--format", "json"], env=no_java)
    assert dry.exit_code == 1
    actions = {row["service"]: row["action"] for row in json.loads(dry.stdout)}
    assert actions["kafka"].startswith("would fail: Java 17+ is required but no java was found on PATH")
    assert actions["maintainer"] == "would start", "a Python process needs no Java"
    real_java = os.path.realpath(shutil.which("java") or "/usr/bin/java")
    no_maven = {**base, "PATH": path_with(_dir(tmp_path / "b"), {"java": f'exec "{real_java}" "$@"'})}
    dry = CliRunner().invoke(cli, ["stack", "up", "--dry-run", "--format", "json"], env=no_maven)
    assert dry.exit_code == 1
    actions = {row["service"]: row["action"] for row in json.loads(dry.stdout)}
    assert actions["connect"].startswith("would fail: Maven is required to download the stack's jars")

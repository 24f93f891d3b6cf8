"""Port configuration and the errors a user sees before any service starts."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from k2.cli.main import cli
from k2.stack.exceptions import StackError
from k2.stack.manager import port_in_use
from k2.stack.services import Ports, java_major, urls


def test_defaults_are_the_documented_ports() -> None:
    assert Ports.from_env({}).as_dict() == {
        "kafka": 9092,
        "controller": 9093,
        "registry": 8081,
        "connect": 8083,
        "catalog": 8181,
    }


def test_flag_beats_environment_beats_default() -> None:
    env = {"K2_KAFKA_PORT": "19092", "K2_REGISTRY_PORT": "18081"}
    ports = Ports.from_env(env, kafka=29092)
    assert ports.kafka == 29092  # flag
    assert ports.registry == 18081  # environment
    assert ports.connect == 8083  # default
    assert urls(ports)["registry"] == "http://127.0.0.1:18081/apis/ccompat/v7"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"K2_KAFKA_PORT": "ninety"}, "K2_KAFKA_PORT='ninety' is not a port number"),
        ({"K2_CONNECT_PORT": "70000"}, "connect port 70000 is out of range"),
        ({"K2_CATALOG_PORT": "8081"}, "registry and catalog are both set to port 8081"),
    ],
)
def test_bad_port_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(StackError, match=message.replace("(", r"\(")):
        Ports.from_env(env)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use_detects_a_listener(busy_port: int) -> None:
    assert port_in_use(busy_port)


# Ports far from the defaults, so a developer's running stack does not interfere.
AWAY_PORTS = {
    "K2_KAFKA_PORT": "39092",
    "K2_CONTROLLER_PORT": "39093",
    "K2_REGISTRY_PORT": "38081",
    "K2_CONNECT_PORT": "38083",
    "K2_CATALOG_PORT": "38181",
}


def test_up_refuses_a_port_in_use_before_downloading(busy_port: int, tmp_path: Path) -> None:
    env = {"K2_HOME": str(tmp_path / "home"), "K2_CACHE_DIR": str(tmp_path / "cache"), **AWAY_PORTS}
    result = CliRunner().invoke(cli, ["stack", "up", "--registry-port", str(busy_port)], env=env)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: port {busy_port} for registry is already in use by another process; stop it, "
        f"or pick another port with --registry-port or K2_REGISTRY_PORT"
    )
    assert not (tmp_path / "cache").exists(), "nothing may be downloaded when a port is taken"


def _path_with(tmp_path: Path, programs: dict[str, str]) -> str:
    """A PATH holding only the given shell scripts, for faking a missing or old Java/Maven."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in programs.items():
        script = bin_dir / name
        script.write_text("#!/bin/sh\n" + body + "\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir)


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    env = {"PATH": _path_with(tmp_path, {}), "JAVA_HOME": "", "K2_HOME": str(tmp_path / "h")}
    result = CliRunner().invoke(cli, ["stack", "up"], env=env)
    assert result.exit_code == 1
    assert result.output.startswith("Error: Java 17+ is required but no java was found on PATH")
    assert "JAVA_HOME" in result.output and len(result.output.strip().splitlines()) == 1


def test_old_java_is_refused_with_its_version(tmp_path: Path) -> None:
    old_java = "echo 'openjdk version \"11.0.22\" 2024-01-16' >&2"
    env = {"PATH": _path_with(tmp_path, {"java": old_java}), "JAVA_HOME": "", "K2_HOME": str(tmp_path / "h")}
    result = CliRunner().invoke(cli, ["stack", "up"], env=env)
    assert result.exit_code == 1
    assert "Java 17+ is required but" in result.output and "is Java 11" in result.output


def test_missing_maven_is_named_when_jars_must_be_downloaded(tmp_path: Path) -> None:
    real_java = os.path.realpath(__import__("shutil").which("java") or "/usr/bin/java")
    env = {
        "PATH": _path_with(tmp_path, {"java": f'exec "{real_java}" "$@"'}),
        "JAVA_HOME": "",
        "K2_HOME": str(tmp_path / "h"),
        "K2_CACHE_DIR": str(tmp_path / "empty-cache"),
        **AWAY_PORTS,
    }
    result = CliRunner().invoke(cli, ["stack", "up"], env=env)
    assert result.exit_code == 1
    assert "Maven is required to download the stack's jars but mvn was not found on PATH" in result.output


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "25" 2025-09-16', 25),
        ("no version here", None),
    ],
)
def test_java_major(output: str, major: int | None) -> None:
    assert java_major(output) == major


def test_status_without_a_stack_exits_non_zero(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "stack", "status", "--format", "json"])
    assert result.exit_code == 1
    assert '"state": "stopped"' in result.output


def test_down_twice_is_a_no_op(tmp_path: Path) -> None:
    for _ in range(2):
        result = CliRunner().invoke(cli, ["--home", str(tmp_path), "stack", "down"])
        assert result.exit_code == 0
        assert result.output.count("was not running") == 5


def test_reset_needs_yes_without_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "stack", "reset"])
    assert result.exit_code == 2
    assert "pass --yes" in result.output
    assert (tmp_path / "data").is_dir()


def test_starting_some_services_brings_what_they_depend_on(tmp_path: Path) -> None:
    from k2.stack.manager import Stack
    from k2.stack.services import Context

    the_stack = Stack(Context(tmp_path, tmp_path, Ports()))
    assert [s.name for s in the_stack.selected(["connect"])] == ["kafka", "registry", "connect"]
    assert [s.name for s in the_stack.selected(["catalog"])] == ["catalog"]
    assert [s.name for s in the_stack.selected(["maintainer"])] == ["catalog", "maintainer"]
    assert [s.name for s in the_stack.selected([])] == ["kafka", "registry", "catalog", "connect", "maintainer"]


def test_a_warehouse_that_is_not_s3_or_lacks_an_endpoint_is_refused_before_anything_starts(tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path / "home")
    no_endpoint = runner.invoke(
        cli, ["--home", home, "stack", "up", "--warehouse", "s3://b/w"], env={"K2_S3_ENDPOINT": ""}
    )
    assert no_endpoint.exit_code == 1 and "needs --s3-endpoint" in no_endpoint.output
    not_s3 = runner.invoke(cli, ["--home", home, "stack", "up", "--warehouse", "/tmp/w", "--s3-endpoint", "http://x"])
    assert not_s3.exit_code == 1 and "is not s3://bucket/prefix" in not_s3.output
    assert not (tmp_path / "home" / "run").exists() or not any((tmp_path / "home" / "run").iterdir())

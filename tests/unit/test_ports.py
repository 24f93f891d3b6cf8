"""Port configuration and the errors a user sees before any service starts."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from k2.cli.main import cli
from k2.stack.exceptions import StackError
from k2.stack.manager import port_holder, port_in_use
from k2.stack.ports import Ports, port_flag, urls
from k2.stack.services import SERVICES, java_major

from .stack_env import AWAY_PORTS, away_ports, path_with


def test_defaults_are_the_documented_ports() -> None:
    assert Ports.from_env({}).as_dict() == {
        "kafka": 9092,
        "controller": 9093,
        "registry": 8081,
        "connect": 8083,
        "catalog": 8181,
        "maintainer": 9464,
        "kafka_jmx": 9404,
        "connect_jmx": 9405,
        "metrics": 8428,
        "alerts": 8880,
        "supervisor": 9465,
    }


def test_every_port_has_its_variable_and_a_flag_spelled_with_dashes() -> None:
    assert Ports.ENV["kafka_jmx"] == "K2_KAFKA_JMX_PORT" and port_flag("kafka_jmx") == "--kafka-jmx-port"
    assert Ports.ENV["connect_jmx"] == "K2_CONNECT_JMX_PORT" and port_flag("connect_jmx") == "--connect-jmx-port"
    assert Ports.ENV["metrics"] == "K2_METRICS_PORT" and Ports.ENV["alerts"] == "K2_ALERTS_PORT"
    assert Ports.from_env({"K2_METRICS_PORT": "18428"}).metrics == 18428
    assert urls(Ports())["metrics"] == "http://127.0.0.1:8428"
    assert urls(Ports())["connect_jmx"] == "http://127.0.0.1:9405/metrics"
    listened = [name for svc in SERVICES for name in svc.port_names()]
    assert sorted(listened) == sorted(Ports.ENV), "every port belongs to exactly one service"


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
        ({"K2_ALERTS_PORT": "9404"}, "kafka_jmx and alerts are both set to port 9404"),
        ({"K2_KAFKA_JMX_PORT": "0"}, "kafka_jmx port 0 is out of range (use 1-65535, via --kafka-jmx-port"),
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


def test_port_holder_names_the_listening_process_and_nothing_for_a_free_port(busy_port: int) -> None:
    assert port_holder(busy_port).startswith(f"pid {os.getpid()} (")
    assert port_holder(busy_port).endswith("), listen")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    assert port_holder(free) == ""


def test_up_refuses_a_port_in_use_before_downloading(busy_port: int, tmp_path: Path) -> None:
    env = {"K2_HOME": str(tmp_path / "home"), "K2_CACHE_DIR": str(tmp_path / "cache"), **AWAY_PORTS}
    result = CliRunner().invoke(cli, ["stack", "up", "--registry-port", str(busy_port)], env=env)
    assert result.exit_code == 1
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert result.output.strip() == (
        f"Error: port {busy_port} for the schema registry (Apicurio) is already in use by pid {os.getpid()} "
        f"({comm}), listen; stop it, or pick another port with --registry-port or K2_REGISTRY_PORT"
    )
    assert not (tmp_path / "cache").exists(), "nothing may be downloaded when a port is taken"


def test_up_dry_run_predicts_the_taken_port_and_touches_nothing(busy_port: int, tmp_path: Path) -> None:
    env = {"K2_HOME": str(tmp_path / "home"), "K2_CACHE_DIR": str(tmp_path / "cache"), **AWAY_PORTS}
    args = ["stack", "up", "--dry-run", "--registry-port", str(busy_port), "--format", "json"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 1
    rows = {row["service"]: row["action"] for row in json.loads(result.output)}
    assert rows["registry"] == f"would fail: port {busy_port} is in use by another process"
    assert rows["catalog"].startswith("would")
    assert not (tmp_path / "home").exists() and not (tmp_path / "cache").exists()


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    env = {"PATH": path_with(tmp_path, {}), "JAVA_HOME": "", "K2_HOME": str(tmp_path / "h")}
    result = CliRunner().invoke(cli, ["stack", "up"], env=env)
    assert result.exit_code == 1
    assert result.output.startswith("Error: Java 17+ is required but no java was found on PATH")
    assert "JAVA_HOME" in result.output and len(result.output.strip().splitlines()) == 1


def test_old_java_is_refused_with_its_version(tmp_path: Path) -> None:
    old_java = "echo 'openjdk version \"11.0.22\" 2024-01-16' >&2"
    env = {"PATH": path_with(tmp_path, {"java": old_java}), "JAVA_HOME": "", "K2_HOME": str(tmp_path / "h")}
    result = CliRunner().invoke(cli, ["stack", "up"], env=env)
    assert result.exit_code == 1
    assert "Java 17+ is required but" in result.output and "is Java 11" in result.output


def test_missing_maven_is_named_when_jars_must_be_downloaded(tmp_path: Path) -> None:
    real_java = os.path.realpath(__import__("shutil").which("java") or "/usr/bin/java")
    env = {
        "PATH": path_with(tmp_path, {"java": f'exec "{real_java}" "$@"'}),
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
        assert result.output.count("was not running") == len(SERVICES) == 8


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
    assert [s.name for s in the_stack.selected(["alerts"])] == ["metrics", "alerts"]
    assert [s.name for s in the_stack.selected(["supervisor"])] == [
        "kafka",
        "registry",
        "catalog",
        "connect",
        "supervisor",
    ]
    assert [s.name for s in the_stack.selected([])] == [
        "kafka",
        "registry",
        "catalog",
        "connect",
        "maintainer",
        "metrics",
        "alerts",
        "supervisor",
    ]


def test_a_warehouse_that_is_not_s3_or_lacks_an_endpoint_is_refused_before_anything_starts(tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path / "home")
    no_endpoint = runner.invoke(
        cli, ["--home", home, "stack", "up", "--warehouse", "s3://b/w"], env={"K2_S3_ENDPOINT": ""}
    )
    assert no_endpoint.exit_code == 1 and "needs --s3-endpoint" in no_endpoint.output
    not_s3 = runner.invoke(cli, ["--home", home, "stack", "up", "--warehouse", "/tmp/w", "--s3-endpoint", "http://x"])
    assert not_s3.exit_code == 2 and "is not s3://bucket/prefix" in not_s3.output  # a usage error, at parse time
    assert not (tmp_path / "home" / "run").exists() or not any((tmp_path / "home" / "run").iterdir())


# -- the Go programs (metrics, alerts): skipped, not fatal, when Go is missing -------------------------


def test_without_go_an_unbuilt_program_is_skipped_with_how_to_get_it(tmp_path: Path) -> None:
    from k2.stack.manager import go_skip_reason, skip_line
    from k2.stack.resolve import MARKER, go_tool_path, load_go_tools
    from k2.stack.services import find_go

    tool = load_go_tools()["victoria-metrics"]
    assert tool.version == "v1.151.0" and tool.package.endswith("/app/victoria-metrics")
    no_go = find_go({"PATH": path_with(tmp_path, {})})
    assert no_go is None
    reason = go_skip_reason(tool, tmp_path / "cache", no_go)
    assert reason == "Go not found; install Go 1.26+ (https://go.dev/dl), then `k2 stack up` again"
    assert skip_line(["metrics", "alerts"], reason) == (
        "metrics, alerts: skipped (Go not found; install Go 1.26+ (https://go.dev/dl), then `k2 stack up` again)"
    )
    assert go_skip_reason(tool, tmp_path / "cache", "/usr/local/go/bin/go") is None, "with Go it is built"
    built = go_tool_path(tmp_path / "cache", tool)
    built.parent.mkdir(parents=True)
    built.write_text("")
    (built.parent / MARKER).write_text("")
    assert go_skip_reason(tool, tmp_path / "cache", no_go) is None, "once built, Go is no longer needed"


def test_a_service_depending_on_a_skipped_one_is_skipped_for_the_same_reason(tmp_path: Path) -> None:
    from k2.stack.manager import Stack
    from k2.stack.services import Context

    the_stack = Stack(Context(tmp_path, tmp_path / "cache", Ports()))
    skips = the_stack.go_skips(the_stack.selected([]), go=None)
    assert set(skips) == {"metrics", "alerts"}
    assert skips["alerts"] == skips["metrics"]
    assert the_stack.go_skips(the_stack.selected([]), go="/usr/bin/go") == {}


def test_dry_run_without_go_says_metrics_and_alerts_would_be_skipped(tmp_path: Path) -> None:
    real_java = os.path.realpath(__import__("shutil").which("java") or "/usr/bin/java")
    env = {
        "PATH": path_with(tmp_path, {"java": f'exec "{real_java}" "$@"', "mvn": "exit 0"}),  # Java and Maven, no Go
        "JAVA_HOME": "",
        "K2_HOME": str(tmp_path / "home"),
        "K2_CACHE_DIR": str(tmp_path / "cache"),
        **AWAY_PORTS,
    }
    result = CliRunner().invoke(cli, ["stack", "up", "--dry-run", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    actions = {row["service"]: row["action"] for row in __import__("json").loads(result.output)}
    assert (
        actions["metrics"]
        == actions["alerts"]
        == ("would skip: Go not found; install Go 1.26+ (https://go.dev/dl), then `k2 stack up` again")
    )
    assert actions["kafka"] == "would download kafka from Maven Central, then start"


def test_status_shows_a_service_up_skipped_as_skipped_and_not_as_a_failure(tmp_path: Path) -> None:
    from k2.stack.manager import Stack
    from k2.stack.services import Context, service

    the_stack = Stack(Context(tmp_path, tmp_path / "cache", away_ports()))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.skipped").write_text("Go not found\n")
    state = the_stack.state(service("metrics"))
    assert (state.state, state.ok) == ("skipped", True)
    assert the_stack.state(service("alerts")).state == "stopped"
    down = the_stack.down(5, lambda _: None)
    assert dict(down)["metrics"] == "was not running"
    assert the_stack.state(service("metrics")).state == "stopped", "down forgets the skip"


def test_the_scrape_config_fills_loopback_targets_and_drops_the_producer_when_its_metrics_are_off() -> None:
    from k2.stack.services import local_scrape_targets, render_scrape_config

    ports = Ports(kafka_jmx=19404, maintainer=19464)
    text = render_scrape_config(local_scrape_targets(ports, {}))
    assert '- targets: ["127.0.0.1:19404"]' in text and '- targets: ["127.0.0.1:19464"]' in text
    assert '- targets: ["127.0.0.1:9091"]' in text, "the producer's default metrics port"
    assert not [line for line in text.splitlines() if "%{" in line and not line.lstrip().startswith("#")]
    off = render_scrape_config(local_scrape_targets(ports, {"K2_PRODUCER_METRICS_PORT": "0"}))
    assert "- targets: []" in off and "9091" not in off.split("job_name: k2-producer")[1].split("job_name")[0]
    with pytest.raises(StackError, match="K2_PRODUCER_METRICS_PORT='x' is not a port number"):
        local_scrape_targets(ports, {"K2_PRODUCER_METRICS_PORT": "x"})


def test_a_failed_go_build_skips_the_service_and_names_its_log(tmp_path: Path) -> None:
    from k2.stack.manager import Stack
    from k2.stack.services import Context

    the_stack = Stack(Context(tmp_path, tmp_path / "cache", Ports()))
    failing_go = path_with(tmp_path, {"go": "echo 'go: downloading example.com/x v1.0.0'; echo 'boom' >&2; exit 1"})
    seen: list[str] = []
    failed = the_stack.ensure_go_tools(the_stack.selected([]), f"{failing_go}/go", seen.append)
    log = tmp_path / "cache" / "build-victoria-metrics.log"
    assert failed["metrics"] == (
        f"building victoria-metrics v1.151.0 with `go install` failed; see {log}; then `k2 stack up` again"
    )
    assert failed["alerts"] == failed["metrics"], "vmalert is not built when the server it needs failed"
    assert "boom" in log.read_text()
    assert "Building victoria-metrics: downloading modules, 1 (example.com/x v1.0.0)" in seen
    assert not list((tmp_path / "cache" / "go").iterdir()), "no half-built program is left behind"

"""Mistakes met off the happy path: one line, the real cause, nothing secret, nothing claimed falsely."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from k2.cli.main import cli
from k2.cli.output import redact

# Nothing listens here (below the ephemeral range 32768-60999, apart from the test stack's 2xxxx ports):
# every command that reaches a service finds it away.
AWAY = {
    "K2_KAFKA_PORT": "31092",
    "K2_REGISTRY_PORT": "31081",
    "K2_CONNECT_PORT": "31083",
    "K2_CATALOG_PORT": "31181",
}


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"K2_HOME": str(tmp_path / "home"), **AWAY})
    return result.exit_code, result.output


def test_a_urls_password_is_never_printed(tmp_path: Path) -> None:
    assert redact("http://alice:s3cret@h:1/x, s3://k:v@b") == "http://alice:***@h:1/x, s3://k:***@b"
    code, output = _run(tmp_path, "--catalog-uri", "http://alice:s3cret@127.0.0.1:31181", "query", "select 1")
    assert code == 1 and "s3cret" not in output and "http://alice:***@127.0.0.1:31181" in output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("query", "drop table trades"), "k2 query is read-only"),
        (("query", "select 1", "--as-of", "notatime"), "'notatime' is not a time like 2026-11-27T12:00:00Z"),
        (("candles", "--symbols", "BTCUSDT", "--since", "yesterday"), "'yesterday' is not a time"),
    ],
)
def test_a_mistake_is_named_before_any_service_is_reached(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    code, output = _run(tmp_path, *args)
    assert code in (1, 2) and expected in output and "unreachable" not in output


def test_output_claims_a_file_only_when_it_was_written(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "query", "select 1", "--format", "csv", "--output", str(tmp_path / "x.csv"))
    assert code == 1 and "Wrote" not in output and not (tmp_path / "x.csv").exists()
    code, output = _run(tmp_path, "ksql", "validate", "--format", "csv", "--output", str(tmp_path / "no" / "x.csv"))
    assert code == 1 and output.strip().endswith(
        "Error: cannot write --output " + str(tmp_path / "no" / "x.csv") + ": No such file or directory"
    )


def test_an_unreachable_broker_is_one_line_without_librdkafkas_retries(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code, output = _run(tmp_path, "topics", "list")
    assert code == 1 and output.strip().startswith("Error: Kafka at 127.0.0.1:31092 is unreachable")
    assert "rdkafka" not in capfd.readouterr().err, "librdkafka's own log lines must not reach the terminal"


def test_k2_run_ends_at_the_first_step_that_fails(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "--connect-url", "http://127.0.0.1:31083", "run", "--dry-run")
    assert code == 1 and output.startswith("==> Services\n"), output
    assert "Error: kafka, registry, connect, catalog not answering at the given URL(s)" in output
    assert "==> Topics" not in output and "Dry run" not in output, "no step ran after the services"

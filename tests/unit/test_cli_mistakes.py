"""A user's mistake gets one clear line and exit 2 before anything is reached (issue 21): the commands run
in-process against ports where nothing listens, so reaching a service would show as a different error."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from k2.cli.main import cli

AWAY = {"K2_KAFKA_PORT": "31092", "K2_REGISTRY_PORT": "31081", "K2_CONNECT_PORT": "31083", "K2_CATALOG_PORT": "31181"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["volume", "--last", "99999999999d"], "'99999999999d' is longer than 36500d"),
        (["produce", "--dry-run", "--symbols", "BTCUSDT", "--duration", "999999999999d"], "longer than 36500d"),
        (["volume", "--last", "inf"], "is not a duration like 90s"),
    ],
)
def test_a_duration_no_clock_can_hold_is_a_usage_error(tmp_path: Path, args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli, args, env={"K2_HOME": str(tmp_path / "home"), **AWAY})
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "unexpected" not in result.output and "unreachable" not in result.output


def test_a_file_that_cannot_be_written_is_named_in_one_line(tmp_path: Path) -> None:
    target = tmp_path / "missing-folder" / "tape.jsonl"
    result = CliRunner().invoke(
        cli, ["binance-standin", "generate", "--duration", "5s", "--out", str(target)], env={**AWAY}
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {target}: No such file or directory"]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (
            ["--ksql-url", "localhost:8088", "ksql", "list"],
            {},
            "'localhost:8088' is not a URL like http://localhost:8088",
        ),
        (["--registry-url", "notaurl", "schemas", "list"], {}, "'notaurl' is not a URL like http://notaurl"),
        (["--registry-url", "", "schemas", "list"], {}, "is empty: give a URL like"),
        (["--connect-url", "http://h:port", "status"], {}, "is not a URL (Port could not be cast"),
        (["schemas", "list"], {"K2_REGISTRY_URL": "notaurl"}, "'notaurl' (from K2_REGISTRY_URL) is not a URL"),
    ],
)
def test_a_url_that_is_not_one_is_a_usage_error_before_anything_is_reached(
    args: list[str], env: dict[str, str], says: str
) -> None:
    result = CliRunner().invoke(cli, args, env={**AWAY, **env})
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "unreachable" not in result.output and "unexpected" not in result.output


@pytest.mark.parametrize(
    ("typed", "says"),
    [("prodce", "Did you mean 'produce'?"), ("stat", "Did you mean 'status' or 'stack'?")],
)
def test_a_mistyped_command_gets_the_near_names(typed: str, says: str) -> None:
    result = CliRunner().invoke(cli, [typed], env=AWAY)
    assert result.exit_code == 2
    assert f"No such command '{typed}'. {says}" in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--standin", "--replay", "{sample}", "--dry-run"], "--replay and --standin are two sources"),
        (["run", "--standin", "--symbols", "BTCUSDT", "--dry-run"], "--standin streams the sample's symbols"),
        (["run", "--replay", "{sample}", "--symbols", "ETHUSDT", "--dry-run"], "--replay streams the file's own"),
        (["produce", "--replay", "{sample}", "--symbols", "BTCUSDT", "--dry-run"], "--replay streams the file's own"),
    ],
)
def test_two_sources_of_trades_or_symbols_a_source_ignores_are_refused(args: list[str], says: str) -> None:
    sample = Path(__file__).resolve().parents[2] / "producer" / "samples" / "binance-trades-sample.jsonl"
    result = CliRunner().invoke(cli, [arg.format(sample=sample) for arg in args], env=AWAY)
    assert result.exit_code == 2, result.output
    assert says in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["query", "selec 1"], 'the SQL does not parse: Parser Error: syntax error at or near "selec"'),
        (["query", "select 1; selec 2"], "the SQL does not parse"),
        (["query", "   "], "no SQL given"),
        (
            ["candles", "--symbols", "BTCUSDT", "--since", "2026-12-08T00:00:00Z", "--until", "2026-12-01T00:00:00Z"],
            "the window is empty: --until 2026-12-01T00:00:00Z is not after its start 2026-12-08T00:00:00Z",
        ),
        (["volume", "--since", "2026-12-08T00:00:00Z", "--until", "2026-12-08T00:00:00Z"], "the window is empty"),
        (["volume", "--last", "1h", "--until", "2020-01-01T00:00:00Z"], "the window is empty"),
    ],
)
def test_sql_and_windows_are_checked_before_the_catalog_is_reached(args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli, args, env=AWAY)
    # SQL that does not parse is one line and exit 1, as DuckDB's own errors are; a window is a usage error.
    assert result.exit_code == (1 if args[0] == "query" else 2), result.output
    assert says in result.output
    assert "unreachable" not in result.output


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "holds no trades to replay: it is empty"),
        (bytes(range(256)) * 40, "is a Binance trade frame"),
        (b'{"not": "a frame"}\n' * 3, "none of its 3 lines is a Binance trade frame"),
    ],
)
def test_a_replay_with_no_trades_is_refused_by_the_dry_run_before_kafka(
    tmp_path: Path, content: bytes, says: str
) -> None:
    replay = tmp_path / "frames.jsonl"
    replay.write_bytes(content)
    result = CliRunner().invoke(cli, ["produce", "--replay", str(replay), "--dry-run"], env=AWAY)
    assert result.exit_code == 1, result.output
    assert says in result.output and "unreachable" not in result.output


SAMPLE = Path(__file__).resolve().parents[2] / "producer" / "samples" / "binance-trades-sample.jsonl"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rate", "inf"], "'inf' is not a rate above 0 and at most 1,000,000 per second"),
        (["--rate", "nan"], "'nan' is not a rate above 0"),
        (["--rate", "1e-9"], "is less than one trade: nothing to write"),
        (["--duration", "7000d", "--rate", "1000000"], "GB free where"),  # ~120 PB: more than any disk
        (["--duration", "36500d"], "reaches back before 1970"),
    ],
)
def test_generate_refuses_what_it_cannot_write(tmp_path: Path, args: list[str], says: str) -> None:
    target = tmp_path / "frames.jsonl"
    result = CliRunner().invoke(cli, ["binance-standin", "generate", "--output", str(target), *args], env=AWAY)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert not target.exists(), "nothing written"


def test_generate_takes_output_like_every_command_and_out_as_before(tmp_path: Path) -> None:
    for flag in ("--output", "--out"):
        target = tmp_path / f"{flag.strip('-')}.jsonl"
        result = CliRunner().invoke(cli, ["binance-standin", "generate", flag, str(target), "--duration", "10s"])
        assert result.exit_code == 0, result.output
        assert len(target.read_bytes().splitlines()) == 200


def test_serve_names_the_line_of_a_frame_that_is_not_json(tmp_path: Path) -> None:
    frames = tmp_path / "frames.jsonl"
    frames.write_bytes(SAMPLE.read_bytes().splitlines()[0] + b"\n\n\n\n\nnot json\n")
    result = CliRunner().invoke(cli, ["binance-standin", "serve", "--frames", str(frames)], env=AWAY)
    assert result.exit_code == 2
    assert f"{frames} line 6, column 1: not a JSON frame" in result.output


def test_serve_prints_the_port_it_got_and_refuses_a_taken_one_in_one_line() -> None:
    served = subprocess.Popen(
        [sys.executable, "-m", "k2.cli", "binance-standin", "serve", "--frames", str(SAMPLE), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert served.stderr is not None
        banner = served.stderr.readline()
        port = int(re.search(r"ws://127\.0\.0\.1:(\d+) ", banner).group(1))  # type: ignore[union-attr]
        assert port != 0, banner
        taken = subprocess.run(
            [sys.executable, "-m", "k2.cli", "binance-standin", "serve", "--frames", str(SAMPLE), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert taken.returncode == 1
        assert taken.stderr.strip().splitlines() == [taken.stderr.strip()]
        assert taken.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}:") and "in use" in taken.stderr
    finally:
        served.send_signal(signal.SIGINT)
        served.wait(timeout=30)
        if served.stderr is not None:
            served.stderr.close()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full (a disk that is always full) here")
def test_a_full_disk_under_output_is_one_line_naming_the_file() -> None:
    result = CliRunner().invoke(cli, ["ksql", "validate", "--format", "json", "--output", "/dev/full"], env=AWAY)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: cannot write --output /dev/full: No space left on device"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["ksql", "validate", "-d", "nosuch=1"], "no migration uses nosuch; the variables are"),
        (["stack", "up", "--timeout", "0", "--dry-run"], "'0' must be longer than 0s"),
        (["stack", "up", "--warehouse", "ftp://x", "--dry-run"], "'ftp://x' is not s3://bucket/prefix"),
    ],
)
def test_inputs_that_would_change_nothing_or_cannot_work_are_usage_errors(args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli, args, env=AWAY)
    assert result.exit_code == 2, result.output
    assert says in result.output


def test_verbose_works_after_the_subcommand_too(tmp_path: Path) -> None:
    target = tmp_path / "missing-folder" / "tape.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "k2.cli", "binance-standin", "generate", "--output", str(target), "--verbose"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"Error: {target}: No such file or directory"

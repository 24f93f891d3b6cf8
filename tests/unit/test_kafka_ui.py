"""`k2 kafka-ui` hands the stack's addresses to kaskade (an optional extra), or says how to get it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from k2.cli import ui_cmd
from k2.cli.main import cli
from k2.cli.settings import Settings


def _settings() -> Settings:
    return Settings(
        home=Path("/tmp"),
        bootstrap_servers="127.0.0.1:19092",
        registry_url="http://127.0.0.1:18081/apis/ccompat/v7",
        connect_url="",
        ksql_url="",
        catalog_uri="",
        verbose=False,
    )


def test_admin_mode_and_a_topic_decoded_through_the_registrys_confluent_api() -> None:
    assert ui_cmd.kaskade_argv(_settings(), None, False) == ["kaskade", "admin", "-b", "127.0.0.1:19092"]
    assert ui_cmd.kaskade_argv(_settings(), "trades", True) == [
        "kaskade", "consumer", "-b", "127.0.0.1:19092", "-t", "trades", "-k", "string",
        "-v", "registry", "--registry", "url=http://127.0.0.1:18081/apis/ccompat/v7", "--earliest",
    ]  # fmt: skip


def test_without_kaskade_one_line_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui_cmd.shutil, "which", lambda *_args, **_kwargs: None)
    result = CliRunner().invoke(cli, ["kafka-ui"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: kaskade is not installed: pip install 'k2-market-data[ui]' (or `make ui`)"

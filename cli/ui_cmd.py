"""``k2 kafka-ui``: kaskade (a terminal UI for Kafka, an optional extra) wired to the stack."""

from __future__ import annotations

import os
import shutil
import sys

import click

from .settings import Settings


def kaskade_argv(settings: Settings, topic: str | None, earliest: bool) -> list[str]:
    """kaskade's arguments: admin mode, or a topic's records with Avro decoded through the registry."""
    if topic is None:
        return ["kaskade", "admin", "-b", settings.bootstrap_servers]
    argv = ["kaskade", "consumer", "-b", settings.bootstrap_servers, "-t", topic, "-k", "string"]
    argv += ["-v", "registry", "--registry", f"url={settings.registry_url}"]
    return argv + (["--earliest"] if earliest else [])


@click.command(name="kafka-ui")
@click.option("--topic", help="Browse this topic's records (Avro decoded through the registry).  [default: admin mode]")
@click.option("--earliest", is_flag=True, help="With --topic: start at the earliest offsets.")
@click.pass_obj
def kafka_ui(settings: Settings, topic: str | None, earliest: bool) -> None:
    """Kaskade, a terminal UI for Kafka, on the stack: topics, consumer groups and lag (admin mode), or a
    topic's records with Avro values decoded through the registry's Confluent API.

    Kaskade is an optional extra: pip install 'k2-market-data[ui]' (or `make ui`).

    \b
    Examples:
      k2 kafka-ui                                   # topics, partitions, groups, lag
      k2 kafka-ui --topic market.crypto.trades.binance --earliest
    """
    found = shutil.which("kaskade") or shutil.which("kaskade", path=os.path.dirname(sys.executable))
    if found is None:
        raise click.ClickException("kaskade is not installed: pip install 'k2-market-data[ui]' (or `make ui`)")
    argv = kaskade_argv(settings, topic, earliest)
    os.execv(found, argv)

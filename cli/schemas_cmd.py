"""``k2 schemas``: the Avro contracts of schemas/ in the schema registry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .output import emit, format_option
from .settings import Settings

if TYPE_CHECKING:
    from k2.schemas.contract import TopicSpec

COLUMNS = ("subject", "action", "schema_id", "version", "schema_file")


def _specs(topic_keys: tuple[str, ...]) -> list[TopicSpec]:
    from k2.schemas.contract import load_topics

    topics = load_topics()
    unknown = [k for k in topic_keys if k not in topics]
    if unknown:
        raise click.BadParameter(f"unknown topic {', '.join(unknown)}; declared: {', '.join(topics)}")
    chosen = topic_keys or tuple(k for k, t in topics.items() if t.value_schema)
    return [topics[k] for k in chosen]


@click.group()
def schemas() -> None:
    """Register and check the Avro schemas declared in schemas/topics.toml.

    Each topic's value schema is registered under "<topic>-value" with BACKWARD compatibility.

    \b
    Examples:
      k2 schemas register
      k2 schemas check --file my-changed-trade.avsc
      k2 schemas list --format json
    """


@schemas.command()
@click.argument("topics", nargs=-1)
@click.option(
    "--file",
    "schema_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Register this .avsc instead of the declared one (one topic only).",
)
@click.option("--dry-run", is_flag=True, help="Check only; register nothing.")
@format_option()
@click.pass_obj
def register(settings: Settings, topics: tuple[str, ...], schema_file: Path | None, dry_run: bool, fmt: str) -> None:
    """Register each declared topic's value schema (idempotent: unchanged schemas keep their id).

    TOPICS are keys of schemas/topics.toml (default: every topic with a value_schema).

    \b
    Examples:
      k2 schemas register
      k2 schemas register trades --dry-run
      k2 schemas register trades --file schemas/trade-v2.avsc
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from k2.schemas.registry import register as register_one

    specs = _specs(topics)
    if schema_file and len(specs) != 1:
        raise click.UsageError("--file needs exactly one topic, e.g. `k2 schemas register trades --file x.avsc`")
    with SchemaRegistryClient({"url": settings.registry_url}) as client:
        rows = [
            register_one(client, settings.registry_url, spec, schema_file, dry_run=dry_run).as_dict() for spec in specs
        ]
    emit(rows, fmt, COLUMNS)


@schemas.command()
@click.argument("topic", default="trades")
@click.option(
    "--file",
    "schema_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A changed .avsc to check instead of the declared one.",
)
@format_option()
@click.pass_obj
def check(settings: Settings, topic: str, schema_file: Path | None, fmt: str) -> None:
    """Tell whether a (changed) schema is compatible with the registered one. Exits 1 if not.

    \b
    Examples:
      k2 schemas check
      k2 schemas check trades --file /tmp/trade-v2.avsc
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from k2.schemas.registry import check as check_one

    (spec,) = _specs((topic,))
    with SchemaRegistryClient({"url": settings.registry_url}) as client:
        result = check_one(client, settings.registry_url, spec, schema_file)
    emit([result.as_dict()], fmt, ("subject", "action", "schema_file"))
    if result.action == "incompatible":
        click.echo(
            f"Error: {result.schema_file} is not BACKWARD-compatible with {result.subject}; "
            "add fields with defaults instead of removing or retyping them",
            err=True,
        )
        sys.exit(1)


@schemas.command(name="list")
@format_option()
@click.pass_obj
def list_(settings: Settings, fmt: str) -> None:
    """List the registry's subjects with their latest version, id and compatibility.

    \b
    Examples:
      k2 schemas list
      k2 schemas list --format csv
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from k2.schemas.registry import list_subjects

    with SchemaRegistryClient({"url": settings.registry_url}) as client:
        emit(list_subjects(client, settings.registry_url), fmt, ("subject", "version", "schema_id", "compatibility"))

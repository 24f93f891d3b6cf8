"""``k2 topics``: the Kafka topics declared in schemas/topics.toml."""

from __future__ import annotations

import click

from .output import emit, format_option
from .settings import Settings


@click.group()
def topics() -> None:
    """Create and inspect the topics declared in schemas/topics.toml.

    \b
    Examples:
      k2 topics apply
      k2 topics apply --dry-run --format json
      k2 topics list
    """


@topics.command()
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@format_option()
@click.pass_obj
def apply(settings: Settings, dry_run: bool, fmt: str) -> None:
    """Create missing topics and align partitions and configs of existing ones (idempotent).

    \b
    Examples:
      k2 topics apply
      k2 --bootstrap-servers kafka:29092 topics apply --dry-run
    """
    from k2.schemas.contract import load_topics
    from k2.schemas.topics import apply_topics

    rows = apply_topics(settings.bootstrap_servers, load_topics().values(), dry_run=dry_run)
    emit(rows, fmt, ("topic", "action", "partitions", "changes"))


@topics.command(name="list")
@format_option()
@click.pass_obj
def list_(settings: Settings, fmt: str) -> None:
    """List the declared topics with their partitions and whether they exist on the broker.

    \b
    Examples:
      k2 topics list
      k2 topics list --format json
    """
    from k2.schemas.contract import load_topics
    from k2.schemas.topics import admin_client, existing_partitions

    present = existing_partitions(admin_client(settings.bootstrap_servers), settings.bootstrap_servers)
    rows = [
        {
            "key": spec.key,
            "topic": spec.name,
            "declared_partitions": spec.partitions,
            "partitions": present.get(spec.name, ""),
            "exists": spec.name in present,
            "doc": spec.doc,
        }
        for spec in load_topics().values()
    ]
    emit(rows, fmt)

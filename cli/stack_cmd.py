"""``k2 stack``: the local stack of stack/ (Kafka, schema registry, Kafka Connect, Iceberg REST catalog)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from k2.stack.ports import SERVICE_NAMES, Ports, stack_ports

if TYPE_CHECKING:
    from k2.stack.manager import Stack

from .options import DURATION
from .output import Progress, emit, format_option
from .settings import Settings

STATUS_COLUMNS = ("service", "url", "state", "pid", "log")


def _stack(
    settings: Settings, warehouse: str | None = None, s3_endpoint: str | None = None, **port_flags: int | None
) -> Stack:
    ports = stack_ports(settings.home, flags=port_flags)
    from k2.stack.manager import Stack, default_cache  # here: every `k2` command imports this module
    from k2.stack.services import Context

    context = Context(settings.home, default_cache(), ports, warehouse_uri=warehouse, s3_endpoint=s3_endpoint)
    return Stack(context)


@click.group()
def stack() -> None:
    """Run the local stack as plain processes on loopback (no Docker): Kafka, the schema registry, the
    Iceberg REST catalog, Kafka Connect, the table maintainer, and the metrics server (VictoriaMetrics)
    with its alert rules (vmalert).

    Jars are resolved from Maven Central once into K2_CACHE_DIR (default ~/.cache/k2), versions pinned
    in stack/artifacts.toml; the metrics server and vmalert are built once with `go install` (without
    Go they are skipped, said in one line); state lives in K2_HOME (default ./.k2).

    \b
    Examples:
      k2 stack up --timeout 5m
      k2 stack status --format json
      k2 stack logs connect -n 50
      k2 stack down && k2 stack reset --yes
    """


def _port_options(func: Any) -> Any:
    for name, var in reversed(list(Ports.ENV.items())):
        default = getattr(Ports(), name)
        func = click.option(
            f"--{name.replace('_', '-')}-port",
            name.replace("-", "_") + "_port",
            type=click.IntRange(1, 65535),
            default=None,
            help=f"Port for {name}.  [env: {var}; default: {default}]",
        )(func)
    return func


@stack.command()
@click.argument("services", nargs=-1, type=click.Choice(SERVICE_NAMES))
@_port_options
@click.option(
    "--warehouse",
    envvar="K2_WAREHOUSE",
    help="Warehouse of the Iceberg catalog: s3://bucket/prefix on S3-compatible storage (credentials from "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).  [env: K2_WAREHOUSE; default: K2_HOME/data/warehouse]",
)
@click.option(
    "--s3-endpoint", envvar="K2_S3_ENDPOINT", help="S3 endpoint URL for an s3:// warehouse.  [env: K2_S3_ENDPOINT]"
)
@click.option(
    "--timeout",
    type=DURATION,
    default="300s",
    show_default=True,
    help="How long to wait for every service to be healthy.",
)
@click.option("--dry-run", is_flag=True, help="Show what would start or fail (ports in use, jars to download).")
@format_option()
@click.pass_obj
def up(
    settings: Settings,
    services: tuple[str, ...],
    warehouse: str | None,
    s3_endpoint: str | None,
    timeout: float,
    dry_run: bool,
    fmt: str,
    **ports: int | None,
) -> None:
    """Start every service (or each SERVICE and what it needs) not already running, then wait until each
    answers its health check.

    Idempotent: healthy services started earlier are left alone. Downloads the jars on first use.
    The warehouse given with --warehouse is recorded in K2_HOME: later starts keep it until
    `k2 stack reset`; a running catalog is never switched to another one.

    \b
    Examples:
      k2 stack up
      k2 stack up catalog
      k2 stack up --kafka-port 19092 --timeout 10m
      k2 stack up --dry-run
      K2_HOME=/tmp/k2 k2 stack up --format json
      k2 stack up --warehouse s3://k2/warehouse --s3-endpoint http://127.0.0.1:9000
    """
    flags = {key.removesuffix("_port"): value for key, value in ports.items()}
    the_stack = _stack(settings, warehouse, s3_endpoint, **flags)
    if dry_run:
        plan = the_stack.plan(services)
        emit(plan, fmt, ("service", "url", "state", "action"))
        if any(str(row["action"]).startswith("would fail") for row in plan):
            sys.exit(1)  # the plan says `up` would fail: scripts can tell before trying
        return
    started = time.monotonic()
    states = the_stack.up(timeout=timeout, progress=Progress(), only=services)
    rows = [s.as_dict() for s in states]
    emit(rows, fmt, STATUS_COLUMNS)
    if fmt == "table":
        where = the_stack.ctx.warehouse_uri or the_stack.ctx.warehouse
        click.echo(
            f"Stack ready in {time.monotonic() - started:.1f}s (state in {settings.home}; warehouse {where}).",
            err=True,
        )
    wanted = {svc.name for svc in the_stack.selected(services)}
    if any(not s.ok for s in states if s.service in wanted):
        sys.exit(1)


@stack.command()
@format_option()
@click.pass_obj
def status(settings: Settings, fmt: str) -> None:
    """Show each service's URL, state, pid and log file. Exits 1 if any service is not running.

    States: running (healthy), unhealthy (process up, health check failing), stopped, crashed
    (started by `k2 stack up` but the process has exited: read its log).

    \b
    Examples:
      k2 stack status
      k2 stack status --format json | jq '.[] | select(.state != "running")'
    """
    states = _stack(settings).states()
    emit([s.as_dict() for s in states], fmt, STATUS_COLUMNS)
    if any(not s.ok for s in states):
        sys.exit(1)


@stack.command()
@click.option(
    "--timeout", type=DURATION, default="60s", show_default=True, help="How long to wait after SIGTERM before SIGKILL."
)
@click.option("--dry-run", is_flag=True, help="Show what would be stopped; stop nothing.")
@format_option()
@click.pass_obj
def down(settings: Settings, timeout: float, dry_run: bool, fmt: str) -> None:
    """Stop the processes `k2 stack up` started (by recorded pid), gracefully first.

    A second `down` is a no-op. Data stays in K2_HOME; `k2 stack reset` removes it.

    \b
    Examples:
      k2 stack down
      k2 stack down --timeout 10s
      k2 stack down --dry-run --format json
    """
    results = _stack(settings).down(timeout=timeout, progress=Progress(), dry_run=dry_run)
    emit([{"service": name, "result": outcome} for name, outcome in results], fmt, ("service", "result"))


@stack.command()
@click.argument("services", nargs=-1, type=click.Choice(SERVICE_NAMES))
@click.option("-n", "--lines", type=int, default=100, show_default=True, help="Lines to show from the end of each log.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.pass_obj
def logs(settings: Settings, services: tuple[str, ...], lines: int, follow: bool) -> None:
    """Print the logs of the named services (default: all), each line prefixed by its service.

    \b
    Examples:
      k2 stack logs connect
      k2 stack logs kafka registry -n 20
      k2 stack logs -f
    """
    files = _stack(settings).log_files(services or SERVICE_NAMES)
    prefix = len(files) > 1
    positions: dict[Path, int] = {}
    for name, path in files:
        if not path.is_file():
            click.echo(f"{name}: no log yet ({path})", err=True)
            continue
        with path.open("rb") as handle:
            tail = handle.read().decode(errors="replace").splitlines()[-lines:] if lines > 0 else []
            positions[path] = handle.tell()
        for line in tail:
            click.echo(f"{name:<8} | {line}" if prefix else line)
    while follow:
        time.sleep(0.5)
        for name, path in files:
            if not path.is_file():
                continue
            with path.open("rb") as handle:
                handle.seek(positions.get(path, 0))
                chunk = handle.read()
                positions[path] = handle.tell()
            for line in chunk.decode(errors="replace").splitlines():
                click.echo(f"{name:<8} | {line}" if prefix else line)


@stack.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--cache", "include_cache", is_flag=True, help="Also delete the downloaded jars (K2_CACHE_DIR).")
@click.option("--dry-run", is_flag=True, help="List what would be stopped and deleted; delete nothing.")
@format_option()
@click.pass_obj
def reset(settings: Settings, yes: bool, include_cache: bool, dry_run: bool, fmt: str) -> None:
    """Stop the stack and delete its state: topics, schemas, tables, logs.

    \b
    Examples:
      k2 stack reset            # asks first
      k2 stack reset --yes --cache
      k2 stack reset --dry-run
    """
    the_stack = _stack(settings)
    what = f"all K2 stack data in {settings.home}" + (
        f" and the jar cache {the_stack.ctx.cache}" if include_cache else ""
    )
    if dry_run:
        stops = [name for name, outcome in the_stack.down(60, Progress(), dry_run=True) if outcome != "not running"]
        rows = [{"target": name, "action": "would stop"} for name in stops]
        rows += [{"target": str(path), "action": "would delete"} for path in the_stack.reset(include_cache, True)]
        emit(rows, fmt, ("target", "action"))
        return
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("refusing to delete without confirmation on a non-interactive input; pass --yes")
        click.confirm(f"Delete {what}?", abort=True)
    rows = [
        {"target": name, "action": outcome}
        for name, outcome in the_stack.down(timeout=60, progress=Progress())
        if outcome != "was not running"
    ]
    rows += [{"target": str(path), "action": "deleted"} for path in the_stack.reset(include_cache)]
    emit(rows, fmt, ("target", "action"))
    click.echo(f"Deleted {what} ({len(rows)} entries).", err=True)

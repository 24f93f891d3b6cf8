"""``k2 stack``: the local stack of stack/ (Kafka, schema registry, Kafka Connect, Iceberg REST catalog)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from k2.stack.ports import PORT_ROLES, Ports, stack_ports
from k2.stack.services import SERVICE_NAMES, Context

if TYPE_CHECKING:
    from k2.stack.manager import Stack

from .options import DURATION, POSITIVE_DURATION, metrics_options
from .output import Progress, emit, format_option
from .settings import Settings

STATUS_COLUMNS = ("service", "url", "state", "pid", "log")


def _stack(
    settings: Settings, warehouse: str | None = None, s3_endpoint: str | None = None, **port_flags: int | None
) -> Stack:
    ports = stack_ports(settings.home, flags=port_flags)
    from k2.stack.manager import Stack, default_cache  # here: `k2 --help` imports this module

    context = Context(settings.home, default_cache(), ports, warehouse_uri=warehouse, s3_endpoint=s3_endpoint)
    return Stack(context)


def _s3_warehouse(value: str | None) -> str | None:
    """--warehouse is s3://bucket[/prefix], checked before anything starts."""
    if value is not None and (not value.startswith("s3://") or len(value) <= len("s3://")):
        raise click.BadParameter(f"{value!r} is not s3://bucket/prefix (leave it out for the local disk)")
    return value


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
            help=f"Port of {PORT_ROLES.get(name, name)}.  [env: {var}; default: {default}]",
        )(func)
    return func


@stack.command()
@click.argument("services", nargs=-1, type=click.Choice(SERVICE_NAMES))
@_port_options
@click.option(
    "--warehouse",
    envvar="K2_WAREHOUSE",
    callback=lambda _ctx, _param, value: _s3_warehouse(value),
    help="Warehouse of the Iceberg catalog: s3://bucket/prefix on S3-compatible storage (credentials from "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).  [env: K2_WAREHOUSE; default: K2_HOME/data/warehouse]",
)
@click.option(
    "--s3-endpoint", envvar="K2_S3_ENDPOINT", help="S3 endpoint URL for an s3:// warehouse.  [env: K2_S3_ENDPOINT]"
)
@click.option(
    "--timeout",
    type=POSITIVE_DURATION,
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
        from k2.stack.manager import PLAN_COLUMNS

        plan = the_stack.plan(services)
        emit(plan, fmt, PLAN_COLUMNS)
        if any(step.kind == "fail" for step in plan):
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


@stack.command()
@click.option("--interval", type=POSITIVE_DURATION, default="10s", show_default=True, help="Time between checks.")
@click.option(
    "--connect-grace",
    type=POSITIVE_DURATION,
    default="60s",
    show_default=True,
    help="Kill and restart a running Connect worker whose REST API has not answered for this long (and at "
    "least 3 probes in a row).",
)
@click.option(
    "--start-timeout",
    type=POSITIVE_DURATION,
    default="5m",
    show_default=True,
    help="How long a restarted service may take to be healthy (and a new worker to answer at all).",
)
@click.option(
    "--max-restarts-per-hour",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Restarts of one service or connector within an hour before the supervisor gives up on it and says so.",
)
@click.option(
    "--first-backoff",
    type=POSITIVE_DURATION,
    default="10s",
    show_default=True,
    help="Wait after a first restart before another; each further wait doubles up to --max-backoff.",
)
@click.option("--max-backoff", type=POSITIVE_DURATION, default="5m", show_default=True, help="The longest wait.")
@click.option(
    "--services/--no-services",
    default=True,
    show_default=True,
    help="Also restart the local stack's processes in K2_HOME (--no-services: connectors only, as in Compose, "
    "where Docker's restart policy restarts containers).",
)
@click.option(
    "--heartbeat",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file rewritten with a JSON status after every check (a health check).",
)
@metrics_options("The supervisor's (restarts, failed tasks, give-ups)", "K2_SUPERVISOR_METRICS_PORT")
@click.option("--once", is_flag=True, help="Check once, act, print what was done, and exit.")
@click.option("--dry-run", is_flag=True, help="Check once and print what would be done; change nothing.")
@format_option()
@click.pass_obj
def supervise(
    settings: Settings,
    interval: float,
    connect_grace: float,
    start_timeout: float,
    max_restarts_per_hour: int,
    first_backoff: float,
    max_backoff: float,
    services: bool,
    heartbeat: Path | None,
    metrics_port: int,
    metrics_host: str,
    once: bool,
    dry_run: bool,
    fmt: str,
) -> None:
    """Keep the stack and K2's connectors up; `k2 stack up` runs this as the `supervisor` service.

    Every --interval: a stack service whose process has exited is started again (as `k2 stack up`
    does); a Connect worker whose process runs but whose REST API has not answered for --connect-grace
    is killed (SIGKILL) and started again; a connector of connect/*.json whose connector or tasks are
    FAILED is restarted through Connect's REST API (failed parts only, KIP-745). Connectors K2 does not
    define are never touched. Restarts back off (--first-backoff doubling to --max-backoff); after
    --max-restarts-per-hour of one target within an hour the supervisor stops restarting it and reports
    it (log, metrics, `k2 status`) until it is seen healthy again.

    \b
    Examples:
      k2 stack supervise --dry-run
      k2 stack supervise --once --format json
      k2 stack supervise --metrics-port 9465 --heartbeat /tmp/k2-supervisor.heartbeat
      k2 --connect-url http://connect:8083 stack supervise --no-services
    """
    import logging

    from k2.connect.deploy import ConnectClient, connector_files, load_connector
    from k2.stack.restarts import RestartPolicy
    from k2.stack.supervisor import ACTION_COLUMNS, Options, Supervisor, serve_metrics

    policy = RestartPolicy(first_backoff_s=first_backoff, max_backoff_s=max_backoff, max_per_hour=max_restarts_per_hour)
    options = Options(
        interval_s=interval,
        connect_grace_s=connect_grace,
        start_timeout_s=start_timeout,
        policy=policy,
        services=services,
    )
    the_stack = None
    if services:
        from k2.stack.ports import Ports, recorded_ports

        recorded = recorded_ports(settings.home)
        if not recorded:
            raise click.ClickException(
                f"no local stack in {settings.home} (no {settings.home}/ports.json); start it with `k2 stack up`, "
                "point --home / K2_HOME at it, or pass --no-services to restart connectors only"
            )
        # The ports this stack was started on, and nothing else: a K2_*_PORT of this shell must not move it.
        from k2.stack.manager import Stack, default_cache
        from k2.stack.services import Context

        ports = Ports.from_env({Ports.ENV[name]: str(port) for name, port in recorded.items()})
        the_stack = Stack(Context(settings.home, default_cache(), ports))

    def k2_connectors() -> list[str]:
        return [load_connector(path).name for path in connector_files()]

    supervisor = Supervisor(
        ConnectClient(settings.connect_url, timeout=30), k2_connectors, options, the_stack, heartbeat
    )
    if dry_run or once:
        actions = supervisor.check(dry_run=dry_run)
        emit([action.row() for action in actions], fmt, ACTION_COLUMNS)
        if not actions:
            click.echo("Nothing to do now: no service exited or hung past its grace, no K2 connector FAILED.", err=True)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    supervisor_log = logging.getLogger("k2.supervisor")
    supervisor_log.addHandler(handler)
    supervisor_log.setLevel(logging.INFO)
    supervisor_log.propagate = False
    if metrics_port:
        serve_metrics(supervisor.stats, metrics_port, metrics_host)
    supervisor_log.info(
        "supervising %s every %.0fs", "the stack in " + str(settings.home) if services else "connectors", interval
    )
    try:
        supervisor.run()
    except KeyboardInterrupt:
        return

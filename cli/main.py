"""The ``k2`` command: one root group carrying the connection options, one sub-group per folder."""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from k2.stack.ports import default_home, stack_ports, urls

from .options import SERVICE_URL
from .output import redact
from .settings import Settings


def local_defaults(home: Path) -> dict[str, str]:
    """Client URLs of the local stack in ``home``: its recorded ports, else K2_*_PORT, else defaults."""
    local = urls(stack_ports(home))
    return {
        "bootstrap_servers": local["kafka"],
        "registry_url": local["registry"],
        "connect_url": local["connect"],
        "catalog_uri": local["catalog"],
        "ksql_url": "http://127.0.0.1:8088",
    }


# Each command's module is imported when that command runs (or --help lists it): `k2 query` pays for
# neither the stack manager nor the producer.
COMMANDS = {
    "run": "run_cmd:run",
    "status": "status_cmd:status",
    "stack": "stack_cmd:stack",
    "topics": "topics_cmd:topics",
    "schemas": "schemas_cmd:schemas",
    "produce": "produce_cmd:produce",
    "binance-standin": "produce_cmd:binance_standin",
    "tables": "tables_cmd:tables",
    "deploy-connectors": "connect_cmd:deploy_connectors",
    "connectors": "connect_cmd:connectors",
    "query": "query_cmd:query",
    "candles": "query_cmd:candles",
    "volume": "query_cmd:volume",
    "ksql": "ksql_cmd:ksql",
    "kafka-ui": "ui_cmd:kafka_ui",
}


class K2Group(click.Group):
    """The root group: commands load on first use, and failures are one line on stderr and a non-zero
    exit (tracebacks only with --verbose)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attribute = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(f"k2.cli.{module}"), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``--verbose`` is the root's option, but users type it anywhere (`k2 query ... --verbose`): moved
        before the subcommand, up to a ``--`` that ends the options."""
        end = args.index("--") if "--" in args else len(args)
        if "--verbose" in args[1:end]:
            args = ["--verbose", *[arg for arg in args[:end] if arg != "--verbose"], *args[end:]]
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Click suggests near names among a group's loaded subcommands only; the root's commands load
        lazily, so it would never suggest one here (`k2 prodce`)."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            near = difflib.get_close_matches(name, self.list_commands(ctx), n=3)
            if near:
                ctx.fail(f"No such command {name!r}. Did you mean {' or '.join(repr(n) for n in near)}?")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            exc.message = redact(exc.message)  # type: ignore[misc]  # a URL's password is never printed
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except OSError as exc:
            if exc.filename is None or type(exc).__module__.startswith("k2."):  # a socket's, or K2's own
                self._fail(ctx, exc)
            # A file the user named (--output into a missing folder, a full disk, no permission): say which.
            if ctx.find_root().params.get("verbose"):
                traceback.print_exc()
            click.echo(f"Error: {redact(str(exc.filename))}: {exc.strerror or exc}", err=True)
            sys.exit(1)
        except Exception as exc:
            self._fail(ctx, exc)

    @staticmethod
    def _fail(ctx: click.Context, exc: Exception) -> NoReturn:
        if ctx.find_root().params.get("verbose"):
            traceback.print_exc()
        ours = type(exc).__module__.startswith("k2.")
        message = str(exc) if ours else f"unexpected {type(exc).__name__}: {exc} (rerun with --verbose for details)"
        click.echo(f"Error: {redact(message)}", err=True)
        sys.exit(1)


@click.group(cls=K2Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--home",
    envvar="K2_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory of the local stack (data, logs, pids).  [env: K2_HOME; default: ./.k2]",
)
@click.option(
    "--bootstrap-servers", envvar="K2_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.  [env: K2_BOOTSTRAP_SERVERS]"
)
@click.option(
    "--registry-url",
    envvar="K2_REGISTRY_URL",
    type=SERVICE_URL,
    help="Schema registry (Confluent API) URL.  [env: K2_REGISTRY_URL]",
)
@click.option(
    "--connect-url", envvar="K2_CONNECT_URL", type=SERVICE_URL, help="Kafka Connect REST URL.  [env: K2_CONNECT_URL]"
)
@click.option("--ksql-url", envvar="K2_KSQL_URL", type=SERVICE_URL, help="ksqlDB server URL.  [env: K2_KSQL_URL]")
@click.option(
    "--catalog-uri", envvar="K2_CATALOG_URI", type=SERVICE_URL, help="Iceberg REST catalog URI.  [env: K2_CATALOG_URI]"
)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="k2-market-data", prog_name="k2")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, verbose: bool, **urls_given: str | None) -> None:
    """K2: Binance trades -> Kafka (Avro) -> Iceberg via Kafka Connect, live ksqlDB aggregates, DuckDB.

    Connection options default to the local stack started by `k2 stack up` (loopback ports).

    \b
    Examples:
      k2 stack up                  # start Kafka, registry, Connect, Iceberg REST catalog
      k2 stack status --format json
      K2_CONNECT_URL=http://connect.example:8083 k2 status   # another cluster's pipeline
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    state_home = home.resolve() if home else default_home()
    defaults = local_defaults(state_home)
    ctx.obj = Settings(
        home=state_home,
        verbose=verbose,
        **{key: urls_given.get(key) or defaults[key] for key in defaults},
        given=frozenset(key for key, value in urls_given.items() if value),
    )


def main() -> None:
    cli(prog_name="k2")


if __name__ == "__main__":
    main()

"""Every leaf command of the `k2` tree, for the tests that check each one (a new command is checked too)."""

from __future__ import annotations

from collections.abc import Iterator

import click

from k2.cli.main import cli


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from leaves(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS: dict[tuple[str, ...], click.Command] = dict(leaves(cli))

"""Every command documents itself with examples (as sqlite-utils' tests/test_docs.py checks)."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from k2.cli.main import cli


def _walk(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))


COMMANDS = [()] + list(_walk(cli))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(("k2", *p)))
def test_help_has_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output, f"k2 {' '.join(path)} --help has no examples"

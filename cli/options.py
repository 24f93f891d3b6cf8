"""Option parsing shared by several commands."""

from __future__ import annotations

import click


def assignments(values: tuple[str, ...], param_hint: str) -> dict[str, str]:
    """NAME=VALUE pairs from a repeatable option (--set, -d), with a usage error naming the bad one."""
    parsed = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=param_hint)
        parsed[name.strip()] = value
    return parsed

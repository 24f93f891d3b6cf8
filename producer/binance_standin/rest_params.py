"""REST query parameters the endpoints share, checked with the error Binance gives for each (errors.md)."""

from __future__ import annotations

import re
import string
from typing import Any

from k2.producer.binance_standin.answers import error

_ascii_characters = re.compile(r"[\x00-\x7f]").findall
_LEGAL_ASCII_IN_SYMBOL = frozenset(string.ascii_uppercase + string.digits + "-_.")

Query = dict[str, list[str]]  # urllib.parse.parse_qs with keep_blank_values


def symbol_param(query: Query, name: str) -> tuple[str | None, dict[str, Any] | None]:
    """The symbol parameter, or the error Binance gives for it (errors.md § -1100, -1102, -1105)."""
    values = query.get(name)
    if not values:
        return None, error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    if values[0] == "":
        return None, error(-1105, f"Parameter '{name}' was empty.")
    return check_symbol(values[0], name)


def check_symbol(symbol: str, name: str) -> tuple[str | None, dict[str, Any] | None]:
    """``symbol``, or -1100 when it holds an ASCII character a symbol may not have.

    ASCII characters of a symbol are uppercase letters, digits and -_. ; other characters are allowed
    since CHANGELOG.md § 2025-12-02. The range text is the one Binance sent before then.
    """
    if any(c not in _LEGAL_ASCII_IN_SYMBOL for c in _ascii_characters(symbol)):
        return None, error(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[A-Z0-9-_.]{{1,20}}$'."
        )
    return symbol, None


def page_limit(query: Query) -> int:
    """``limit``: default 500, clamped to 1..1000 (rest-api.md § Old trade lookup, § Compressed/Aggregate
    trades list). Raises ValueError when it is not an integer."""
    return max(1, min(int((query.get("limit") or ["500"])[0]), 1000))

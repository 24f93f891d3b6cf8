"""Which symbols the stand-in's market lists, and with which exchangeInfo status, at each tape position.

A market changes while it plays (``Script.status_changes``): a symbol's status changes at a tape position,
a symbol not yet listed (status None: absent from exchangeInfo, -1121 for queries about it) is listed, or
one is delisted. Only a TRADING symbol trades (enums.md § Symbol status: BREAK generates no market data;
HALT, END_OF_DAY and CANCEL_ONLY match no orders), so the tape's trades of a symbol while it is not
TRADING never happen (``TapeFrame.void``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# enums.md § Symbol status (status)
SYMBOL_STATUSES = ("TRADING", "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY")


class Listings:
    """Each symbol's status at the start (default TRADING; None: not listed yet) and its scripted changes.

    ``traded`` names the tape's symbols; ``status_changes`` maps a tape position to the statuses that
    apply after the frame there. Raises ValueError for a status enums.md does not list.
    """

    def __init__(
        self,
        traded: Iterable[str],
        symbol_status: Mapping[str, str | None] | None,
        status_changes: Mapping[int, Mapping[str, str | None]],
    ) -> None:
        changed = [(symbol_status or {}).items(), *(c.items() for c in status_changes.values())]
        bad_status = {s: v for items in changed for s, v in items if v is not None and v not in SYMBOL_STATUSES}
        if bad_status:
            raise ValueError(f"symbol_status values must be one of {', '.join(SYMBOL_STATUSES)}: {bad_status}")
        self.symbol_status: dict[str, str | None] = dict(symbol_status or {})
        # Each symbol's statuses in tape order: (position after which it applies, status); see status_at.
        self._log: dict[str, list[tuple[int, str | None]]] = {}
        for position in sorted(status_changes):
            for symbol, status in status_changes[position].items():
                self._log.setdefault(symbol, []).append((position, status))
        named = [*self.symbol_status, *self._log]
        self.symbols = list(dict.fromkeys([*traded, *named]))  # exchangeInfo's order
        self._known = frozenset(self.symbols)

    def status_at(self, symbol: str, position: int) -> str | None:
        """The exchangeInfo status of ``symbol`` once ``position`` frames were broadcast (the status its
        trade at tape index ``position`` would have): None when not listed then."""
        status = self.symbol_status.get(symbol, "TRADING") if symbol in self._known else None
        for changed_after, changed_to in self._log.get(symbol, []):
            if changed_after >= position:
                break
            status = changed_to
        return status

"""Every stream on ``redundancy`` independent sets of connections, each set covering every symbol once.

With one set, a dropped connection loses the trades made while it was away and the sequencer backfills
them over REST (historicalTrades, weight 25 of 6,000 a minute). With two, the other set keeps delivering
the same streams, so a drop of one connection opens no gap and costs no request: the sequencer drops the
second copy of each trade by its id. Changes to the list (subscribe, unsubscribe) apply to every set,
each placing new streams by the same rule (subscriptions.assign), so the sets stay alike.
"""

from __future__ import annotations

from collections.abc import Callable

from .subscriptions import MAX_STREAMS_PER_CONNECTION, MAX_URL_LENGTH, assign, load_of, pack
from .websocket import StreamConnection

# Makes the connection of set ``feed`` (0-based) for these symbols.
ConnectionFactory = Callable[[int, list[str]], StreamConnection]


class ConnectionSets:
    def __init__(
        self,
        ws_url: str,
        symbols: list[str],
        redundancy: int,
        make: ConnectionFactory,
        per_connection: int = MAX_STREAMS_PER_CONNECTION,
        max_url_length: int = MAX_URL_LENGTH,
    ) -> None:
        self.ws_url = ws_url
        self.per_connection = per_connection
        self.max_url_length = max_url_length
        self._make = make
        groups = pack(ws_url, symbols, per_connection, max_url_length)
        self.sets: list[list[StreamConnection]] = [
            [make(feed, list(group)) for group in groups] for feed in range(redundancy)
        ]
        self.connections: list[StreamConnection] = [c for connections in self.sets for c in connections]

    def add(self, symbols: list[str]) -> list[StreamConnection]:
        """Carry these symbols on every set (on connections with room); returns the connections opened for
        them (to be run), if no connection had room."""
        opened: list[StreamConnection] = []
        for feed, connections in enumerate(self.sets):
            fresh = [s for s in symbols if not any(s in c.wanted for c in connections)]
            loads = [load_of(self.ws_url, list(c.wanted), self.max_url_length) for c in connections]
            placed = assign(self.ws_url, loads, fresh, self.per_connection, self.max_url_length)
            by_index: dict[int, list[str]] = {}
            for index, symbol in zip(placed, fresh, strict=True):
                by_index.setdefault(index, []).append(symbol)
            for index, group in sorted(by_index.items()):
                if index < len(connections):
                    connections[index].add(group)
                else:
                    connection = self._make(feed, group)
                    connections.append(connection)
                    opened.append(connection)
        self.connections.extend(opened)
        return opened

    def remove(self, symbols: list[str]) -> None:
        """Stop carrying these symbols on every set."""
        gone = set(symbols)
        for connection in self.connections:
            mine = [s for s in connection.wanted if s in gone]
            if mine:
                connection.remove(mine)

    def symbols(self, feed: int = 0) -> list[str]:
        """The symbols one set carries, connection by connection."""
        return [s for connection in self.sets[feed] for s in connection.wanted]

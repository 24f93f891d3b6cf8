"""What the stand-in counts, in one place: every part adds to the same Counters, and tests read them by name
on the server (``BinanceStandIn`` is a ``Counters``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(eq=False)  # a server is equal only to itself
class Counters:
    """The stand-in's counters, for tests and benchmarks."""

    # WebSocket (ws_clients.py)
    connections: int = 0  # handshakes completed
    connections_closed_on_open: int = 0
    incoming_limit_disconnects: int = 0
    control_requests: list[tuple[str, list[str]]] = field(default_factory=list)  # SUBSCRIBE/UNSUBSCRIBE as they came
    mass_disconnects: list[float] = field(default_factory=list)  # epoch seconds of each scripted disconnect of all
    partial_disconnects: int = 0  # scripted disconnects of only some connections
    partial_disconnect_times: list[float] = field(default_factory=list)  # epoch seconds of each
    # REST (rest.py, weights.py)
    rest_requests: int = 0  # every /api/ request, numbered from 1 as waf_block_requests counts them
    rest_403: int = 0
    rest_429: int = 0
    rest_418: int = 0
    weight_used: int = 0  # request weight of every answered request, all windows
    peak_window_weight: int = 0  # the most weight any one window took
    requests_by_endpoint: Counter[str] = field(default_factory=Counter)  # answered or refused, by path

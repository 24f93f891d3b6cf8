"""Script: the trouble a test asks the stand-in to cause, at tape positions, so a failure happens on cue."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Script:
    """Trouble to cause, keyed by tape position (0-based index of the frame just broadcast).

    ``close_on_open`` and ``silent_connections`` count down as connections use them; set them again at
    any time to affect the next connections.
    """

    disconnect_at: set[int] = field(default_factory=set)  # close every connection after this frame
    # After a forced disconnect, the next connection first gets the last N frames sent before it
    # (repeats); frames broadcast while no client was connected stay lost.
    overlap_on_reconnect: int = 0
    refuse_after_disconnect_s: float = 0.0  # refuse new connections this long after a forced disconnect
    shutdown_at: set[int] = field(default_factory=set)  # send serverShutdown after this frame
    bad_frames: dict[int, list[str]] = field(default_factory=dict)  # raw frames sent after this frame
    close_on_open: int = 0  # the next N connections are accepted, then dropped (no close frame) at once
    silent_connections: int = 0  # the next N connections are accepted and answer pings, but get no frame
    # From this tape position on, play at this many frames per second (a burst, then back): a market's
    # rate is never flat, and Binance's busiest minutes carry several times its average.
    rate_changes: dict[int, float] = field(default_factory=dict)
    # After this frame, these symbols take these exchangeInfo statuses (None: delisted, absent from
    # exchangeInfo). Read when the stand-in is made: the tape's trades of a symbol while it is not
    # TRADING are taken out of the market then.
    status_changes: dict[int, dict[str, str | None]] = field(default_factory=dict)
    # After this frame, close this many of the open connections, the oldest first (one front end of
    # several going down); the others keep streaming. refuse_after_disconnect_s applies here too.
    disconnect_some_at: dict[int, int] = field(default_factory=dict)

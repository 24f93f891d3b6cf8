"""A WebSocket connection that counts incoming messages as Binance does and drops a client over the limit."""

from __future__ import annotations

import asyncio
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event


class LimitedConnection(ServerConnection):
    """A server connection that counts incoming messages as Binance does and drops a client over the limit.

    web-socket-streams.md § WebSocket Limits: a connection may send 5 messages per second, a message being
    a PING frame, a PONG frame or a JSON control message; beyond that it is disconnected. The window here
    is any rolling second. The close code (1008 "Too many requests") is what clients report seeing from
    Binance; the docs only say "disconnected".
    """

    incoming_limit = 5
    over_limit = False
    accepted_messages = 0  # data messages that arrived within the limit, in order
    _arrivals: deque[float] | None = None
    _closer: asyncio.Task[None] | None = None

    def process_event(self, event: Event) -> None:
        if self.request is not None and isinstance(event, Frame) and not self.over_limit:
            if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG):
                now = self.loop.time()
                if self._arrivals is None:
                    self._arrivals = deque()
                self._arrivals.append(now)
                while self._arrivals and now - self._arrivals[0] >= 1.0:
                    self._arrivals.popleft()
                if len(self._arrivals) > self.incoming_limit:
                    self.over_limit = True
                    self._closer = self.loop.create_task(self.close(1008, "Too many requests"))
                elif event.opcode in (Opcode.TEXT, Opcode.BINARY):
                    self.accepted_messages += 1
        super().process_event(event)

"""The WebSocket clients: who may connect, what each is sent, and the scripted trouble that befalls them.

Every connected client subscribed to a frame's stream gets it as it is broadcast. Scripted trouble
(``Script``): forced disconnects of every connection at once or of only the oldest few, repeated frames
after a reconnect, ``serverShutdown`` events (web-socket-streams.md § Server Shutdown), raw bad frames,
connections closed as soon as they open, connections that never get a frame, and refused handshakes
after a disconnect.
"""

from __future__ import annotations

import asyncio
import time
from http import HTTPStatus

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from k2.producer.binance_standin.answers import STAND_IN_NAME, error, json_answer
from k2.producer.binance_standin.counters import Counters
from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.tape import TapeFrame
from k2.producer.binance_standin.ws_connection import LimitedConnection
from k2.producer.binance_standin.ws_control import (
    MAX_STREAMS_PER_CONNECTION,
    Subscriber,
    answer_control,
    requested_streams,
)


class Clients:
    """The open WebSocket connections, in the order they opened; what happens to them is counted in ``counters``."""

    def __init__(self, script: Script, max_incoming_per_s: int, counters: Counters) -> None:
        self.script = script
        self.counters = counters
        self.max_incoming_per_s = max_incoming_per_s
        self.first_connected = asyncio.Event()  # the tape starts playing then
        self._subscribers: dict[ServerConnection, Subscriber] = {}
        self._repeat_on_reconnect: list[TapeFrame] = []
        self._refuse_until = 0.0

    def admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """The refusal of a WebSocket handshake, or None to go on with it."""
        if time.monotonic() < self._refuse_until:
            return json_answer(HTTPStatus.SERVICE_UNAVAILABLE, error(-1, f"{STAND_IN_NAME}: outage"))
        if len(set(requested_streams(request.path)[1])) > MAX_STREAMS_PER_CONNECTION:
            # The limit is documented (web-socket-streams.md § WebSocket Limits), Binance's answer is not.
            return json_answer(
                HTTPStatus.BAD_REQUEST,
                error(-1, f"{STAND_IN_NAME}: more than {MAX_STREAMS_PER_CONNECTION} streams on one connection"),
            )
        if isinstance(connection, LimitedConnection):
            connection.incoming_limit = self.max_incoming_per_s
        return None

    async def handle(self, ws: ServerConnection) -> None:
        """Serve one connection: the scripted trouble it is due, repeats, then its control messages."""
        self.counters.connections += 1
        if self.script.close_on_open > 0:
            # Accepted, then dropped without a close frame (the handshake answer is flushed first), as a
            # busy front end does: clients see an abnormal closure (1006) before any message.
            self.script.close_on_open -= 1
            self.counters.connections_closed_on_open += 1
            ws.transport.close()
            return
        combined, streams = requested_streams(ws.request.path if ws.request else "")
        subscriber = Subscriber(dict.fromkeys(streams), combined)
        if self.script.silent_connections > 0:
            self.script.silent_connections -= 1
            subscriber.silent = True
        else:
            repeats, self._repeat_on_reconnect = self._repeat_on_reconnect, []
            for frame in repeats:
                if frame.stream in subscriber.streams and not frame.void:
                    await ws.send(subscriber.text_for(frame))
        self._subscribers[ws] = subscriber
        self.first_connected.set()
        handled = 0
        try:
            async for message in ws:
                handled += 1
                if isinstance(ws, LimitedConnection) and handled > ws.accepted_messages:
                    continue  # arrived past the limit: the connection is closing
                text = message.decode(errors="replace") if isinstance(message, bytes) else message
                answer = answer_control(subscriber, text, self.counters.control_requests)
                if not subscriber.silent:
                    await ws.send(orjson.dumps(answer).decode())
        except ConnectionClosed:
            pass
        finally:
            self._subscribers.pop(ws, None)
            if isinstance(ws, LimitedConnection) and ws.over_limit:
                self.counters.incoming_limit_disconnects += 1

    async def _send(self, ws: ServerConnection, text: str) -> None:
        try:
            await ws.send(text)
        except Exception:  # a client that went away misses the frame, as on Binance
            self._subscribers.pop(ws, None)

    async def broadcast(self, frame: TapeFrame) -> None:
        """Send ``frame`` to every client subscribed to its stream (every client: a raw frame)."""
        for ws, subscriber in list(self._subscribers.items()):
            if not subscriber.silent and (frame.stream is None or frame.stream in subscriber.streams):
                await self._send(ws, subscriber.text_for(frame))

    async def server_shutdown(self) -> None:
        """web-socket-streams.md § Server Shutdown: bare on raw streams, wrapped as ``!serverShutdown``
        on combined ones."""
        event = {"e": "serverShutdown", "E": int(time.time() * 1000)}
        combined = orjson.dumps({"stream": "!serverShutdown", "data": event}).decode()
        raw = orjson.dumps(event).decode()
        for ws, subscriber in list(self._subscribers.items()):
            if not subscriber.silent:
                await self._send(ws, combined if subscriber.combined else raw)

    async def disconnect_everyone(self, repeats: list[TapeFrame], refuse_for_s: float) -> None:
        """Close every connection at once (subscribed or silent), as when a Binance front end goes down;
        refuse handshakes for ``refuse_for_s``, then send the next connection ``repeats`` first."""
        self._repeat_on_reconnect = repeats
        self._refuse_until = time.monotonic() + refuse_for_s
        self.counters.mass_disconnects.append(time.time())
        closing = list(self._subscribers)
        self._subscribers.clear()
        await self._close(closing)

    async def disconnect_oldest(self, count: int, refuse_for_s: float) -> None:
        """Close the ``count`` connections open longest; the others keep streaming."""
        self._refuse_until = time.monotonic() + refuse_for_s
        self.counters.partial_disconnects += 1
        self.counters.partial_disconnect_times.append(time.time())
        closing = list(self._subscribers)[:count]
        for ws in closing:
            self._subscribers.pop(ws, None)
        await self._close(closing)

    @staticmethod
    async def _close(closing: list[ServerConnection]) -> None:
        await asyncio.gather(*(ws.close(1001, "stand-in: forced disconnect") for ws in closing), return_exceptions=True)

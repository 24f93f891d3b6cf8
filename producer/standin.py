"""BinanceStandIn: a stand-in for Binance's spot market-data APIs, for tests and offline demos.

It is NOT Binance. Binance cannot be reached from where K2 is built and tested, so this server speaks
the documented protocol over recorded (or generated) trades:

* WebSocket combined streams, ``/stream?streams=btcusdt@trade/ethusdt@trade``, each frame
  ``{"stream": "btcusdt@trade", "data": {"e": "trade", "E": ..., "s": ..., "t": ..., "p": ..., ...}}``;
  server pings every 20 s (answered by any compliant client);
* scripted trouble: forced disconnects (frames broadcast while a client is away are lost to it, as on
  Binance), repeated frames after a reconnect (overlap), a ``serverShutdown`` event, and raw bad frames;
* REST ``GET /api/v3/historicalTrades?symbol=&fromId=&limit=`` over the same trades (only those already
  broadcast, as Binance serves only the past), with 429 + Retry-After past a request rate and 418
  after repeated 429s; plus ``/api/v3/ping`` and ``/api/v3/time``.

The trades play like a live market: one tape, advanced at ``rate`` frames per second from the first
connection on, broadcast to every connected client subscribed to the frame's stream.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

STAND_IN_NAME = "k2-binance-stand-in"


@dataclass
class Script:
    """Trouble to cause, keyed by tape position (0-based index of the frame just broadcast)."""

    disconnect_at: set[int] = field(default_factory=set)  # close every connection after this frame
    # After a forced disconnect, the next connection first gets the last N frames sent before it
    # (repeats); frames broadcast while no client was connected stay lost.
    overlap_on_reconnect: int = 0
    refuse_after_disconnect_s: float = 0.0  # refuse new connections this long after a forced disconnect
    shutdown_at: set[int] = field(default_factory=set)  # send serverShutdown after this frame
    bad_frames: dict[int, list[str]] = field(default_factory=dict)  # raw frames sent after this frame


@dataclass
class TapeFrame:
    stream: str | None  # None: raw frame for every client
    text: str
    symbol: str | None = None
    trade: dict[str, Any] | None = None


def load_frames(path: Path) -> list[dict[str, Any]]:
    """Trade events from a frames file (one combined-stream or raw trade frame per line)."""
    events = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        message = orjson.loads(line)
        data = message.get("data", message)
        if isinstance(data, dict) and data.get("e") == "trade":
            events.append(data)
    return events


def rebase(events: list[dict[str, Any]], end_ms: int, id_offset: int) -> list[dict[str, Any]]:
    """The same trades moved to end at ``end_ms`` with ids shifted, so a demo re-run adds new trades."""
    shift = end_ms - max(int(e["T"]) for e in events)
    return [dict(e, t=int(e["t"]) + id_offset, T=int(e["T"]) + shift, E=int(e["E"]) + shift) for e in events]


class BinanceStandIn:
    """Stand-in Binance server (WebSocket + REST on one port). See the module docstring."""

    def __init__(
        self,
        events: list[dict[str, Any]],
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float = 1000.0,
        script: Script | None = None,
        rest_requests_per_s: float = 50.0,
        ping_interval: float = 20.0,
        loop_tape: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.rate = rate
        self.script = script or Script()
        self.ping_interval = ping_interval
        self.loop_tape = loop_tape
        if not events:
            raise ValueError("the stand-in needs at least one trade to play")
        self._original = events
        self._counts = Counter(str(e["s"]) for e in events)
        self._cycle = 0
        self.tape: list[TapeFrame] = [self._frame(event) for event in events]
        self.position = 0  # frames broadcast so far
        self._clients: dict[ServerConnection, set[str]] = {}
        self._started = asyncio.Event()
        self._repeat_on_reconnect: list[TapeFrame] = []
        self._refuse_until = 0.0
        self._rest_times: deque[float] = deque()
        self._rest_min_interval = 1.0 / rest_requests_per_s
        self._consecutive_429 = 0
        self.rest_requests = 0
        self.rest_429 = 0
        self.connections = 0
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    @staticmethod
    def _frame(event: dict[str, Any]) -> TapeFrame:
        stream = f"{str(event['s']).lower()}@trade"
        return TapeFrame(stream, orjson.dumps({"stream": stream, "data": event}).decode(), str(event["s"]), event)

    # -- URLs ------------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- REST --------------------------------------------------------------------------------------
    def _json(self, status: HTTPStatus, body: Any, extra: dict[str, str] | None = None) -> Response:
        data = orjson.dumps(body)
        headers = Headers(
            {"Content-Type": "application/json", "Content-Length": str(len(data)), "Server": STAND_IN_NAME}
        )
        for key, value in (extra or {}).items():
            headers[key] = value
        return Response(status.value, status.phrase, headers, data)

    def _historical_trades(self, query: dict[str, list[str]]) -> Response:
        symbol = (query.get("symbol") or [""])[0].upper()
        try:
            limit = min(int((query.get("limit") or ["500"])[0]), 1000)
            from_id = int(query["fromId"][0]) if "fromId" in query else None
        except ValueError:
            return self._json(HTTPStatus.BAD_REQUEST, {"code": -1100, "msg": "Illegal characters found in parameter."})
        if not symbol:
            return self._json(
                HTTPStatus.BAD_REQUEST, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent."}
            )
        past = [f.trade for f in self.tape[: self.position] if f.symbol == symbol and f.trade]
        if from_id is None:
            chosen = past[-limit:]
        else:
            chosen = [t for t in past if t["t"] >= from_id][:limit]
        body = [
            {
                "id": t["t"],
                "price": t["p"],
                "qty": t["q"],
                "quoteQty": "0",
                "time": t["T"],
                "isBuyerMaker": t["m"],
                "isBestMatch": t.get("M", True),
            }
            for t in chosen
        ]
        return self._json(HTTPStatus.OK, body)

    def _rest(self, request: Request) -> Response:
        parts = urlsplit(request.path)
        if parts.path == "/api/v3/ping":
            return self._json(HTTPStatus.OK, {})
        if parts.path == "/api/v3/time":
            return self._json(HTTPStatus.OK, {"serverTime": int(time.time() * 1000)})
        if parts.path != "/api/v3/historicalTrades":
            return self._json(HTTPStatus.NOT_FOUND, {"code": -1, "msg": f"{STAND_IN_NAME}: no such endpoint"})
        self.rest_requests += 1
        now = time.monotonic()
        if self._rest_times and now - self._rest_times[-1] < self._rest_min_interval:
            self.rest_429 += 1
            self._consecutive_429 += 1
            if self._consecutive_429 > 5:
                return self._json(HTTPStatus.IM_A_TEAPOT, {"code": -1003, "msg": "IP banned."}, {"Retry-After": "2"})
            return self._json(
                HTTPStatus.TOO_MANY_REQUESTS, {"code": -1003, "msg": "Too many requests."}, {"Retry-After": "1"}
            )
        self._consecutive_429 = 0
        self._rest_times.append(now)
        return self._historical_trades(parse_qs(parts.query))

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/api/"):
            return self._rest(request)
        if not request.path.startswith("/stream") and not request.path.startswith("/ws"):
            return self._json(HTTPStatus.NOT_FOUND, {"code": -1, "msg": f"{STAND_IN_NAME}: unknown path"})
        if time.monotonic() < self._refuse_until:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"code": -1, "msg": f"{STAND_IN_NAME}: outage"})
        return None  # go on with the WebSocket handshake

    # -- WebSocket ---------------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
        streams = set("/".join(query.get("streams", [])).lower().split("/")) - {""}
        self.connections += 1
        repeats, self._repeat_on_reconnect = self._repeat_on_reconnect, []
        for frame in repeats:
            if frame.stream in streams:
                await ws.send(frame.text)
        self._clients[ws] = streams
        self._started.set()
        try:
            await ws.wait_closed()
        finally:
            self._clients.pop(ws, None)

    async def _broadcast(self, text: str, stream: str | None) -> None:
        for ws, streams in list(self._clients.items()):
            if stream is None or stream in streams:
                try:
                    await ws.send(text)
                except Exception:  # a client that went away misses the frame, as on Binance
                    self._clients.pop(ws, None)

    async def _play(self) -> None:
        await self._started.wait()
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        while True:
            if self.position >= len(self.tape):
                if not self.loop_tape:
                    return
                self._advance_tape()
            frame = self.tape[self.position]
            index = self.position
            await self._broadcast(frame.text, frame.stream)
            self.position += 1
            for raw in self.script.bad_frames.get(index, []):
                await self._broadcast(raw, None)
            if index in self.script.shutdown_at:
                await self._broadcast(
                    orjson.dumps({"e": "serverShutdown", "E": int(time.time() * 1000)}).decode(), None
                )
            if index in self.script.disconnect_at:
                overlap = self.script.overlap_on_reconnect
                self._repeat_on_reconnect = self.tape[max(0, index + 1 - overlap) : index + 1] if overlap else []
                self._refuse_until = time.monotonic() + self.script.refuse_after_disconnect_s
                for ws in list(self._clients):
                    self._clients.pop(ws, None)
                    await ws.close(1001, "stand-in: forced disconnect")
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif index % 200 == 0:
                await asyncio.sleep(0)  # let clients and REST requests in

    def _advance_tape(self) -> None:
        """Endless demo mode: play the original trades again with later ids and current times."""
        self._cycle += 1
        shift = int(time.time() * 1000) - int(self._original[0]["T"])
        for event in self._original:
            again = dict(event, t=int(event["t"]) + self._cycle * self._counts[str(event["s"])])
            again["T"], again["E"] = int(event["T"]) + shift, int(event["E"]) + shift
            self.tape.append(self._frame(again))

    async def serve_forever(self) -> None:
        self._stop = asyncio.Event()
        async with serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=60,
            server_header=STAND_IN_NAME,
        ) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1] if server.sockets else self.port
            player = asyncio.create_task(self._play())
            self._ready.set()
            await self._stop.wait()
            player.cancel()

    # -- thread helpers for tests ------------------------------------------------------------------
    def start(self) -> BinanceStandIn:
        """Serve in a background thread; returns once the port is bound."""

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve_forever())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=STAND_IN_NAME, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Binance stand-in did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> BinanceStandIn:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

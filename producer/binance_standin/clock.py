"""The tape clock: plays the tape like a live market, one frame after another at its rate, with the
scripted trouble due at each position.

The tape starts at the first connection and plays whoever is connected; frames broadcast while a client
is away are lost to it, as on Binance, which never replays. ``Script.rate_changes`` bend the rate.
"""

from __future__ import annotations

import asyncio
import time

from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.tape import Tape, TapeFrame
from k2.producer.binance_standin.ws_clients import Clients


async def play(tape: Tape, clients: Clients, script: Script, rate: float, loop_tape: bool) -> None:
    """Broadcast the tape at ``rate`` frames per second (0: as fast as it goes) from the first connection
    on; at its end, stop, or with ``loop_tape`` play it again with later ids."""
    await clients.first_connected.wait()
    interval = 1.0 / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    while True:
        if tape.position >= len(tape.frames):
            if not loop_tape:
                return
            tape.play_again()
        index = tape.position
        frame = tape.frames[index]
        if index in script.rate_changes:
            rate = script.rate_changes[index]
            interval = 1.0 / rate if rate > 0 else 0.0
            next_at = time.monotonic()
        if not frame.void:
            await clients.broadcast(frame)
        tape.broadcast_one()
        for raw in script.bad_frames.get(index, []):
            await clients.broadcast(TapeFrame(None, raw))
        if index in script.shutdown_at:
            await clients.server_shutdown()
        if index in script.disconnect_at:
            overlap = script.overlap_on_reconnect
            repeats = tape.frames[max(0, index + 1 - overlap) : index + 1] if overlap else []
            await clients.disconnect_everyone(repeats, script.refuse_after_disconnect_s)
        if script.disconnect_some_at.get(index):
            await clients.disconnect_oldest(script.disconnect_some_at[index], script.refuse_after_disconnect_s)
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif index % 200 == 0:
            await asyncio.sleep(0)  # let clients and REST requests in

"""Holds the ports of a user's K2 stack and producer while the tests run, as a user's running stack would:
a test that takes or talks to one of them fails here instead of on a user's machine. A port already in
use (a real stack on this machine) is held by that already and left alone. Runs until killed."""

from __future__ import annotations

import selectors
import signal
import socket
import sys

# The user's stack and producer (README, "The local stack"): producer metrics, Kafka and its controller,
# the registry, Connect, the catalog, VictoriaMetrics, vmalert, the JMX exporters, maintainer, supervisor.
USER_PORTS = (9091, 9092, 9093, 8081, 8083, 8181, 8428, 8880, 9404, 9405, 9464, 9465)


def main() -> None:
    selector = selectors.DefaultSelector()
    listeners: dict[int, socket.socket] = {}
    held, taken = [], []
    for port in USER_PORTS:
        listener = socket.socket()
        try:
            listener.bind(("0.0.0.0", port))
        except OSError:
            taken.append(port)
            listener.close()
            continue
        listener.listen(16)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
        listeners[listener.fileno()] = listener
        held.append(port)
    print(f"holding the user's ports {held}; already in use {taken}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        for key, _ in selector.select():
            connection, _ = listeners[key.fd].accept()
            connection.close()  # a connection that goes nowhere, as a stack of another version would


if __name__ == "__main__":
    main()

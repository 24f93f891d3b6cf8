"""The producer's defaults, in a module that imports nothing: `k2 produce` and `k2 run` show them in their
--help, and every command module is loaded for `k2 --help`, so reading them must not load the producer
(websockets, librdkafka, requests: about 0.4 s)."""

from __future__ import annotations

BINANCE_WS_URL = "wss://stream.binance.com:9443"
BINANCE_REST_URL = "https://api.binance.com"
# How long a gap in a symbol's trade ids may wait for backfill while the symbol's later trades are held.
GAP_TIMEOUT_S = 30.0
RESUME_BUDGET = 200_000  # records per partition: about 30 MB of trades, a few seconds at worst
# A connection that delivers no frame for this long is closed and opened again (the sequencer backfills
# what was missed). Liquid pairs trade several times a second, but quiet symbols exist: two minutes is
# six of Binance's 20 s pings, a false alarm costs one reconnect (far below 300 attempts per 5 minutes)
# and no data, and a real one costs at most two minutes of freshness.
SILENCE_TIMEOUT_S = 120.0
SYMBOLS_REFRESH_S = 300.0  # how often exchangeInfo is read again by default
# `k2 produce` serves Prometheus metrics on this port unless K2_PRODUCER_METRICS_PORT says otherwise; the
# local stack's metrics server scrapes the same (stack/config/scrape.yml, job k2-producer).
METRICS_PORT = 9091
METRICS_PORT_ENV = "K2_PRODUCER_METRICS_PORT"

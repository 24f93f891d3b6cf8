"""A stand-in for Binance's spot market-data APIs, for tests and offline demos. It is NOT Binance.

Binance cannot be reached from where K2 is built and tested, so this server speaks the documented
protocol over recorded (or generated) trades, limits and failure modes included. Each behaviour names its
source in binance/binance-spot-api-docs (file § section) in the module that keeps it:

* ``server``: ``BinanceStandIn``, WebSocket and REST on one port; routing, the 414 for long URLs, pings.
* ``tape``: the trades in play order (``load_frames``, ``rebase``, ``with_missing_ids``, ``stream_name``).
* ``clock``: plays the tape like a live market at its rate, the scripted trouble due at each position.
* ``script``: ``Script``, the trouble a test asks for (disconnects, shutdowns, bad frames, listings).
* ``listings``: which symbols are listed with which exchangeInfo status at each tape position.
* ``ws_control``: one connection's streams and its SUBSCRIBE / LIST_SUBSCRIPTIONS / ... control messages.
* ``ws_connection``: the incoming-message limit, 5 a second, past which a connection is dropped.
* ``ws_clients``: the open connections: admission, broadcast, serverShutdown, forced disconnects.
* ``rest``: the REST API under ``/api/``: firewall 403s, bans, request weight, then the endpoint.
* ``weights``: request weight per minute, 429, escalating 418 bans, ``Retry-After``, ``time_scale``.
* ``trade_lookups``: historicalTrades and aggTrades over the trades already broadcast.
* ``exchange_info``: exchangeInfo as the market stands now.
* ``rest_params``, ``answers``: parameter checks with Binance's errors; the shapes of JSON and HTML answers.
* ``counters``: what every part counts, read by tests and benchmarks on the server.

Durations a caller passes (``rest_lag_s``, ``Script.refuse_after_disconnect_s``, ``ping_interval``) and
the one-second WebSocket message window are taken as given, in real seconds; ``time_scale`` shortens only
Binance's own REST durations (weights.py).
"""

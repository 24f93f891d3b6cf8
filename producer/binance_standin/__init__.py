"""A stand-in for Binance's spot market-data APIs (NOT Binance), for tests and offline demos.

``server.BinanceStandIn`` serves it; see that module for the documented behaviours it keeps.
"""

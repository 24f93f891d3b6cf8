"""DuckDB over the Iceberg tables of the REST catalog: the engine and the SQL behind `k2 query` and `k2 candles`."""

# Here, not in engine.py, so the CLI shows the default table in --help without importing DuckDB.
DEFAULT_NAMESPACE = "market_data"  # the namespace of connect/tables.toml: `trades` means market_data.trades
DEFAULT_TRADES = f"{DEFAULT_NAMESPACE}.trades"
# Candle lengths (`k2 candles --interval`) as DuckDB intervals.
INTERVALS = {"1m": "1 minute", "5m": "5 minutes", "15m": "15 minutes", "1h": "1 hour", "1d": "1 day"}
BEGINNING, NO_END = "1970-01-01T00:00:00Z", "9999-12-31T00:00:00Z"  # a range without bounds

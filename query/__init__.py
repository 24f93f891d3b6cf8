"""DuckDB over the Iceberg tables of the REST catalog: the engine and the SQL behind `k2 query` and `k2 candles`."""

# Here, not in engine.py, so the CLI shows the default table in --help without importing DuckDB.
DEFAULT_NAMESPACE = "market_data"  # the namespace of connect/tables.toml: `trades` means market_data.trades
DEFAULT_TRADES = f"{DEFAULT_NAMESPACE}.trades"

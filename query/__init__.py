"""DuckDB over the Iceberg tables of the REST catalog: the engine and the SQL behind `k2 query` and `k2 candles`."""

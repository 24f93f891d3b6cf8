-- 1h OHLCV candles per symbol: open, high, low, close, volume, quote volume, VWAP, trade count.
--
-- Grouped by the message key, symbol_key (the producer keys every trade by its symbol), and the key
-- column is named symbol in the result: grouping by exactly the source's key needs no repartition
-- topic (ksqlDB 0.29 Repartitioning.repartitionNeeded), where grouping by the value column symbol
-- added one per table.
--
-- Open and close are EARLIEST_BY_OFFSET / LATEST_BY_OFFSET: they follow offset order, which is trade
-- order only because every trade of a symbol goes to the one partition its key hashes to and the
-- producer writes a symbol's trades in trade-id order (later trades wait while a gap is backfilled).
-- A trade that arrives late but within the grace period updates its window (and, arriving after
-- later trades, becomes that window's close by offset); one later than the grace period is dropped
-- from these tables. Iceberg keeps every trade: `k2 candles` is the exact record, `k2 ksql
-- reconcile` compares.
--
-- candles_1h: final results only (EMIT FINAL), one row per window once grace has passed. Stream
-- time advances per partition, not per symbol: a window closes when a later trade of any symbol in
-- the same partition moves that partition's time past the window's end plus grace. A partition
-- that receives nothing more keeps its last windows open. candles_1h_changelog: every update
-- (EMIT CHANGES), for dashboards. Both write Avro to their own topics for Kafka UI and others.
--
-- Numbers: trades are DECIMAL(28,8). ksqlDB keeps SUM in its argument's type and fails the query
-- when it overflows (DecimalSumKudaf), so volume sums DECIMAL(38,8) (10^30 units) and quote_volume
-- the exact product as DECIMAL(38,16) (up to 10^22 in the quote asset). vwap is a DOUBLE: ksqlDB
-- divides DECIMALs with rounding forbidden, so almost every VWAP quotient would fail and be written
-- as NULL (SqlToJavaVisitor; confluentinc/ksql#9874). Both exact sums are converted to DOUBLE
-- and divided: three roundings of 2^-53, so vwap is within 4e-16 (relative) of the exact
-- quote_volume / volume, which stay exact here and in Iceberg; `k2 ksql reconcile` allows 1e-15.
--
-- RETENTION 365 DAYS: pull queries (and `k2 ksql reconcile`) reach a year of windows; without it
-- the window store keeps only size + grace. The cost is one row per symbol and window in each of the
-- two tables' state stores and changelog topics: 8,760 windows per symbol, about 1.5 MB per
-- symbol per table at an estimated 160 bytes a row (not measured: ksqlDB cannot run where K2 is
-- built). ksqlDB's grammar takes no variable in RETENTION (a number and a unit), so a different
-- retention is a new migration. RETENTION also sets the retention.ms of the tables' topics.
-- Variables: candles_topic_prefix.
DEFINE candles_topic_prefix = 'market.crypto.candles.binance.';

CREATE TABLE IF NOT EXISTS candles_1h
WITH (KAFKA_TOPIC = '${candles_topic_prefix}1h', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO', PARTITIONS = 6) AS
SELECT
    symbol_key AS symbol,
    WINDOWSTART AS interval_start,
    EARLIEST_BY_OFFSET(price) AS open,
    MAX(price) AS high,
    MIN(price) AS low,
    LATEST_BY_OFFSET(price) AS close,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume,
    SUM(CAST(price * quantity AS DECIMAL(38, 16))) AS quote_volume,
    CAST(SUM(CAST(price * quantity AS DECIMAL(38, 16))) AS DOUBLE) / CAST(SUM(CAST(quantity AS DECIMAL(38, 8))) AS DOUBLE) AS vwap,
    COUNT(*) AS trade_count
FROM trades_stream
WINDOW TUMBLING (SIZE 1 HOUR, RETENTION 365 DAYS, GRACE PERIOD 2 MINUTES)
GROUP BY symbol_key
EMIT FINAL;

CREATE TABLE IF NOT EXISTS candles_1h_changelog
WITH (KAFKA_TOPIC = '${candles_topic_prefix}1h.changelog', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO', PARTITIONS = 6) AS
SELECT
    symbol_key AS symbol,
    WINDOWSTART AS interval_start,
    EARLIEST_BY_OFFSET(price) AS open,
    MAX(price) AS high,
    MIN(price) AS low,
    LATEST_BY_OFFSET(price) AS close,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume,
    SUM(CAST(price * quantity AS DECIMAL(38, 16))) AS quote_volume,
    CAST(SUM(CAST(price * quantity AS DECIMAL(38, 16))) AS DOUBLE) / CAST(SUM(CAST(quantity AS DECIMAL(38, 8))) AS DOUBLE) AS vwap,
    COUNT(*) AS trade_count
FROM trades_stream
WINDOW TUMBLING (SIZE 1 HOUR, RETENTION 365 DAYS, GRACE PERIOD 2 MINUTES)
GROUP BY symbol_key
EMIT CHANGES;

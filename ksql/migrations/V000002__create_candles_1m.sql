-- 1m OHLCV candles per symbol: open, high, low, close, volume, quote volume, VWAP, trade count.
--
-- Open and close are EARLIEST_BY_OFFSET / LATEST_BY_OFFSET: they follow offset order, which is trade
-- order only because the producer keys every trade by symbol (one partition per symbol) and writes a
-- symbol's trades in trade-id order (later trades wait while a gap is backfilled). A trade that
-- arrives late but within the grace period updates its window (and, arriving after later trades,
-- becomes that window's close by offset); one later than the grace period is dropped from these
-- tables. Iceberg keeps every trade: `k2 candles` is the exact record, `k2 ksql reconcile` compares.
--
-- candles_1m: final results only (EMIT FINAL), one row per window once grace has passed and a
-- later trade of that symbol advanced stream time. candles_1m_changelog: every update (EMIT
-- CHANGES), for dashboards. Both write Avro to their own topics for Kafka UI and other consumers.
-- Sums are widened: ksqlDB keeps SUM in its argument's type and fails the query when it overflows
-- (DecimalSumKudaf), so volume sums DECIMAL(38,8) (10^30 units; trades are DECIMAL(28,8)) and
-- quote_volume sums the exact product as DECIMAL(38,16) (up to 10^22 in the quote asset).
-- Variables: candles_topic_prefix.
DEFINE candles_topic_prefix = 'market.crypto.candles.binance.';

CREATE TABLE IF NOT EXISTS candles_1m
WITH (KAFKA_TOPIC = '${candles_topic_prefix}1m', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO', PARTITIONS = 6) AS
SELECT
    symbol,
    WINDOWSTART AS interval_start,
    EARLIEST_BY_OFFSET(price) AS open,
    MAX(price) AS high,
    MIN(price) AS low,
    LATEST_BY_OFFSET(price) AS close,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume,
    SUM(CAST(price * quantity AS DECIMAL(38, 16))) AS quote_volume,
    SUM(CAST(price * quantity AS DECIMAL(38, 16))) / SUM(CAST(quantity AS DECIMAL(38, 8))) AS vwap,
    COUNT(*) AS trade_count
FROM trades_stream
WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS)
GROUP BY symbol
EMIT FINAL;

CREATE TABLE IF NOT EXISTS candles_1m_changelog
WITH (KAFKA_TOPIC = '${candles_topic_prefix}1m.changelog', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO', PARTITIONS = 6) AS
SELECT
    symbol,
    WINDOWSTART AS interval_start,
    EARLIEST_BY_OFFSET(price) AS open,
    MAX(price) AS high,
    MIN(price) AS low,
    LATEST_BY_OFFSET(price) AS close,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume,
    SUM(CAST(price * quantity AS DECIMAL(38, 16))) AS quote_volume,
    SUM(CAST(price * quantity AS DECIMAL(38, 16))) / SUM(CAST(quantity AS DECIMAL(38, 8))) AS vwap,
    COUNT(*) AS trade_count
FROM trades_stream
WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS)
GROUP BY symbol
EMIT CHANGES;

-- Rolling volume and trade count per symbol over the last hour, refreshed every minute (hopping
-- windows in trade time), emitted as they change. Grouped by the message key like the candle tables
-- (no repartition topic), with the key column named symbol; the same ordering notes apply.
--
-- Numbers: trades are DECIMAL(28,8). ksqlDB keeps SUM in its argument's type and fails the query
-- when it overflows (DecimalSumKudaf), so volume sums DECIMAL(38,8) (10^30 units) and quote_volume
-- the exact product as DECIMAL(38,16) (up to 10^22 in the quote asset).
--
-- RETENTION 7 DAYS: pull queries reach a week of windows (without it the store keeps size + grace).
-- A trade falls in 60 windows; the store holds one row per symbol and window start: 10,080 per
-- symbol, about 1.5 MB at an estimated 160 bytes a row (not measured). ksqlDB's grammar takes no
-- variable in RETENTION, so a different retention is a new migration.
-- Variables: volume_topic.
DEFINE volume_topic = 'market.crypto.volume.binance.1h';

CREATE TABLE IF NOT EXISTS volume_1h_rolling
WITH (KAFKA_TOPIC = '${volume_topic}', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO', PARTITIONS = 6) AS
SELECT
    symbol_key AS symbol,
    WINDOWSTART AS window_start,
    WINDOWEND AS window_end,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume,
    SUM(CAST(price * quantity AS DECIMAL(38, 16))) AS quote_volume,
    COUNT(*) AS trade_count
FROM trades_stream
WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 1 MINUTE, RETENTION 7 DAYS, GRACE PERIOD 2 MINUTES)
GROUP BY symbol_key
EMIT CHANGES;

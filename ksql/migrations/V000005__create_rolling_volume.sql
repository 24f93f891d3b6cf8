-- Rolling volume and trade count per symbol over the last hour, refreshed every minute (hopping
-- windows in trade time), emitted as they change. Same ordering assumptions as the candle tables.
-- Sums are widened: ksqlDB keeps SUM in its argument's type and fails the query when it overflows
-- (DecimalSumKudaf), so volume sums DECIMAL(38,8) (10^30 units; trades are DECIMAL(28,8)) and
-- quote_volume sums the exact product as DECIMAL(38,16) (up to 10^22 in the quote asset).
-- Variables: volume_topic.
DEFINE volume_topic = 'market.crypto.volume.binance.1h';

CREATE TABLE IF NOT EXISTS volume_1h_rolling
WITH (KAFKA_TOPIC = '${volume_topic}', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO', PARTITIONS = 6) AS
SELECT
    symbol,
    WINDOWSTART AS window_start,
    WINDOWEND AS window_end,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume,
    SUM(CAST(price * quantity AS DECIMAL(38, 16))) AS quote_volume,
    COUNT(*) AS trade_count
FROM trades_stream
WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 1 MINUTE, GRACE PERIOD 2 MINUTES)
GROUP BY symbol
EMIT CHANGES;

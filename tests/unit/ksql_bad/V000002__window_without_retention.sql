-- Bad on purpose, for tests/unit/test_ksql_validate.py: a window without RETENTION.
-- The window store then keeps only size + grace (70 seconds here), so pull queries and
-- `k2 ksql reconcile` see only the last window or two.
CREATE TABLE IF NOT EXISTS volume_1m
WITH (KAFKA_TOPIC = 'test.volume.1m', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT
    symbol_key AS symbol,
    WINDOWSTART AS interval_start,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume
FROM trades_stream
WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS)
GROUP BY symbol_key
EMIT CHANGES;

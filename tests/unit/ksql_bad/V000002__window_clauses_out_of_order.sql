-- Bad on purpose, for tests/unit/test_ksql_validate.py: GRACE PERIOD before RETENTION. ksqlDB
-- 0.29's grammar (SqlBase.g4 tumblingWindowExpression) takes SIZE, then RETENTION, then GRACE
-- PERIOD, so this statement does not parse.
CREATE TABLE IF NOT EXISTS volume_1m
WITH (KAFKA_TOPIC = 'test.volume.1m', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT
    symbol_key AS symbol,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume
FROM trades_stream
WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS, RETENTION 7 DAYS)
GROUP BY symbol_key
EMIT CHANGES;

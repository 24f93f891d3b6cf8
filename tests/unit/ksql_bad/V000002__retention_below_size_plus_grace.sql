-- Bad on purpose, for tests/unit/test_ksql_validate.py: RETENTION smaller than size + grace, which
-- Kafka Streams refuses ("The retention period of the window store ... must be no smaller than its
-- window size plus the grace period"), so the query fails when it starts.
-- volume_1h_rolling: 1 hour < 1 hour + 2 minutes.
-- volume_1m: no GRACE PERIOD, so ksqlDB 0.29 takes Kafka Streams' deprecated default grace,
-- 24 hours minus the size, and the store needs 24 hours; 12 hours is too short.
-- sessions: a session window with 2 days of retention and the default grace is fine.
CREATE TABLE IF NOT EXISTS volume_1h_rolling
WITH (KAFKA_TOPIC = 'test.volume.1h', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT
    symbol_key AS symbol,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume
FROM trades_stream
WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 1 MINUTE, RETENTION 1 HOUR, GRACE PERIOD 2 MINUTES)
GROUP BY symbol_key
EMIT CHANGES;

CREATE TABLE IF NOT EXISTS volume_1m
WITH (KAFKA_TOPIC = 'test.volume.1m', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT
    symbol_key AS symbol,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume
FROM trades_stream
WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 12 HOURS)
GROUP BY symbol_key
EMIT CHANGES;

CREATE TABLE IF NOT EXISTS sessions
WITH (KAFKA_TOPIC = 'test.sessions', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT
    symbol_key AS symbol,
    COUNT(*) AS trade_count
FROM trades_stream
WINDOW SESSION (5 MINUTES, RETENTION 2 DAYS)
GROUP BY symbol_key
EMIT CHANGES;

-- Bad on purpose, for tests/unit/test_ksql_validate.py: exact DECIMAL division.
-- ksqlDB 0.29 divides DECIMALs with RoundingMode.UNNECESSARY (SqlToJavaVisitor.visitArithmeticBinary):
-- a quotient that does not terminate throws "Rounding necessary" and the column is written as NULL
-- (confluentinc/ksql#9874). vwap divides two DECIMALs; mean_price divides a DECIMAL by COUNT(*), a
-- BIGINT that ksqlDB widens to DECIMAL(19, 0), so it is the same division. The other quotients
-- have a DOUBLE side (or no DECIMAL side) and are fine.
CREATE TABLE IF NOT EXISTS prices_1m
WITH (KAFKA_TOPIC = 'test.prices.1m', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT
    symbol_key AS symbol,
    SUM(CAST(price * quantity AS DECIMAL(38, 16))) / SUM(CAST(quantity AS DECIMAL(38, 8))) AS vwap,
    SUM(CAST(price AS DECIMAL(38, 8))) / COUNT(*) AS mean_price,
    CAST(SUM(CAST(price * quantity AS DECIMAL(38, 16))) AS DOUBLE) / CAST(SUM(CAST(quantity AS DECIMAL(38, 8))) AS DOUBLE) AS vwap_double,
    MAX(price) / CAST(MIN(price) AS DOUBLE) AS high_over_low,
    COUNT(*) / 60 AS trades_per_second
FROM trades_stream
WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 7 DAYS, GRACE PERIOD 10 SECONDS)
GROUP BY symbol_key
EMIT CHANGES;

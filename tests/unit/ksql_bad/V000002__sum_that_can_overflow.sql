-- Bad on purpose, for tests/unit/test_ksql_validate.py: SUMs in the wrong DECIMAL width.
-- ksqlDB 0.29 keeps SUM in its argument's type (DecimalSumKudaf) and throws "Numeric field
-- overflow" once |sum| reaches 10^(precision - scale); the exception is not caught, so the query's
-- stream thread dies, is replaced and dies again on the same record. volume sums DECIMAL(28, 8)
-- (overflow at 10^20). quote_volume sums price * quantity, DECIMAL(57, 16): it cannot overflow in
-- practice but is published with 57 digits, more than the 38 an Iceberg decimal holds.
-- volume_38 and trade_id_sum are fine.
CREATE TABLE IF NOT EXISTS volume_1m
WITH (KAFKA_TOPIC = 'test.volume.1m', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT
    symbol_key AS symbol,
    SUM(quantity) AS volume,
    SUM(price * quantity) AS quote_volume,
    SUM(CAST(quantity AS DECIMAL(38, 8))) AS volume_38,
    SUM(trade_id) AS trade_id_sum
FROM trades_stream
WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 7 DAYS, GRACE PERIOD 10 SECONDS)
GROUP BY symbol_key
EMIT CHANGES;

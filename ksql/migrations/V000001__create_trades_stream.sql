-- The trades topic as a ksqlDB stream: Avro values from the schema registry (schemas/trade.avsc),
-- the message key (the symbol, a plain string), and trade_time as event time, so every window below
-- is in trade time, not arrival time.
-- Variables: trades_topic (default from schemas/topics.toml).
DEFINE trades_topic = 'market.crypto.trades.binance';

CREATE STREAM IF NOT EXISTS trades_stream (
    symbol_key STRING KEY
) WITH (
    KAFKA_TOPIC = '${trades_topic}',
    KEY_FORMAT = 'KAFKA',
    VALUE_FORMAT = 'AVRO',
    TIMESTAMP = 'trade_time'
);

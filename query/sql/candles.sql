-- OHLCV candles of one symbol, oldest first. Used by `k2 candles`; runnable by hand in `k2 query`
-- after replacing the $parameters.
--   open / close: first / last trade by (trade_time, trade_id), never by file or arrival order;
--   volume: sum of quantities, exact (DuckDB sums DECIMAL(28,8) as DECIMAL(38,8): 10^30 units);
--   quote_volume: sum of price * quantity, exact (DECIMAL(38,16): up to 10^22 in the quote asset,
--   past which DuckDB raises an overflow error rather than round);
--   vwap = quote_volume / volume, rounded half-even to 8 decimals by the caller (DuckDB would
--   divide decimals in floating point).
-- Parameters: $symbol, $bucket (an INTERVAL such as '1 minute'), $since and $until (TIMESTAMPTZ).
SELECT
    symbol,
    time_bucket(CAST($bucket AS INTERVAL), trade_time) AS interval_start,
    arg_min(price, {'t': trade_time, 'id': trade_id}) AS open,
    max(price) AS high,
    min(price) AS low,
    arg_max(price, {'t': trade_time, 'id': trade_id}) AS close,
    sum(quantity) AS volume,
    sum(CAST(price AS DECIMAL(38, 8)) * CAST(quantity AS DECIMAL(38, 8))) AS quote_volume,
    count(*) AS trade_count
FROM trades
WHERE symbol = $symbol
  AND trade_time >= $since
  AND trade_time < $until
GROUP BY ALL
ORDER BY interval_start

-- Volume per symbol over a window, largest first. Used by `k2 volume`.
--   volume: sum of quantities, exact (DuckDB sums DECIMAL(28,8) as DECIMAL(38,8): 10^30 units);
--   quote_volume: sum of price * quantity, exact (DECIMAL(38,16): up to 10^22 in the quote asset,
--   past which DuckDB raises an overflow error rather than round);
--   vwap = quote_volume / volume, rounded half-even to 8 decimals by the caller.
-- Parameters: $since and $until (TIMESTAMPTZ); $symbols (a list of symbols; empty for all).
SELECT
    symbol,
    sum(quantity) AS volume,
    sum(CAST(price AS DECIMAL(38, 8)) * CAST(quantity AS DECIMAL(38, 8))) AS quote_volume,
    count(*) AS trade_count,
    min(trade_time) AS first_trade,
    max(trade_time) AS last_trade
FROM trades
WHERE trade_time >= $since
  AND trade_time < $until
  AND (len($symbols) = 0 OR list_contains($symbols, symbol))
GROUP BY symbol
ORDER BY quote_volume DESC

"""ksqlDB migrations (V000001__*.sql, applied in order) and the code that applies them."""

"""ksqlDB migrations (V000001__*.sql, applied in order) and the code that applies them."""

# How long a pull query is retried while ksqlDB cannot serve it yet (see client.NOT_READY); here, not in
# client.py, so `k2 ksql apply --help` shows it without importing requests for `k2 --help`.
READY_WAIT_S = 30.0

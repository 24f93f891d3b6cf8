"""The Binance -> Kafka producer behind `k2 produce`."""

"""Kafka Connect connector configs (one JSON file per connector) and the code that deploys them."""

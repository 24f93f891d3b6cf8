"""Avro contracts (*.avsc) and their registration in the schema registry."""

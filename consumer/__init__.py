"""Kafka -> projection: decoding, the consume loop, the dead-letter topic, replay and backfill."""

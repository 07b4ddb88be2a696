"""Adapters: the Redis store and its generations, MySQL, Kafka clients, settings, logs (the floor above domain/)."""

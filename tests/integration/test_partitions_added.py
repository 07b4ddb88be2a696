"""Partitions added to the event topic while consumers run, on the real broker.

An operator adds partitions to give consumers more parallelism; the AddService's producer starts
writing to them at its next metadata refresh. With librdkafka's default refresh (5 minutes) a
running consumer left the new partitions' events unread for up to that long (298 s measured).
"""

from __future__ import annotations

import json

from confluent_kafka.admin import AdminClient, NewPartitions

from adapters.clients import kafka_producer
from adapters.generations import Generations
from adapters.kafka import METADATA_REFRESH_MS, security_config
from tests.helpers import start_consumer, stop_consumer, wait_until


def test_a_partition_added_while_the_consumer_runs_is_read_and_its_position_saved(settings, store, name_tag, tmp_path):
    log = tmp_path / "consumer.log"
    consumer = start_consumer(settings, log)
    try:
        producer = kafka_producer(settings)
        value = json.dumps({"name": f"{name_tag} before", "phone": 9_000_000_001, "since": 1_000}).encode()
        producer.produce(settings.topic, value=value, partition=0)
        assert producer.flush(10) == 0
        wait_until(lambda: store.get(f"{name_tag} before".lower(), store.live_generation()), 60, "the consumer")

        admin = AdminClient(security_config(settings))  # type: ignore[arg-type]
        admin.create_partitions([NewPartitions(settings.topic, 8)])[settings.topic].result(30)
        producer = kafka_producer(settings)  # a producer that knows the new partitions
        value = json.dumps({"name": f"{name_tag} after", "phone": 9_000_000_002, "since": 1_000}).encode()
        producer.produce(settings.topic, value=value, partition=7)
        assert producer.flush(10) == 0
        # A refresh, the cooperative rebalance it starts, and the fetch: well inside three refreshes.
        wait_until(
            lambda: store.get(f"{name_tag} after".lower(), store.live_generation()),
            3 * METADATA_REFRESH_MS / 1000,
            "the event on the new partition",
        )
        generations = Generations(store)
        wait_until(lambda: generations.all_positions(store.live_generation()).get(7) == 1, 10, "its position")
    finally:
        stop_consumer(consumer, log)

"""The tutorial consumer, as a baseline: poll one message, write one key, commit synchronously."""

from __future__ import annotations

import json
import sys

import redis
from confluent_kafka import Consumer


def main(bootstrap: str, topic: str, group: str, redis_url: str, prefix: str, count: int) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    client = redis.Redis.from_url(redis_url)
    consumer.subscribe([topic])
    done = 0
    while done < count:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        body = json.loads(msg.value())
        client.set(f"{prefix}:{body['name'].strip().lower()}", msg.value())
        consumer.commit(message=msg, asynchronous=False)
        done += 1
    consumer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))

"""Background load for the freshness benchmark: other users' events at a fixed rate until SIGTERM.

python -m bench.background TOPIC RATE   (Kafka settings from the environment, UMS_*)
"""

from __future__ import annotations

import json
import signal
import sys
import time

from confluent_kafka import Producer

from adapters.kafka import producer_config
from adapters.settings import Settings

USERS = 200_000  # the names cycle, and every event is newer than the last one for its user
TICK_S = 0.01


def main(topic: str, rate: int) -> None:
    settings = Settings.from_env()
    producer = Producer(producer_config(settings, **{"queue.buffering.max.messages": 1_000_000}))
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    started = time.monotonic()
    sent = 0
    base = 1_700_000_000_000
    while not stopping:
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            i = sent % USERS
            value = {"name": f"Background {i:07d}", "phone": 9_200_000_000 + i, "since": base + sent}
            try:
                producer.produce(topic, value=json.dumps(value).encode())
            except BufferError:
                break
            sent += 1
        producer.poll(TICK_S)
    elapsed = time.monotonic() - started
    producer.flush(30)
    print(json.dumps({"sent": sent, "seconds": elapsed}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

"""The product peer: Quix Streams with its Redis sink, on the same topic (runs in its own venv)."""

from __future__ import annotations

import json
import sys
from urllib.parse import urlparse

from quixstreams import Application
from quixstreams.sinks.community.redis import RedisSink


def main(bootstrap: str, topic: str, group: str, redis_url: str, prefix: str, count: int) -> None:
    url = urlparse(redis_url)
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=f"/tmp/quix-state-{group}",
        commit_interval=1.0,
    )
    frames = app.dataframe(app.topic(topic, value_deserializer="json"))
    frames.sink(
        RedisSink(
            host=url.hostname or "127.0.0.1",
            port=url.port or 6379,
            db=int(url.path[1:] or 0),
            key_serializer=lambda _key, value: f"{prefix}:{value['name'].strip().lower()}",
            value_serializer=json.dumps,
        )
    )
    app.run(count=count, timeout=600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))

"""The Redis read model: generation pointer, user keys and the fenced, versioned write.

Layout (one prefix, default "ums"):
    {<prefix>}:...               control keys, in one Cluster hash slot (adapters/generations.py):
                                 the pointer {<prefix>}:live = "<live generation>:<epoch>",
                                 the rebuild claim, per-generation positions
    <prefix>:<gen>:<canonical>   one string per user, in the compact or the text format
                                 (adapters/values.py; UMS_VALUE_FORMAT)
One short string per user keeps Redis memory per user low, and the version sits at
the front of both formats so the fence script reads it without decoding the rest.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from redis.crc import key_slot

from adapters.cluster_write import ClusterStream
from adapters.lua import FENCED_SET, MARK_FILLED, REPLACE_IF
from adapters.marks import Mark
from adapters.settings import Settings
from adapters.values import VALUE_FORMATS, Stored, parse_value
from domain.projection import Event

log = logging.getLogger(__name__)

# Users per script call: big enough to amortise the call, small enough not to block Redis.
# ~5.5 us per user inside Redis (INFO commandstats, bench/readers_first.py): 200 -> ~1.1 ms.
KEYS_PER_CALL = 200


def parse_pointer(raw: bytes | str) -> tuple[int, str]:
    """The pointer's value is "<generation>:<epoch>"; a new epoch means a new (empty) Redis."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    generation, _, epoch = text.partition(":")
    return int(generation), epoch


CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}


def is_cluster_url(url: str) -> bool:
    """Whether `url` names a Redis Cluster (`redis+cluster://`, `rediss+cluster://`)."""
    return url.partition("://")[0] + "://" in CLUSTER_SCHEMES


def make_redis(settings: Settings, timeout_s: float | None = None, **extra: Any) -> redis.Redis:
    """A Redis client (connections open on first use); short timeouts so an outage shows fast.

    `redis+cluster://host:port` (any node) selects Redis Cluster; `redis://` a single Redis,
    `rediss://` one over TLS. `extra`: more redis-py arguments (ACL user, TLS; adapters/clients.py).
    """
    timeout = timeout_s if timeout_s is not None else settings.redis_timeout_s
    if is_cluster_url(settings.redis_url):
        scheme, _, rest = settings.redis_url.partition("://")
        url = CLUSTER_SCHEMES[scheme + "://"] + rest
        cluster: redis.RedisCluster = redis.RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, **extra
        )
        return cluster  # type: ignore[return-value]  # same command API as redis.Redis
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        **extra,
    )


class ProjectionStore:
    """Reads and writes the projection in Redis; the client is passed in."""

    def __init__(self, client: redis.Redis, prefix: str = "ums", value_format: str = "compact") -> None:
        self.client = client
        self.prefix = prefix
        if value_format not in VALUE_FORMATS:
            raise ValueError(f"value format {value_format!r} is not one of {sorted(VALUE_FORMATS)}")
        self.encode: Callable[[Event], bytes | str] = VALUE_FORMATS[value_format]
        # The hash tag puts every control key in one Cluster slot; user keys spread out.
        self.control_prefix = f"{{{prefix}}}"
        self.pointer_key = f"{self.control_prefix}:live"
        self._fenced_set = client.register_script(FENCED_SET)
        # What EVALSHA names the fence by (adapters/pipelined.py sends it without redis-py's Script).
        self.fenced_set_sha = hashlib.sha1(FENCED_SET.encode()).hexdigest()
        self._replace_if = client.register_script(REPLACE_IF)
        self._mark_filled = client.register_script(MARK_FILLED)
        self.mark_filled_sha = hashlib.sha1(MARK_FILLED.encode()).hexdigest()

    def key(self, generation: int, canonical: str) -> str:
        return f"{self.prefix}:{generation}:{canonical}"

    def live_generation(self) -> int | None:
        """The generation reads use (None: Redis is new or was wiped)."""
        raw = self.client.get(self.pointer_key)
        return parse_pointer(raw)[0] if raw is not None else None

    def generation_of(self, key: bytes) -> int | None:
        """The generation a user key belongs to (None: not a user key of this prefix)."""
        head, _, rest = key.partition(b":")
        generation, sep, _ = rest.partition(b":")
        if head != self.prefix.encode() or not sep or not generation.isdigit():
            return None
        return int(generation)

    def scan_all(self, count: int = 1000) -> Iterable[bytes]:
        """Every user key of every generation (SCAN, never KEYS)."""
        return self.client.scan_iter(match=f"{self.prefix}:*", count=count)

    def scan_all_and_control(self, count: int = 1000) -> Iterable[bytes]:
        """Every user key and every control key (`{prefix}:...`) in one pass over the keyspace.

        Also yields other keys that hold `prefix:` or `prefix}`; callers tell them apart. One
        pattern for both because each SCAN pass walks the whole keyspace whatever it matches.
        """
        return self.client.scan_iter(match=f"*{self.prefix}[:}}]*", count=count)

    def scan_users(self, generation: int, count: int = 1000) -> Iterable[str]:
        """The canonical names held in a generation (SCAN)."""
        head = len(self.key(generation, ""))
        for key in self.client.scan_iter(match=self.key(generation, "*"), count=count):
            yield key.decode()[head:]

    def remove(self, generation: int, canonicals: Sequence[str]) -> int:
        """Delete these users' keys outright (repair of users MySQL does not know)."""
        return self.unlink([self.key(generation, c) for c in canonicals])

    def unlink(self, keys: Sequence[bytes | str]) -> int:
        return int(self.client.unlink(*keys)) if keys else 0

    def ping(self) -> bool:
        return bool(self.client.ping())

    def get(self, canonical: str, generation: int) -> Stored | None:
        raw = self.client.get(self.key(generation, canonical))
        return parse_value(raw, canonical) if raw is not None else None

    def get_raw_many(self, generation: int, canonicals: Sequence[str]) -> list[bytes | None]:
        """Stored values, in order (a pipeline of GETs, not MGET: keys span Cluster slots)."""
        pipe = self.client.pipeline(transaction=False)
        for canonical in canonicals:
            pipe.get(self.key(generation, canonical))
        return list(pipe.execute()) if canonicals else []

    def replace(self, generation: int, event: Event, expected: bytes) -> bool:
        """Write `event` unfenced, but only if the user's value is still `expected`."""
        key = self.key(generation, event.key)
        return bool(self._replace_if(keys=[key], args=[expected, self.encode(event)]))

    def apply(
        self, events: Sequence[Event], generation: int, per_call: int = KEYS_PER_CALL, mark: Mark | None = None
    ) -> int:
        """Write events through the fence, `per_call` users per script call; return how many changed a user.

        `mark` goes after the data in the same pipeline (adapters/marks.py); raises WritesLost.
        """
        if isinstance(self.client, redis.RedisCluster):
            applied = self._apply_on_cluster(events, generation, per_call) if events else 0
            if mark is not None:
                self.send_mark(mark)
            return applied
        if not events and mark is None:
            return 0
        if not events:
            # A mark alone must not leave its script loaded without the fence's: the next batch's
            # pipelined mark would then run while its data failed with NOSCRIPT.
            self.client.script_load(FENCED_SET)
        pipe = self.client.pipeline(transaction=False)
        for keys, values in self.calls(((e.key, e) for e in events), generation, per_call):
            self._fenced_set(keys=keys, args=values, client=pipe)
        if mark is not None:
            self._mark_filled(keys=[mark.key], args=mark.args(), client=pipe)
        replies = pipe.execute()
        if mark is not None:
            mark.check(replies.pop())
        return sum(int(r) for r in replies)

    def send_mark(self, mark: Mark) -> None:
        """A mark on its own (Redis Cluster: after the data was acknowledged); raises WritesLost."""
        mark.check(self._mark_filled(keys=[mark.key], args=mark.args()))

    def _apply_on_cluster(self, events: Sequence[Event], generation: int, per_call: int) -> int:
        stream = self.cluster_stream()
        stream.send(self.slot_calls(((e.key, e) for e in events), generation, per_call))
        return stream.wait()

    def cluster_stream(self) -> ClusterStream:
        """A batch of fenced script calls on Redis Cluster, sent raw per master (adapters/cluster_write.py)."""
        cluster: redis.RedisCluster = self.client  # type: ignore[assignment]
        return ClusterStream(cluster, self.fenced_set_sha, self._fenced_set)

    def calls(
        self, events: Iterable[tuple[str, Event]], generation: int, per_call: int = KEYS_PER_CALL
    ) -> Iterable[tuple[list[str], list[bytes | str]]]:
        """Script calls (keys, values) of at most `per_call` users, on one Redis (a Cluster: `slot_calls`).

        `events` are (canonical key, event) pairs: the key is computed once per event by the caller.
        """
        head = f"{self.prefix}:{generation}:"
        pairs = list(events)  # plain slices: this runs for every event the consumer writes
        for start in range(0, len(pairs), per_call):
            part = pairs[start : start + per_call]
            yield [head + canonical for canonical, _ in part], [self.encode(event) for _, event in part]

    def slot_calls(
        self, events: Iterable[tuple[str, Event]], generation: int, per_call: int = KEYS_PER_CALL
    ) -> Iterable[tuple[int, list[str], list[bytes | str]]]:
        """Script calls as (Cluster hash slot, keys, values), at most `per_call` users each."""
        head = f"{self.prefix}:{generation}:"
        groups: dict[int, tuple[list[str], list[bytes | str]]] = {}
        for canonical, event in events:
            key = head + canonical
            slot = key_slot(key.encode())
            keys, values = groups.setdefault(slot, ([], []))
            keys.append(key)
            values.append(self.encode(event))
            if len(keys) >= per_call:
                yield slot, *groups.pop(slot)
        for slot, (keys, values) in groups.items():
            yield slot, keys, values

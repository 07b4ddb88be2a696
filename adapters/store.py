"""The Redis read model: generation pointer, user keys and the fenced, versioned write.

Layout (one prefix, default "ums"):
    {<prefix>}:...               control keys, in one Cluster hash slot (adapters/generations.py):
                                 the pointer {<prefix>}:live = "<live generation>:<epoch>",
                                 the rebuild claim, per-generation positions
    <prefix>:<gen>:<canonical>   one string per user: "time,partition,offset,±delta,phone,name"
                                 (the version, then since = time - delta; phone and name
                                 empty: a tombstone)
One compact string per user keeps Redis memory per user low, and the version
sits at the front so the fence script reads it without decoding JSON.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.crc import key_slot

from adapters.cluster_write import ClusterStream
from adapters.lua import FENCED_SET, REPLACE_IF
from adapters.settings import Settings
from domain import Name, PhoneNumber, User, UserRemoved, Version
from domain.model import from_epoch_ms
from domain.projection import Event

log = logging.getLogger(__name__)

# Users per script call: big enough to amortise the call, small enough not to block Redis.
# ~5.5 us per user inside Redis (INFO commandstats, bench/readers_first.py): 200 -> ~1.1 ms.
KEYS_PER_CALL = 200


@dataclass(frozen=True)
class Stored:
    """What the projection holds for one user: a version and a user (None: removed)."""

    version: Version
    user: User | None


def format_value(event: Event) -> str:
    v = event.version
    head = f"{v.time_ms},{v.partition},{v.offset},"
    if isinstance(event, UserRemoved):
        return head + "+0,,"
    # `since` as a signed distance from the event time: usually a few characters.
    return f"{head}{v.time_ms - event.user.since_ms:+d},{event.user.phone.value},{event.user.name.value}"


def parse_value(raw: bytes | str) -> Stored:
    text = raw.decode() if isinstance(raw, bytes) else raw
    time_ms, partition, offset, delta, rest = text.split(",", 4)
    version = Version(int(time_ms), int(partition), int(offset))
    if delta[:1] not in ("+", "-"):  # written before `since` and the version time were apart
        phone, name, since_ms = delta, rest, version.time_ms
    else:
        (phone, name), since_ms = rest.split(",", 1), version.time_ms - int(delta)
    if not phone:
        return Stored(version, None)
    return Stored(version, User(Name(name), PhoneNumber(int(phone)), from_epoch_ms(since_ms)))


def parse_pointer(raw: bytes | str) -> tuple[int, str]:
    """The pointer's value is "<generation>:<epoch>"; a new epoch means a new (empty) Redis."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    generation, _, epoch = text.partition(":")
    return int(generation), epoch


CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}


def make_redis(settings: Settings, timeout_s: float | None = None, **extra: Any) -> redis.Redis:
    """A Redis client (connections open on first use); short timeouts so an outage shows fast.

    `redis+cluster://host:port` (any node) selects Redis Cluster; `redis://` a single Redis,
    `rediss://` one over TLS. `extra`: more redis-py arguments (ACL user, TLS; adapters/clients.py).
    """
    timeout = timeout_s if timeout_s is not None else settings.redis_timeout_s
    scheme, _, rest = settings.redis_url.partition("://")
    if scheme + "://" in CLUSTER_SCHEMES:
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

    def __init__(self, client: redis.Redis, prefix: str = "ums") -> None:
        self.client = client
        self.prefix = prefix
        # The hash tag puts every control key in one Cluster slot; user keys spread out.
        self.control_prefix = f"{{{prefix}}}"
        self.pointer_key = f"{self.control_prefix}:live"
        self._fenced_set = client.register_script(FENCED_SET)
        # What EVALSHA names the fence by (adapters/pipelined.py sends it without redis-py's Script).
        self.fenced_set_sha = hashlib.sha1(FENCED_SET.encode()).hexdigest()
        self._replace_if = client.register_script(REPLACE_IF)

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
        return parse_value(raw) if raw is not None else None

    def get_raw_many(self, generation: int, canonicals: Sequence[str]) -> list[bytes | None]:
        """Stored values, in order (a pipeline of GETs, not MGET: keys span Cluster slots)."""
        pipe = self.client.pipeline(transaction=False)
        for canonical in canonicals:
            pipe.get(self.key(generation, canonical))
        return list(pipe.execute()) if canonicals else []

    def replace(self, generation: int, event: Event, expected: bytes) -> bool:
        """Write `event` unfenced, but only if the user's value is still `expected`."""
        key = self.key(generation, event.key)
        return bool(self._replace_if(keys=[key], args=[expected, format_value(event)]))

    def apply(self, events: Sequence[Event], generation: int, per_call: int = KEYS_PER_CALL) -> int:
        """Write events through the fence, `per_call` users per script call; return how many changed a user."""
        if not events:
            return 0
        if isinstance(self.client, redis.RedisCluster):
            return self._apply_on_cluster(events, generation, per_call)
        pipe = self.client.pipeline(transaction=False)
        for keys, values in self.calls(((e.key, e) for e in events), generation, per_call):
            self._fenced_set(keys=keys, args=values, client=pipe)
        return sum(int(r) for r in pipe.execute())

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
    ) -> Iterable[tuple[list[str], list[str]]]:
        """Script calls (keys, values) of at most `per_call` users, on one Redis (a Cluster: `slot_calls`).

        `events` are (canonical key, event) pairs: the key is computed once per event by the caller.
        """
        head = f"{self.prefix}:{generation}:"
        pairs = list(events)  # plain slices: this runs for every event the consumer writes
        for start in range(0, len(pairs), per_call):
            part = pairs[start : start + per_call]
            yield [head + canonical for canonical, _ in part], [format_value(event) for _, event in part]

    def slot_calls(
        self, events: Iterable[tuple[str, Event]], generation: int, per_call: int = KEYS_PER_CALL
    ) -> Iterable[tuple[int, list[str], list[str]]]:
        """Script calls as (Cluster hash slot, keys, values), at most `per_call` users each."""
        head = f"{self.prefix}:{generation}:"
        groups: dict[int, tuple[list[str], list[str]]] = {}
        for canonical, event in events:
            key = head + canonical
            slot = key_slot(key.encode())
            keys, values = groups.setdefault(slot, ([], []))
            keys.append(key)
            values.append(format_value(event))
            if len(keys) >= per_call:
                yield slot, *groups.pop(slot)
        for slot, (keys, values) in groups.items():
            yield slot, keys, values

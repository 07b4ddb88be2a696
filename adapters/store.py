"""The Redis read model: generation pointer, user keys and the fenced, versioned write.

Layout (one prefix, default "ums"):
    {<prefix>}:...               control keys, in one Cluster hash slot (adapters/generations.py):
                                 the pointer {<prefix>}:live = "<live generation>:<epoch>",
                                 the rebuild claim, per-generation positions
    <prefix>:<gen>:<canonical>   one string per user, in one of two formats (below)
One short string per user keeps Redis memory per user low, and the version sits at
the front of both formats so the fence script reads it without decoding the rest.

compact (UMS_VALUE_FORMAT=compact, the default; bytes, big-endian):
    byte 0      phone length * 4 + name form; 0: a tombstone (nothing follows the version)
    1-6, 7-8, 9-14   the version: time, partition + 1 (65535: a repair), offset
    15-20       time - since (signed), then the phone, then the name in UTF-8 unless
                its form says it is the key itself (1) or the key in ASCII title case (2)
    At most 28 bytes when the name is derived: Redis then keeps value and object in one
    48-byte allocation, 120 B per user in all (docs/decisions.md "Memory per user").
text (UMS_VALUE_FORMAT=text, and any version the compact one cannot hold):
    "time,partition,offset,±delta,phone,name" (since = time - delta; phone and name
    empty: a tombstone). Readable in redis-cli; ~168 B per user.
Readers and the fence read both, whatever the setting: a compact value's first byte
is below "-", a text value starts with "-" or a digit.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import redis
from redis.crc import key_slot

from adapters.cluster_write import ClusterStream
from adapters.lua import FENCED_SET, MARK_FILLED, REPLACE_IF
from adapters.marks import Mark
from adapters.settings import Settings
from domain import Name, PhoneNumber, User, UserRemoved, Version
from domain.events import REPAIR_PARTITION
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
    """The text format: readable, ~65 bytes for a user with a 20-character name."""
    v = event.version
    head = f"{v.time_ms},{v.partition},{v.offset},"
    if isinstance(event, UserRemoved):
        return head + "+0,,"
    # `since` as a signed distance from the event time: usually a few characters.
    return f"{head}{v.time_ms - event.user.since_ms:+d},{event.user.phone.value},{event.user.name.value}"


BITS48 = 1 << 48
HALF48 = BITS48 // 2
REPAIR_CODE = 0xFFFF
NAME_FOLLOWS, NAME_IS_KEY, NAME_IS_TITLED_KEY = 0, 1, 2
# The first 21 bytes: first byte, time (2 + 4 bytes), partition code, offset (2 + 4), delta (2 + 4, signed).
HEAD = struct.Struct(">BHIHHIhI")
# The same bytes packed from fewer, wider fields (time << 16 | code; offset << 16 | delta's top 16 bits;
# delta's low 32 bits): the encoder's one `pack`, ~0.1 us less per event than HEAD's eight fields.
HEAD_WIDE = struct.Struct(">BQQI")
# ... and a 5-byte phone after them: every phone from PHONE_MIN (above 2**33) to 2**40 - 1, in one `pack`.
HEAD_PHONE5 = struct.Struct(">BQQIBI")
PHONE5_END = 1 << 40
LOW32 = 0xFFFFFFFF


def format_compact(event: Event) -> bytes | str:
    """The compact format (module docstring); the text one for what it cannot hold."""
    t, p, o = event.version
    if not (0 <= t < BITS48 and 0 <= o < BITS48):
        return format_value(event)
    if p == REPAIR_PARTITION:
        code = REPAIR_CODE
    elif -1 <= p < REPAIR_CODE - 1:
        code = p + 1
    else:
        return format_value(event)
    if isinstance(event, UserRemoved):
        return HEAD_WIDE.pack(0, t << 16 | code, o << 16, 0)[:15]
    user = event.user
    delta = t - user.since_ms
    if not -HALF48 <= delta < HALF48:
        return format_value(event)
    name, key = user.name.value, user.name.canonical
    # Title case is derived only for ASCII: str.title() of other scripts may change between
    # Python's Unicode versions, and a reader on another version must derive the same name.
    # bytes.title() is str.title() on ASCII (tests/unit/test_value_format.py checks every pair
    # of ASCII characters) without str.title()'s Unicode lookups: 0.09 us against 0.15.
    if name == key:
        form, tail = NAME_IS_KEY, b""
    elif key.isascii() and key.encode().title() == name.encode():
        form, tail = NAME_IS_TITLED_KEY, b""
    else:
        form, tail = NAME_FOLLOWS, name.encode()
    phone = user.phone.value
    middle = o << 16 | (delta >> 32) & 0xFFFF
    if phone < PHONE5_END:
        return HEAD_PHONE5.pack(20 + form, t << 16 | code, middle, delta & LOW32, phone >> 32, phone & LOW32) + tail
    size = (phone.bit_length() + 7) >> 3
    return HEAD_WIDE.pack(size * 4 + form, t << 16 | code, middle, delta & LOW32) + phone.to_bytes(size, "big") + tail


def is_compact(raw: bytes | str) -> TypeGuard[bytes]:
    """A compact value's first byte is below "-"; a text one starts with "-" or a digit."""
    return isinstance(raw, bytes) and b"" < raw[:1] < b"-"


def parse_value(raw: bytes | str, key: str) -> Stored:
    """A stored value in either format; `key` is the user's canonical name, the end of its Redis key."""
    if is_compact(raw):
        return _parse_compact(raw, key)
    text = raw.decode() if isinstance(raw, bytes) else raw
    time_ms, partition, offset, delta, rest = text.split(",", 4)
    version = Version(int(time_ms), int(partition), int(offset))
    if delta[:1] not in ("+", "-"):  # written before `since` and the version time were apart
        phone, name, since_ms = delta, rest, version.time_ms
    else:
        (phone, name), since_ms = rest.split(",", 1), version.time_ms - int(delta)
    if not phone:
        return Stored(version, None)
    return Stored(version, User.at_epoch_ms(Name(name), PhoneNumber(int(phone)), since_ms))


def _parse_compact(raw: bytes, key: str) -> Stored:
    size, form = divmod(raw[0], 4)
    if len(raw) < (21 + size if size else 15):
        raise ValueError(f"a compact value cut short ({len(raw)} bytes)")
    # A tombstone is the version alone (15 bytes): padded so that one layout reads both.
    _, t_high, t_low, code, o_high, o_low, delta_high, delta_low = HEAD.unpack_from(raw.ljust(HEAD.size, b"\0"))
    time_ms = t_high << 32 | t_low
    version = Version(time_ms, REPAIR_PARTITION if code == REPAIR_CODE else code - 1, o_high << 32 | o_low)
    if not size:
        return Stored(version, None)
    phone = int.from_bytes(raw[21 : 21 + size], "big")
    name = raw[21 + size :].decode() if form == NAME_FOLLOWS else key if form == NAME_IS_KEY else key.title()
    since_ms = time_ms - (delta_high << 32 | delta_low)
    return Stored(version, User.at_epoch_ms(Name(name), PhoneNumber(phone), since_ms))


def describe(raw: bytes | None, key: str) -> dict[str, Any]:
    """A stored value for people (`ums-find show`): its format, size, version and user, or why it is unreadable."""
    if raw is None:
        return {"held": None}
    out: dict[str, Any] = {"format": "compact" if is_compact(raw) else "text", "bytes": len(raw)}
    try:
        stored = parse_value(raw, key)
    except ValueError as exc:
        return {**out, "unreadable": str(exc), "raw": raw.hex()}
    user = stored.user
    held = {"name": user.name.value, "phone": user.phone.value, "since_ms": user.since_ms} if user else "removed"
    return {**out, "version": stored.version._asdict(), "held": held}


VALUE_FORMATS: dict[str, Callable[[Event], bytes | str]] = {"compact": format_compact, "text": format_value}


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

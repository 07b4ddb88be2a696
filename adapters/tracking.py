"""The API's reads of user values, cached in the worker and kept fresh by Redis (CLIENT TRACKING).

Every connection of the cache's pool turns tracking on with `REDIRECT` to one connection of
ours subscribed to `__redis__:invalidate`: Redis remembers which keys those connections read
and, when one of them changes, sends its name there. Freshness, what an answer may miss: a
write whose invalidation had not reached this worker's socket when the read began. Before
answering from memory a read drains that socket (without blocking), so an invalidation that
had arrived is applied first; nothing else is ever served from memory.
- A value is fetched behind a pending mark set before the GET: an invalidation processed
  between the mark and the reply (a write racing the read) leaves the value uncached.
- Memory answers only while the invalidation connection is known to be read up to less than
  TRUST_FOR_S ago: it is pinged every PING_EVERY_S, and a PONG proves that everything sent
  before its PING was read. So if that connection goes silent (a network that drops without
  a reset), memory may miss writes for at most TRUST_FOR_S; a PING unanswered that long, or
  any error on it, drops everything cached, closes every pool connection (their tracking
  names the old one) and reads go to Redis until a new one is up. An idle worker's first
  reads go to Redis while its PING is out.
- Redis forgets what a connection read when it closes it (its `timeout` for idle clients,
  CLIENT KILL, client eviction), and sends no invalidation for those keys again: before memory
  answers, one poll without a round trip finds the pool's idle connections Redis closed, and
  one found closed, or dropped by redis-py (an error, a checkout), empties the cache.
- A Redis that refuses tracking (before 6.0, an ACL without `client|tracking`, `subscribe`)
  turns the cache off with one warning: reads go to Redis as without it.
Single Redis only: on Cluster each master tracks its own keys (not built; reads go to Redis).
"""

from __future__ import annotations

import logging
import select
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

import redis

from adapters.store import ProjectionStore
from adapters.values import Stored, parse_value

log = logging.getLogger(__name__)
CHANNEL = b"__redis__:invalidate"
PING_EVERY_S = 0.25
TRUST_FOR_S = 1.0


class InvalidationLink:
    """Our connection subscribed to Redis's invalidations; read without ever blocking.

    A PONG proves every invalidation Redis sent before that PING has been read (one ordered
    stream), so `confirmed` is when the last answered PING was sent.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        self.conn: Any = None
        self.ident = 0
        self.confirmed = 0.0
        self.sent: deque[float] = deque()  # PINGs not answered yet, by send time

    def open(self) -> int:
        """Connect, learn our client id, subscribe; the id tracking connections redirect to."""
        # Not the pool's connect hook (it turns tracking on) nor its health check (a PING
        # answered by a subscribed connection is a message, which the check takes for an error).
        # RESP2: invalidations arrive as plain pub/sub messages; on RESP3 (redis-py's default)
        # they are push frames, which its parser hands to handlers instead of returning them.
        kwargs = {**self.pool.connection_kwargs, "redis_connect_func": None, "health_check_interval": 0, "protocol": 2}
        conn = self.pool.connection_class(**kwargs)
        try:
            conn.connect()
            conn.send_command("CLIENT", "ID")
            ident = int(conn.read_response())
            conn.send_command("SUBSCRIBE", CHANNEL)
            conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        self.conn, self.ident = conn, ident
        self.confirmed = time.monotonic()
        self.sent.clear()
        return ident

    def close(self) -> None:
        if self.conn is not None:
            self.conn.disconnect()
        self.conn, self.ident = None, 0

    def drain(self) -> list[bytes | None]:
        """Keys invalidated since the last drain (None: every key); pings when it is time."""
        keys: list[bytes | None] = []
        while self.conn.can_read(timeout=0):
            message = self.conn.read_response()
            kind = message[0]
            if kind == b"message" and message[1] == CHANNEL:
                keys.extend(message[2] if message[2] is not None else [None])  # None: a flush
            elif kind == b"pong" and self.sent:
                self.confirmed = self.sent.popleft()
        now = time.monotonic()
        if not self.sent and now - self.confirmed >= PING_EVERY_S:
            self.conn.send_command("PING", check_health=False)
            self.sent.append(now)
        return keys

    def trusted(self) -> bool:
        """Everything Redis sent until less than TRUST_FOR_S ago is known to have been read."""
        return time.monotonic() - self.confirmed < TRUST_FOR_S

    def silent(self) -> bool:
        """A PING has gone unanswered for TRUST_FOR_S: the connection is as good as lost."""
        return bool(self.sent) and time.monotonic() - self.sent[0] >= TRUST_FOR_S


class TrackedReads:
    """`get(canonical, generation)` as ProjectionStore's, answered from memory when Redis says it may."""

    def __init__(self, entries: int, count: Callable[[str], None] | None = None) -> None:
        self.entries = entries
        # Told each outcome: hit, miss (asked Redis, may keep the answer), bypass (asked Redis, may
        # not: tracking is off or being re-established), reset. The API counts them in /metrics.
        self.count = count or (lambda outcome: None)
        self.store: ProjectionStore | None = None
        self.link: InvalidationLink | None = None
        self.enabled = entries > 0
        self._lock = threading.RLock()
        # Raw values (~240 B per user with its key, against ~870 B parsed): parsing one again
        # costs ~4 us, a small part of the ~100 us a Redis round trip costs a read.
        self._values: OrderedDict[str, bytes | None] = OrderedDict()
        self._pending: dict[str, object] = {}
        self._opened: weakref.WeakSet[Any] = weakref.WeakSet()  # connections that turned tracking on
        self.hits = self.misses = self.resets = 0

    def bind(self, store: ProjectionStore) -> TrackedReads:
        """The store whose client was built with `redis_connect_func=self.on_connect`."""
        self.store = store
        self.link = InvalidationLink(store.client.connection_pool)
        return self

    def on_connect(self, conn: Any) -> None:
        """redis-py's connect hook: the usual handshake, then tracking redirected to our link."""
        if self.enabled and conn in self._opened:
            with self._lock:  # before the handshake's round trips: Redis forgot what the old one read
                if conn in self._opened:
                    self._forget("a connection was opened again", [conn])
        conn.on_connect()
        if not self.enabled:
            return
        try:
            with self._lock:
                ident = self._ensure_link()
            conn.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", ident)
            conn.read_response()
            with self._lock:  # _usable() walks the set under the lock
                self._opened.add(conn)
        except redis.ResponseError as exc:
            if isinstance(exc, redis.exceptions.NoPermissionError) or "unknown" in str(exc).lower():
                self._disable(exc)  # refused for good (an ACL, a Redis before 6.0): serve without the cache
                return
            # Anything else (the link was replaced while this connection set up, so the id it
            # named is gone): this connection is dropped, and the next one tries again.
            raise redis.ConnectionError(f"client tracking not turned on: {exc!r}") from exc

    def get(self, canonical: str, generation: int) -> Stored | None:
        assert self.store is not None
        key = self.store.key(generation, canonical)
        token = object()
        with self._lock:
            usable = self._usable()
            hit = usable and key in self._values
            if hit:
                self._values.move_to_end(key)
                raw = self._values[key]
            elif usable:
                self._pending[key] = token
        if hit:
            self.hits += 1
            self.count("hit")
            return parse_value(raw, canonical) if raw is not None else None
        self.misses += 1
        self.count("miss" if usable else "bypass")
        if not usable:  # outside the lock: a slow Redis must not hold up the other threads' hits
            return self.store.get(canonical, generation)
        try:
            raw = self.store.client.get(key)
            stored = parse_value(raw, canonical) if raw is not None else None
        except BaseException:
            with self._lock:
                if self._pending.get(key) is token:
                    del self._pending[key]
            raise
        with self._lock:
            # Kept only if no invalidation of this key was read since the mark: a write that
            # raced this GET may have replaced what it returned. The mark goes either way.
            usable = self._usable()
            if self._pending.get(key) is token:
                del self._pending[key]
                if usable:
                    self._values[key] = raw
                    if len(self._values) > self.entries:
                        self._values.popitem(last=False)
        return stored

    def size(self) -> int:
        return len(self._values)

    def _ensure_link(self) -> int:
        assert self.link is not None
        if self.link.conn is None:
            self.link.open()
        return self.link.ident

    def _usable(self) -> bool:
        """Apply what arrived; whether memory may answer now (called with the lock held)."""
        if not self.enabled or self.link is None or self.link.conn is None:
            return False
        try:
            for key in self.link.drain():
                if key is None:
                    self._values.clear()
                    self._pending.clear()
                else:
                    name = key.decode()
                    self._values.pop(name, None)
                    self._pending.pop(name, None)
        except (redis.RedisError, OSError) as exc:
            self._reset(f"invalidation connection lost: {exc!r}")
            return False
        if self.link.silent():
            self._reset(f"invalidation connection silent for {TRUST_FOR_S} s")
            return False
        drop_closed_idle(self.store.client.connection_pool)  # type: ignore[union-attr]
        # Closed by Redis and dropped (above, or by redis-py on an error or at checkout): Redis forgot
        # what it read. Before the connection is opened again, which takes round trips.
        lost = [conn for conn in self._opened if conn._sock is None]
        if lost:
            self._forget("a connection Redis closed (its `timeout`, CLIENT KILL, client eviction)", lost)
        return self.link.trusted()  # not yet (an idle worker): Redis answers while a PING is out

    def _forget(self, why: str, closed: Iterable[Any] = ()) -> None:
        """Empty the cache: some of it was read through a connection Redis no longer tracks. `closed`:
        the connections found closed, whose opening again then has nothing more to forget."""
        log.info("read cache emptied: %s; what it read is no longer tracked", why)
        for conn in closed:
            self._opened.discard(conn)
        self.resets += 1
        self.count("reset")
        self._values.clear()
        self._pending.clear()

    def _reset(self, why: str) -> None:
        """Forget everything; close every connection, whose tracking names the lost link."""
        log.warning("read cache reset, reads go to Redis until tracking is back: %s", why)
        assert self.link is not None and self.store is not None
        self.resets += 1
        self.count("reset")
        self._values.clear()
        self._pending.clear()
        self._opened = weakref.WeakSet()  # all closed here, with nothing left in memory to forget
        self.link.close()
        self.store.client.connection_pool.disconnect()

    def _disable(self, exc: Exception) -> None:
        log.warning("Redis refused client tracking, the read cache is off: %r", exc)
        with self._lock:
            self.enabled = False
            self._values.clear()
            self._pending.clear()
            if self.link is not None:
                self.link.close()


def drop_closed_idle(pool: redis.ConnectionPool) -> None:
    """Drop the pool's idle connections whose socket is readable: Redis closed them, or sent one
    something unasked (a maintenance notice), which costs only the cache's contents and a reconnect.
    One poll for all of them, no round trip.

    Only idle ones, under the pool's lock so that none is taken meanwhile: a connection in use may
    be readable with its reply. redis-py keeps them in a private list (pinned version;
    tests/unit/test_tracking_idle.py fails if it goes). A TLS socket is polled the same way."""
    with pool._lock:  # type: ignore[attr-defined]
        idle = [(conn, sock) for conn in pool._available_connections if (sock := conn._sock) is not None]  # type: ignore[attr-defined]
        if not idle:
            return
        poller = select.poll()
        for _, sock in idle:
            poller.register(sock, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(0)}
        for conn, sock in idle:
            if sock.fileno() in ready:
                conn.disconnect()

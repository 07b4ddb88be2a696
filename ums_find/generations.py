"""Generations of the projection: the pointer, the generation being built, the rebuild lock, clean-up.

A rebuild fills generation N+1 while N serves reads. While `<prefix>:building` names
N+1, live consumers write every batch to both N and N+1, so nothing that arrives
during the rebuild is missed; the flip is one SET of the pointer.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ums_find.store import ProjectionStore, parse_pointer

log = logging.getLogger(__name__)

# Compare-and-act on the lock: only its owner may extend or release it.
EXTEND_LOCK = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
RELEASE_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RebuildRunning(Exception):
    """Another rebuild holds the lock."""


@dataclass(frozen=True)
class Pointer:
    live: int
    epoch: str
    building: int | None

    @property
    def targets(self) -> tuple[int, ...]:
        """Where a live consumer writes: the live generation, and the one being built."""
        if self.building is None or self.building == self.live:
            return (self.live,)
        return (self.live, self.building)


class Generations:
    """The pointer and its companions, for one key prefix."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store
        self.client = store.client
        self.building_key = f"{store.prefix}:building"
        self.lock_key = f"{store.prefix}:rebuild-lock"

    def read(self) -> Pointer | None:
        """The pointer and the building mark, in one round trip (None: no projection)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.store.pointer_key)
        pipe.get(self.building_key)
        live, building = pipe.execute()
        if live is None:
            return None
        generation, epoch = parse_pointer(live)
        return Pointer(generation, epoch, int(building) if building is not None else None)

    def ensure(self) -> tuple[Pointer, bool]:
        """The pointer, creating generation 1 with a new epoch on an empty Redis; True if created here."""
        created = bool(self.client.set(self.store.pointer_key, f"1:{uuid.uuid4().hex}", nx=True))
        pointer = self.read()
        assert pointer is not None
        return pointer, created

    def start_building(self, generation: int) -> None:
        self.client.set(self.building_key, generation)

    def stop_building(self) -> None:
        self.client.delete(self.building_key)

    def flip(self, pointer: Pointer, generation: int) -> None:
        """Make `generation` live (same epoch), then drop the building mark."""
        # Two keys in two commands (they may live on different Cluster slots). Between them,
        # consumers write to N+1 twice, which the fence makes harmless.
        self.client.set(self.store.pointer_key, f"{generation}:{pointer.epoch}")
        self.stop_building()

    @contextmanager
    def lock(self, ttl_s: float = 60.0) -> Iterator[str]:
        """Hold the rebuild lock (refreshed in the background) or raise RebuildRunning."""
        token = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}:{int(time.time())}"
        ttl_ms = int(ttl_s * 1000)
        if not self.client.set(self.lock_key, token, nx=True, px=ttl_ms):
            holder = self.client.get(self.lock_key)
            left = self.client.pttl(self.lock_key)
            raise RebuildRunning(
                f"a rebuild is already running (lock {self.lock_key} held by "
                f"{holder.decode() if holder else '?'}, expires in {max(left, 0) / 1000:.0f} s)"
            )
        extend = self.client.register_script(EXTEND_LOCK)
        done = threading.Event()

        def keep_alive() -> None:
            while not done.wait(ttl_s / 3):
                try:
                    extend(keys=[self.lock_key], args=[token, ttl_ms])
                except Exception as exc:  # a blip must not kill the rebuild; the TTL covers it
                    log.warning("could not extend the rebuild lock: %r", exc)

        refresher = threading.Thread(target=keep_alive, name="rebuild-lock", daemon=True)
        refresher.start()
        try:
            yield token
        finally:
            done.set()
            refresher.join()
            self.client.register_script(RELEASE_LOCK)(keys=[self.lock_key], args=[token])

    def delete_generation(self, generation: int, batch: int = 500) -> int:
        """Remove a generation's keys with SCAN + UNLINK in bounded batches; return how many."""
        deleted = 0
        pending: list[bytes] = []
        for key in self.client.scan_iter(match=self.store.key(generation, "*"), count=batch):
            pending.append(key)
            if len(pending) >= batch:
                deleted += self.client.unlink(*pending)
                pending = []
        if pending:
            deleted += self.client.unlink(*pending)
        return deleted

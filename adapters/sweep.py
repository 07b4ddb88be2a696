"""The sweep: delete the keys of generations that are neither live nor claimed, whatever runs beside it.

Positions (`{P}:pos:<g>`, and a rebuild's marks `{P}:pos:fill:<g>`, matched by the same
pattern) share the control keys' hash slot, so DROP_POSITIONS checks the
pointer and the claim and deletes in one script: no flip, claim or new pointer can come
between the check and the delete.

User keys (`P:<g>:<name>`) spread over every slot of a Cluster, where no script can see the
pointer as well. Their deletion relies on a property instead: within one pointer epoch, a
generation that is neither live nor claimed and not above `{P}:seq` can never become either
(START hands out only numbers above seq; only the claimed generation is ever flipped live;
a new pointer means a new epoch). Before each UNLINK batch RETIRE reads pointer, claim and
seq, first raising seq to the batch's highest generation, and only keys dead by *that*
reading are deleted; an older reading is never used, so after a wipe each batch is judged
by the new pointer.

Remaining window (Cluster and single Redis alike): a wipe of Redis, a new pointer, and a
consumer writing one of the batch's very keys into a generation that is live or claimed
under the new pointer, all between a batch's reading and its UNLINK (one round trip).
See docs/decisions.md ("Recovery").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from adapters.lua import DROP_POSITIONS, RETIRE
from adapters.store import ProjectionStore, parse_pointer

log = logging.getLogger(__name__)
# Positions deleted per script call.
POSITIONS_PER_CALL = 100


@dataclass(frozen=True)
class Reading:
    """Pointer, claim and seq as RETIRE returned them; `live` None: no pointer, nothing is dead."""

    live: int | None
    epoch: str
    claimed: int | None
    seq: int

    def in_use(self, generation: int) -> bool:
        return generation in (self.live, self.claimed)

    def dead(self, generation: int) -> bool:
        """Neither live nor claimed, and never can be again under this pointer."""
        return self.live is not None and not self.in_use(generation) and generation <= self.seq


class Sweeper:
    """Deletes what unclaimed generations left behind; keys as in adapters/generations.py."""

    def __init__(self, store: ProjectionStore, rebuild_key: str, seq_key: str, pos_prefix: str) -> None:
        self.store = store
        self.client: redis.Redis = store.client
        self.control = [store.pointer_key, rebuild_key]
        self.seq_key = seq_key
        self.pos_prefix = pos_prefix.encode()
        self._retire = self.client.register_script(RETIRE)
        self._drop = self.client.register_script(DROP_POSITIONS)

    def sweep(self, only: int | None, batch: int) -> int:
        """User keys and positions of dead generations (only `only` if given), in one pass over the
        keyspace; return user keys deleted."""
        reading = self.read()
        deleted = dropped = 0
        users: list[tuple[bytes, int]] = []
        positions: list[tuple[bytes, int]] = []
        in_use = self._heads_in_use(reading)
        for key in self.store.scan_all_and_control(count=batch):
            # Nearly every key is the live generation's: a prefix test in C instead of parsing
            # each (1M keys: 0.06 s against 0.41 s of this loop's Python).
            if key.startswith(in_use):
                continue
            if key.startswith(self.pos_prefix):
                of = int(key.rsplit(b":", 1)[1])
                if only is None or of == only:
                    positions.append((key, of))
                continue
            generation = self.store.generation_of(key)
            # Skipping what was in use at the last reading only spares more: a later gc takes it.
            if generation is None or (only is not None and generation != only) or reading.in_use(generation):
                continue
            users.append((key, generation))
            if len(users) >= batch:
                count, reading = self._unlink(users, reading)
                deleted, users, in_use = deleted + count, [], self._heads_in_use(reading)
        if users:
            deleted += self._unlink(users, reading)[0]
        # After the user keys, as when positions had a pass of their own; DROP_POSITIONS
        # judges each hash against the pointer and claim of its own moment, not the pass's.
        for start in range(0, len(positions), POSITIONS_PER_CALL):
            dropped += self._drop_positions(positions[start : start + POSITIONS_PER_CALL])
        if deleted or dropped:
            log.info("swept %s keys and %s position hashes of unclaimed generations", deleted, dropped)
        return deleted

    def read(self, top: int = 0) -> Reading:
        """The control state, after retiring every generation number up to `top`."""
        live, claim, seq = self._retire(keys=[*self.control, self.seq_key], args=[top])
        if not live:
            return Reading(None, "", None, 0)
        generation, epoch = parse_pointer(live)
        claimed = int(claim.rsplit(b":", 1)[1]) if claim else None
        return Reading(generation, epoch, claimed, int(seq))

    def _heads_in_use(self, reading: Reading) -> tuple[bytes, ...]:
        """The user-key heads (`P:<g>:`) of the generations in use: most keys a sweep meets start with one."""
        return tuple(self.store.key(g, "").encode() for g in (reading.live, reading.claimed) if g is not None)

    def _unlink(self, pending: list[tuple[bytes, int]], before: Reading) -> tuple[int, Reading]:
        reading = self.read(max(generation for _, generation in pending))
        if reading.epoch != before.epoch:
            log.warning("the pointer changed epoch during the sweep (Redis wiped?): judging by the new one")
        chosen = [key for key, generation in pending if reading.dead(generation)]
        return self.store.unlink(chosen), reading

    def _drop_positions(self, chunk: list[tuple[bytes, int]]) -> int:
        if not chunk:
            return 0
        return int(self._drop(keys=[*self.control, *(k for k, _ in chunk)], args=[g for _, g in chunk]))

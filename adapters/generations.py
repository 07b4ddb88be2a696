"""Generations of the projection: the pointer, the rebuild claim, per-generation positions, the sweep.

Control keys share one Redis Cluster hash slot (the `{prefix}` tag), so every change is
one atomic script and every read one MGET:

    {P}:live      "<live generation>:<epoch>"   (a new epoch whenever the pointer is created)
    {P}:rebuild   "<token>:<generation>"        the claim of the one running rebuild, with a
                                                lease (PX): if its replay stops renewing it,
                                                consumers stop writing there and the sweep deletes it
    {P}:rebuild:pace  "<generation>:<events/s>"  the running rebuild's pace (`ums-find pace`);
                  one naming another generation is an ended rebuild's, and ignored
    {P}:seq       the last generation number handed out or retired by the sweep
                  (numbers are never reused)
    {P}:pos:<g>   hash partition -> next offset to read, written after the data it covers, and
                  "e:<partition>" -> the leader epoch of the message before that offset, with the
                  offset's low 32 bits (`epoch_value`; -1: unknown)
    {P}:pos:topic:<g>  the id of the topic those offsets are of (adapters/lineage.py)
    {P}:pos:fill:<g>  how far generation g's data is written (partition -> next offset,
                  "mysql" -> rows), marked after the data (adapters/marks.py); positions
                  are saved only up to it, and a rebuild flips only when it reaches every end

Start, renew, flip and abandon compare the caller's token; the sweep never deletes the
live generation nor a claimed one (adapters/sweep.py). See docs/decisions.md ("Recovery").
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from adapters.lua import ABANDON, FLIP, PACE, RENEW, SAVE_POSITIONS, START
from adapters.marks import Mark, WritesLost
from adapters.store import ProjectionStore, parse_pointer
from adapters.sweep import Sweeper

log = logging.getLogger(__name__)


EPOCH_SHIFT = 1 << 32
EPOCH_MAX = 1 << 21  # epoch * EPOCH_SHIFT stays exact in Lua's doubles (2^53)


def epoch_value(epoch: int, offset: int) -> int:
    """What "e:<partition>" holds: the leader epoch and the low 32 bits of the offset it goes with, as
    one decimal number (-1: unknown). A number, so that a previous release's FLIP, which compares
    every field of the hash as one, hands it over instead of failing."""
    if not 0 <= epoch < EPOCH_MAX or offset < 0:
        return -1
    return epoch * EPOCH_SHIFT + offset % EPOCH_SHIFT


def epoch_of(stored: bytes | None, offset: int) -> int:
    """The leader epoch in a stored `epoch_value` if it goes with `offset`; -1 if not (unknown)."""
    try:
        value = int(stored or b"-1")
    except ValueError:
        return -1
    if value < 0 or value % EPOCH_SHIFT != offset % EPOCH_SHIFT:
        return -1
    return value // EPOCH_SHIFT


class RebuildRunning(Exception):
    """Another rebuild holds the claim."""


class NoProjection(Exception):
    """Redis holds no pointer (it was wiped): there is nothing to rebuild beside."""


class ClaimLost(Exception):
    """This rebuild's claim expired or was taken: it must not flip, and stops."""


class PositionsWentBack(Exception):
    """Redis lost acknowledged writes: positions behind what was saved under the same pointer, or a
    batch's fill mark short of the offset about to be saved."""

    def __init__(self, behind: Mapping[int, tuple[int, int]]) -> None:
        super().__init__(behind)
        # partition -> (floor: the position known stored, found: the position now; -1: none)
        self.behind = dict(behind)


class FillLost(ClaimLost):
    """Redis lost writes of this rebuild (an older snapshot, a failover): its generation must not go live."""


@dataclass(frozen=True)
class Pointer:
    """The control state read in one MGET: what is live, and what a rebuild is filling."""

    live: int
    epoch: str
    building: int | None = None

    @property
    def targets(self) -> tuple[int, ...]:
        """Where a live consumer writes: the live generation, and the one being built."""
        if self.building is None or self.building == self.live:
            return (self.live,)
        return (self.live, self.building)

    @property
    def tag(self) -> str:
        """The pointer's value; positions are saved only while it is unchanged."""
        return f"{self.live}:{self.epoch}"


class Generations:
    """The control state of one key prefix."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store
        self.client = store.client
        base = store.control_prefix
        self.live_key = store.pointer_key
        self.rebuild_key = f"{base}:rebuild"
        self.seq_key = f"{base}:seq"
        self.pace_key = f"{base}:rebuild:pace"
        self.pos_prefix = f"{base}:pos:"
        self._start = self.client.register_script(START)
        self._renew = self.client.register_script(RENEW)
        self._abandon = self.client.register_script(ABANDON)
        self._flip = self.client.register_script(FLIP)
        self._save = self.client.register_script(SAVE_POSITIONS)
        self._pace = self.client.register_script(PACE)
        self._sweeper = Sweeper(store, self.rebuild_key, self.seq_key, self.pos_prefix)

    def read(self) -> Pointer | None:
        """The pointer and the rebuild claim, atomically (one slot, one MGET); None: no projection."""
        live, claim = self.client.mget([self.live_key, self.rebuild_key])
        if live is None:
            return None
        generation, epoch = parse_pointer(live)
        building = int(claim.rsplit(b":", 1)[1]) if claim else None
        return Pointer(generation, epoch, building)

    def ensure(self) -> tuple[Pointer, bool]:
        """The pointer, creating generation 1 with a new epoch on an empty Redis; True if created here."""
        created = bool(self.client.set(self.live_key, f"1:{uuid.uuid4().hex}", nx=True))
        pointer = self.read()
        if pointer is None:  # wiped again between the two calls
            return self.ensure()
        return pointer, created

    # Positions -------------------------------------------------------------------------

    def positions(self, generation: int, partitions: Iterable[int]) -> dict[int, int]:
        """Stored next offsets of these partitions in `generation` (absent: read from the start)."""
        return {p: offset for p, (offset, _) in self.resume_points(generation, partitions).items()}

    def resume_points(self, generation: int, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
        """Per partition with a stored position: (next offset, leader epoch of the message before it, -1
        unknown). Absent: read from the start."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        fields = [str(p) for p in wanted] + [f"e:{p}" for p in wanted]
        raw = self.client.hmget(self.pos_key(generation), fields)
        offsets, epochs = raw[: len(wanted)], raw[len(wanted) :]
        return {
            p: (int(offset), epoch_of(epoch, int(offset)))
            for p, offset, epoch in zip(wanted, offsets, epochs, strict=True)
            if offset is not None
        }

    def all_positions(self, generation: int) -> dict[int, int]:
        stored = self.client.hgetall(self.pos_key(generation)).items()
        return {int(p): int(o) for p, o in stored if not p.startswith(b"e:")}

    def save_positions(
        self,
        pointer: Pointer,
        offsets: Mapping[int, int],
        floors: Mapping[int, int] | None = None,
        topic: str | None = None,
        epochs: Mapping[int, int] | None = None,
    ) -> bool:
        """Record next offsets for the live generation, if `pointer` is still current and the generation's
        recorded topic id is `topic` (when both are known: adapters/lineage.py); False if not.
        `epochs`: per partition, the leader epoch of the message before its offset (KIP-320), saved
        with it (absent: -1, unknown).

        `floors`: per partition the caller has positioned or saved (batch or not), the position
        it last knew stored. Raises PositionsWentBack, saving nothing, when Redis holds less
        for any, or when an offset is past its partition's fill mark (the batch's data, sent
        with its mark, was lost after Redis acknowledged it). With no offsets: the check alone.
        """
        floors, epochs = floors or {}, epochs or {}
        if not offsets and not floors:
            return True
        args: list[str | int] = [pointer.tag, topic or ""]
        for partition in sorted(offsets.keys() | floors.keys()):
            offset = offsets.get(partition, -1)
            args += [partition, offset, floors.get(partition, -1), epoch_value(epochs.get(partition, -1), offset)]
        live = pointer.live
        keys = [self.live_key, self.pos_key(live), self.fill_key(live), self.topic_key(live)]
        reply = self._save(keys=keys, args=args)
        if isinstance(reply, list):
            found = dict(zip(map(int, reply[::2]), map(int, reply[1::2]), strict=True))
            raise PositionsWentBack({p: (floors.get(p, -1), f) for p, f in found.items()})
        return bool(reply)

    def pos_key(self, generation: int) -> str:
        return f"{self.pos_prefix}{generation}"

    def fill_key(self, generation: int) -> str:
        return f"{self.pos_prefix}fill:{generation}"

    def topic_key(self, generation: int) -> str:
        """The id of the topic whose offsets the generation's positions are (adapters/lineage.py)."""
        return f"{self.pos_prefix}topic:{generation}"

    def over_mysql(self, generation: int) -> bool:
        """Whether a rebuild filled `generation` from a MySQL snapshot (its "mysql" fill mark)."""
        # HGET, not HEXISTS: the consumer's Redis ACL (docs/security.md) allows what it already ran.
        return self.client.hget(self.fill_key(generation), "mysql") is not None

    def mark(self, generation: int, marks: Mapping[str, int], floors: Mapping[str, int] | None = None) -> Mark:
        """A fill mark for `generation`, to send after the data it covers (adapters/marks.py)."""
        return Mark(self.fill_key(generation), dict(marks), dict(floors or {}))

    def lost_rebuild(self, generation: int, lost: WritesLost) -> ClaimLost:
        """What a rebuild's mark found behind means: its claim gone (and its marks swept), or writes lost."""
        pointer = self.read()
        if pointer is None or pointer.building != generation:
            return ClaimLost(f"the claim on generation {generation} is gone (expired, taken or rolled back: {lost})")
        return FillLost(f"Redis lost writes of the rebuild of generation {generation}: {lost}")

    # Rebuild claim ---------------------------------------------------------------------

    def start(self, lease_ms: int) -> tuple[int, str]:
        """Claim a new generation for a rebuild: (generation, claim); raise RebuildRunning or NoProjection."""
        self.ensure()
        token = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        generation, holder = self._start(
            keys=[self.live_key, self.rebuild_key, self.seq_key, self.pos_prefix], args=[token, lease_ms]
        )
        if int(generation) < 0:
            raise NoProjection(
                f"Redis holds no projection ({self.live_key} is missing: wiped just now?); nothing claimed"
            )
        if not generation:
            text = holder.decode() if isinstance(holder, bytes) else str(holder)
            left = max(int(self.client.pttl(self.rebuild_key)), 0) / 1000
            raise RebuildRunning(f"a rebuild is already running ({self.rebuild_key} = {text}, lease {left:.0f} s left)")
        return int(generation), f"{token}:{generation}"

    def renew(self, claim: str, lease_ms: int) -> bool:
        return bool(self._renew(keys=[self.rebuild_key], args=[claim, lease_ms]))

    def abandon(self, claim: str) -> bool:
        """Give the claim up (its generation is then unclaimed and swept); False if it was not ours."""
        return bool(self._abandon(keys=[self.rebuild_key], args=[claim]))

    def set_pace(self, events_per_s: float) -> int | None:
        """Pace the running rebuild (0: unpaced); the generation it builds, None if no rebuild runs."""
        generation = int(self._pace(keys=[self.rebuild_key, self.pace_key], args=[f"{events_per_s:.15g}"]))
        return generation or None

    def pace(self, generation: int) -> float | None:
        """The pace set for the rebuild of `generation`; None if none was (or the key is not one)."""
        raw = self.client.get(self.pace_key)
        of, _, rate = (raw or b"").decode(errors="replace").partition(":")
        if raw is None or of != str(generation):
            return None
        try:
            return float(rate)
        except ValueError:  # written by hand: the pace the rebuild has stays
            log.warning("ignoring %s = %r: not <generation>:<events per second>", self.pace_key, raw)
            return None

    def flip(self, claim: str, generation: int, epoch: str, filled: Mapping[str, int] | None = None) -> int:
        """Make the claimed generation live; return the old one, or raise ClaimLost.

        `filled`: the marks the rebuild wrote last (MARK_FILLED); raises FillLost, flipping
        nothing, when Redis holds less of them.
        """
        args: list[str | int] = [claim, generation, epoch]
        for field, mark in sorted((filled or {}).items()):
            args += [field, mark]
        old = int(self._flip(keys=[self.live_key, self.rebuild_key, self.pos_prefix], args=args))
        if old == -2:
            raise FillLost(f"Redis lost writes of the rebuild of generation {generation}: nothing flipped")
        if old < 0:
            pointer = self.read()
            if pointer is not None and pointer.live == generation and pointer.epoch == epoch:
                # Our flip ran and its reply was lost; the client sent it again.
                log.warning("the flip to generation %s had already happened", generation)
                return 0
            raise ClaimLost(f"the claim {claim} is no longer held (lease expired, taken over, or Redis wiped)")
        return old

    # Sweep -----------------------------------------------------------------------------

    def sweep(self, only: int | None = None, batch: int = 500) -> int:
        """Delete the keys of every generation that is neither live nor claimed; return how many.

        Whatever runs beside it (flips, claims, a wipe and a new pointer): positions are
        deleted by a script that checks pointer and claim, user keys by batches judged on a
        fresh reading each (adapters/sweep.py, which names the one remaining window).
        """
        return self._sweeper.sweep(only, batch)

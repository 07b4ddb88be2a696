"""Compare MySQL's `ums_users` with the live projection, report the drift, optionally repair it.

MySQL is streamed in chunks (server-side cursor) and the projection is scanned in
chunks: neither is ever held in memory whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from adapters.mysql import MySQLUsers
from adapters.store import ProjectionStore
from adapters.values import Stored, parse_value
from domain import User, UserAdded, Version

log = logging.getLogger(__name__)
SAMPLES = 20


@dataclass
class Drift:
    """Counts (and a few sample names) of what differs between MySQL and the projection."""

    checked_rows: int = 0
    checked_keys: int = 0
    missing: int = 0
    different: int = 0
    extra: int = 0
    ahead: int = 0  # the projection holds a later version than MySQL's row (drift, repaired too)
    repaired: int = 0
    samples: dict[str, list[str]] = field(
        default_factory=lambda: {"missing": [], "different": [], "ahead": [], "extra": []}
    )

    @property
    def total(self) -> int:
        return self.missing + self.different + self.ahead + self.extra

    def note(self, kind: str, name: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.samples[kind]) < SAMPLES:
            self.samples[kind].append(name)


class Reconciler:
    def __init__(self, store: ProjectionStore, mysql: MySQLUsers, generation: int, chunk: int = 1000) -> None:
        self.store = store
        self.mysql = mysql
        self.generation = generation
        self.chunk = chunk

    def run(self, repair: bool = False) -> Drift:
        drift = Drift()
        for users in self.mysql.stream(chunk=self.chunk):
            self._compare_rows(users, drift, repair)
        self._find_extra(drift, repair)
        return drift

    def _compare_rows(self, users: list[User], drift: Drift, repair: bool) -> None:
        raws = self.store.get_raw_many(self.generation, [u.name.canonical for u in users])
        missing: list[UserAdded] = []
        drifted: list[tuple[User, bytes, Stored | None]] = []
        for user, raw in zip(users, raws, strict=True):
            drift.checked_rows += 1
            if raw is None:
                drift.note("missing", user.name.value)
                missing.append(UserAdded(user, Version.from_mysql(user.since_ms)))
                continue
            held = _readable(raw, user.name.canonical)
            if held is not None and held.user == user:
                continue
            # Ahead: the projection holds a later version than MySQL's row. The AddService
            # saves before it publishes, so that is drift too (a failed save, or a version
            # a producer's clock pinned), unless MySQL changed since it was read: re-read.
            # A value in no format this release reads is different: repair replaces it.
            ahead = held is not None and held.version.time_ms > user.since_ms
            drift.note("ahead" if ahead else "different", user.name.value)
            drifted.append((user, raw, held))
        if repair:
            drift.repaired += self.store.apply(missing, self.generation)
            drift.repaired += sum(self._replace(user, raw, held) for user, raw, held in drifted)

    def _replace(self, user: User, raw: bytes, held: Stored | None) -> bool:
        """Put MySQL's current row in place of `raw` (read as `held`), unless either changed meanwhile."""
        fresh = self.mysql.find(user.name)
        if fresh is None or (held is not None and fresh == held.user):
            return False
        # The row's own time as the version, so any event sent after that save still wins.
        return self.store.replace(self.generation, UserAdded(fresh, Version.repair(fresh.since_ms)), raw)

    def _find_extra(self, drift: Drift, repair: bool) -> None:
        batch: list[str] = []
        for canonical in self.store.scan_users(self.generation, count=self.chunk):
            batch.append(canonical)
            if len(batch) >= self.chunk:
                self._check_extra(batch, drift, repair)
                batch = []
        if batch:
            self._check_extra(batch, drift, repair)

    def _check_extra(self, canonicals: list[str], drift: Drift, repair: bool) -> None:
        views = {}
        for canonical, raw in zip(canonicals, self.store.get_raw_many(self.generation, canonicals), strict=True):
            if raw is None:
                continue
            held = _readable(raw, canonical)
            # Tombstones are not users (nothing to find in MySQL); unreadable values: the rows pass judges them.
            if held is not None and held.user is not None:
                views[canonical] = held.user
        drift.checked_keys += len(canonicals)
        # Asked as the fallback asks (adapters/mysql.py `spellings`): what it finds is no extra.
        known = self.mysql.find_many([u.name for u in views.values()])
        extra = [canonical for canonical, user in views.items() if user.name.canonical not in known]
        for canonical in extra:
            drift.note("extra", canonical)
        if repair and extra:
            drift.repaired += self.store.remove(self.generation, extra)


def _readable(raw: bytes, canonical: str) -> Stored | None:
    """The stored value, or None for one in no format this release reads (logged)."""
    try:
        return parse_value(raw, canonical)
    except ValueError as exc:
        log.warning("unreadable projection value for %r: %r", canonical, exc)
        return None

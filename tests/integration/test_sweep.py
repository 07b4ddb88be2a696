"""The sweep never deletes what is live or claimed, whatever runs beside it (issue 26, item 1).

A sweep over a large old generation is held after its first UNLINK (the interleaving is
driven, not timed) while a replay claims, builds and flips, or while Redis is wiped and
the projection starts again; then it runs to its end.
"""

from __future__ import annotations

import threading

from adapters.generations import Generations
from adapters.store import ProjectionStore
from tests.conftest import CLUSTER_TOO
from tests.helpers import save_written

pytestmark = CLUSTER_TOO  # single Redis and Redis Cluster

OLD = 20_000  # keys of the generation being swept: far more than one batch
LIVE = 2_000
BATCH = 200
PARTITIONS = range(6)


def fill(store: ProjectionStore, generation: int, count: int, tag: str) -> None:
    """`count` user keys in `generation` (the sweep reads names only, never values)."""
    for start in range(0, count, 1000):
        pipe = store.client.pipeline(transaction=False)
        for i, name in enumerate(names(tag, count)[start : start + 1000], start):
            pipe.set(store.key(generation, name), f"1,0,{i},+0,9000000000,{name}")
        pipe.execute()


def names(tag: str, count: int) -> list[str]:
    return [f"{tag} {i:05d}" for i in range(count)]


def present(store: ProjectionStore, generation: int, tag: str, count: int) -> int:
    """How many of `fill`'s keys still exist (EXISTS, exact: SCAN may return a key twice)."""
    keys = [store.key(generation, name) for name in names(tag, count)]
    return sum(int(store.client.exists(*keys[i : i + 1000])) for i in range(0, count, 1000))


def left(store: ProjectionStore, generation: int) -> set[str]:
    return set(store.scan_users(generation))


def wipe(store: ProjectionStore) -> None:
    """What FLUSHALL does to this test's prefix (the servers are shared: never FLUSHALL)."""
    for pattern in (f"{store.prefix}:*", f"{store.control_prefix}:*"):
        keys = list(store.client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            store.client.unlink(*keys[start : start + 1000])


class HeldSweep:
    """`Generations.sweep` in a thread, held just after its first UNLINK until `finish()`."""

    def __init__(self, store: ProjectionStore, monkeypatch) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.outcome: dict[str, object] = {}
        real = store.unlink

        def unlink(keys):
            deleted = real(keys)
            if not self.held.is_set():
                self.held.set()
                self.release.wait(60)
            return deleted

        monkeypatch.setattr(store, "unlink", unlink)
        self.thread = threading.Thread(target=self._run, args=(Generations(store),), daemon=True)

    def _run(self, generations: Generations) -> None:
        try:
            self.outcome["deleted"] = generations.sweep(batch=BATCH)
        except BaseException as exc:  # re-raised in the test's thread
            self.outcome["error"] = exc

    def start(self) -> HeldSweep:
        self.thread.start()
        assert self.held.wait(60), "the sweep never reached its first UNLINK"
        return self

    def finish(self) -> int:
        self.release.set()
        self.thread.join(120)
        assert not self.thread.is_alive(), "the sweep did not finish"
        if "error" in self.outcome:
            raise AssertionError("the sweep failed") from self.outcome["error"]  # type: ignore[arg-type]
        return int(self.outcome["deleted"])  # type: ignore[call-overload]


def two_generations(generations: Generations, store: ProjectionStore) -> str:
    """Generation 2 live with LIVE users and positions, generation 1 left with OLD keys; the epoch."""
    generations.ensure()
    fill(store, 1, OLD, "old")
    assert save_written(generations, generations.read(), {p: 100 for p in PARTITIONS})
    two, claim = generations.start(lease_ms=60_000)
    fill(store, two, LIVE, "user")
    epoch = generations.read().epoch
    assert generations.flip(claim, two, epoch) == 1
    return epoch


def test_a_replay_that_flips_during_a_long_sweep_keeps_its_positions_and_keys(store, monkeypatch):
    generations = Generations(store)
    epoch = two_generations(generations, store)
    sweep = HeldSweep(store, monkeypatch).start()
    assert 0 < present(store, 1, "old", OLD) < OLD  # the sweep is under way, far from done

    three, claim = generations.start(lease_ms=60_000)
    fill(store, three, LIVE, "user")  # the replay builds generation 3
    assert save_written(generations, generations.read(), {p: 200 for p in PARTITIONS})  # consumers move on
    assert generations.flip(claim, three, epoch) == 2
    deleted = sweep.finish()

    assert store.live_generation() == 3
    assert generations.all_positions(3) == {p: 200 for p in PARTITIONS}
    assert present(store, 3, "user", LIVE) == LIVE
    assert left(store, 1) == set() and generations.all_positions(1) == {}
    assert deleted >= OLD
    generations.sweep(batch=BATCH)  # generation 2 went old during the sweep: the next one takes it
    assert left(store, 2) == set() and generations.all_positions(2) == {}
    assert present(store, 3, "user", LIVE) == LIVE and generations.all_positions(3) == {p: 200 for p in PARTITIONS}


def test_a_wipe_during_a_long_sweep_spares_the_new_pointer_and_its_claim(store, monkeypatch):
    generations = Generations(store)
    old_epoch = two_generations(generations, store)
    sweep = HeldSweep(store, monkeypatch).start()

    wipe(store)
    pointer, created = generations.ensure()  # a consumer starts the projection again
    assert created and pointer.live == 1 and pointer.epoch != old_epoch
    fill(store, 1, LIVE, "user")
    assert save_written(generations, pointer, {p: 300 for p in PARTITIONS})
    two, claim = generations.start(lease_ms=60_000)  # and a replay claims generation 2 anew
    fill(store, two, LIVE, "user")
    sweep.finish()

    assert generations.all_positions(1) == {p: 300 for p in PARTITIONS}
    assert present(store, 1, "user", LIVE) == LIVE
    assert present(store, two, "user", LIVE) == LIVE
    assert generations.read().building == two
    assert generations.abandon(claim)

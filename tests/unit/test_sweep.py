"""The sweep and the rebuild's clean-up on fakeredis (issue 26, items 1 and 6); the real-Redis
and Cluster interleavings are in tests/integration/test_sweep.py."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
import redis

from adapters.generations import ClaimLost, FillLost, Generations, RebuildRunning
from adapters.marks import WritesLost
from adapters.store import ProjectionStore
from consumer.replay import Rebuild
from domain import Name, PhoneNumber, User
from tests.helpers import save_written, wait_until


def fill(store: ProjectionStore, generation: int, count: int) -> list[str]:
    keys = [store.key(generation, f"user {i:04d}") for i in range(count)]
    for i, key in enumerate(keys):
        store.client.set(key, f"1,0,{i},+0,9000000000,user {i:04d}")
    return keys


def in_generation(store: ProjectionStore, generation: int) -> int:
    return len(set(store.scan_users(generation)))


def test_a_flip_in_the_middle_of_a_sweep_keeps_the_new_live_positions_and_keys(store, monkeypatch):
    generations = Generations(store)
    generations.ensure()
    fill(store, 1, 200)
    two, claim = generations.start(lease_ms=60_000)
    epoch = generations.read().epoch
    generations.flip(claim, two, epoch)
    assert save_written(generations, generations.read(), {0: 7, 1: 9})
    real, flipped = store.unlink, []

    def unlink(keys):
        deleted = real(keys)
        if not flipped:  # after the sweep's first batch: a replay claims, builds and flips
            three, claim = generations.start(lease_ms=60_000)
            fill(store, three, 20)
            flipped.append(generations.flip(claim, three, epoch))
        return deleted

    monkeypatch.setattr(store, "unlink", unlink)
    generations.sweep(batch=10)
    assert flipped == [2]
    assert generations.all_positions(3) == {0: 7, 1: 9}
    assert in_generation(store, 3) == 20
    assert in_generation(store, 1) == 0 and generations.all_positions(1) == {}


def test_positions_of_the_live_and_the_claimed_generation_are_never_dropped(store):
    generations = Generations(store)
    generations.ensure()
    _two, claim = generations.start(lease_ms=60_000)
    for generation in (1, 2, 3, 4):
        store.client.hset(f"{generations.pos_prefix}{generation}", "0", generation)
    generations.sweep(only=2)
    generations.sweep()
    assert [bool(generations.all_positions(g)) for g in (1, 2, 3, 4)] == [True, True, False, False]
    assert generations.abandon(claim)


def test_without_a_pointer_nothing_is_known_dead_and_nothing_is_deleted(store):
    generations = Generations(store)
    fill(store, 1, 3)
    fill(store, 2, 3)
    store.client.hset(f"{generations.pos_prefix}1", "0", 5)
    assert generations.sweep() == 0
    assert in_generation(store, 1) == in_generation(store, 2) == 3
    assert generations.all_positions(1) == {0: 5}


def test_a_stray_generation_number_is_retired_then_swept(store):
    generations = Generations(store)
    generations.ensure()
    fill(store, 5, 4)  # e.g. a consumer's last batch under a pointer from before a wipe
    assert generations.sweep() == 4
    target, claim = generations.start(lease_ms=60_000)
    assert target == 6  # never 5 again: a number the sweep judged dead stays dead
    assert generations.abandon(claim)


def test_one_pass_over_the_keyspace_takes_dead_keys_and_positions_and_nothing_of_other_prefixes(store, monkeypatch):
    generations = Generations(store)
    generations.ensure()
    fill(store, 1, 30)
    two, claim = generations.start(lease_ms=60_000)
    generations.flip(claim, two, generations.read().epoch)
    fill(store, 2, 5)
    store.client.hset(f"{generations.pos_prefix}1", "0", 7)
    store.client.hset(f"{generations.pos_prefix}fill:1", "0", 7)
    others = [b"bums:1:user 0001", b"ums1:1:x", b"x{ums}:pos:1", b"{ums}x:pos:1", b"other:ums:1:x"]
    for key in others:
        store.client.set(key, b"theirs")
    passes, real = [], store.client.scan

    def scan(cursor=0, **kwargs):
        if cursor in (0, "0"):  # a new pass
            passes.append(kwargs.get("match"))
        return real(cursor, **kwargs)

    monkeypatch.setattr(store.client, "scan", scan)
    assert generations.sweep(batch=7) == 30
    assert len(passes) == 1  # each SCAN pass walks every key of Redis, matching or not
    assert in_generation(store, 1) == 0 and in_generation(store, 2) == 5
    assert not store.client.exists(f"{generations.pos_prefix}1", f"{generations.pos_prefix}fill:1")
    assert all(store.client.get(key) == b"theirs" for key in others)


def test_start_without_a_pointer_says_there_is_no_projection(store, monkeypatch):
    generations = Generations(store)
    monkeypatch.setattr(generations, "ensure", lambda: None)  # Redis wiped just after ensure()
    with pytest.raises(Exception) as failed:
        generations.start(lease_ms=60_000)
    assert not isinstance(failed.value, RebuildRunning), str(failed.value)
    assert "no projection" in str(failed.value)
    assert store.client.get(generations.rebuild_key) is None


class FailingMySQL:
    """A backfill source whose connection drops after the first chunk."""

    def count(self) -> int:
        return 10

    def stream(self, chunk: int = 1000):
        now = datetime(2024, 1, 1, tzinfo=UTC)
        yield [User(Name(f"Backfill User {i}"), PhoneNumber(9_100_000_000 + i), now) for i in range(5)]
        raise redis.ConnectionError("the source went away")


def failing_rebuild(settings, store, lease_s: float) -> Rebuild:
    Generations(store).ensure()
    custom = dataclasses.replace(settings, rebuild_lease_s=lease_s)
    return Rebuild(custom, store, FailingMySQL(), from_kafka=False, tty=False)  # type: ignore[arg-type]


def test_an_abandon_whose_reply_is_lost_still_deletes_the_generation(settings, store, monkeypatch):
    rebuild = failing_rebuild(settings, store, 30.0)
    real = rebuild.generations.abandon

    def abandon_reply_lost(claim: str) -> bool:
        real(claim)
        raise redis.ConnectionError("reply lost")

    monkeypatch.setattr(rebuild.generations, "abandon", abandon_reply_lost)
    with pytest.raises(redis.ConnectionError, match="went away"):
        rebuild.run()
    assert rebuild.generations.read().building is None
    assert in_generation(store, 2) == 0


def test_a_failed_abandon_leaves_the_generation_to_the_next_gc(settings, store, monkeypatch):
    rebuild = failing_rebuild(settings, store, 0.3)
    monkeypatch.setattr(rebuild.generations, "abandon", lambda claim: (_ for _ in ()).throw(redis.ConnectionError()))
    with pytest.raises(redis.ConnectionError, match="went away"):
        rebuild.run()
    generations = Generations(store)
    assert generations.read().building == 2 and in_generation(store, 2) == 5  # still claimed: spared
    wait_until(lambda: generations.read().building is None, 10, "the failed rebuild's lease to expire")
    assert generations.sweep() == 5  # `ums-find gc`
    assert in_generation(store, 2) == 0 and store.live_generation() == 1


def test_a_rebuild_whose_marks_went_back_never_flips_and_its_marks_are_swept(store):
    generations = Generations(store)
    generations.ensure()
    two, claim = generations.start(lease_ms=60_000)
    epoch = generations.read().epoch
    marked: dict[str, int] = {}
    for marks in ({"0": 50, "1": 40}, {"0": 100}):
        store.send_mark(generations.mark(two, marks, marked))
        marked.update(marks)
    store.client.hset(f"{generations.pos_prefix}fill:{two}", "1", 10)  # Redis went back
    with pytest.raises(WritesLost) as lost:
        store.send_mark(generations.mark(two, {"0": 150}, marked))  # the next batch's mark sees it
    assert lost.value.behind == {"1": (40, 10)}
    assert isinstance(generations.lost_rebuild(two, lost.value), FillLost)  # the claim is still held
    with pytest.raises(FillLost):  # and so does the flip, marks or not
        generations.flip(claim, two, epoch, {"0": 100, "1": 40})
    assert generations.read().live == 1
    generations.abandon(claim)
    assert not isinstance(generations.lost_rebuild(two, lost.value), FillLost)  # a lost claim, said so
    generations.sweep()
    assert not store.client.exists(f"{generations.pos_prefix}fill:{two}")


def test_a_whole_rebuild_flips_and_keeps_only_its_mysql_mark(store):
    generations = Generations(store)
    generations.ensure()
    two, claim = generations.start(lease_ms=60_000)
    store.send_mark(generations.mark(two, {"0": 100, "mysql": 2000}))
    assert generations.flip(claim, two, generations.read().epoch, {"0": 100, "mysql": 2000}) == 1
    assert generations.read().live == two
    # The partitions' marks go; the MySQL one stays, to say a snapshot filled it (consumer/gaps.py).
    assert store.client.hgetall(f"{generations.pos_prefix}fill:{two}") == {b"mysql": b"2000"}
    assert generations.all_positions(two) == {}  # the marks never mix with positions


def test_a_wipe_right_after_the_claim_is_a_lost_claim_not_a_crash(settings, store, monkeypatch):
    """Seen once in tests/faults/test_recovery.py::test_wipe_during_a_replay: FLUSHALL between the claim and
    the pointer's read failed the replay with an AssertionError (exit 1) instead of ClaimLost (exit 3)."""
    rebuild = failing_rebuild(settings, store, 30.0)
    real = rebuild.generations.start

    def start_then_wipe(lease_ms: int) -> tuple[int, str]:
        claimed = real(lease_ms)
        store.client.flushall()
        return claimed

    monkeypatch.setattr(rebuild.generations, "start", start_then_wipe)
    with pytest.raises(ClaimLost, match="vanished right after the claim"):
        rebuild.run()

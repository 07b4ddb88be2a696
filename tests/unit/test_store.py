from datetime import UTC, datetime

import fakeredis
import pytest

from adapters.generations import Generations
from adapters.store import ProjectionStore
from adapters.values import format_value, parse_value
from domain import Name, PhoneNumber, User, UserAdded, UserRemoved, Version

GEN = 1


@pytest.fixture
def store():
    return ProjectionStore(fakeredis.FakeRedis(), prefix="t")


def added(phone, since_ms, partition=0, offset=0, name="Alice Smith"):
    since = datetime.fromtimestamp(since_ms / 1000, UTC)
    return UserAdded(User(Name(name), PhoneNumber(phone), since), Version(since_ms, partition, offset))


def test_encode_decode_round_trip():
    event = added(9000000001, 1_700_000_000_123, 3, 42, name="Ana, de la Cruz")
    stored = parse_value(format_value(event), event.key)
    assert stored.version == event.version
    assert stored.user == event.user


def test_since_apart_from_the_version_time_round_trips():
    user = User(Name("Ana de la Cruz"), PhoneNumber(9000000001), datetime(2020, 5, 1, tzinfo=UTC))
    for time_ms in (1_700_000_000_123, user.since_ms - 5000):  # published long after, or a little before
        event = UserAdded(user, Version(time_ms, 3, 42))
        stored = parse_value(format_value(event), event.key)
        assert stored.version == event.version
        assert stored.user == user


def test_values_written_before_the_since_delta_still_decode():
    stored = parse_value(b"1700000000123,3,42,9000000001,Ana, de la Cruz", "ana, de la cruz")
    assert stored.version == Version(1_700_000_000_123, 3, 42)
    assert stored.user.name.value == "Ana, de la Cruz"
    assert stored.user.since_ms == 1_700_000_000_123


def test_newer_event_replaces_and_older_is_fenced(store):
    assert store.apply([added(9000000001, 2000)], GEN) == 1
    assert store.apply([added(9000000002, 1000)], GEN) == 0
    assert store.get("alice smith", GEN).user.phone.value == 9000000001
    assert store.apply([added(9000000003, 3000)], GEN) == 1
    assert store.get("alice smith", GEN).user.phone.value == 9000000003


def test_same_event_twice_applies_once(store):
    event = added(9000000001, 2000, 1, 5)
    assert store.apply([event, event], GEN) == 1
    assert store.apply([event], GEN) == 0


def test_tie_on_time_goes_to_the_higher_partition_then_offset(store):
    store.apply([added(9000000001, 2000, 1, 9)], GEN)
    assert store.apply([added(9000000002, 2000, 0, 99)], GEN) == 0
    assert store.apply([added(9000000003, 2000, 1, 10)], GEN) == 1
    assert store.get("alice smith", GEN).user.phone.value == 9000000003


def test_tombstone_hides_the_user_and_fences_older_adds(store):
    store.apply([added(9000000001, 2000)], GEN)
    store.apply([UserRemoved("Alice Smith", Version(3000, 0, 1))], GEN)
    assert store.get("alice smith", GEN).user is None
    assert store.apply([added(9000000002, 2500, 2, 0)], GEN) == 0


def test_generations_are_separate(store):
    store.apply([added(9000000001, 2000)], 1)
    assert store.get("alice smith", 2) is None


def test_live_generation_starts_at_one_with_a_new_epoch(store):
    generations = Generations(store)
    assert store.live_generation() is None
    first, created = generations.ensure()
    assert (first.live, created) == (1, True)
    again, created = generations.ensure()
    assert (again, created) == (first, False)
    store.client.delete(store.pointer_key)
    assert generations.ensure()[0].epoch != first.epoch


def test_script_calls_hold_at_most_per_call_users(store):
    events = [added(9_000_000_000 + i, 1_000 + i, name=f"User {i:03d}") for i in range(120)]
    sizes = [len(keys) for keys, _ in store.calls(((e.key, e) for e in events), GEN, per_call=50)]
    assert sizes == [50, 50, 20]


def test_smaller_script_calls_write_the_same_users(store):
    events = [added(9_000_000_000 + i, 1_000 + i, name=f"User {i:03d}") for i in range(30)]
    assert store.apply(events, GEN, per_call=7) == 30
    assert store.apply(events, 2) == 30
    for e in events:
        assert store.get(e.key, GEN) == store.get(e.key, 2)

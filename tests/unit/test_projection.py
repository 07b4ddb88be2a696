import random
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from domain import Name, PhoneNumber, User, UserAdded, UserRemoved, Version, newer, newest_per_user

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def added(name, phone, since_ms, partition=0, offset=0):
    user = User(Name(name), PhoneNumber(phone), T0)
    return UserAdded(
        User(user.name, user.phone, datetime.fromtimestamp(since_ms / 1000, UTC)), Version(since_ms, partition, offset)
    )


def test_newer_event_wins_and_duplicates_change_nothing():
    assert newer(Version(2, 0, 0), Version(1, 5, 9))
    assert not newer(Version(1, 0, 0), Version(1, 0, 0))
    assert not newer(Version(1, 0, 0), Version(2, 0, 0))
    assert newer(Version(1, 0, 0), None)


def test_equal_times_are_broken_by_partition_then_offset():
    assert newer(Version(5, 1, 0), Version(5, 0, 99))
    assert newer(Version(5, 1, 7), Version(5, 1, 6))


def test_mysql_rows_lose_ties_with_kafka_events():
    assert newer(Version(5, 0, 0), Version.from_mysql(5))
    assert not newer(Version.from_mysql(5), Version(5, 0, 0))


def test_tombstone_removes_and_older_add_does_not_resurrect():
    events = [
        added("Alice Smith", 9000000001, 10),
        UserRemoved("alice smith", Version(20, 0, 1)),
        added("Alice Smith", 9000000002, 15, 1, 0),
    ]
    view = newest_per_user(events)
    assert isinstance(view["alice smith"], UserRemoved)


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["Alice Smith", "alice smith ", "Bob Brown1", "Carol King"]),
        st.integers(9_000_000_000, 9_000_000_100),
        st.integers(0, 50),
        st.integers(0, 3),
    ),
    max_size=40,
)


@given(events_strategy, st.randoms())
def test_any_order_and_any_duplication_converge(raw, rnd):
    # A (partition, offset) names one Kafka message, so each event gets its own offset.
    events = [added(n, p, s, part, offset) for offset, (n, p, s, part) in enumerate(raw)]
    shuffled = events + rnd.sample(events, k=len(events) // 2)
    random.Random(rnd.random()).shuffle(shuffled)
    assert newest_per_user(shuffled) == newest_per_user(events)

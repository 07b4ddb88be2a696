"""Property test of the fenced write on the real Redis: order and duplication never matter."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from domain import Name, PhoneNumber, User, UserAdded, UserRemoved, Version, newest_per_user
from tests.faults.rig import compare, snapshot

GENERATIONS = itertools.count(1000)
NAMES = ["Alice Smith", "alice smith  ", "Bob Brown 1", "Carol King", "Dave Jones"]

raw_events = st.lists(
    st.tuples(
        st.sampled_from(NAMES),
        st.integers(9_000_000_000, 9_000_000_050),
        st.integers(0, 30),
        st.integers(0, 5),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


def build(raw):
    events = []
    for offset, (name, phone, since, partition, removed) in enumerate(raw):
        version = Version(since, partition, offset)  # a (partition, offset) is one message
        if removed:
            events.append(UserRemoved(name, version))
        else:
            user = User(Name(name), PhoneNumber(phone), datetime.fromtimestamp(since / 1000, UTC))
            events.append(UserAdded(user, version))
    return events


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=raw_events, data=st.data())
def test_any_interleaving_converges_to_the_newest_version(store, raw, data):
    generation = next(GENERATIONS)  # a fresh, empty generation per example
    events = build(raw)
    delivered = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=20))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(delivered)), max_size=5)))
    for start, end in zip([0, *cuts], [*cuts, len(delivered)], strict=True):
        store.apply(delivered[start:end], generation)
    expected = newest_per_user(events)
    projected = snapshot(store, generation)
    assert compare(expected, projected).ok
    # Applying everything once more changes nothing.
    assert store.apply(events, generation) == 0
    assert snapshot(store, generation) == projected

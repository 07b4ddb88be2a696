import json
from datetime import UTC, datetime

import pytest

from consumer.decode import Envelope, PoisonEvent, decode
from domain import UserAdded, UserRemoved, Version

TS = 1_700_000_000_000


def msg(value, key=None, partition=2, offset=7, ts=TS):
    if isinstance(value, dict):
        value = json.dumps(value).encode()
    return Envelope(key, value, partition, offset, ts)


def test_addservice_event_with_epoch_millis():
    event = decode(msg({"name": "Krishna Mohan", "phone": 9731423166, "since": 1_662_000_000_123}))
    assert isinstance(event, UserAdded)
    assert event.user.name.value == "Krishna Mohan"
    assert event.user.phone.value == 9731423166
    # The version's time is the Kafka timestamp; `since` is the user's data.
    assert event.version == Version(TS, 2, 7)
    assert event.user.since_ms == 1_662_000_000_123
    assert event.key == "krishna mohan"


@pytest.mark.parametrize(
    "since, expected",
    [
        ("2022-09-01T10:00:00Z", datetime(2022, 9, 1, 10, tzinfo=UTC)),
        ("2022-09-01T15:30:00+05:30", datetime(2022, 9, 1, 10, tzinfo=UTC)),
        ("2022-09-01 10:00:00", datetime(2022, 9, 1, 10, tzinfo=UTC)),
        ("2022-09-01T10:00:00.250", datetime(2022, 9, 1, 10, 0, 0, 250_000, tzinfo=UTC)),
        ([2022, 9, 1, 10, 0, 0, 250_000_000], datetime(2022, 9, 1, 10, 0, 0, 250_000, tzinfo=UTC)),
        ([2022, 9, 1, 10, 0], datetime(2022, 9, 1, 10, tzinfo=UTC)),
    ],
)
def test_since_formats(since, expected):
    event = decode(msg({"name": "Krishna Mohan", "phone": 9731423166, "since": since}))
    assert event.user.since == expected


def test_missing_since_uses_the_message_timestamp():
    event = decode(msg({"name": "Krishna Mohan", "phone": 9731423166}))
    assert event.version.time_ms == TS


def test_tombstone_with_key_removes_the_user():
    event = decode(msg(None, key=b"Krishna Mohan"))
    assert isinstance(event, UserRemoved)
    assert event.key == "krishna mohan"
    assert event.version == Version(TS, 2, 7)


@pytest.mark.parametrize(
    "value, key, code",
    [
        (None, None, "null-value"),
        (b"{not json", None, "invalid-json"),
        (b"\xff\xfe", None, "invalid-json"),
        (b"[1, 2]", None, "invalid-event"),
        ({"phone": 9731423166}, None, "missing-field"),
        ({"name": "Krishna Mohan"}, None, "missing-field"),
        ({"name": "short", "phone": 9731423166}, None, "invalid-name"),
        ({"name": "Krishna\u202eMohan", "phone": 9731423166}, None, "invalid-name"),
        ({"name": "Krishna\x00Mohan", "phone": 9731423166}, None, "invalid-name"),
        ({"name": 12345678, "phone": 9731423166}, None, "invalid-name"),
        ({"name": "Krishna Mohan", "phone": 12345}, None, "invalid-phone"),
        ({"name": "Krishna Mohan", "phone": "9731423166"}, None, "invalid-phone"),
        ({"name": "Krishna Mohan", "phone": 9731423166, "since": "yesterday"}, None, "invalid-since"),
        ({"name": "Krishna Mohan", "phone": 9731423166, "since": -5}, None, "invalid-since"),
        ({"name": "Krishna Mohan", "phone": 9731423166, "since": True}, None, "invalid-since"),
        ({"name": "Krishna Mohan", "phone": 9731423166}, b"Someone Else", "key-mismatch"),
        (None, b"tiny", "invalid-name"),
        (b"x" * 70_000, None, "oversized"),
    ],
)
def test_poison(value, key, code):
    with pytest.raises(PoisonEvent) as info:
        decode(msg(value, key=key))
    assert info.value.code == code


def test_key_equal_to_the_name_is_accepted():
    event = decode(msg({"name": "Krishna Mohan", "phone": 9731423166}, key=b"krishna mohan "))
    assert event.key == "krishna mohan"


SKEW = 300_000


def test_since_further_ahead_of_the_timestamp_than_the_skew_is_poison():
    ahead = {"name": "Krishna Mohan", "phone": 9731423166, "since": TS + SKEW + 1}
    with pytest.raises(PoisonEvent) as bad:
        decode(msg(ahead), max_skew_ms=SKEW)
    assert bad.value.code == "since-in-future"
    within = decode(msg({**ahead, "since": TS + SKEW}), max_skew_ms=SKEW)
    assert within.version.time_ms == TS  # accepted, and it cannot pin the user: the time is TS


def test_year_2100_since_is_poison():
    with pytest.raises(PoisonEvent) as bad:
        decode(msg({"name": "Krishna Mohan", "phone": 9731423166, "since": "2100-01-01T00:00:00Z"}))
    assert bad.value.code == "since-in-future"


def outcome(envelope):
    try:
        return decode(envelope)
    except PoisonEvent as exc:
        return exc.code, str(exc)


def test_decoding_does_not_read_the_clock(monkeypatch):
    """The determinism rule: the same message decodes the same live, after downtime, or in a replay."""
    future = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)
    messages = [
        msg({"name": "Krishna Mohan", "phone": 9731423166}, ts=future),
        msg(None, key=b"Krishna Mohan", ts=future),
        msg({"name": "Krishna Mohan", "phone": 9731423166, "since": future + SKEW + 1}, ts=future),
        msg({"name": "Krishna Mohan", "phone": 9731423166, "since": TS}, ts=TS),
    ]
    outcomes = []
    for now in (0.0, TS / 1000, future / 1000 + 86_400):
        monkeypatch.setattr("time.time", lambda now=now: now)
        monkeypatch.setattr("time.time_ns", lambda now=now: int(now * 1e9))
        outcomes.append([outcome(m) for m in messages])
    assert outcomes[0] == outcomes[1] == outcomes[2]
    put, tombstone, since_ahead, _ = outcomes[0]
    # A timestamp far ahead is the broker's to refuse (message.timestamp.after.max.ms), not decode's.
    assert isinstance(put, UserAdded) and put.version.time_ms == future
    assert isinstance(tombstone, UserRemoved) and tombstone.version.time_ms == future
    assert since_ahead[0] == "since-in-future"


def test_without_a_timestamp_since_stands_in():
    event = decode(msg({"name": "Krishna Mohan", "phone": 9731423166, "since": 1_662_000_000_123}, ts=None))
    assert event.version == Version(1_662_000_000_123, 2, 7)


def test_puts_and_tombstones_are_ordered_by_one_clock():
    from domain import newest_per_user

    # A put re-published late with an old `since`, a tombstone before it, one after it.
    put = decode(msg({"name": "Krishna Mohan", "phone": 9731423166, "since": TS - 10**9}, partition=0, offset=5))
    before = decode(msg(None, key=b"Krishna Mohan", partition=1, offset=1, ts=TS - 1))
    after = decode(msg(None, key=b"Krishna Mohan", partition=1, offset=2, ts=TS + 1))
    assert isinstance(newest_per_user([before, put])["krishna mohan"], UserAdded)
    assert isinstance(newest_per_user([after, put])["krishna mohan"], UserRemoved)

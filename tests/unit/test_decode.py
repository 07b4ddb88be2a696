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
    assert event.version == Version(1_662_000_000_123, 2, 7)
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
    assert event.version.since_ms == TS


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

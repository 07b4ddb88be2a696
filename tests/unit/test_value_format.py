"""The two value formats (adapters/values.py): round trips, the compact size, and the fence across both."""

from datetime import UTC, datetime

import fakeredis
import pytest

from adapters.settings import Settings
from adapters.store import ProjectionStore
from adapters.values import format_compact, format_value, parse_value
from domain import Name, PhoneNumber, User, UserAdded, UserRemoved, Version
from domain.events import MYSQL_PARTITION, REPAIR_PARTITION
from domain.model import PHONE_MIN

GEN = 1
JAVA_LONG_MAX = 2**63 - 1


def added(name="Alice Smith", phone=9000000001, since_ms=1_700_000_000_000, version=None):
    user = User(Name(name), PhoneNumber(phone), datetime.fromtimestamp(since_ms / 1000, UTC))
    return UserAdded(user, version or Version(since_ms + 7, 3, 42))


@pytest.fixture
def client():
    return fakeredis.FakeRedis()


EVENTS = [
    added(),  # the name is the key in title case
    added(name="alice smith"),  # the name is the key
    added(name="Ana, de la Cruz"),  # neither: the name follows
    added(name="José Álvarez Núñez"),  # not ASCII: the name follows
    added(name="  Padded Name  "),  # spaces at the ends are kept
    added(phone=JAVA_LONG_MAX),
    added(since_ms=-86_400_000, version=Version(1_700_000_000_000, 0, 0)),  # since before 1970
    added(since_ms=1_700_000_005_000, version=Version(1_700_000_000_000, 0, 0)),  # sent before its since
    added(version=Version(1_700_000_000_000, MYSQL_PARTITION, 0)),  # backfilled from MySQL
    added(version=Version(1_700_000_000_000, REPAIR_PARTITION, 0)),  # written by reconcile --repair
    added(since_ms=253_402_300_799_000, version=Version(2**48 - 1, 65533, 2**48 - 1)),  # the largest version
    UserRemoved("Alice Smith", Version(1_700_000_000_000, 5, 99)),
]


@pytest.mark.parametrize("event", EVENTS)
def test_compact_values_round_trip(event):
    raw = format_compact(event)
    assert isinstance(raw, bytes) and raw[0] < ord("-")
    stored = parse_value(raw, event.key)
    assert stored.version == event.version
    assert stored.user == getattr(event, "user", None)


def layout(event):
    """The compact bytes spelled out field by field from adapters/values.py's docstring: the stored format."""
    t, p, o = event.version
    head = t.to_bytes(6, "big") + (65535 if p == REPAIR_PARTITION else p + 1).to_bytes(2, "big") + o.to_bytes(6, "big")
    if isinstance(event, UserRemoved):
        return b"\0" + head
    user = event.user
    phone = user.phone.value.to_bytes((user.phone.value.bit_length() + 7) // 8, "big")
    delta = (t - user.since_ms).to_bytes(6, "big", signed=True)
    key = event.key
    form, name = (
        (1, b"")
        if user.name.value == key
        else (2, b"")
        if key.title() == user.name.value
        else (0, user.name.value.encode())
    )
    return bytes([len(phone) * 4 + form]) + head + delta + phone + name


@pytest.mark.parametrize(
    "event",
    [*EVENTS, added(phone=PHONE_MIN), added(phone=2**40 - 1), added(phone=2**40), added(name="o'brien-smith Mc")],
)
def test_the_compact_bytes_are_the_documented_layout(event):
    # Values already in Redis must stay readable: the encoder may change, the bytes may not.
    assert format_compact(event) == layout(event)


def test_bytes_title_is_str_title_on_ascii():
    # The encoder tests title case on the key's bytes (cheaper); each character's case depends only
    # on itself and whether the one before it is cased, so every pair covers every string.
    chars = [chr(c) for c in range(128)]
    for a in chars:
        for b in chars:
            assert (a + b).encode().title() == (a + b).title().encode()


@pytest.mark.parametrize(
    "version",
    [Version(-1, 0, 0), Version(2**48, 0, 0), Version(1, 65534, 0), Version(1, 0, 2**48)],
)
def test_a_version_the_compact_format_cannot_hold_is_written_as_text(version):
    event = added(version=version)
    raw = format_compact(event)
    assert raw == format_value(event)
    assert parse_value(raw.encode(), event.key) == parse_value(format_value(event), event.key)


def test_a_derived_name_with_a_twelve_digit_phone_fits_in_28_bytes():
    # 28 bytes is what Redis keeps beside the value's object in one 48-byte allocation.
    assert len(format_compact(added(name="Bench User 00000001", phone=919_876_543_210))) == 26
    assert len(format_compact(added(name="bench user 00000001", phone=999_999_999_999_999))) == 28  # E.164: 15 digits
    assert len(format_value(added(name="Bench User 00000001", phone=919_876_543_210))) > 44


def test_a_name_that_needs_its_own_bytes_still_costs_less_than_text():
    event = added(name="Ana, de la Cruz")
    assert len(format_compact(event)) < len(format_value(event).encode())


def test_the_fence_compares_versions_across_the_two_formats(client):
    compact = ProjectionStore(client, "t", "compact")
    text = ProjectionStore(client, "t", "text")
    older, newer = (
        added(phone=9000000000 + n, version=Version(1_700_000_000_000, p, o))
        for n, (p, o) in ((1, (2, 500)), (2, (3, 7)))
    )
    # text stored, compact arrives: newer replaces, older is fenced, and the same the other way round
    assert text.apply([older], GEN) == 1
    assert compact.apply([newer], GEN) == 1
    assert text.apply([older], GEN) == 0
    assert compact.get(newer.key, GEN).user == newer.user
    assert compact.apply([older], 2) == 1
    assert text.apply([newer], 2) == 1
    assert compact.apply([older], 2) == 0
    assert text.get(newer.key, 2).user == newer.user


def test_the_fence_orders_backfill_events_and_repairs_as_the_domain_does(client):
    store = ProjectionStore(client, "t")
    at = 1_700_000_000_000
    ordered = [
        Version(at, MYSQL_PARTITION, 0),
        Version(at, 0, 5),
        Version(at, 65533, 1),
        Version(at, REPAIR_PARTITION, 0),
        Version(at + 1, MYSQL_PARTITION, 0),
    ]
    assert ordered == sorted(ordered)
    for n, version in enumerate(ordered):
        assert store.apply([added(phone=9000000000 + n, version=version)], GEN) == 1
        for earlier in ordered[:n]:
            assert store.apply([added(phone=9100000000, version=earlier)], GEN) == 0
    assert store.get("alice smith", GEN).user.phone.value == 9000000000 + len(ordered) - 1


def test_a_compact_store_holds_compact_values_and_a_text_store_text(client):
    event = added()
    ProjectionStore(client, "c", "compact").apply([event], GEN)
    ProjectionStore(client, "x", "text").apply([event], GEN)
    assert client.get(f"c:{GEN}:alice smith") == format_compact(event)
    assert client.get(f"x:{GEN}:alice smith") == format_value(event).encode()


def test_an_unknown_value_format_is_refused():
    with pytest.raises(ValueError, match="UMS_VALUE_FORMAT"):
        Settings.from_env({"UMS_VALUE_FORMAT": "binary"})
    with pytest.raises(ValueError, match="value format"):
        ProjectionStore(fakeredis.FakeRedis(), "t", "json")


@pytest.mark.parametrize("raw", [b"\x1a\x00\x01", b"\x00" + bytes(10), b"v9:a value of a later release"])
def test_a_value_in_no_known_format_is_a_value_error(raw):
    with pytest.raises(ValueError):
        parse_value(raw, "alice smith")

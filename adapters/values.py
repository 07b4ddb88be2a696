"""A user's stored value: the compact and the text format, written and read (adapters/store.py holds the keys).

compact (UMS_VALUE_FORMAT=compact, the default; bytes, big-endian):
    byte 0      phone length * 4 + name form; 0: a tombstone (nothing follows the version)
    1-6, 7-8, 9-14   the version: time, partition + 1 (65535: a repair), offset
    15-20       time - since (signed), then the phone, then the name in UTF-8 unless
                its form says it is the key itself (1) or the key in ASCII title case (2)
    At most 28 bytes when the name is derived: Redis then keeps value and object in one
    48-byte allocation, 120 B per user in all (docs/decisions.md "Memory per user").
text (UMS_VALUE_FORMAT=text, and any version the compact one cannot hold):
    "time,partition,offset,±delta,phone,name" (since = time - delta; phone and name
    empty: a tombstone). Readable in redis-cli; ~168 B per user.
Readers and the fence read both, whatever the setting: a compact value's first byte
is below "-", a text value starts with "-" or a digit.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from domain import Name, PhoneNumber, User, UserRemoved, Version
from domain.events import REPAIR_PARTITION
from domain.projection import Event


@dataclass(frozen=True)
class Stored:
    """What the projection holds for one user: a version and a user (None: removed)."""

    version: Version
    user: User | None


def format_value(event: Event) -> str:
    """The text format: readable, ~65 bytes for a user with a 20-character name."""
    v = event.version
    head = f"{v.time_ms},{v.partition},{v.offset},"
    if isinstance(event, UserRemoved):
        return head + "+0,,"
    # `since` as a signed distance from the event time: usually a few characters.
    return f"{head}{v.time_ms - event.user.since_ms:+d},{event.user.phone.value},{event.user.name.value}"


BITS48 = 1 << 48
HALF48 = BITS48 // 2
REPAIR_CODE = 0xFFFF
NAME_FOLLOWS, NAME_IS_KEY, NAME_IS_TITLED_KEY = 0, 1, 2
# The first 21 bytes: first byte, time (2 + 4 bytes), partition code, offset (2 + 4), delta (2 + 4, signed).
HEAD = struct.Struct(">BHIHHIhI")
# The same bytes packed from fewer, wider fields (time << 16 | code; offset << 16 | delta's top 16 bits;
# delta's low 32 bits): the encoder's one `pack`, ~0.1 us less per event than HEAD's eight fields.
HEAD_WIDE = struct.Struct(">BQQI")
# ... and a 5-byte phone after them: every phone from PHONE_MIN (above 2**33) to 2**40 - 1, in one `pack`.
HEAD_PHONE5 = struct.Struct(">BQQIBI")
PHONE5_END = 1 << 40
LOW32 = 0xFFFFFFFF


def format_compact(event: Event) -> bytes | str:
    """The compact format (module docstring); the text one for what it cannot hold."""
    t, p, o = event.version
    if not (0 <= t < BITS48 and 0 <= o < BITS48):
        return format_value(event)
    if p == REPAIR_PARTITION:
        code = REPAIR_CODE
    elif -1 <= p < REPAIR_CODE - 1:
        code = p + 1
    else:
        return format_value(event)
    if isinstance(event, UserRemoved):
        return HEAD_WIDE.pack(0, t << 16 | code, o << 16, 0)[:15]
    user = event.user
    delta = t - user.since_ms
    if not -HALF48 <= delta < HALF48:
        return format_value(event)
    name, key = user.name.value, user.name.canonical
    # Title case is derived only for ASCII: str.title() of other scripts may change between
    # Python's Unicode versions, and a reader on another version must derive the same name.
    # bytes.title() is str.title() on ASCII (tests/unit/test_value_format.py checks every pair
    # of ASCII characters) without str.title()'s Unicode lookups: 0.09 us against 0.15.
    if name == key:
        form, tail = NAME_IS_KEY, b""
    elif key.isascii() and key.encode().title() == name.encode():
        form, tail = NAME_IS_TITLED_KEY, b""
    else:
        form, tail = NAME_FOLLOWS, name.encode()
    phone = user.phone.value
    middle = o << 16 | (delta >> 32) & 0xFFFF
    if phone < PHONE5_END:
        return HEAD_PHONE5.pack(20 + form, t << 16 | code, middle, delta & LOW32, phone >> 32, phone & LOW32) + tail
    size = (phone.bit_length() + 7) >> 3
    return HEAD_WIDE.pack(size * 4 + form, t << 16 | code, middle, delta & LOW32) + phone.to_bytes(size, "big") + tail


def is_compact(raw: bytes | str) -> TypeGuard[bytes]:
    """A compact value's first byte is below "-"; a text one starts with "-" or a digit."""
    return isinstance(raw, bytes) and b"" < raw[:1] < b"-"


def parse_value(raw: bytes | str, key: str) -> Stored:
    """A stored value in either format; `key` is the user's canonical name, the end of its Redis key."""
    if is_compact(raw):
        return _parse_compact(raw, key)
    text = raw.decode() if isinstance(raw, bytes) else raw
    time_ms, partition, offset, delta, rest = text.split(",", 4)
    version = Version(int(time_ms), int(partition), int(offset))
    if delta[:1] not in ("+", "-"):  # written before `since` and the version time were apart
        phone, name, since_ms = delta, rest, version.time_ms
    else:
        (phone, name), since_ms = rest.split(",", 1), version.time_ms - int(delta)
    if not phone:
        return Stored(version, None)
    return Stored(version, User.at_epoch_ms(Name(name), PhoneNumber(int(phone)), since_ms))


def _parse_compact(raw: bytes, key: str) -> Stored:
    size, form = divmod(raw[0], 4)
    if len(raw) < (21 + size if size else 15):
        raise ValueError(f"a compact value cut short ({len(raw)} bytes)")
    # A tombstone is the version alone (15 bytes): padded so that one layout reads both.
    _, t_high, t_low, code, o_high, o_low, delta_high, delta_low = HEAD.unpack_from(raw.ljust(HEAD.size, b"\0"))
    time_ms = t_high << 32 | t_low
    version = Version(time_ms, REPAIR_PARTITION if code == REPAIR_CODE else code - 1, o_high << 32 | o_low)
    if not size:
        return Stored(version, None)
    phone = int.from_bytes(raw[21 : 21 + size], "big")
    name = raw[21 + size :].decode() if form == NAME_FOLLOWS else key if form == NAME_IS_KEY else key.title()
    since_ms = time_ms - (delta_high << 32 | delta_low)
    return Stored(version, User.at_epoch_ms(Name(name), PhoneNumber(phone), since_ms))


def describe(raw: bytes | None, key: str) -> dict[str, Any]:
    """A stored value for people (`ums-find show`): its format, size, version and user, or why it is unreadable."""
    if raw is None:
        return {"held": None}
    out: dict[str, Any] = {"format": "compact" if is_compact(raw) else "text", "bytes": len(raw)}
    try:
        stored = parse_value(raw, key)
    except ValueError as exc:
        return {**out, "unreadable": str(exc), "raw": raw.hex()}
    user = stored.user
    held = {"name": user.name.value, "phone": user.phone.value, "since_ms": user.since_ms} if user else "removed"
    return {**out, "version": stored.version._asdict(), "held": held}


VALUE_FORMATS: dict[str, Callable[[Event], bytes | str]] = {"compact": format_compact, "text": format_value}

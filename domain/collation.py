"""What "the same name" means: one lookup key per name, equal exactly when the database's collation says equal.

MySQL decides which names are one row (its primary key compares by the column's collation);
Redis keys are exact bytes. So the key of a name is the collation's weight string, spelled as
text, and the consumer, the Redis path and the fallback all use it (docs/decisions.md "Names").
The collation is a process-wide choice made once by each entry point (`use_collation`), from
`UMS_NAME_COLLATION`, before any name is keyed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from domain.general_ci_table import PAIRS

GENERAL_CI = "utf8mb4_general_ci"  # MariaDB's default for utf8mb4 (10.x, 11.x)
UCA_0900_AI_CI = "utf8mb4_0900_ai_ci"  # MySQL 8.0+'s default for utf8mb4

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties), Hangul fillers among them,
# plus the braille blank: characters that draw nothing, so two names that look the same differ.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def invisible_character(text: str) -> str | None:
    """The first character of `text` that draws nothing or only steers layout, or None."""
    if text.isascii() and text.isprintable():
        return None  # every invisible character above is outside ASCII (this runs for every event)
    if text.isprintable():
        found = _INVISIBLE.search(text)
        return found.group() if found else None
    return next(ch for ch in text if not ch.isprintable())


def _general_ci_table() -> dict[int, str]:
    """Code point -> key character: the weight, with A-Z weights spelled in lower case.

    No weight lies in a-z, so spelling A-Z weights in lower case keeps the mapping one-to-one
    and ASCII names keep the keys they always had.
    """
    weights = {int(cp, 16): int(w, 16) for cp, _, w in (pair.partition(":") for pair in PAIRS.split())}
    table = {}
    for cp in range(0x10000):
        weight = weights.get(cp, cp)
        spelled = chr(weight + 32) if 0x41 <= weight <= 0x5A else chr(weight)
        if spelled != chr(cp):
            table[cp] = spelled
    return table


_GENERAL_CI: dict[int, str] = {}
_BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")


def general_ci_key(text: str) -> str:
    """utf8mb4_general_ci: one weight per character, case and accents folded, PAD SPACE."""
    if text.isascii():
        # The table spells every ASCII character as its lower case (tests/unit/test_collation.py
        # checks all 128): 0.1 us instead of 1.1 us, and it runs for every event projected.
        return text.lower().rstrip(" ")
    if not _GENERAL_CI:
        _GENERAL_CI.update(_general_ci_table())
    # Beyond the BMP every character weighs U+FFFD: all emoji compare equal.
    return _BEYOND_BMP.sub("\ufffd", text).translate(_GENERAL_CI).rstrip(" ")


def uca_0900_ai_ci_key(text: str) -> str:
    """utf8mb4_0900_ai_ci at its primary level, approximated: compatibility forms, case and accents folded, NO PAD.

    MySQL 8.4's manual: UCA 9.0.0 weights, accent- and case-insensitive, trailing spaces
    significant; ligatures and width forms equal their plain letters, "ß" equals "ss".
    NFKD + casefold + dropping combining marks gives that for Latin, Greek and Cyrillic
    names; scripts with contractions or ignorable punctuation may differ (docs/decisions.md).
    """
    if text.isascii():
        return text.lower()  # NFKD and casefold leave ASCII as lower() does; no combining marks
    folded = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in folded if not unicodedata.combining(ch))


@dataclass(frozen=True)
class Collation:
    name: str
    key: Callable[[str], str]


COLLATIONS = {c.name: c for c in (Collation(GENERAL_CI, general_ci_key), Collation(UCA_0900_AI_CI, uca_0900_ai_ci_key))}
_active = [COLLATIONS[GENERAL_CI]]


def use_collation(name: str) -> None:
    """Make `name` the collation every key in this process follows (an entry point calls this once)."""
    try:
        _active[0] = COLLATIONS[name]
    except KeyError:
        raise ValueError(f"unknown collation {name!r}; one of {', '.join(COLLATIONS)}") from None
    # Build any table now (about 8 ms for general_ci), not in the first request of each worker;
    # a non-ASCII name, since ASCII ones never need the table.
    _active[0].key("\u00e9")


def active_collation() -> str:
    return _active[0].name


def name_key(text: str) -> str:
    """The lookup key of an already validated name (NFC; spaces at its ends count as the collation counts them)."""
    return _active[0].key(text)

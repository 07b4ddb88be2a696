"""One name, one answer: a differential corpus of names against the real MariaDB and Redis.

Users are saved as the AddService saves them (MySQL upsert; its events decoded by the consumer's
one decode function and applied to the projection); then every variant of every name is asked of
the projection path and of the MySQL fallback, and the two answers must be the same.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import replace

import orjson
import pytest

from adapters.generations import Generations
from api import create_app
from consumer.decode import Envelope, PoisonEvent, decode
from domain import DomainError, Name, active_collation, canonical_name

BASES = [
    "Renee Dubois",
    "Renée Dubois",
    "Zoë Adams",
    "Ångström Anders",
    "Straße Johann",
    "Strasse Jonas",
    "Finn Fischer",
    "ﬁona Field",
    "José Núñez",
    "Łukasz Wójcik",
    "Çağla Öztürk",
    "Ðorđe Šćepan",
    "Σοφία Παππά",
    "Дмитрий Иванов",
    "Nguyễn Văn An",
    "Bob 😀 Smithson",
    "KrishnaMohan",
    "O'Brien Sean",
    "Mary-Jane Watson",
    "李小龍 Bruce",
    "Ærøskøbing Ole",
    "İlker Işık",  # noqa: RUF001 (the dotless i is the point)
]
# Saved after their base, so MySQL merges them into the first row if its collation says "same".
LATER = {
    "Renée Dubois": "Renee Dubois",
    "Zoë Adams": "ZOE ADAMS",
    "Straße Johann": "Strase Johann",
    "Bob 😀 Smithson": "Bob 🎉 Smithson",
    "José Núñez": "JOSE NUNEZ",
}
INVISIBLE = ["\u200b", "\u034f", "\u2800", "\u3164", "\u115f", "\u00ad", "\u2060", "\ufeff"]
FULL_WIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def variants(name: str) -> list[str]:
    """Ways a person might type `name`: case, accents, width, ligatures, spaces, forms, hidden characters."""
    plain = "".join(c for c in unicodedata.normalize("NFD", name) if not unicodedata.combining(c))
    out = [
        name,
        name.lower(),
        name.upper(),
        name.swapcase(),
        plain,
        plain.upper(),
        unicodedata.normalize("NFD", name),
        name + "   ",
        "  " + name,
        "".join(FULL_WIDTH.get(c, c) for c in name[:3]) + name[3:],
        name.replace("fi", "ﬁ").replace("ss", "ß"),
        name.replace("ß", "ss").replace("ﬁ", "fi"),
        name[:4] + INVISIBLE[len(name) % len(INVISIBLE)] + name[4:],
        name + "\n",
        "\t" + name,
    ]
    return list(dict.fromkeys(out))


@pytest.fixture
def saved(settings, store, mysql_writer, name_tag):
    """Every base (then every later spelling) saved to MySQL and projected, in the AddService's order."""
    generation = Generations(store).ensure()[0].live
    names = [f"{name_tag} {b}" for b in BASES] + [f"{name_tag} {later}" for later in LATER.values()]
    now_ms = int(time.time() * 1000)
    events = []
    for offset, name in enumerate(names):
        body = {"name": name, "phone": 9_100_000_000 + offset, "since": now_ms - 60_000 + offset}
        try:
            event = decode(Envelope(None, orjson.dumps(body), 0, offset, now_ms - 60_000 + offset))
        except PoisonEvent:
            continue  # the AddService would have refused it too: it reaches neither store
        events.append(event)
        mysql_writer.upsert_many([event.user])  # one by one: a later save updates the merged row
    store.apply(events, generation)
    return names


def answer(client, raw: str) -> tuple[int, tuple[str, int, str] | None, str]:
    response = client.get("/user/" + raw)
    body = response.get_json()
    user = (canonical_name(body["name"]), body["phone"], body["since"]) if response.status_code == 200 else None
    return response.status_code, user, response.headers.get("X-Ums-Source", "")


def test_the_projection_and_the_fallback_agree_on_every_spelling(settings, saved, store):
    projection = create_app(settings).test_client()
    # A prefix with no live generation: every lookup goes to MySQL (and nothing is repaired).
    fallback = create_app(replace(settings, key_prefix=settings.key_prefix + "-none")).test_client()
    lookups = [v for name in saved for v in variants(name)]
    mismatches, statuses, from_projection = [], {}, 0
    for raw in lookups:
        a, b = answer(projection, raw), answer(fallback, raw)
        statuses[a[0]] = statuses.get(a[0], 0) + 1
        from_projection += a[2] == "projection"
        if a[:2] != b[:2]:
            mismatches.append((raw, a, b))
        elif a[0] == 200 and a[2] != "projection":
            mismatches.append((raw, "found by MySQL but not by the projection", a))
    print(
        f"name corpus ({active_collation()}): lookups={len(lookups)} statuses={statuses} "
        f"from_projection={from_projection} mismatches={len(mismatches)}"
    )
    assert len(lookups) >= 300
    assert statuses.get(200, 0) > 100 and statuses.get(400, 0) > 20 and statuses.get(404, 0) > 10, statuses
    for m in mismatches[:20]:
        print("mismatch:", repr(m))
    assert not mismatches, mismatches[:10]


def test_merged_spellings_are_one_user_as_in_mysql(saved, mysql_writer, name_tag):
    """Renée after Renee: MySQL updated the one row; the projection holds one user with the later phone."""
    first = mysql_writer.find(Name(f"{name_tag} Renee Dubois"))
    second = mysql_writer.find(Name(f"{name_tag} RENÉE DUBOIS"))
    assert first is not None and first == second
    assert first.phone.value == 9_100_000_000 + len(BASES) + list(LATER).index("Renée Dubois")


def test_every_invisible_character_is_refused_on_both_paths(settings, saved):
    projection = create_app(settings).test_client()
    for ch in INVISIBLE:
        raw = f"Renee{ch}Dubois"
        with pytest.raises(DomainError):
            Name(raw)
        assert projection.get("/user/" + raw).status_code == 400, f"U+{ord(ch):04X}"

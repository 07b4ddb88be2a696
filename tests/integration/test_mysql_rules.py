"""Issue 26, items 3-6, on the real MariaDB: the fallback and reconcile ask MySQL one way, spaces count
as MySQL counts them, the collation guard waits for the table, a stopped stream reads no further.

Each test has a database of its own (tests/integration/conftest.py); rows are written as the
AddService writes them: as given, with no normalisation on the way.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pymysql

from adapters.clients import Role, mysql_users
from adapters.generations import Generations
from api import create_app
from consumer.reconcile import Reconciler
from domain import Name, PhoneNumber, User, UserAdded, Version
from tests.helpers import wait_until

SINCE = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def save_as_given(db, rows: list[tuple[str, int, datetime]]) -> None:
    """Rows exactly as spelled (the AddService stores what it is given)."""
    for name, phone, since in rows:
        db.sql(
            f"INSERT INTO `{db.name}`.ums_users (name, phone, since) VALUES (%s, %s, %s)",
            (name, phone, since.replace(tzinfo=None)),
        )


def project(store, users: list[User]) -> int:
    live = Generations(store).ensure()[0].live
    store.apply([UserAdded(u, Version.from_mysql(u.since_ms)) for u in users], live)
    return live


def test_reconcile_repair_keeps_a_user_whose_row_is_stored_decomposed(private_db, store):
    private_db.create_table()
    decomposed = unicodedata.normalize("NFD", "Renée Ångström")
    save_as_given(private_db, [(decomposed, 9_300_000_001, SINCE)])
    user = User(Name(decomposed), PhoneNumber(9_300_000_001), SINCE)  # the event's name, NFC in the projection
    live = project(store, [user])
    reader = mysql_users(private_db.settings)

    drift = Reconciler(store, reader, live).run(repair=True)
    assert (drift.checked_rows, drift.extra) == (1, 0), drift.samples
    assert store.get(user.name.canonical, live).user == user  # not unlinked
    assert Reconciler(store, reader, live).run().total == 0
    reader.pool.close()


def test_find_and_find_many_agree_on_every_spelling(private_db):
    private_db.create_table()
    stored = ["Renée Ångström", "Zoë Adams-Smith", " Bob Smithson", "Trailing Spaces  ", "Straße Johannes"]
    save_as_given(
        private_db, [(unicodedata.normalize("NFD", n), 9_300_000_100 + i, SINCE) for i, n in enumerate(stored)]
    )
    reader = mysql_users(private_db.settings)
    lookups = [
        Name(v)
        for n in stored
        for v in (n, n.upper(), n.strip(" "), "  " + n, n + " ", unicodedata.normalize("NFD", n))
    ]
    found = {n.value for n in lookups if reader.find(n) is not None}
    assert {n.value for n in lookups if n.canonical in reader.find_many([n])} == found
    assert reader.find_many(lookups) == {n.canonical for n in lookups if n.value in found}
    assert {Name(n).value for n in stored} <= found  # every row, however it was spelled
    reader.pool.close()


def test_a_leading_space_is_another_user_on_both_paths_and_in_reconcile(private_db, store):
    private_db.create_table()
    # As the AddService stores them, as given: two rows for Bob (MySQL compares a leading
    # space under every collation), one for Carol, whose name only exists with its space.
    given = [(" Carol Jones-Lee", 9_300_000_030), (" Bob Smithson", 9_300_000_010), ("Bob Smithson", 9_300_000_020)]
    at = [SINCE + timedelta(minutes=i) for i in range(len(given))]
    save_as_given(private_db, [(name, phone, since) for (name, phone), since in zip(given, at, strict=True)])
    users = [User(Name(name), PhoneNumber(phone), since) for (name, phone), since in zip(given, at, strict=True)]
    live = project(store, users)
    settings = private_db.settings
    projection = create_app(settings).test_client()
    # A prefix with no live generation: every lookup goes to MySQL.
    fallback = create_app(replace(settings, key_prefix=settings.key_prefix + "-none")).test_client()

    carol, spaced_bob, bob = (u.phone.value for u in users)
    found = {"%20Carol%20Jones-Lee": carol, "%20Bob%20Smithson": spaced_bob, "Bob%20Smithson": bob}
    found["%20BOB%20SMITHSON%20%20"] = spaced_bob  # case and trailing spaces: general_ci's PAD SPACE
    for raw, phone in found.items():
        for client, source in ((projection, "projection"), (fallback, "mysql")):
            response = client.get("/user/" + raw)
            assert (response.status_code, response.headers["X-Ums-Source"]) == (200, source), raw
            assert response.get_json()["phone"] == phone, (raw, source)
    for raw in ("Carol%20Jones-Lee", "%20%20Bob%20Smithson"):  # no row has these spellings
        assert [client.get("/user/" + raw).status_code for client in (projection, fallback)] == [404, 404], raw

    reader = mysql_users(settings)
    drift = Reconciler(store, reader, live).run(repair=True)
    assert (drift.checked_rows, drift.total) == (3, 0), drift.samples
    assert [store.get(u.name.canonical, live).user for u in users] == users
    reader.pool.close()


def test_the_collation_guard_checks_again_once_the_table_exists(private_db, start_api):
    # One worker: the check made before the table exists and the later ones run in one process.
    # JSON at ERROR: the app's own lines follow UMS_LOG_JSON and UMS_LOG_LEVEL under gunicorn too.
    api = start_api(private_db.settings, UMS_API_WORKERS="1", UMS_LOG_JSON="true", UMS_LOG_LEVEL="ERROR")
    before = api.ops_get("/readyz")
    assert before.status_code == 200 and "collation_mismatch" not in before.json(), before.text
    private_db.create_table(collation="utf8mb4_unicode_ci")  # not UMS_NAME_COLLATION's

    def unready() -> bool:
        response = api.ops_get("/readyz")
        return response.status_code == 503 and response.json().get("collation_mismatch") == "utf8mb4_unicode_ci"

    wait_until(unready, 10, "/readyz to report the table's collation")
    ours = [json.loads(line) for line in api.log.read_text().splitlines() if '"logger": "api.' in line]
    assert {(r["level"], r["logger"]) for r in ours} == {("ERROR", "api.finder")}, ours  # no WARNING at ERROR
    assert "UMS_NAME_COLLATION" in ours[0]["message"] and ours[0]["time"]
    assert "is not visible yet" not in api.log.read_text()


def test_a_stopped_stream_reads_nothing_more_from_the_server(private_db, monkeypatch):
    private_db.create_table()
    rows = 30_000
    private_db.sql(
        f"INSERT INTO `{private_db.name}`.ums_users SELECT CONCAT('Streamed ', LPAD(seq, 6, '0')), "
        f"9100000000 + seq, '2024-01-01' FROM `{private_db.name}`.seq_1_to_{rows}"
    )
    reader = mysql_users(private_db.settings)
    every = [u.name.value for page in reader.stream(chunk=700) for u in page]
    assert len(every) == len(set(every)) == rows  # each row once, in pages

    packets = [0]  # what this process read from MySQL: one packet per row, plus a few
    read_packet = pymysql.connections.Connection._read_packet

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        packets[0] += 1
        return read_packet(self, *args, **kwargs)

    monkeypatch.setattr(pymysql.connections.Connection, "_read_packet", counted)
    pages = reader.stream(chunk=500)
    assert len(next(pages)) == 500
    pages.close()  # what an interrupted backfill does (consumer/replay.py)
    assert packets[0] < rows / 10, f"{packets[0]} packets read for one page of 500 rows out of {rows}"
    reader.pool.close()


def test_a_backfills_count_outlasts_the_apis_read_timeout(private_db):
    """backfill counts the table before it streams it: a scan of every row, which took longer than
    the API's 0.3 s read timeout at 3M rows and failed the growth run of 2026-12-03. Maintenance
    reads as Role.ADMIN (the batch timeout) whatever the API's timeout is: a table lock held for
    1 s stands in for a slow scan here, against an API read timeout of 0.2 s."""
    private_db.create_table()
    private_db.sql(
        f"INSERT INTO `{private_db.name}`.ums_users SELECT CONCAT('Counted ', LPAD(seq, 3, '0')), "
        f"9100000000 + seq, '2024-01-01' FROM `{private_db.name}`.seq_1_to_50"
    )
    reader = mysql_users(replace(private_db.settings, mysql_read_timeout_s=0.2), role=Role.ADMIN)
    private_db.sql(f"LOCK TABLES `{private_db.name}`.ums_users WRITE")
    unlock = threading.Timer(1.0, private_db.sql, ("UNLOCK TABLES",))  # the slow scan's length
    unlock.start()
    try:
        assert reader.count() == 50
    finally:
        unlock.join()
        reader.pool.close()

"""Each link (Kafka, Redis, MySQL) misconfigured against the secure stack: wrong password, wrong CA,
plaintext against a TLS-only server. The process says why in one log line, is not ready, stores
nothing (no offset, no position), and recovers once the setting is fixed and it is restarted.
Also: the Redis ACLs (the API's user only reads, the consumer's stays in its prefix).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis
from confluent_kafka import Consumer, KafkaException, TopicPartition

from adapters.clients import Role, kafka_producer, mysql_users, projection_store, redis_client, tracked_reads
from adapters.direct_reads import DirectReads
from adapters.eviction import check_eviction, eviction_policies
from adapters.kafka import consumer_config, ensure_topics
from adapters.mysql import MySQLUsers, make_pool
from adapters.settings import Settings
from api import create_app
from api.finder import Finder
from consumer.health import check_ready
from consumer.main import main as consume
from devtools.addservice import AddService
from domain import Name, PhoneNumber, User, UserAdded, Version
from tests.conftest import SecureStack
from tests.helpers import cache_connection_id, delete_matching, unique, wait_until

OPS = "http://localhost:9080"  # create_app's ops port for api_bind's default (8080 + 1000)
USERS = 12


def clean(stack: SecureStack) -> None:
    delete_matching(redis_client(stack.settings(), Role.ADMIN), "ums:*", "{ums}:*")


@pytest.fixture
def secure(secure_stack: SecureStack, tmp_path) -> Settings:
    clean(secure_stack)
    settings = secure_stack.settings(heartbeat_file=str(tmp_path / "heartbeat"), metrics_port=0, generation_cache_s=0.0)
    ensure_topics(settings, partitions=3)
    yield settings
    clean(secure_stack)


@pytest.fixture
def added(secure: Settings) -> list[User]:
    """USERS users saved in MySQL and published, through TLS and SASL, by the AddService stand-in."""
    tag = unique("s")[2:8]
    users = [User(Name(f"{tag} sec {i}"), PhoneNumber(9_100_000_000 + i), datetime.now(UTC)) for i in range(USERS)]
    writer = mysql_users(secure, writer=True)
    producer = kafka_producer(secure)
    AddService(writer, producer, secure.topic).add_many(users)
    yield users
    with writer.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM ums_users WHERE name LIKE %s", (tag + "%",))


def committed(settings: Settings) -> dict[int, int]:
    """The group's committed offsets (none: nothing was stored)."""
    reader = Consumer(consumer_config(settings, **{"enable.auto.commit": False}))
    partitions = [TopicPartition(settings.topic, p) for p in range(3)]

    def ask() -> list[TopicPartition] | None:
        try:
            return list(reader.committed(partitions, timeout=10))
        except KafkaException:  # a new broker still loading its offsets topic: not coordinator yet
            return None

    try:
        return {tp.partition: tp.offset for tp in wait_until(ask, 30, "the group's offsets") if tp.offset >= 0}
    finally:
        reader.close()


def run_consumer_until(settings: Settings, done, what: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    stop = threading.Event()
    thread = threading.Thread(target=consume, args=(settings, stop), daemon=True)
    thread.start()
    try:
        wait_until(done, timeout, what, interval=0.1)
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive(), "the consumer did not stop"


def consumer_cases(stack: SecureStack, good: Settings) -> dict[str, tuple[Settings, str]]:
    """Misconfigured consumer settings -> the phrase its one error line must hold."""
    return {
        "kafka wrong password": (replace(good, kafka_sasl_password="not-the-password"), "authentication failed"),
        "kafka wrong CA": (replace(good, kafka_ssl_ca_file=stack.other_ca), "TLS failed"),
        "kafka plaintext": (replace(good, kafka_security_protocol="PLAINTEXT"), "UMS_KAFKA_SECURITY_PROTOCOL"),
        "redis wrong password": (replace(good, redis_consumer_password="not-the-password"), "authentication failed"),
        "redis wrong CA": (replace(good, redis_ca_file=stack.other_ca), "TLS handshake"),
        "redis plaintext": (replace(good, redis_url=good.redis_url.replace("rediss://", "redis://")), "require TLS"),
    }


def test_a_misconfigured_consumer_says_why_stays_unready_stores_nothing_and_recovers(
    secure_stack: SecureStack, secure: Settings, added: list[User], caplog
) -> None:
    caplog.set_level(logging.INFO)
    store = projection_store(secure, Role.ADMIN)
    for case, (bad, phrase) in consumer_cases(secure_stack, secure).items():
        caplog.clear()

        def reported(bad: Settings = bad, phrase: str = phrase) -> bool:
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and phrase in r.getMessage()]
            return bool(errors) and check_ready(bad.heartbeat_file, bad.ready_max_lag, 30) is not None

        run_consumer_until(bad, reported, f"{case}: one error line with {phrase!r} and readiness false")
        ours = [r for r in caplog.records if r.name.startswith(("adapters", "consumer")) and r.levelno >= logging.ERROR]
        assert len({r.getMessage() for r in ours}) <= 2, f"{case}: {[r.getMessage() for r in ours]}"
        assert committed(secure) == {}, f"{case}: offsets were committed"
        assert not list(store.client.scan_iter(match="ums:*")), f"{case}: users were written"
        secure_stack.assert_no_secret_in(caplog.text, f"{case}: the logs")

    # Fixed and restarted: every user arrives, the offsets follow.
    def all_projected() -> bool:
        live = store.live_generation()
        return live is not None and all(store.get(u.name.canonical, live) is not None for u in added)

    run_consumer_until(secure, all_projected, "every user in the projection", timeout=40)
    assert sum(committed(secure).values()) == USERS
    secure_stack.assert_no_secret_in(caplog.text + repr(secure), "the logs or repr(Settings)")


def api_cases(stack: SecureStack, good: Settings) -> dict[str, tuple[Settings, str, str]]:
    """Misconfigured API settings -> (the link, its misconfiguration in /readyz)."""
    return {
        "redis wrong password": (replace(good, redis_api_password="nope"), "projection", "authentication failed"),
        "redis wrong CA": (replace(good, redis_ca_file=stack.other_ca), "projection", "TLS handshake"),
        "redis plaintext": (
            replace(good, redis_url=good.redis_url.replace("rediss://", "redis://")),
            "projection",
            "require TLS",
        ),
        "mysql wrong password": (replace(good, mysql_password="nope"), "mysql", "authentication failed"),
        "mysql wrong CA": (replace(good, mysql_ssl_ca=stack.other_ca), "mysql", "TLS handshake"),
        # Settings cannot make PyMySQL speak plaintext to a server offering TLS; the driver can.
        # MariaDB refuses it as "access denied" (it does not say why); the hint names UMS_MYSQL_SSL_CA.
        "mysql plaintext": (good, "mysql", "authentication failed"),
    }


def test_a_misconfigured_api_says_why_once_and_is_unready_until_fixed(
    secure_stack: SecureStack, secure: Settings, caplog
) -> None:
    for case, (bad, link, phrase) in api_cases(secure_stack, secure).items():
        caplog.clear()
        finder = None
        if case == "mysql plaintext":
            finder = Finder(projection_store(bad, Role.API), MySQLUsers(make_pool(bad, ssl_disabled=True)), bad)
        client = create_app(bad, finder=finder).test_client()
        for _ in range(3):
            response = client.get("/readyz", base_url=OPS)
            assert response.status_code == 503, case
            body = response.get_json()
            assert phrase in body["misconfigured"][link], (case, body)
            secure_stack.assert_no_secret_in(response.get_data(as_text=True), f"{case}: /readyz")
        lines = [r.getMessage() for r in caplog.records if r.name == "api.links" and r.levelno >= logging.ERROR]
        assert len(lines) == 1 and phrase in lines[0], (case, lines)
        secure_stack.assert_no_secret_in(caplog.text, f"{case}: the logs")

    fixed = create_app(secure).test_client()
    response = fixed.get("/readyz", base_url=OPS)
    assert response.status_code == 200 and response.get_json()["sources"] == {"projection": True, "mysql": True}


def test_redis_acls_the_api_reads_the_consumer_stays_in_its_prefix(secure_stack: SecureStack, secure: Settings) -> None:
    api = redis_client(secure, Role.API)
    consumer = redis_client(secure, Role.CONSUMER)
    consumer.set("ums:1:acl probe", "x")
    assert api.get("ums:1:acl probe") == b"x"
    for write in (
        lambda: api.set("ums:1:acl probe", "y"),
        lambda: api.delete("ums:1:acl probe"),
        lambda: api.eval("return 1", 0),
        lambda: api.flushdb(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    with pytest.raises(redis.exceptions.NoPermissionError):
        api.get("other:key")
    for outside in (lambda: consumer.get("other:key"), lambda: consumer.set("other:key", "x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            outside()
    with pytest.raises(redis.exceptions.NoPermissionError):
        consumer.flushdb()
    # Nobody gets in without a user, and nobody in plaintext.
    anonymous = replace(secure, redis_api_user="", redis_api_password="")
    with pytest.raises(redis.AuthenticationError):
        redis_client(anonymous, Role.API).get("ums:1:acl probe")
    plaintext = replace(secure, redis_url=secure.redis_url.replace("rediss://", "redis://"))
    with pytest.raises(redis.ConnectionError):
        redis_client(plaintext, Role.API).ping()


def test_the_api_user_may_run_the_read_cache_and_nothing_more(secure_stack: SecureStack, secure: Settings) -> None:
    """services/secure.sh's ACL lets `ums-api` track its reads (adapters/tracking.py) over TLS, and no more."""
    writer = projection_store(secure, Role.CONSUMER)
    user = User(Name(unique("Acl Cache")), PhoneNumber(9_000_000_001), datetime(2026, 1, 1, tzinfo=UTC))
    key = writer.key(1, user.name.canonical)
    try:
        writer.apply([UserAdded(user, Version(1, 0, 1))], 1)
        reads = tracked_reads(replace(secure, api_read_cache_entries=10))
        assert reads is not None

        def phone() -> int:
            held = reads.get(user.name.canonical, 1)
            assert held is not None and held.user is not None
            return held.user.phone.value

        wait_until(lambda: phone() == 9_000_000_001 and reads.hits > 0, 5, "answers from memory as ums-api")
        assert reads.enabled and reads.resets == 0
        moved = User(user.name, PhoneNumber(9_000_000_002), user.since)
        writer.apply([UserAdded(moved, Version(2, 0, 2))], 1)
        wait_until(lambda: phone() == 9_000_000_002, 5, "the consumer's write invalidating the API's memory")
        # A cache connection Redis closed is found over TLS too (a poll, not a peek, which TLS refuses).
        redis_client(secure, Role.ADMIN).client_kill_filter(_id=cache_connection_id(reads))
        writer.apply([UserAdded(User(user.name, PhoneNumber(9_000_000_003), user.since), Version(3, 0, 3))], 1)
        wait_until(lambda: phone() == 9_000_000_003, 5, "the new phone after its reader was closed")
        api = redis_client(secure, Role.API)
        with pytest.raises(redis.exceptions.NoPermissionError):
            api.publish("__redis__:invalidate", "x")
        other = api.pubsub()
        other.subscribe("other")  # sent now, answered (refused) when read
        with pytest.raises(redis.exceptions.NoPermissionError):
            other.get_message(timeout=5)
    finally:
        writer.unlink([key])


def test_direct_reads_go_over_tls_as_the_api_user_and_stay_in_its_prefix(
    secure_stack: SecureStack, secure: Settings
) -> None:
    """adapters/direct_reads.py builds its connections as the pool does: TLS, the `ums-api` user, its ACL."""
    writer = projection_store(secure, Role.CONSUMER)
    user = User(Name(unique("Acl Direct")), PhoneNumber(9_000_000_003), datetime(2026, 1, 1, tzinfo=UTC))
    try:
        writer.apply([UserAdded(user, Version(1, 0, 1))], 1)
        store = projection_store(secure, Role.API)
        reads = DirectReads.of(store)
        assert reads is not None and secure.redis_url.startswith("rediss://")
        held = reads.get(user.name.canonical, 1)
        assert held is not None and held.user is not None and held.user.phone.value == 9_000_000_003
        conn = reads._local.conn
        with pytest.raises(redis.exceptions.NoPermissionError):
            reads._get("other:key")  # outside the API user's prefix: refused, and the connection stays in step
        assert reads.get(user.name.canonical, 1) == held and reads._local.conn is conn, "a refusal dropped the link"
    finally:
        writer.unlink([writer.key(1, user.name.canonical)])


def test_mysql_without_a_ca_still_upgrades_to_tls_on_every_connection(secure: Settings) -> None:
    """The TLS context is shared between connections (adapters/mysql.py); each one still speaks TLS."""
    pool = make_pool(replace(secure, mysql_ssl_ca=""))  # no TLS argument: PyMySQL's unverified upgrade
    ciphers = []
    for _ in range(3):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            ciphers.append(cur.fetchone()[1])
        pool.close()  # the next use opens a new connection
    assert all(ciphers), ciphers


def test_the_consumer_user_reads_the_eviction_policy_and_no_key_more(secure: Settings, caplog) -> None:
    # Its ACL grants INFO for the start-up check (services/secure.sh), over TLS like every command.
    caplog.set_level(logging.INFO)
    consumer = redis_client(secure, Role.CONSUMER)
    try:
        assert eviction_policies(consumer) == {"noeviction"}
        assert check_eviction(consumer) == []
        assert "not checked" not in caplog.text
        with pytest.raises(redis.exceptions.NoPermissionError):
            consumer.config_get("maxmemory-policy")
    finally:
        consumer.close()

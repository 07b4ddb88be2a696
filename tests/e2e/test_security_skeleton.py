"""The walking skeleton with TLS and authentication on every link (the secure stack):
the AddService stand-in publishes over SASL_SSL and saves over TLS, `ums-find consume` projects
through Kafka SASL_SSL into Redis over TLS as its ACL user, gunicorn answers from Redis (read-only
ACL user) and falls back to MySQL over TLS. No secret shows in any log, /readyz, /metrics or repr.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest

from adapters.clients import Role, kafka_producer, mysql_users, projection_store, redis_client
from adapters.kafka import ensure_topics
from devtools.addservice import AddService
from domain import Name, PhoneNumber, User
from tests.conftest import BIN, ROOT, SecureStack, _stop
from tests.helpers import delete_matching, env_of, unique, wait_until


@pytest.fixture
def secure(secure_stack: SecureStack, tmp_path):
    settings = secure_stack.settings(heartbeat_file=str(tmp_path / "heartbeat"), generation_cache_s=0.0)
    delete_matching(redis_client(settings, Role.ADMIN), "ums:*", "{ums}:*")
    ensure_topics(settings, partitions=3)
    return settings


def test_the_whole_path_over_tls_with_authentication(secure_stack: SecureStack, secure, start_api, tmp_path) -> None:
    tag = unique("e")[2:8]
    now = datetime.now(UTC)
    users = [User(Name(f"{tag} tls {i}"), PhoneNumber(9_200_000_000 + i), now) for i in range(3)]
    only_in_mysql = User(Name(f"{tag} sql only"), PhoneNumber(9_200_000_099), now)
    writer = mysql_users(secure, writer=True)
    log = tmp_path / "consumer.log"
    with open(log, "wb") as out:
        consumer = subprocess.Popen(
            [str(BIN / "ums-find"), "--log-text", "consume"],
            env=env_of(secure, UMS_METRICS_PORT="0"),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        api = start_api(secure)
        producer = kafka_producer(secure)
        AddService(writer, producer, secure.topic).add_many(users)
        writer.upsert_many([only_in_mysql])  # saved, never published: the fallback's case

        for user in users:
            response = wait_until(
                lambda u=user: (
                    (r := api.get(f"/user/{u.name.value}")).headers.get("X-Ums-Source") == "projection" and r
                ),
                30,
                f"{user.name.value} from the projection",
            )
            assert response.json()["phone"] == user.phone.value
        for _ in range(2):  # from MySQL each time: the API's Redis user may not repair
            fallback = api.get(f"/user/{only_in_mysql.name.value}")
            assert fallback.status_code == 200 and fallback.headers["X-Ums-Source"] == "mysql"
        store = projection_store(secure, Role.ADMIN)
        assert store.get(only_in_mysql.name.canonical, store.live_generation() or 1) is None

        ready = api.ops_get("/readyz")
        assert ready.status_code == 200 and ready.json()["sources"] == {"projection": True, "mysql": True}
        metrics = api.ops_get("/metrics")
        assert metrics.status_code == 200 and "ums_api_requests_total" in metrics.text
        assert api.get("/metrics").status_code == 404  # never on the public port
        assert api.get("/readyz").status_code == 404
        seen = ready.text + metrics.text + repr(secure)
    finally:
        _stop(consumer, log, "consumer")
        with writer.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM ums_users WHERE name LIKE %s", (tag + "%",))
    seen += log.read_text(errors="replace") + api.log.read_text(errors="replace")
    secure_stack.assert_no_secret_in(seen, "logs, /readyz, /metrics or repr(Settings)")
    assert "consumer starting" in seen  # the scan did read the consumer's log

"""MySQL access to the AddService's `ums_users` table: a pooled, parameterized, time-limited client."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import ssl
import threading
import unicodedata
from collections.abc import Generator, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pymysql

from adapters.settings import Settings
from domain import DomainError, Name, PhoneNumber, User

log = logging.getLogger(__name__)
# Maintenance reads (backfill's count and pages, reconcile) scan the whole table: a hung server
# still ends them, a slow scan of 10M rows does not.
BATCH_READ_TIMEOUT_S = 60.0

# The driver's error for "could not reach or talk to MySQL"; callers catch this.
MySQLError = pymysql.MySQLError


def timed_out(exc: BaseException) -> bool:
    """True for a connect or read that hit its timeout (a hung server), not a refusal or a SQL error."""
    # PyMySQL reports both as OperationalError 2003/2013 whose message ends "(timed out)".
    return isinstance(exc, pymysql.OperationalError) and "timed out" in str(exc)


class Connection(pymysql.connections.Connection):
    """PyMySQL's connection with its TLS context built once per process and TLS setting.

    PyMySQL builds an `ssl.SSLContext` on every connect, loading a CA store each time:
    20-37 ms of CPU here for the system store (no `UMS_MYSQL_SSL_CA`: PyMySQL's unverified
    upgrade; or the system bundle as the CA). In an outage every fallback request connects
    and is refused, so each cost the API that much CPU only to answer 503. A setting's context
    is shared (an SSLContext is safe across threads) while its files are unchanged: a CA Secret
    rotated in place (a new inode or mtime) is read by the next connection, as before.
    """

    _contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}
    _lock = threading.Lock()

    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        if not isinstance(sslp, dict):
            return super()._create_ssl_ctx(sslp)  # type: ignore[misc,no-any-return]
        key = context_key(sslp)
        with self._lock:
            if key not in self._contexts:
                self._contexts[key] = super()._create_ssl_ctx(sslp)  # type: ignore[misc]
            return self._contexts[key]


def context_key(sslp: dict[str, Any]) -> tuple[Any, ...]:
    """A TLS setting and the version of each file it names: what its context is built from."""
    return (*sorted(sslp.items()), *(_file_version(sslp.get(k)) for k in ("ca", "capath", "cert", "key")))


def _file_version(path: Any) -> tuple[int, int] | None:
    """(inode, mtime in ns) of a TLS file or directory; None when there is none (PyMySQL says why)."""
    if not isinstance(path, str):
        return None
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns


class ConnectionPool:
    """A small per-process pool of PyMySQL connections: dead ones never reused, one attempt per use.

    Not DBUtils: its failover re-runs a failed query on the same connection and then
    on a new one, so a hung MySQL costs three timeouts per request instead of one.
    An idle connection is checked before reuse without a round trip (`_alive`); when a
    use fails, every idle connection is dropped with it: they went to the same server.
    """

    def __init__(self, size: int, **connect_args: Any) -> None:
        self.connect_args = connect_args
        self._idle: queue.LifoQueue[pymysql.connections.Connection] = queue.LifoQueue(maxsize=size)

    def _checkout(self) -> pymysql.connections.Connection:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return Connection(**self.connect_args)
            if _alive(conn):
                return conn
            log.info("MySQL closed an idle connection (restart, kill or wait_timeout); opening another")
            conn.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[pymysql.connections.Connection]:
        conn = self._checkout()
        try:
            yield conn
        except BaseException:
            if conn.open:
                conn.close()
            self.close()
            raise
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _alive(conn: pymysql.connections.Connection) -> bool:
    """False when the server has closed or written to an idle connection.

    Between queries MySQL sends nothing, so a readable socket means an EOF (the server
    restarted or killed the session) or an error packet: a zero-timeout poll tells,
    where a ping would cost a round trip on every request.
    """
    sock = getattr(conn, "_sock", None)
    if not conn.open or sock is None:
        return False
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def make_pool(settings: Settings, writer: bool = False, **extra: Any) -> ConnectionPool:
    """A per-process pool; connections are opened on first use, not here. `extra`: more
    PyMySQL arguments (TLS, from adapters/clients.py)."""
    return ConnectionPool(
        settings.mysql_pool_size,
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.writer_user if writer else settings.mysql_user,
        password=settings.writer_password if writer else settings.mysql_password,
        database=settings.mysql_database,
        charset="utf8mb4",
        connect_timeout=settings.mysql_connect_timeout_s,
        read_timeout=settings.mysql_read_timeout_s,
        write_timeout=settings.mysql_read_timeout_s,
        autocommit=True,
        **extra,
    )


def _row_to_user(row: tuple[Any, ...]) -> User | None:
    name, phone, since = row
    try:
        return User(Name(name), PhoneNumber(int(phone)), _as_datetime(since))
    except DomainError:
        log.warning("ums_users row breaks a domain rule; ignored", extra={"user_name": name})
        return None


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value  # DATETIME columns hold UTC (the AddService's convention)
    raise DomainError(f"since is not a datetime: {value!r}")


_NEXT_PAGE = "SELECT name, phone, since FROM ums_users WHERE name > %s ORDER BY name LIMIT %s"


def spellings(names: Iterable[Name]) -> list[str]:
    """What to ask MySQL for to find `names`: each name as given, in NFC and in NFD.

    The one rule of the fallback and of reconcile. The column's collation merges case,
    accents and (PAD SPACE) trailing spaces; a combining mark keeps its own weight, so a row
    stored decomposed is only found through its own form (docs/decisions.md "Names").
    """
    return list(dict.fromkeys(s for name in names for s in (name.value, unicodedata.normalize("NFD", name.value))))


class MySQLUsers:
    """Finds and writes users in `ums_users` through a pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def find(self, name: Name) -> User | None:
        """The newest user whose key equals `name`'s, or None."""
        wanted = name.canonical
        users = [u for u in self._users_named([name]) if u.name.canonical == wanted]
        return max(users, key=lambda u: u.since, default=None)

    def _users_named(self, names: Sequence[Name]) -> list[User]:
        """The rows MySQL holds under any spelling of `names` (see `spellings`), as users."""
        asked = spellings(names)
        placeholders = ", ".join(["%s"] * len(asked))
        sql = f"SELECT name, phone, since FROM ums_users WHERE name IN ({placeholders})"
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(sql, asked)
            rows = cur.fetchall()
        return [u for u in map(_row_to_user, rows) if u is not None]

    def upsert_many(self, users: Iterable[User]) -> int:
        """Save users as the AddService does (a newer save replaces the row)."""
        sql = (
            "INSERT INTO ums_users (name, phone, since) VALUES (%s, %s, %s) "
            "ON DUPLICATE KEY UPDATE phone = VALUES(phone), since = VALUES(since)"
        )
        rows = [(u.name.value, u.phone.value, _utc_naive(u.since)) for u in users]
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(sql, rows)
        return len(rows)

    def count(self) -> int:
        """Rows in the table: a scan of every row (seconds at 10M), so callers build this object with
        the batch read timeout (adapters/clients.py, Role.ADMIN), not the API's 0.3 s."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM ums_users")
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def stream(
        self, chunk: int = 1000, read_timeout_s: float = BATCH_READ_TIMEOUT_S
    ) -> Generator[list[User], None, None]:
        """Every user, in chunks in primary-key order, all read from one snapshot: the table never sits in memory.

        Pages of the primary key rather than a server-side cursor: a reader that stops early
        (an interrupted backfill) has nothing left to read, where closing an unbuffered result
        makes PyMySQL read every remaining row first.
        """
        conn = Connection(**{**self.pool.connect_args, "read_timeout": read_timeout_s})
        try:
            with conn.cursor() as cur:
                # One snapshot for every page, as one statement would have seen the table.
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cur.execute("SELECT name, phone, since FROM ums_users ORDER BY name LIMIT %s", (chunk,))
                while rows := cur.fetchall():
                    yield [u for u in map(_row_to_user, rows) if u is not None]
                    if len(rows) < chunk:
                        return
                    # The column's collation orders the key and compares it: each row comes once.
                    cur.execute(_NEXT_PAGE, (rows[-1][0], chunk))
        finally:
            conn.close()

    def find_many(self, names: Sequence[Name]) -> set[str]:
        """The canonical names, among `names`, that `find` would find."""
        if not names:
            return set()
        wanted = {name.canonical for name in names}
        return {u.name.canonical for u in self._users_named(names)} & wanted

    def ping(self) -> None:
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def name_collation(self) -> str:
        """The collation of `ums_users.name`, as the server reports it."""
        sql = (
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'ums_users' AND COLUMN_NAME = 'name'"
        )
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
        return str(row[0]) if row else ""

"""A private MySQL database per test, for tests that must control `ums_users` itself.

Why not the shared `glarimy.ums_users`: these tests create the table late, with another
collation, fill it with thousands of rows, or reconcile the whole table; on the shared
table that would disturb other tests running beside them. The server keeps its settings:
only a database is created (as root, through the socket services/stack.sh set up) and
dropped afterwards, with the project's two users granted on it as on `glarimy`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pymysql
import pytest

from adapters.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PrivateDatabase:
    """A database of its own on the shared MariaDB: settings pointing at it, and root to change it."""

    settings: Settings
    root: pymysql.connections.Connection

    @property
    def name(self) -> str:
        return self.settings.mysql_database

    def sql(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        with self.root.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())

    def create_table(self, collation: str | None = None) -> None:
        """`ums_users` as services/mysql/schema.sql creates it; `collation`: the table's instead of the default."""
        schema = (ROOT / "services" / "mysql" / "schema.sql").read_text()
        ddl = re.search(r"CREATE TABLE[^;]*", schema)
        assert ddl, "services/mysql/schema.sql has no CREATE TABLE"
        statement = ddl.group().replace("glarimy.ums_users", f"`{self.name}`.ums_users")
        self.sql(statement + (f" COLLATE={collation}" if collation else ""))


def _root_socket() -> str:
    stack = Path(os.environ.get("UMS_STACK_DIR", ROOT / ".run" / "stack"))
    return str(stack / "mariadb" / "mysqld.sock")


@pytest.fixture
def private_db(settings: Settings) -> Iterator[PrivateDatabase]:
    try:
        root = pymysql.connect(unix_socket=_root_socket(), user="root", charset="utf8mb4", autocommit=True)
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB's root socket {_root_socket()} is not reachable (services/stack.sh up): {exc!r}")
    name = "ums_t_" + uuid.uuid4().hex[:10]
    users = list(dict.fromkeys([settings.mysql_user, settings.writer_user]))
    database = PrivateDatabase(replace(settings, mysql_database=name), root)
    database.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    database.sql(f"GRANT SELECT ON `{name}`.* TO %s@'%%'", (users[0],))
    database.sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{name}`.* TO %s@'%%'", (users[1],))
    try:
        yield database
    finally:
        database.sql(f"DROP DATABASE `{name}`")
        for user in users:
            database.sql(f"REVOKE ALL PRIVILEGES ON `{name}`.* FROM %s@'%%'", (user,))
        root.close()

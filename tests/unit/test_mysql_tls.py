"""The MySQL connection's TLS context: built once per setting, with PyMySQL's own semantics."""

from __future__ import annotations

import socket
import ssl

import pymysql
import pytest

from adapters.mysql import Connection


def refused_port() -> int:
    """A port nothing listens on (bound, never listened, closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def context_of(sslp: dict[str, object] | None = None) -> ssl.SSLContext:
    """The context a refused connect with `ssl=sslp` (None: no TLS argument) was given."""
    with pytest.raises(pymysql.OperationalError):
        Connection(host="127.0.0.1", port=refused_port(), user="u", password="p", connect_timeout=1, ssl=sslp)
    return Connection._contexts[tuple(sorted((sslp or {}).items()))]


def test_no_ca_reuses_one_context_with_pymysqls_unverified_upgrade():
    first = context_of()
    assert context_of() is first
    assert first.verify_mode == ssl.CERT_NONE and not first.check_hostname


def test_each_tls_setting_has_its_own_context():
    unverified = context_of()
    verified = context_of({"ca": None, "check_hostname": False, "verify_mode": True})
    assert verified is not unverified
    assert verified.verify_mode == ssl.CERT_REQUIRED
    assert context_of({"ca": None, "check_hostname": False, "verify_mode": True}) is verified


def test_a_context_passed_in_is_used_as_it_is():
    mine = ssl.create_default_context()
    before = dict(Connection._contexts)
    with pytest.raises(pymysql.OperationalError):
        Connection(host="127.0.0.1", port=refused_port(), user="u", password="p", connect_timeout=1, ssl=mine)
    assert Connection._contexts == before

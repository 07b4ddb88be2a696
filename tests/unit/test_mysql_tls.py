"""The MySQL connection's TLS context: built once per setting and file version, with PyMySQL's own semantics."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import certifi

from adapters.mysql import Connection

CA = certifi.where()  # any PEM bundle will do: it is only loaded (certifi comes with requests)


def context_of(sslp: dict[str, object] | ssl.SSLContext | None = None) -> ssl.SSLContext:
    """The context a connection with `ssl=sslp` (None: no TLS argument) is given; nothing is dialled."""
    conn = Connection(host="127.0.0.1", user="u", password="p", ssl=sslp, defer_connect=True)
    return conn.ctx  # type: ignore[no-any-return]


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


def test_a_ca_file_replaced_in_place_is_read_by_the_next_connection(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(CA).read_bytes())
    setting = {"ca": str(ca), "check_hostname": True, "verify_mode": True}
    first = context_of(setting)
    assert context_of(setting) is first and first.check_hostname and first.verify_mode == ssl.CERT_REQUIRED
    rotated = tmp_path / "ca.pem.new"  # as a Kubernetes Secret volume swaps its files: a new inode
    rotated.write_bytes(ca.read_bytes())
    os.replace(rotated, ca)
    assert context_of(setting) is not first


def test_a_context_passed_in_is_used_as_it_is():
    mine = ssl.create_default_context()
    assert context_of(mine) is mine

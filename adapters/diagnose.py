"""What a failed connection most likely means: a setting to fix (one log line, readiness false) or an outage.

A misconfiguration (wrong password, wrong CA, plaintext against a TLS-only server) never
heals by retrying: the process says which setting to check, once, and stays unready until
it is fixed and restarted. An outage (refused, timed out) is retried as before. The causes
are fixed phrases, never the exception's text, so no secret can reach /readyz.
"""

from __future__ import annotations

import pymysql
import redis

AUTH = "authentication failed"
ACL = "permission denied by the server's ACL"
TLS = "TLS handshake or certificate verification failed"
PLAINTEXT = "the server closed the connection at once (does it require TLS?)"
# Not a setting of ours, and it heals once memory is freed, but no retry frees it: said once, like the rest.
FULL = "Redis is full (maxmemory reached under noeviction) and refuses writes"
HINTS = {
    "redis": "check UMS_REDIS_URL (rediss://), UMS_REDIS_CA_FILE and the role's UMS_REDIS_*_USER/_PASSWORD",
    # MariaDB answers "access denied" to a plaintext client when it requires TLS, too.
    "mysql": "check UMS_MYSQL_USER/_PASSWORD and UMS_MYSQL_SSL_CA (set it when the server requires TLS)",
    FULL: "raise maxmemory or free memory (`ums-find gc` deletes abandoned generations; a rebuild needs room for"
    " two generations: docs/capacity.md); writing resumes by itself once Redis has room",
}
# A write refused at maxmemory under noeviction (types-redis 4.6 does not know the class redis-py raises).
OutOfMemoryError: type[redis.RedisError] = redis.exceptions.OutOfMemoryError  # type: ignore[attr-defined]
_TLS_WORDS = ("ssl", "certificate", "tls", "wrong version number")


def redis_cause(exc: BaseException, url: str) -> str | None:
    """The misconfiguration behind a Redis error, or None (an outage, or a bug)."""
    text = str(exc).lower()
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.AuthenticationWrongNumberOfArgsError):
        return AUTH
    if isinstance(exc, redis.exceptions.NoPermissionError) or text.startswith("noperm"):
        return ACL
    if isinstance(exc, redis.ConnectionError):
        if any(word in text for word in _TLS_WORDS):
            return TLS
        if not url.startswith("rediss") and ("closed by server" in text or "reset by peer" in text):
            return PLAINTEXT
    return None


# MySQL/MariaDB error numbers: access denied (1045), to a database or table (1044, 1142),
# insecure transport refused (MySQL 3159, MariaDB require_secure_transport 4151).
_MYSQL_AUTH = {1045}
_MYSQL_ACL = {1044, 1142}
_MYSQL_PLAINTEXT = {3159, 4151}


def redis_full(exc: BaseException) -> str | None:
    """FULL for a write refused because Redis reached its maxmemory, else None."""
    return FULL if isinstance(exc, OutOfMemoryError) else None


def mysql_cause(exc: BaseException) -> str | None:
    """The misconfiguration behind a MySQL error, or None."""
    if not isinstance(exc, pymysql.MySQLError):
        return None
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    text = str(exc).lower()
    if code in _MYSQL_PLAINTEXT or "insecure transport" in text or "secure_transport" in text:
        return PLAINTEXT
    if code in _MYSQL_AUTH:
        return AUTH
    if code in _MYSQL_ACL:
        return ACL
    if any(word in text for word in _TLS_WORDS):
        return TLS
    return None

"""Fenced script calls on Redis Cluster: one raw pipeline per master.

Keys of one script call must share a hash slot, so on a Cluster a batch of users makes about
one call per user. Through redis-py (a pipeline per master of `Script` calls: a SCRIPT EXISTS
round trip per pipeline, a callback per reply) the consumer spent ~30 µs of CPU per event
there against ~11 on one Redis (`make bench-cluster`, 2026-12-03). Here each master's calls
are packed into one buffer and sent on one connection from that master's pool; the replies
are read in order, an error reply kept as its exception.

A call whose slot moved or is moving (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) or whose master lost
its script cache (NOSCRIPT: a restart, a failover to a replica) is sent again on its own by
`resend` (the cluster client, which follows the redirection, refreshes its slot map and loads
the script); the fence makes a call sent twice harmless. Any other failure drops the
connection and raises, and the caller writes the whole batch again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

Call = tuple[list[str], list[str]]
RESEND = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.NoScriptError,
)


def apply_calls(
    cluster: redis.RedisCluster, sha: str, calls: Iterable[tuple[int, list[str], list[str]]], resend: Callable[..., Any]
) -> int:
    """Run (slot, keys, values) script calls on their masters; how many users they changed."""
    by_node: dict[str, tuple[Any, list[Call]]] = {}
    for slot, keys, values in calls:
        node = cluster.nodes_manager.get_node_from_slot(slot)  # type: ignore[arg-type]  # typed str, keyed by int
        by_node.setdefault(node.name, (node, []))[1].append((keys, values))
    applied = 0
    for node, node_calls in by_node.values():
        for (keys, values), reply in zip(node_calls, _send(node, sha, node_calls), strict=True):
            if isinstance(reply, RESEND):
                reply = resend(keys=keys, args=values, client=cluster)
            elif isinstance(reply, Exception):
                raise reply
            applied += int(reply)
    return applied


def _send(node: Any, sha: str, calls: Sequence[Call]) -> list[Any]:
    """Every call's reply, in order, an error reply as its exception; the connection is dropped on any failure."""
    pool = node.redis_connection.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command(conn.pack_commands([("EVALSHA", sha, len(k), *k, *v) for k, v in calls]))
        replies: list[Any] = []
        for _ in calls:
            try:
                replies.append(conn.read_response())
            except redis.exceptions.ResponseError as exc:  # the reply of this call; the next ones follow
                replies.append(exc)
        return replies
    except BaseException:
        conn.disconnect()  # replies may be left unread: never hand this connection out again
        raise
    finally:
        pool.release(conn)

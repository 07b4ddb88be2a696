"""Fenced script calls on Redis Cluster: one raw pipeline per master, streamed.

Keys of one script call must share a hash slot, so on a Cluster a batch of users makes about
one call per user. Through redis-py (a pipeline per master of `Script` calls: a SCRIPT EXISTS
round trip per pipeline, a callback per reply) the consumer spent ~30 µs of CPU per event
there against ~11 on one Redis (`make bench-cluster`, 2026-12-03). Here a batch holds one
connection per master, taken from that master's pool: each chunk's calls are packed into one
buffer per master and sent at once, and the replies are read in order only at `wait`, so the
masters run one chunk while the caller decodes the next (adapters/pipelined.py).

A call whose slot moved or is moving (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) or whose master lost
its script cache (NOSCRIPT: a restart, a failover to a replica) is sent again on its own by
`resend` (the cluster client, which follows the redirection, refreshes its slot map and loads
the script); the fence makes a call sent twice harmless. Any other failure drops every
connection of the batch (replies may be left unread) and raises; the caller writes the whole
batch again. A connection that fails (a master gone: failed over, or back at a new address)
first makes the client ask the cluster for its slot map again, as redis-py's own command path
does: this stream bypasses that path, and every retry went back to the dead master.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis

log = logging.getLogger(__name__)

Call = tuple[list[str], list[bytes | str]]
RESEND = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.NoScriptError,
)


class ClusterStream:
    """One batch's script calls on a Redis Cluster: `send` as chunks come, `wait` for every reply."""

    def __init__(self, cluster: redis.RedisCluster, sha: str, resend: Callable[..., Any]) -> None:
        self.cluster, self.sha, self.resend = cluster, sha, resend
        # Per master: the node, the batch's connection to it, and the calls sent on it in order
        # (with whether each counts towards the changed users).
        self._open: dict[str, tuple[Any, Any, list[tuple[Call, bool]]]] = {}

    def send(self, calls: Iterable[tuple[int, list[str], list[bytes | str]]], counts: bool = True) -> None:
        """Send (slot, keys, values) calls to their masters without reading replies."""
        by_node: dict[str, tuple[Any, list[Call]]] = {}
        for slot, keys, values in calls:
            node = self.cluster.nodes_manager.get_node_from_slot(slot)  # type: ignore[arg-type]  # typed str, keyed by int
            by_node.setdefault(node.name, (node, []))[1].append((keys, values))
        name = ""
        try:
            for name, (node, node_calls) in by_node.items():
                if name not in self._open:
                    self._open[name] = (node, node.redis_connection.connection_pool.get_connection(), [])
                _, conn, sent = self._open[name]
                conn.send_packed_command(
                    conn.pack_commands([("EVALSHA", self.sha, len(k), *k, *v) for k, v in node_calls])
                )
                sent.extend((call, counts) for call in node_calls)
        except BaseException as exc:
            self.abandon()
            self._look_up_again(exc, name)
            raise

    def wait(self) -> int:
        """Read every reply; how many counted calls changed a user. Raises on any error but a redirection."""
        applied = 0
        reading = ""  # the master whose replies are being read: a failure below is on it
        try:
            for name, (_, conn, sent) in self._open.items():
                reading = name
                for (keys, values), counts in sent:
                    try:
                        reply = conn.read_response()
                    except redis.exceptions.ResponseError as exc:  # this call's reply; the next ones follow
                        reply = exc
                    if isinstance(reply, RESEND):
                        reply = self.resend(keys=keys, args=values, client=self.cluster)
                    elif isinstance(reply, Exception):
                        raise reply
                    applied += int(reply) if counts else 0
        except BaseException as exc:
            self.abandon()
            self._look_up_again(exc, reading)
            raise
        self._release(disconnect=False)
        return applied

    def abandon(self) -> None:
        """Drop every connection of the batch (replies may be unread), so no pool hands out a dirty one."""
        self._release(disconnect=True)

    def _look_up_again(self, exc: BaseException, node: str) -> None:
        """After a connection to `node` failed, the cluster's slot map again (the next try uses it)."""
        if not isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return
        manager = self.cluster.nodes_manager
        try:
            if "last_failed_node_name" in inspect.signature(manager.initialize).parameters:
                # The failed node asked last (redis-py 8 has it; types-redis is older).
                manager.initialize(last_failed_node_name=node or None)  # type: ignore[call-arg]
            else:
                manager.initialize()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as failed:
            # No node answered: the caller's retry comes back here, and asks again.
            log.warning("redis cluster: slot map not refreshed after %s failed: %r", node, failed)

    def _release(self, disconnect: bool) -> None:
        for node, conn, _ in self._open.values():
            if disconnect:
                conn.disconnect()
            node.redis_connection.connection_pool.release(conn)
        self._open = {}

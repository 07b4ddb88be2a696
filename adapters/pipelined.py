"""Fenced writes sent without waiting for Redis: the consumer decodes the next chunk while Redis runs this one.

The same script calls `ProjectionStore.apply` makes (adapters/store.py), on one connection
taken from the client's pool for the whole batch, in order; replies are read only at the
end. Redis runs a script on its own core while this process decodes, so the wait for the
reply overlaps work instead of adding to it (docs/decisions.md, "Throughput").

Nothing is acknowledged before every reply has been read: the caller saves positions only
after `wait`. Any error (connection, timeout, NOSCRIPT after a Redis restart) drops the
connection and raises; the caller then writes the whole batch again the ordinary way
(`ProjectionStore.apply`, retried until Redis answers), which the fence makes harmless.
On Redis Cluster each chunk goes to the masters the same way, one connection per master
(adapters/cluster_write.py), and a redirected call is sent again at `wait`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from adapters.marks import Mark
from adapters.store import KEYS_PER_CALL, ProjectionStore
from domain.projection import Event

log = logging.getLogger(__name__)


class PipelinedWrite:
    """One batch's fenced script calls, streamed to Redis chunk by chunk; `wait` reads every reply."""

    def __init__(self, store: ProjectionStore, targets: Sequence[int], per_call: int = KEYS_PER_CALL) -> None:
        self.store = store
        self.per_call = per_call  # users per script call (a rebuild's are smaller: readers first)
        self.targets = tuple(targets)
        self.stream = store.cluster_stream() if isinstance(store.client, redis.RedisCluster) else None
        self._conn: Any = None
        self._replies: list[bool] = []  # per call sent: does it count (the first, live target)?
        self.open = True  # False once abandoned: the caller writes the batch the ordinary way

    def send(self, newest: Mapping[str, Event]) -> None:
        """Send the script calls for these users (canonical key -> newest event) without reading replies."""
        if not newest:
            return
        if self.stream is not None:
            for n, generation in enumerate(self.targets):
                self.stream.send(self.store.slot_calls(newest.items(), generation, self.per_call), counts=n == 0)
            return
        commands = []
        for n, generation in enumerate(self.targets):
            for keys, values in self.store.calls(newest.items(), generation, self.per_call):
                commands.append(("EVALSHA", self.store.fenced_set_sha, len(keys), *keys, *values))
                self._replies.append(n == 0)
        try:
            if self._conn is None:
                self._conn = self.store.client.connection_pool.get_connection()
            self._conn.send_packed_command(self._conn.pack_commands(commands))
        except BaseException:
            self.abandon()
            raise

    def wait(self, mark: Mark | None = None) -> int:
        """Send `mark` after the data (adapters/marks.py), read every reply; return how many users
        changed in the live target. Raises on any error (WritesLost for the mark)."""
        if self.stream is not None:
            applied = self.stream.wait()
            if mark is not None:
                self.store.send_mark(mark)
            return applied
        applied = 0
        try:
            if mark is not None:
                if self._conn is None:
                    self._conn = self.store.client.connection_pool.get_connection()
                command = ("EVALSHA", self.store.mark_filled_sha, 1, mark.key, *mark.args())
                self._conn.send_packed_command(self._conn.pack_commands([command]))
            for counts in self._replies:
                reply = self._conn.read_response()
                if isinstance(reply, redis.ResponseError):
                    raise reply
                if counts:
                    applied += int(reply)
            if mark is not None:
                reply = self._conn.read_response()
                if isinstance(reply, redis.ResponseError):
                    raise reply
                mark.check(reply)
        except BaseException:
            self.abandon()
            raise
        self._release()
        return applied

    def failed(self, error: redis.RedisError) -> None:
        """Abandon after `error` and say so; the caller writes the batch again the ordinary way."""
        self.abandon()
        # NOSCRIPT after a Redis restart is expected once; the ordinary write loads the script.
        level = logging.INFO if isinstance(error, redis.exceptions.NoScriptError) else logging.WARNING
        log.log(level, "pipelined write failed (%r): writing the batch again", error)

    def abandon(self) -> None:
        """Drop the connection (replies may be unread), so the pool never hands out a dirty one."""
        self.open = False
        if self.stream is not None:
            self.stream.abandon()
        if self._conn is not None:
            self._conn.disconnect()
            self._release()

    def _release(self) -> None:
        if self._conn is not None:
            self.store.client.connection_pool.release(self._conn)
            self._conn = None
        self._replies = []

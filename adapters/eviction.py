"""Whether Redis may delete the projection's keys by itself when its memory is full: said once, at start;
and how full it is, for the lines that report a full Redis.

Under `noeviction` a full Redis refuses writes: the consumer waits and says so, and readiness
falls. `allkeys-*` policies delete keys instead, silently: users' values (reads fall back to
MySQL), the generation pointer and the saved positions (the consumer then takes Redis for wiped
and starts again), the generation counter, the rebuild's claim. `volatile-*` policies delete the
only key with a TTL, the rebuild's claim (that rebuild stops without its flip), and then refuse
writes as `noeviction` does. The check is advisory: nothing here may stop the consumer.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.exceptions import RedisClusterException

log = logging.getLogger(__name__)

SAFE = "noeviction"
EFFECTS = {
    "allkeys": "any key: users' values, the generation pointer, the saved positions, the rebuild's claim",
    "volatile": "the rebuild's claim, its only key with a TTL (that rebuild stops without its flip)",
}
# Redis unreachable: the consume loop waits for it and says so; this check has nothing to add.
OUTAGES = (redis.ConnectionError, redis.TimeoutError)


def memory_infos(client: Any) -> list[tuple[str, Any]]:
    """`INFO memory` of every server (each primary of a Cluster, named; a single Redis: "").

    Raises redis.RedisError (INFO refused, Redis unreachable) or RedisClusterException.
    """
    if isinstance(client, redis.RedisCluster):
        # One node at a time: with a single target redis-py returns that node's INFO itself.
        return [(node.name, client.info("memory", target_nodes=node)) for node in client.get_primaries()]
    return [("", client.info("memory"))]


def eviction_policies(client: Any) -> set[str] | None:
    """Every server's `maxmemory-policy` (each primary's in a Cluster); None when one does not say.

    Raises redis.RedisError (INFO refused, Redis unreachable) or RedisClusterException.
    """
    answers = [answer for _, answer in memory_infos(client)]
    policies = {answer.get("maxmemory_policy") if isinstance(answer, dict) else None for answer in answers}
    return None if None in policies or not policies else {str(p) for p in policies}


def memory_note(client: Any) -> str:
    """ "used X MiB of maxmemory Y MiB" for every server (a Cluster's primaries named); "" when Redis will not say."""
    try:
        answers = memory_infos(client)
    except (redis.RedisError, RedisClusterException):
        return ""
    notes = []
    for node, answer in answers:
        if not isinstance(answer, dict) or "used_memory" not in answer:
            continue
        limit = int(answer.get("maxmemory") or 0)
        of = f"maxmemory {limit / 2**20:.1f} MiB" if limit else "no maxmemory"
        notes.append(f"{node + ': ' if node else ''}used {int(answer['used_memory']) / 2**20:.1f} MiB of {of}")
    return "; ".join(notes)


def check_eviction(client: Any) -> list[str]:
    """Log what an evicting policy would delete (ERROR) and return those policies; quiet under noeviction."""
    try:
        policies = eviction_policies(client)
    except OUTAGES as exc:
        log.debug("maxmemory-policy not checked: %r", exc)
        return []
    except (redis.RedisError, RedisClusterException) as exc:  # INFO refused (an ACL, a managed service)
        log.info("maxmemory-policy not checked (INFO refused: %s): it must be %s", exc, SAFE)
        return []
    if policies is None:
        log.info("maxmemory-policy not checked (Redis did not say): it must be %s", SAFE)
        return []
    risky = sorted(policies - {SAFE})
    for policy in risky:
        effect = EFFECTS.get(policy.split("-", 1)[0], "keys of the projection")
        log.error(
            "Redis maxmemory-policy is %s: when its memory is full Redis deletes %s; set maxmemory-policy %s"
            " (docs/capacity.md)",
            policy,
            effect,
            SAFE,
        )
    return risky

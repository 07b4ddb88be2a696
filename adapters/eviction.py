"""Whether Redis may delete the projection's keys by itself when its memory is full: said once, at start.

Under `noeviction` a full Redis refuses writes: the consumer waits and says so, and readiness
falls. Any other policy deletes keys instead, silently: `allkeys-*` users' values (reads fall
back to MySQL), the generation pointer and the saved positions (the consumer then takes Redis
for wiped and projects everything again, which fills it again); `volatile-*` the only key with a
TTL, the rebuild's claim (a rebuild near the limit stops without its flip).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

log = logging.getLogger(__name__)

SAFE = "noeviction"
EFFECTS = {
    "allkeys": "users' values, the generation pointer and the saved positions",
    "volatile": "the rebuild's claim, its only key with a TTL (a rebuild stops without its flip)",
}


def eviction_policies(client: Any) -> set[str] | None:
    """Every server's `maxmemory-policy` (each primary's in a Cluster); None when INFO is refused.

    Raises redis.RedisError when Redis cannot be reached.
    """
    try:
        if isinstance(client, redis.RedisCluster):
            nodes = client.info("memory", target_nodes=redis.RedisCluster.PRIMARIES)
            return {str(node["maxmemory_policy"]) for node in nodes.values()}
        return {str(client.info("memory")["maxmemory_policy"])}
    except redis.exceptions.NoPermissionError:
        return None


def check_eviction(client: Any) -> list[str]:
    """Log what an evicting policy would delete (ERROR) and return those policies; quiet under noeviction."""
    try:
        policies = eviction_policies(client)
    except redis.RedisError as exc:
        log.debug("maxmemory-policy not checked: %r", exc)  # an outage: the loop waits and reports it
        return []
    if policies is None:
        log.info("maxmemory-policy not checked (this Redis user may not run INFO): it must be %s", SAFE)
        return []
    risky = sorted(policies - {SAFE})
    for policy in risky:
        kind = "allkeys" if policy.startswith("allkeys") else "volatile"
        log.error(
            "Redis maxmemory-policy is %s: when its memory is full Redis deletes %s instead of refusing"
            " writes; set maxmemory-policy %s (docs/deploy.md)",
            policy,
            EFFECTS[kind],
            SAFE,
        )
    return risky

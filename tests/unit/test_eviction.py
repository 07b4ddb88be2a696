"""The start-up check of Redis's maxmemory-policy against stub clients: what a real one cannot easily show."""

from __future__ import annotations

import logging

import pytest
import redis
from redis.cluster import ClusterNode
from redis.exceptions import RedisClusterException

from adapters.eviction import check_eviction, eviction_policies, memory_note


class Single:
    def __init__(self, answer) -> None:
        self.answer = answer

    def info(self, section: str):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class OneShardCluster(redis.RedisCluster):
    """A Cluster with the given primaries' INFO answers; built without connecting."""

    def __new__(cls, answers):  # type: ignore[no-untyped-def]
        cluster = object.__new__(cls)
        cluster.answers = answers
        return cluster

    def __init__(self, answers) -> None:  # type: ignore[no-untyped-def]
        pass

    def get_primaries(self):  # type: ignore[no-untyped-def]
        return [ClusterNode(host, 7000) for host in self.answers]

    def info(self, section=None, target_nodes=None, **kwargs):  # type: ignore[no-untyped-def, override]
        return self.answers[target_nodes.host]  # one target: redis-py returns that node's INFO itself


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("policy", "deletes"),
    [("allkeys-lru", "the generation pointer"), ("volatile-ttl", "the rebuild's claim"), ("lfu-new", "keys of")],
)
def test_an_evicting_policy_is_named_with_what_it_deletes(policy, deletes, caplog):
    assert check_eviction(Single({"maxmemory_policy": policy})) == [policy]
    assert len(errors(caplog)) == 1 and policy in errors(caplog)[0] and deletes in errors(caplog)[0]


def test_noeviction_says_nothing(caplog):
    assert check_eviction(Single({"maxmemory_policy": "noeviction"})) == []
    assert caplog.records == []


def test_every_primary_of_a_cluster_is_asked_one_by_one():
    cluster = OneShardCluster({"a": {"maxmemory_policy": "noeviction"}, "b": {"maxmemory_policy": "allkeys-lfu"}})
    assert eviction_policies(cluster) == {"noeviction", "allkeys-lfu"}
    assert eviction_policies(OneShardCluster({"a": {"maxmemory_policy": "noeviction"}})) == {"noeviction"}


@pytest.mark.parametrize(
    "answer",
    [
        {"used_memory": 1},  # a server or proxy whose INFO has no policy
        redis.exceptions.NoPermissionError("NOPERM this user has no permissions to run the 'info' command"),
        redis.exceptions.ResponseError("ERR unknown command 'INFO'"),  # renamed or disabled
    ],
)
def test_a_redis_that_does_not_say_is_a_skipped_check_never_an_error(answer, caplog):
    caplog.set_level(logging.INFO)
    assert check_eviction(Single(answer)) == []
    assert "maxmemory-policy not checked" in caplog.text and errors(caplog) == []


@pytest.mark.parametrize("outage", [redis.ConnectionError("refused"), redis.TimeoutError("timed out")])
def test_an_unreachable_redis_is_left_to_the_loop(outage, caplog):
    caplog.set_level(logging.INFO)
    assert check_eviction(Single(outage)) == []
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_a_cluster_without_primaries_is_a_skipped_check(caplog):
    class Broken(OneShardCluster):
        def get_primaries(self):  # type: ignore[no-untyped-def]
            raise RedisClusterException("No targets were found to execute INFO command on")

    caplog.set_level(logging.INFO)
    assert check_eviction(Broken({})) == []
    assert "maxmemory-policy not checked" in caplog.text


def test_how_full_redis_is_reads_every_primary_and_says_nothing_it_does_not_know():
    mib = 2**20
    full = Single({"used_memory": 40 * mib, "maxmemory": 40 * mib})
    assert memory_note(full) == "used 40.0 MiB of maxmemory 40.0 MiB"
    assert memory_note(Single({"used_memory": 3 * mib, "maxmemory": 0})) == "used 3.0 MiB of no maxmemory"
    cluster = OneShardCluster({"a": {"used_memory": mib, "maxmemory": 2 * mib}, "b": {"maxmemory": 2 * mib}})
    assert memory_note(cluster) == "a:7000: used 1.0 MiB of maxmemory 2.0 MiB"
    assert memory_note(Single(redis.ResponseError("NOPERM this user has no permissions"))) == ""

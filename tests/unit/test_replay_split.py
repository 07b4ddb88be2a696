"""How a replay splits its partitions across worker processes (consumer/replay_workers.py)."""

from dataclasses import replace

import pytest

from adapters.settings import Settings
from consumer.replay import Rebuild
from consumer.replay_workers import split


def test_every_partition_with_work_is_in_exactly_one_group():
    partitions = {p: (0, 100 * (p + 1)) for p in range(6)} | {6: (50, 50)}  # 6 has nothing left
    groups = split(partitions, 4)
    members = [p for group in groups for p in group]
    assert sorted(members) == list(range(6))
    assert all(group[p] == partitions[p] for group in groups for p in group)


def test_groups_are_about_equal_in_events():
    partitions = {0: (0, 600), 1: (0, 500), 2: (0, 400), 3: (0, 300), 4: (0, 200), 5: (0, 100)}
    loads = sorted(sum(end - low for low, end in group.values()) for group in split(partitions, 2))
    assert loads == [1000, 1100]


def test_never_more_groups_than_partitions_with_work():
    assert len(split({0: (0, 10), 1: (5, 5)}, 8)) == 1
    assert split({0: (3, 3)}, 2) == []
    assert len(split({p: (0, 10) for p in range(6)}, 1)) == 1


def test_fewer_than_one_worker_is_refused(store):
    with pytest.raises(ValueError, match="UMS_REPLAY_WORKERS"):
        Rebuild(replace(Settings(), replay_workers=0), store, None)

"""The default number of API workers: one per core the process may use."""

import os
from pathlib import Path

from api.runtime import usable_cpus


def test_without_a_cgroup_quota_the_affinity_counts(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_a_quota_caps_the_affinity_rounded_up(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one worker, never zero
    assert usable_cpus(tmp_path) == 1


def test_a_quota_above_the_affinity_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("6400000 100000\n")  # 64 CPUs of quota
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_no_cgroup_file_means_the_affinity(tmp_path: Path) -> None:
    assert usable_cpus(tmp_path / "absent") == len(os.sched_getaffinity(0))


def test_pinned_to_one_core_one_worker(tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert usable_cpus(tmp_path) == 1
    finally:
        os.sched_setaffinity(0, before)

"""Maintenance steps behind serving: which cgroup's CPU share a process has, and when its session's group is lowered."""

from __future__ import annotations

from pathlib import Path

import pytest

from ums_find import priority


def cgroup_tree(root: Path, enabled: dict[str, str]) -> Path:
    """A fake /sys/fs/cgroup: `enabled` maps a cgroup path to its cgroup.subtree_control."""
    for path, controllers in enabled.items():
        here = root / path.strip("/")
        here.mkdir(parents=True, exist_ok=True)
        (here / "cgroup.subtree_control").write_text(controllers + "\n")
    return root


def fake_proc(tmp_path: Path, autogroups: str = "1", cgroup: str = "0::/\n", autogroup: bool = True) -> Path:
    proc = tmp_path / "proc"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "self").mkdir()
    (proc / "sys/kernel/sched_autogroup_enabled").write_text(autogroups + "\n")
    (proc / "self/cgroup").write_text(cgroup)
    if autogroup:
        (proc / "self/autogroup").write_text("/autogroup-7 nice 0\n")
    return proc


def test_a_v1_cpu_hierarchy_names_the_cgroup() -> None:
    text = "9:name=systemd:/\n4:memory:/x\n1:cpu,cpuacct:/docker/abc\n0::/\n"
    assert priority.cpu_cgroup(text) == "/docker/abc"


def test_under_v2_the_cgroup_is_where_the_cpu_controller_stops(tmp_path: Path) -> None:
    text = "0::/user.slice/user-0.slice/session-3.scope\n"
    off = cgroup_tree(tmp_path / "off", {"/": "memory pids"})
    assert priority.cpu_cgroup(text, off) == "/"  # systemd without CPU accounting: everything shares the root's
    part = cgroup_tree(tmp_path / "part", {"/": "cpu memory", "/user.slice": "memory"})
    assert priority.cpu_cgroup(text, part) == "/user.slice"
    whole = {"/": "cpu", "/user.slice": "cpu", "/user.slice/user-0.slice": "cpu"}
    assert (
        priority.cpu_cgroup(text, cgroup_tree(tmp_path / "whole", whole)) == "/user.slice/user-0.slice/session-3.scope"
    )


def test_autogroups_apply_only_when_on_and_in_the_root_cpu_cgroup(tmp_path: Path) -> None:
    root = cgroup_tree(tmp_path / "cg", {"/": "cpu"})
    assert priority.autogroups_apply(fake_proc(tmp_path / "a"), root)
    assert not priority.autogroups_apply(fake_proc(tmp_path / "b", autogroups="0"), root)
    assert not priority.autogroups_apply(fake_proc(tmp_path / "c", autogroup=False), root)
    assert not priority.autogroups_apply(fake_proc(tmp_path / "d", cgroup="0::/kubepods/pod1\n"), root)
    assert not priority.autogroups_apply(tmp_path / "no-proc", root)


class Calls:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, session_leader: bool) -> None:
        self.nice: list[int] = []
        self.forks = 0
        monkeypatch.setattr(priority.os, "nice", self.nice.append)
        monkeypatch.setattr(priority, "_own_session", self.fork)
        monkeypatch.setattr(priority.os, "getsid", lambda _: priority.os.getpid() if session_leader else -1)

    def fork(self) -> None:
        self.forks += 1


def test_without_autogroups_only_the_process_is_lowered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(monkeypatch, session_leader=False)
    proc = fake_proc(tmp_path, autogroups="0")
    priority.step_behind(10, proc, tmp_path)
    assert (calls.nice, calls.forks) == ([10], 0)
    assert (proc / "self/autogroup").read_text() == "/autogroup-7 nice 0\n"


def test_a_session_leader_lowers_its_group_without_forking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(monkeypatch, session_leader=True)
    proc = fake_proc(tmp_path)
    priority.step_behind(10, proc, cgroup_tree(tmp_path / "cg", {"/": "cpu"}))
    assert (calls.nice, calls.forks) == ([10], 0)
    assert (proc / "self/autogroup").read_text() == "10"


def test_a_shared_session_is_left_for_one_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(monkeypatch, session_leader=False)
    proc = fake_proc(tmp_path)
    priority.step_behind(5, proc, cgroup_tree(tmp_path / "cg", {"/": "cpu"}))
    assert (calls.nice, calls.forks) == ([5], 1)
    assert (proc / "self/autogroup").read_text() == "5"


def test_niceness_zero_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(monkeypatch, session_leader=False)
    priority.step_behind(0, fake_proc(tmp_path), tmp_path)
    assert (calls.nice, calls.forks) == ([], 0)

"""A maintenance command's priority step on the real kernel: its own session, exit codes and signals passed on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until
from ums_find.priority import autogroups_apply

ROOT = Path(__file__).resolve().parents[2]
# What a maintenance command does first (ums_find/maintenance.py), then reports where it runs, then
# exits with argv[1]; with "wait" it waits for SIGTERM as `replay` does (exit 3: abandoned), with "kill" it
# SIGKILLs itself.
SCRIPT = """
import json, os, signal, sys, time
from ums_find.priority import step_behind
started = os.getpid()
step_behind(10)
if sys.argv[1] == "wait":  # before the report: the test sends SIGTERM as soon as it reads it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
print(json.dumps({"started": started, "pid": os.getpid(), "leader": os.getsid(0) == os.getpid(),
                  "nice": os.nice(0), "autogroup": open("/proc/self/autogroup").read().strip()}), flush=True)
if sys.argv[1] == "kill":  # ended by a signal that has no handler to reset (the OOM killer's)
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[1] == "wait":
    time.sleep(60)
sys.exit(int(sys.argv[1]))
"""


def start(arg: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", SCRIPT, arg], cwd=ROOT, stdout=subprocess.PIPE, text=True, **popen
    )


def report(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    return dict(json.loads(proc.stdout.readline()))


def test_a_command_sharing_a_session_runs_in_its_own_and_exits_as_it_did() -> None:
    proc = start("7")
    seen = report(proc)
    assert proc.wait(30) == 7
    assert seen["nice"] == 10
    if autogroups_apply():  # this host groups by session: a worker of its own, its group lowered
        assert seen["pid"] != seen["started"] and seen["leader"], seen
        assert str(seen["autogroup"]).endswith("nice 10"), seen
    else:  # no autogroups (or a CPU cgroup of its own): the niceness alone, no fork
        assert seen["pid"] == seen["started"], seen


def test_sigterm_to_the_pid_started_reaches_the_worker() -> None:
    proc = start("wait")
    seen = report(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 3, seen  # the worker's own clean stop, not the parent's death


def test_a_worker_ended_by_sigkill_ends_the_pid_started_the_same_way() -> None:
    proc = start("kill")
    report(proc)
    assert proc.wait(30) == -signal.SIGKILL
    assert proc.stdout is not None and proc.stdout.read() == ""  # the parent did not carry on with the command


def test_sigkill_to_the_pid_started_kills_the_worker() -> None:
    proc = start("wait")
    worker = int(str(report(proc)["pid"]))
    proc.kill()
    assert proc.wait(30) == -signal.SIGKILL

    def gone() -> bool:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{worker}/stat").read_text().split(") ")[1].startswith("Z")  # not yet reaped: dead

    wait_until(gone, 5, "the worker to die with the pid its supervisor started")


def test_a_command_started_in_a_session_of_its_own_does_not_fork() -> None:
    proc = start("0", start_new_session=True)
    seen = report(proc)
    assert proc.wait(30) == 0
    assert seen["pid"] == seen["started"] and seen["leader"], seen
    if autogroups_apply():
        assert str(seen["autogroup"]).endswith("nice 10"), seen

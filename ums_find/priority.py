"""Maintenance steps behind serving for CPU: a niceness, and its own session where Linux groups by session.

With autogroups on (sched(7); Debian's kernel turns them on) every session whose processes sit in
the root CPU cgroup is one scheduling group, and the groups share the cores as equals: a niceness
then orders a process only against its own session's. A rebuild at niceness 10 started from a
shell or a harness met Redis, a daemon in a session of its own, as an equal and held its core for
up to 50 ms (docs/decisions.md "Niceness and autogroups"). So where autogroups apply, a command
also lowers its session's group by the same niceness; a command that does not lead a session (a
shell's job, a script's child) first gets one: it forks, the child leads a new session and does
the work, and the parent waits, passes on the signals a terminal or a supervisor sends (Ctrl-C,
SIGTERM, SIGHUP, Ctrl-Z and fg) and exits as the child did. A SIGKILL of the parent kills the child
(PR_SET_PDEATHSIG). A supervisor that starts the command in a session of its own (systemd, cron,
`setsid`) gets no fork: the pid it holds is the worker's, which a SIGSTOP needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from consumer.orphans import die_with

log = logging.getLogger(__name__)

PROC, CGROUP_ROOT = Path("/proc"), Path("/sys/fs/cgroup")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCONT)


def cpu_cgroup(cgroups: str, root: Path = CGROUP_ROOT) -> str:
    """The cgroup whose CPU share this process runs under, from /proc/self/cgroup's text.

    A v1 hierarchy naming `cpu` says it directly. Under v2 a process belongs to the deepest
    ancestor of its cgroup down to which every parent enables `cpu` in cgroup.subtree_control
    (systemd often leaves it off: every process then shares the root's).
    """
    unified = None
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
        if controllers == "":
            unified = path
    if unified is None:
        return "/"
    effective, here = "/", root
    for part in [p for p in unified.split("/") if p]:
        try:
            enabled = "cpu" in (here / "cgroup.subtree_control").read_text().split()
        except OSError:
            break
        if not enabled:
            break
        here = here / part
        effective = effective.rstrip("/") + "/" + part
    return effective


def autogroups_apply(proc: Path = PROC, root: Path = CGROUP_ROOT) -> bool:
    """Whether this process's CPU share is its session's: autogroups on and the root CPU cgroup."""
    try:
        enabled = (proc / "sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
        return (
            enabled
            and (proc / "self/autogroup").exists()
            and cpu_cgroup((proc / "self/cgroup").read_text(), root) == "/"
        )
    except (OSError, ValueError):
        return False


def step_behind(niceness: int, proc: Path = PROC, root: Path = CGROUP_ROOT) -> None:
    """Lower this process by `niceness`, and where autogroups apply its session's group too (module doc)."""
    if not niceness:
        return
    grouped = autogroups_apply(proc, root)
    if grouped and os.getsid(0) != os.getpid():
        _own_session()
    os.nice(niceness)
    if not grouped:
        log.info("CPU priority lowered by %d (UMS_MAINTENANCE_NICE)", niceness)
        return
    try:
        (proc / "self/autogroup").write_text(str(niceness))
    except OSError as error:
        log.warning("CPU priority lowered by %d within this session only: its group kept its share (%r)",
                    niceness, error)  # fmt: skip
        return
    log.info("CPU priority lowered by %d (UMS_MAINTENANCE_NICE), with its session's group: autogroups are on "
             "(pid %d)", niceness, os.getpid())  # fmt: skip


def _own_session() -> None:
    """Fork; the child leads a new session and returns to carry on; the parent waits and exits as it did."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # not twice: what is buffered now would be written by both processes
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        os.setsid()
        die_with(parent)
        return
    code = 1
    try:
        code = _wait_for(child)
        if code < 0:  # ended by a signal: end by the same one, as a supervisor expects of the pid it started
            with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
                signal.signal(-code, signal.SIG_DFL)
            os.kill(parent, -code)
    finally:
        os._exit(128 - code if code < 0 else code)  # never back into the command: the child did its work


def _wait_for(child: int) -> int:
    """Pass signals on to `child` until it ends; its exit code (-N when signal N ended it)."""

    def forward(signum: int, _: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    def pause(_signum: int, _frame: FrameType | None) -> None:  # Ctrl-Z: the child has no terminal to stop it
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    signal.signal(signal.SIGTSTP, pause)
    _, status = os.waitpid(child, 0)  # retried by Python across the handlers above (PEP 475)
    return os.waitstatus_to_exitcode(status)

"""api/runtime.py in each gunicorn worker: GIL switch interval (post_fork), boot objects frozen (post_worker_init)."""

from __future__ import annotations

import gc
import os
import runpy
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from adapters.settings import Settings
from api.runtime import freeze_boot_objects, lower_this_thread
from api.worker import QueueStampingWorker

CONF = Path(__file__).resolve().parents[2] / "api" / "gunicorn.conf.py"


@pytest.fixture
def interval_restored() -> Iterator[float]:
    before = sys.getswitchinterval()
    yield before
    sys.setswitchinterval(before)


def forked_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, name: str = "UMS_API_SWITCH_INTERVAL_MS"
) -> SimpleNamespace:
    """Load the gunicorn configuration as gunicorn does, then run its post_fork hook as a new worker would."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # else the configuration makes one
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)
    worker = SimpleNamespace()
    runpy.run_path(str(CONF))["post_fork"](None, worker)
    return worker


@pytest.mark.parametrize(("value", "seconds"), [("1", 0.001), ("0.5", 0.0005), ("20", 0.02)])
def test_the_setting_reaches_the_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, interval_restored: float, value: str, seconds: float
) -> None:
    forked_worker(monkeypatch, tmp_path, value)
    assert sys.getswitchinterval() == pytest.approx(seconds)


def test_unset_keeps_the_interpreters_interval(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, interval_restored: float
) -> None:
    sys.setswitchinterval(0.003)  # not Python's default, so leaving it alone is visible
    forked_worker(monkeypatch, tmp_path, None)
    assert sys.getswitchinterval() == pytest.approx(0.003)


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="UMS_API_SWITCH_INTERVAL_MS"):
        Settings.from_env({"UMS_API_SWITCH_INTERVAL_MS": "-1"})


def thread_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_thread_lowers_its_own_priority_and_no_other() -> None:
    process = os.getpriority(os.PRIO_PROCESS, os.getpid())
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.extend([lower_this_thread(3), thread_nice()]))
    thread.start()
    thread.join()
    assert seen == [min(19, process + 3)] * 2
    assert thread_nice() == process, "the calling process's main thread moved too"


@pytest.mark.parametrize("call", ["setpriority", "getpriority"])
def test_a_refused_priority_call_leaves_the_thread_serving(monkeypatch: pytest.MonkeyPatch, caplog, call: str) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, call, refuse)
    pool_like: list[int] = []
    thread = threading.Thread(target=lambda: pool_like.append(lower_this_thread(5)))
    thread.start()
    thread.join()
    assert pool_like == [0]
    assert "keeps the main thread's priority" in caplog.text


@pytest.mark.parametrize("steps", [0, 4])
def test_the_workers_serving_threads_run_the_configured_steps_below_its_main_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, steps: int
) -> None:
    configured = forked_worker(monkeypatch, tmp_path, str(steps), "UMS_API_POOL_NICE")
    assert configured.pool_nice == steps
    worker = QueueStampingWorker.__new__(QueueStampingWorker)
    worker.cfg, worker.pool_nice = Config(), configured.pool_nice
    pool = worker.get_thread_pool()
    try:
        assert pool.submit(thread_nice).result(10) == min(19, thread_nice() + steps)
    finally:
        pool.shutdown()


def test_a_pool_nice_outside_0_to_19_is_refused() -> None:
    for value in ("-1", "20"):
        with pytest.raises(ValueError, match="UMS_API_POOL_NICE"):
            Settings.from_env({"UMS_API_POOL_NICE": value})


def test_boot_objects_are_frozen_out_of_full_collections():
    try:
        frozen = freeze_boot_objects()
        assert frozen > 1000  # this interpreter's modules, at least
        # Not equal to `frozen`: in the full suite other tests' threads may free a frozen object meanwhile.
        assert gc.get_freeze_count() > 1000
        assert len(gc.get_objects(generation=2)) < frozen
    finally:
        gc.unfreeze()

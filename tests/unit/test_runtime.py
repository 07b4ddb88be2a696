"""api/runtime.py in each gunicorn worker: GIL switch interval (post_fork), boot objects frozen (post_worker_init)."""

from __future__ import annotations

import gc
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.settings import Settings
from api.runtime import freeze_boot_objects

CONF = Path(__file__).resolve().parents[2] / "api" / "gunicorn.conf.py"


@pytest.fixture
def interval_restored() -> Iterator[float]:
    before = sys.getswitchinterval()
    yield before
    sys.setswitchinterval(before)


def forked_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None) -> None:
    """Load the gunicorn configuration as gunicorn does, then run its post_fork hook as a new worker would."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # else the configuration makes one
    if value is None:
        monkeypatch.delenv("UMS_API_SWITCH_INTERVAL_MS", raising=False)
    else:
        monkeypatch.setenv("UMS_API_SWITCH_INTERVAL_MS", value)
    runpy.run_path(str(CONF))["post_fork"](None, None)


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


def test_boot_objects_are_frozen_out_of_full_collections():
    try:
        frozen = freeze_boot_objects()
        assert frozen > 1000  # this interpreter's modules, at least
        # Not equal to `frozen`: in the full suite other tests' threads may free a frozen object meanwhile.
        assert gc.get_freeze_count() > 1000
        assert len(gc.get_objects(generation=2)) < frozen
    finally:
        gc.unfreeze()

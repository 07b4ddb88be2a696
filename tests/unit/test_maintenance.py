"""Maintenance commands (replay, backfill, gc, reconcile) step behind the API and consumer for CPU."""

from __future__ import annotations

import pytest

from adapters.settings import Settings
from ums_find import maintenance


def test_maintenance_steps_behind_by_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from ums_find import priority

    calls: list[int] = []
    monkeypatch.setattr(priority, "step_behind", calls.append)
    maintenance._behind_serving(Settings.from_env({}))
    maintenance._behind_serving(Settings.from_env({"UMS_MAINTENANCE_NICE": "3"}))
    maintenance._behind_serving(Settings.from_env({"UMS_MAINTENANCE_NICE": "0"}))
    assert calls == [10, 3, 0]


@pytest.mark.parametrize("value", ["-1", "20"])
def test_a_niceness_outside_what_the_kernel_takes_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="UMS_MAINTENANCE_NICE"):
        Settings.from_env({"UMS_MAINTENANCE_NICE": value})


def test_maintenance_reads_mysql_with_a_batch_timeout_and_the_api_keeps_its_own() -> None:
    from adapters.clients import Role, mysql_users
    from adapters.mysql import BATCH_READ_TIMEOUT_S

    settings = Settings.from_env({})
    assert mysql_users(settings).pool.connect_args["read_timeout"] == settings.mysql_read_timeout_s == 0.3
    admin = mysql_users(settings, role=Role.ADMIN).pool.connect_args
    assert admin["read_timeout"] == admin["write_timeout"] == BATCH_READ_TIMEOUT_S

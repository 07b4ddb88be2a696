import json
import os
import time

from consumer.health import HealthFile, check_live, check_ready


def test_fresh_heartbeat_is_live_and_old_is_not(tmp_path):
    path = tmp_path / "health"
    assert "no heartbeat" in check_live(str(path), 30)
    HealthFile(str(path)).write(assigned=3, lag=0)
    assert check_live(str(path), 30) is None
    old = time.time() - 60
    os.utime(path, (old, old))
    assert "old" in check_live(str(path), 30)


def test_ready_needs_partitions_and_low_lag(tmp_path):
    path = str(tmp_path / "health")
    health = HealthFile(path)
    health.write(assigned=0, lag=0)
    assert check_ready(path, 100, 30) == "no partitions assigned"
    health.write(assigned=2, lag=500)
    assert "lag 500" in check_ready(path, 100, 30)
    health.write(assigned=2, lag=50)
    assert check_ready(path, 100, 30) is None


def test_two_consumers_given_one_heartbeat_path_do_not_break_each_other(tmp_path, monkeypatch):
    path = tmp_path / "consumer.health"
    mine, theirs = HealthFile(str(path)), HealthFile(str(path))
    rename, pid = os.replace, os.getpid()

    def theirs_lands_in_between(src, dst):
        # The other process's whole write falls between this one's temporary file and its rename.
        monkeypatch.setattr(os, "replace", rename)
        monkeypatch.setattr(os, "getpid", lambda: pid + 1)
        theirs.write(assigned=2, lag=0)
        monkeypatch.setattr(os, "getpid", lambda: pid)
        rename(src, dst)

    monkeypatch.setattr(os, "replace", theirs_lands_in_between)
    mine.write(assigned=1, lag=0)
    assert json.loads(path.read_text())["assigned"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["consumer.health"]

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

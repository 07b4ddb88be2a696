"""12k requests while gunicorn recycles its workers every ~500 requests (max_requests): not one fails."""

from __future__ import annotations

import re
import shutil
import subprocess

from adapters.generations import Generations
from domain import Name, PhoneNumber, User, UserAdded, Version
from tests.e2e.test_api_contract import SINCE
from tests.helpers import ADMISSION_OFF


def ab_figure(output: str, label: str) -> int:
    match = re.search(rf"^{label}:\s+(\d+)", output, re.MULTILINE)
    assert match, f"ab printed no {label!r}:\n{output}"
    return int(match.group(1))


def test_12k_requests_with_worker_recycling(start_api, store, name_tag):
    user = User(Name(f"Recycled {name_tag}"), PhoneNumber(9731423166), SINCE)
    Generations(store).ensure()
    store.apply([UserAdded(user, Version(user.since_ms, 0, 0))], 1)
    api = start_api(
        UMS_API_MAX_REQUESTS="500",
        UMS_API_MAX_REQUESTS_JITTER="50",
        UMS_API_WORKERS="2",
        UMS_API_ACCESS_LOG="/dev/null",
        # Admission control off: 16 closed-loop connections on this shared machine queue past the
        # 10 ms target and would be shed (503), which this test would count as recycling failures.
        **ADMISSION_OFF,
    )
    ab = shutil.which("ab")
    assert ab, "ab is missing: services/stack.sh up installs apache2-utils"
    # ab counts exactly: 12k requests (about 23 worker restarts), 16 at a time, keep-alive on
    # (the hard case for recycling).
    result = subprocess.run(
        [ab, "-n", "12000", "-c", "16", "-k", "-r", f"{api.base}/user/Recycled%20{name_tag}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(result.stdout[-1500:])
    assert result.returncode == 0, result.stderr
    recycled = api.log.read_text().count("Autorestarting worker")
    assert ab_figure(result.stdout, "Complete requests") == 12_000
    assert ab_figure(result.stdout, "Failed requests") == 0
    assert "Non-2xx responses" not in result.stdout
    assert recycled >= 10, f"only {recycled} worker restarts: recycling was not exercised"

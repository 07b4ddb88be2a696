"""Poll the API until the projection serves a user (used by `make run` before it prints the curl).

MySQL may answer first (the consumer is still joining its group); `make run` waits for the
projection so that the curl it prints shows the read model working.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def wait(base_url: str, name: str, deadline_s: float = 60.0) -> float:
    """Seconds until GET /user/<name> answered 200 from the projection; TimeoutError past the deadline."""
    url = f"{base_url}/user/{urllib.parse.quote(name)}"
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and response.headers.get("X-Ums-Source") == "projection":
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{name} not visible at {url} after {deadline_s:.0f} s")


if __name__ == "__main__":
    seconds = wait(sys.argv[1], sys.argv[2])
    sys.stderr.write(f"{sys.argv[2]} visible after {seconds:.1f} s\n")

"""The servers the API benchmarks run: ours and the ceiling under gunicorn, the seed under waitress."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import time

import requests

from adapters.settings import Settings
from bench.common import BIN, ROOT, SUT_CPUS, children, cpu_seconds, env_for, pinned, wait_for

log = logging.getLogger("bench")


class Server:
    """A server process on a port, pinned to the system-under-test cores; stopped with SIGTERM."""

    def __init__(self, command: list[str], env: dict[str, str], port: int, probe: str = "/livez") -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.probe = probe
        with socket.socket() as sock:  # another run's server would answer our probes: refuse to start
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                raise RuntimeError(f"port {port} is taken (another benchmark run?); set BENCH_PORT_BASE")
        self.proc = subprocess.Popen(
            pinned(command, SUT_CPUS), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._up, 30, f"server on {port}")

    def _up(self) -> bool:
        try:
            return requests.get(self.base + self.probe, timeout=1).status_code < 500
        except requests.ConnectionError:
            return False

    def settle(self, timeout: float = 60) -> None:
        """Wait until the server answers quickly again (a saturating run leaves a queue behind)."""

        def quick() -> bool:
            try:
                return requests.get(self.base + self.probe, timeout=1).elapsed.total_seconds() < 0.05
            except requests.RequestException:
                return False

        wait_for(quick, timeout, f"{self.base} to drain its queue", interval=0.2)

    def cpu(self) -> float:
        """CPU seconds the server's processes (the master or the only process, and its workers) have used."""
        total = 0.0
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            # A worker may exit between the listing and the read.
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += cpu_seconds(pid)
        return total

    def quiesce(self, timeout: float = 120, window: float = 0.5, busy: float = 0.03) -> float:
        """Wait until the server uses under `busy` of a core over `window` s; the seconds waited.

        A server past its capacity keeps working on requests whose clients left (waitress and
        gunicorn's thread pool serve them all): the next series, on the same core, would pay for it.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            before = self.cpu()
            time.sleep(window)
            if self.cpu() - before < busy * window:
                return time.monotonic() - started
        log.warning("%s still busy after %.0f s", self.base, timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def gunicorn(settings: Settings, port: int, app: str | None = None) -> Server:
    env = env_for(settings, UMS_API_BIND=f"127.0.0.1:{port}", UMS_API_ACCESS_LOG="/dev/null", UMS_LOG_LEVEL="WARNING")
    command = [str(BIN / "gunicorn"), "-c", "api/gunicorn.conf.py"] + ([app] if app else [])
    return Server(command, env, port)


SEED_DIR = ROOT / "bench" / "peers" / "seed"
SEED_VENV = ROOT / ".cache" / "bench-seed-venv"


def seed_python() -> str:
    """The seed's own venv, with the article's requirements (pinned in bench/peers/seed/)."""
    python = SEED_VENV / "bin" / "python"
    stamp = SEED_VENV / ".requirements"
    wanted = (SEED_DIR / "requirements.txt").read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(SEED_VENV)], check=True)
        requirements = str(SEED_DIR / "requirements.txt")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", requirements], check=True)
        stamp.write_text(wanted)
    return str(python)


def seed_versions() -> dict[str, str]:
    code = "import importlib.metadata as m, json, sys; print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    packages = ["Flask", "Werkzeug", "waitress", "mysql-connector-python"]
    out = subprocess.run([seed_python(), "-c", code, *packages], capture_output=True, text=True, check=True)
    versions: dict[str, str] = json.loads(out.stdout)
    cext = subprocess.run(
        [seed_python(), "-c", "import mysql.connector as c; print(c.HAVE_CEXT)"], capture_output=True, text=True
    )
    versions["mysql-connector C extension"] = cext.stdout.strip()
    return versions


def seed_server(settings: Settings, port: int) -> Server:
    """The article's FindService: `python app.py` (waitress.serve with its defaults)."""
    env = env_for(settings, SEED_PORT=str(port))
    return Server([seed_python(), str(SEED_DIR / "app.py")], env, port, probe="/user/Nobody%20Probe%20000")

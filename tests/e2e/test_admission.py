"""Admission control through real gunicorn (api/worker.py + api/admission.py): shed, expire, keep serving.

The waits are set with `X-Request-Start` (a proxy's stamp), so the outcome does not depend on how
fast this machine is: a request stamped a minute ago is past any deadline, one stamped a second ago
is far over a 5 ms target. No assertion is on a duration.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server
from tests.helpers import wait_until, worker_pids

# Bounds small enough to trip on purpose: a 5 ms target, a 1 ms interval (no need to wait for
# one to end), and a deadline far beyond any wait the test makes.
TINY_BOUNDS = {"UMS_API_QUEUE_TARGET_MS": "5", "UMS_API_QUEUE_INTERVAL_MS": "1", "UMS_API_REQUEST_DEADLINE_MS": "10000"}
# The waits are set with a proxy's stamp, which the API counts only when told to.
TINY_BOUNDS["UMS_API_TRUST_REQUEST_START"] = "true"


# A request the route answers itself, with no backend behind it (a name too short to be valid: 400).
# An unknown name went to MariaDB, and a stall there past the API's 0.3 s read timeout (seen once on
# a busy machine) turned the "served" 404 into a 503 that was neither shed nor expired.
SERVED_PATH, SERVED = "/user/short", 400


def metric(api: Server, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when absent)."""
    text = api.ops_get("/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def stamped(seconds_ago: float) -> dict[str, str]:
    return {"X-Request-Start": f"t={int((time.time() - seconds_ago) * 1e6)}"}


def assert_rejected(response, slug: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    assert response.json()["type"].endswith("/" + slug)
    assert "X-Ums-Source" not in response.headers  # the route never ran


def test_overload_is_shed_expired_requests_are_not_served_and_the_worker_carries_on(start_api):
    # One worker, so that one CoDel state sees every request; an interval of 1 ms so that the test
    # need not wait for one to end.
    api = start_api(
        UMS_API_WORKERS="1",
        **TINY_BOUNDS,
    )
    path = SERVED_PATH
    assert api.get(path).status_code == SERVED  # served
    served = metric(api, "ums_api_requests_total", route="/user/<name:name>")

    # Past its deadline: answered 503 without reaching the route.
    assert_rejected(api.get(path, headers=stamped(60)), "deadline-exceeded")
    assert metric(api, "ums_api_requests_total", route="/user/<name:name>") == served
    assert metric(api, "ums_api_admission_total", outcome="expired") == 1

    # Waits far over the target: once an interval has passed without a short one, they are shed.
    def shed() -> bool:
        response = api.get(path, headers=stamped(1))
        assert response.status_code in (SERVED, 503), response.text
        return response.status_code == 503 and (assert_rejected(response, "overloaded") is None)

    wait_until(shed, 10, "a request to be shed")
    assert metric(api, "ums_api_admission_total", outcome="shed") >= 1

    # Requests that did not wait are served again, by the same worker.
    wait_until(lambda: api.get(path).status_code == SERVED, 10, "the API to serve again")
    assert metric(api, "ums_api_admission_total", outcome="admitted") >= 2
    assert api.log.read_text().count("Booting worker") == 1
    assert api.ops_get("/readyz").status_code == 200  # overload does not make the API unready

    records = [json.loads(line) for line in api.log.read_text().splitlines() if line.startswith("{")]
    outcomes = {r["admission"] for r in records if r["path"] == path}
    assert outcomes == {"admitted", "shed", "expired"}
    assert all(isinstance(r["queue_ms"], float) for r in records)
    assert all(r["proxy_queue_ms"] >= 1000 for r in records if r["admission"] in ("shed", "expired"))


def test_the_queue_wait_histogram_counts_every_request(api):
    before = metric(api, "ums_api_queue_wait_seconds_count", stamp="accept")
    for _ in range(5):
        assert api.get(SERVED_PATH).status_code == SERVED
    text = api.ops_get("/metrics").text
    after = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("ums_api_queue_wait_seconds") and s.labels.get("stamp") == "accept"
    }
    # Five public requests and the scrape that reads the figure (measured before it answers).
    assert after[("ums_api_queue_wait_seconds_count", None)] == before + 6
    assert after[("ums_api_queue_wait_seconds_bucket", "+Inf")] == before + 6
    assert 'ums_api_queue_wait_seconds_count{stamp="proxy"} 0.0' in text  # no proxy stamp was sent


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from `sock`: status, headers (lower-case), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_arrivals_behind_a_slow_queue_are_shed_before_any_thread_takes_them(start_api):
    # One worker with one thread: a request whose headers are not finished holds the thread, so
    # the requests sent after it wait in the worker's queue for as long as the test likes.
    api = start_api(
        UMS_API_WORKERS="1",
        UMS_API_THREADS="1",
        UMS_API_HEADER_TIMEOUT_S="0",  # the unfinished headers hold the thread: no deadline cuts them
        **TINY_BOUNDS,
    )
    path = SERVED_PATH
    wait_until(lambda: api.get(path, headers=stamped(1)).status_code == 503, 10, "a request to be shed")
    host, port = api.base.removeprefix("http://").split(":")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(socket.create_connection((host, int(port)), timeout=10))
        holder.sendall(request[:-2])  # the blank line that ends the headers is held back
        waiting: list[socket.socket] = []
        shed: list[tuple[socket.socket, dict[str, str], bytes]] = []

        def one_more_is_shed_on_arrival() -> bool:
            # Once the only thread is held, whatever answers was answered on arrival by the main
            # thread: the queue in front of it has waited, or would take, too long.
            sock = stack.enter_context(socket.create_connection((host, int(port)), timeout=10))
            sock.sendall(request)
            waiting.append(sock)
            for ready in select.select(waiting, [], [], 0.05)[0]:
                status, headers, body = read_response(ready)
                if status == 503:
                    shed.append((ready, headers, body))
                    return True
                # Served: the holder's connection was not on the thread yet (a connection accepted
                # under pressure waits on the poller for its first bytes, api/worker.py).
                assert status == SERVED
                waiting.remove(ready)
            return False

        wait_until(one_more_is_shed_on_arrival, 10, "a request to be shed on arrival")
        answered, headers, body = shed[0]
        assert (headers["retry-after"], headers["connection"]) == ("1", "keep-alive")
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["type"].endswith("/overloaded")
        holder.sendall(b"\r\n")
        # 503 if it waited on the poller first (above), then in the queue past twice the target.
        assert read_response(holder)[0] in (SERVED, 503)
        for sock in waiting:
            if sock is not answered:
                assert read_response(sock)[0] in (SERVED, 503)
        # Once the queue is short again, the API serves, on the kept-alive connection too.
        wait_until(lambda: api.get(path).status_code == SERVED, 10, "the API to serve again")

        def served_on_the_kept_alive_connection() -> bool:
            answered.sendall(request)
            return read_response(answered)[0] == SERVED  # a 503 keeps the connection alive too

        wait_until(served_on_the_kept_alive_connection, 10, "the kept-alive connection to be served")
    assert metric(api, "ums_api_admission_total", outcome="shed", stage="arrival") >= 1
    assert api.log.read_text().count("Booting worker") == 1


def test_connections_that_send_nothing_do_not_hold_the_worker(start_api):
    # gthread gave every new connection a thread that waited up to 5 s for its first bytes: as many
    # silent connections as threads (a client's spare dial, a preconnect) stopped the worker, and a
    # request behind them was answered 503 past its deadline. They now wait on the poller.
    api = start_api(UMS_API_WORKERS="1", UMS_API_THREADS="2")
    host, port = api.base.removeprefix("http://").split(":")
    silent = [socket.create_connection((host, int(port))) for _ in range(3)]
    try:
        assert api.get(SERVED_PATH).status_code == SERVED
    finally:
        for sock in silent:
            sock.close()


def test_connections_that_send_their_headers_too_slowly_are_cut(start_api):
    # A byte, then nothing: gthread's thread then reads the headers with no deadline, so as many such
    # connections as threads stopped the worker for as long as their clients liked, /livez included.
    # No deadline and a long queue target: the request behind them is served, not shed, once they are cut.
    api = start_api(
        UMS_API_WORKERS="1",
        UMS_API_THREADS="2",
        UMS_API_HEADER_TIMEOUT_S="1",
        UMS_API_REQUEST_DEADLINE_MS="0",
        UMS_API_QUEUE_TARGET_MS="10000",
    )
    host, port = api.base.removeprefix("http://").split(":")
    slow = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]
    try:
        for sock in slow:
            sock.sendall(b"G")
        began = time.monotonic()
        assert requests.get(api.base + SERVED_PATH, timeout=10).status_code == SERVED
        assert time.monotonic() - began < 4  # the deadline, and the main thread's turn (<= 1 s)
        assert [sock.recv(100) for sock in slow] == [b"", b""]  # cut: closed without an answer
        wait_until(lambda: "connection(s) cut" in api.log.read_text(), 10, "the cut to be logged")
    finally:
        for sock in slow:
            sock.close()


@pytest.mark.parametrize("kernel_stamps", [True, False])
def test_a_request_that_waited_in_the_kernel_past_its_deadline_is_not_served(start_api, kernel_stamps):
    # A stopped worker stands for one too busy to read its sockets: the request waits in the kernel
    # (the connection's buffer, or the accept queue if the worker had not accepted it yet), where
    # only the kernel's stamp sees it. With stamps, its wait counts from its arrival and it is past
    # the deadline when the worker reads it; without them, it looks fresh and is served.
    api = start_api(
        UMS_API_WORKERS="1",
        UMS_API_REQUEST_DEADLINE_MS="200",
        UMS_API_KERNEL_STAMPS=str(kernel_stamps).lower(),
    )
    assert api.get(SERVED_PATH).status_code == SERVED
    (worker,) = worker_pids(api.proc.pid)
    host, port = api.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        os.kill(worker, signal.SIGSTOP)
        try:
            sock.sendall(f"GET {SERVED_PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            time.sleep(0.5)  # not a synchronisation: the wait itself, twice and a half the deadline
        finally:
            os.kill(worker, signal.SIGCONT)
        status, headers, body = read_response(sock)

    def both_logged() -> list[float] | None:
        # gunicorn logs a request after its answer is sent: the line may trail the response.
        lines = api.log.read_text().splitlines()
        waits = [r["queue_ms"] for r in map(json.loads, filter(lambda x: x.startswith("{"), lines))
                 if r.get("path") == SERVED_PATH]  # fmt: skip
        return waits if len(waits) == 2 else None

    waited = wait_until(both_logged, 10, "the access log's line for the request")[-1]
    if kernel_stamps:
        assert status == 503 and json.loads(body)["type"].endswith("/deadline-exceeded")
        assert headers["retry-after"] == "1"
        assert waited >= 500
        assert metric(api, "ums_api_admission_total", outcome="expired") == 1
    else:
        assert status == SERVED
        assert waited < 500

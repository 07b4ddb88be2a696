"""The overload curve's arithmetic: goodput, timeouts, where a 503 came from, recovery, the headline keys."""

from __future__ import annotations

import base64
import math
from dataclasses import asdict

from bench.openloop import LADDER
from bench.overload import (
    overload_capacity,
    parse,
    per_second_p99,
    recovery_seconds,
    settled_second,
    summarise,
    window_p99,
)
from bench.overload_report import overload_keys, overload_table

GUNICORN = base64.b64encode(b"Content-Type: application/json\r\nServer: gunicorn\r\n\r\n").decode()
RAW = base64.b64encode(b"Content-Type: application/problem+json\r\nConnection: keep-alive\r\n\r\n").decode()


def row(at_ms: float, code: int, latency_ms: float, error: str = "", headers: str = GUNICORN) -> str:
    """One line of `vegeta encode -to=csv` (v12.13: ..., method, url, headers as base64)."""
    at_ns = 1_764_000_000_000_000_000 + int(at_ms * 1e6)
    return f"{at_ns},{code},{int(latency_ms * 1e6)},0,17,{error},e30=,,0,GET,http://x/user/a,{headers}\n"


def test_goodput_counts_only_2xx_within_50_ms_and_errors_are_split_by_kind() -> None:
    csv = row(0, 200, 3.0) + row(1, 200, 49.0) + row(2, 200, 51.0)  # the last one is too slow to be goodput
    csv += row(3, 503, 1.0, "503 Service Unavailable", RAW) + row(4, 503, 40.0, "503 Service Unavailable")
    csv += row(5, 0, 1000.0, "Get: context deadline exceeded (Client.Timeout exceeded)")
    csv += row(6, 0, 2.0, "connection reset by peer") + row(7, 404, 2.0, "404 Not Found")
    step = summarise(parse(csv), multiple=2.0, rate=4, duration_s=2.0)
    assert step.goodput_rps == 1.0  # 2 good answers in 2 s
    assert (step.ok, step.rejected, step.timeouts, step.other_errors) == (3, 2, 1, 2)
    assert step.rejected_on_arrival == 1  # the 503 without gunicorn's Server header
    assert (step.reject_arrival_p99_ms, step.reject_dequeue_p99_ms, step.reject_p99_ms) == (1.0, 40.0, 40.0)
    assert step.admitted_p99_ms == 51.0
    assert not step.generator_behind  # 8 of 8 offered, nothing far past the 1 s timeout
    assert summarise(parse(csv), multiple=2.0, rate=10, duration_s=1.0).generator_behind  # 8 of 10 sent
    late = summarise(parse(row(0, 200, 2.0) + row(1, 503, 35_000.0, "503")), 2.0, rate=2, duration_s=1.0)
    assert late.generator_behind  # a 35 s latency under a 1 s timeout: vegeta itself stalled


def test_requests_without_a_status_are_kept_by_what_vegeta_said_and_when() -> None:
    timeout = 'Get ""http://127.0.0.1:1/user/a"": context deadline exceeded (Client.Timeout exceeded)'
    csv = row(0, 200, 2.0) + row(250, 0, 1000.0, f'"{timeout}"') + row(1500, 0, 3.0, "connection reset by peer")
    csv += row(900, 0, 1000.0, f'"{timeout.replace("/a", "/b")}"') + row(1000, 503, 1.0, "503 Service Unavailable")
    step = summarise(parse(csv), multiple=2.0, rate=5, duration_s=2.0)
    said = 'Get "": context deadline exceeded (Client.Timeout exceeded)'  # one kind, whatever the URL
    assert step.failures == {said: 2, "connection reset by peer": 1}
    assert step.failed_at_s == [0.25, 0.9, 1.5]
    assert step.failed_span_s == [0.25, 1.5]
    report = overload_table(
        {
            "overload_settings": {"step_s": 2, "client_timeout_s": 1, "capacity_rps": 2, "capacity_source": "x",
                                  "good_ms": 50, "recovery_window_s": 1, "recovery_margin_ms": 5},
            "overload_by_peer": {"ours": {"steps": [asdict(step)], "recovery_s": 0}},
        }
    )  # fmt: skip
    assert f"- ours 2x, no status (sent 0.2-1.5 s into the step): 2 x {said}; 1 x connection reset by peer" in report


def test_the_503s_p99_is_kept_for_each_second_of_the_step() -> None:
    csv = row(100, 503, 2.0, "503") + row(900, 503, 180.0, "503") + row(1200, 200, 1.0) + row(2500, 503, 3.0, "503")
    step = summarise(parse(csv), multiple=4.0, rate=2, duration_s=3.0)
    first, second, third = step.reject_p99_ms_by_second
    assert (first, third) == (180.0, 3.0)  # the slow start shows in its own second, not in the others
    assert math.isnan(second)  # no 503 sent in that second (the 200 is not counted)
    assert step.reject_p99_ms == 180.0


def test_recovery_is_the_second_from_which_every_later_second_is_within_the_threshold() -> None:
    assert recovery_seconds([900.0, 12.0, 4.0, 5.0], threshold_ms=10.0) == 2.0
    assert recovery_seconds([4.0, 30.0, 4.0], threshold_ms=10.0) == 2.0  # a relapse restarts the count
    assert recovery_seconds([4.0, 4.0, math.nan], threshold_ms=10.0) is None  # a second without any 2xx
    assert recovery_seconds([4.0, 4.0], threshold_ms=10.0) == 0.0
    results = parse(row(0, 200, 900.0) + row(1500, 200, 3.0) + row(1600, 503, 1.0, "503", RAW))
    p99s = per_second_p99(results, 3)
    assert p99s[:2] == [900.0, 3.0] and math.isnan(p99s[2])  # 503s are not answers; second 3 had none


def test_window_p99_pools_the_answers_of_each_window_so_one_slow_answer_is_not_a_relapse() -> None:
    # 100 fast answers a second for 6 s, and two slow ones in second 4.
    csv = "".join(row(s * 1000 + i, 200, 2.0) for s in range(6) for i in range(100))
    results = parse(csv + row(4500, 200, 40.0) + row(4600, 200, 40.0))
    assert per_second_p99(results, 6)[4] == 40.0  # that second's p99 is its 2nd-slowest of 102
    windows = window_p99(results, 6, 3)
    assert windows == [2.0, 2.0, 2.0, 2.0]  # starts 0..3: 2 of 302 are within a window's 1 %
    assert recovery_seconds(windows, threshold_ms=10.0) == 0.0
    assert recovery_seconds(per_second_p99(results, 6), threshold_ms=10.0) == 5.0
    assert window_p99(results, 2, 5) == [2.0]  # a window longer than the run: the run itself


def steady(seconds: int, latency_ms: float = 2.0, per_second: int = 100) -> str:
    return "".join(row(s * 1000 + i, 200, latency_ms) for s in range(seconds) for i in range(per_second))


def test_settled_is_the_first_second_from_which_the_next_window_and_the_rest_are_within_the_threshold() -> None:
    # A backlog: the first 3 s answer in 40 ms, then 2 ms for 7 s.
    slow_start = parse(steady(3, 40.0) + "".join(row(s * 1000 + i, 200, 2.0) for s in range(3, 10) for i in range(100)))
    assert settled_second(slow_start, 10, 3, threshold_ms=10.0) == 3.0
    # One stall of the machine late in the run (5 slow answers of 1,000): not the overload lasting,
    # though the rule that wants every later window within reads it as a relapse.
    stall = parse(steady(10) + "".join(row(8000 + i, 200, 30.0) for i in range(5)))
    assert settled_second(stall, 10, 3, threshold_ms=10.0) == 0.0
    assert recovery_seconds(window_p99(stall, 10, 3), threshold_ms=10.0) is None
    # Slow for good, or slow again for a third of the run: never settled.
    assert settled_second(parse(steady(10, 40.0)), 10, 3, threshold_ms=10.0) is None
    relapse = parse(steady(6) + "".join(row(s * 1000 + i, 200, 40.0) for s in range(6, 10) for i in range(100)))
    assert settled_second(relapse, 10, 3, threshold_ms=10.0) is None
    assert settled_second([], 10, 3, threshold_ms=10.0) is None  # no answer at all


def test_capacity_falls_back_to_the_lowest_ladder_rate_and_says_so() -> None:
    assert overload_capacity(1200.0) == (1200, "api_capacity_at_p99_10ms_rps")
    rate, source = overload_capacity(0.0)
    assert rate == LADDER[0] and "no rate held" in source
    assert overload_capacity(math.nan)[0] == LADDER[0]


def test_keys_are_ours_over_the_capacity_and_the_worst_reject_p99_at_2x_and_above() -> None:
    def step(multiple: float, goodput: float, reject_p99: float, rejected: int = 10) -> dict[str, object]:
        return {
            "multiple": multiple, "offered_rps": int(multiple * 1000), "goodput_rps": goodput,
            "admitted_p99_ms": 20.0 * multiple, "rejected": rejected, "reject_p99_ms": reject_p99,
            "rejected_on_arrival": rejected, "reject_arrival_p99_ms": reject_p99, "timeouts": int(multiple),
            "other_errors": 0,
        }  # fmt: skip

    steps = [step(1.5, 1000, 500.0), step(2.0, 950, 4.0), step(3.0, 900, 9.0), step(4.0, 850, 0.0, rejected=0)]
    peer = {"steps": steps, "recovery_s": 3.0, "control_recovery_s": 0.0, "recovery_every_window_s": 7.0}
    peer |= {"control_every_window_s": None}
    settings = {"capacity_rps": 1000, "capacity_source": "x", "step_s": 60.0, "client_timeout_s": 1.0}
    settings |= {"good_ms": 50.0, "recovery_margin_ms": 5.0, "recovery_window_s": 30.0}
    keys = overload_keys({**settings, "by_peer": {"ours": peer, "seed": peer}})
    assert (keys["overload_goodput_ratio_2x"], keys["overload_goodput_ratio_4x"]) == (0.95, 0.85)
    assert keys["overload_reject_p99_ms"] == 9.0  # not the 1.5x step's 500 ms, not the 4x step without 503s
    assert (keys["overload_admitted_p99_ms_2x"], keys["overload_client_timeouts_2x"]) == (40.0, 2)
    assert keys["overload_recovery_s"] == 3.0 and set(keys["overload_by_peer"]) == {"ours", "seed"}
    assert keys["overload_recovery_every_window_s"] == 7.0
    text = overload_table({**keys, "date": "d"})
    assert "| ours | 2x | 2,000 | 950 | 40.0 | 10 (4.0) | 10 (4.0) | 2 | 0 |" in text
    both = "3 s, control 0 s (7 s; control not within the window)"
    assert f"ours {both}; seed {both}" in text
    assert keys["overload_floor_reject_p99_ms"] is None and "floor" not in text  # a run without the floor

    floor = [step(2.0, 0, 1.5), step(3.0, 0, 2.5), step(4.0, 0, 12.0)]
    keys = overload_keys({**settings, "by_peer": {"ours": peer}, "floor": floor})
    assert keys["overload_floor_reject_p99_ms"] == 12.0 and "floor" not in keys["overload_settings"]
    text = overload_table({**keys, "date": "d"})
    assert "| floor (the rig: only 503s) | 4x | 4,000 | - | - | 10 (12.0) | - | 4 | 0 |" in text

    late = [{**floor[2], "generator_behind": True, "failures": {"dial tcp: bind: address already in use": 3}}]
    text = overload_table({**overload_keys({**settings, "by_peer": {"ours": peer}, "floor": late}), "date": "d"})
    assert "| floor (the rig: only 503s) | 4x (vegeta fell behind) |" in text
    assert "- floor 4x, no status (times not kept): 3 x dial tcp: bind: address already in use" in text

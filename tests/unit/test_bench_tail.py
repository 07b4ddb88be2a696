"""bench/tail.py's arithmetic: medians and spreads per configuration, and its markdown table."""

from __future__ import annotations

from typing import Any

from bench.tail import markdown, summarise


def one_round(p99_by_rate: dict[int, float], capacity: int, shares: list[float]) -> dict[str, Any]:
    points = {
        rate: {
            "p50_ms": 1.0,
            "p99_ms": p99,
            "p999_ms": p99,
            "errors": int(p99 > 10),
            "requests": 100,
            "codes": {"200": 100 - int(p99 > 10), "503": int(p99 > 10)},
        }
        for rate, p99 in p99_by_rate.items()
    }
    return {"points": points, "capacity": capacity, "worker_shares": shares}


def test_rounds_give_medians_spreads_and_summed_errors() -> None:
    rounds = [
        one_round({750: 4.0, 1000: 30.0}, 750, [0.5, 0.3, 0.2]),
        one_round({500: 3.0, 750: 12.0, 1000: 40.0}, 500, [0.4, 0.4, 0.2]),
        one_round({750: 6.0, 1000: 8.0}, 1000, [0.6, 0.2, 0.2]),
    ]
    got = summarise(rounds)
    assert got["rates"]["750"]["p99_ms"] == {"median": 6.0, "min": 4.0, "max": 12.0, "n": 3}
    assert got["rates"]["500"]["p99_ms"]["n"] == 1  # measured only in the round that missed 750
    assert got["rates"]["1000"]["errors"] == 2
    assert got["rates"]["1000"]["codes"] == {"200": 298, "503": 2}
    assert got["capacity_at_p99_10ms_rps"]["median"] == 750
    assert got["largest_worker_share"] == {"median": 0.5, "min": 0.4, "max": 0.6, "n": 3}


def test_the_table_has_a_column_for_every_rate_any_configuration_measured() -> None:
    report = {
        "rates": [750, 1000],
        "results": {
            "a": summarise([one_round({750: 4.0, 1000: 8.0}, 1000, [1.0])]),
            "b": summarise([one_round({500: 3.0, 750: 20.0, 1000: 30.0}, 500, [0.7, 0.3])]),
        },
        "skipped": {"py313": "no root"},
        "date": "2026-12-02 21:00 UTC",
        "machine": "test",
        "rounds_done": 1,
        "duration_s": 2.5,
        "load_average_start": [0.1],
        "load_average_end": [0.2],
        "elapsed_s": 10.0,
    }
    lines = markdown(report).splitlines()
    assert lines[0].startswith("| configuration | 500/s p50 / p99 ms | 750/s")
    assert lines[2].startswith("| a | - | 1.0 / 4.0 [4.0-4.0] | 1.0 / 8.0 [8.0-8.0] | 0 | 1000 [1000-1000]")
    assert lines[3].startswith("| b | 1.0 / 3.0 [3.0-3.0] | 1.0 / 20.0")
    assert "- skipped py313: no root" in lines

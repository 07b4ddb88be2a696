"""The background reader's windows (bench/readers.py): failed reads by second, and the reader's own pauses."""

from __future__ import annotations

from bench.readers import Reader


def reader_with(rows: list[tuple[float, int, float]]) -> Reader:
    reader = Reader.__new__(Reader)  # no vegeta: the rows it would have read back
    reader.expect, reader.rows = 200, rows
    return reader


def test_a_window_counts_failed_reads_by_the_second_they_were_sent() -> None:
    rows = [(100.0 + i * 0.002, 200, 1.0) for i in range(1000)]  # 500 req/s for 2 s
    rows[600] = (rows[600][0], 503, 0.3)
    rows[601] = (rows[601][0], 0, 1000.0)
    window = reader_with(rows).window(100.0, 102.0)
    assert window.requests == 1000 and window.failed == 2
    assert window.failed_at_s == {"1": 2} and window.codes == {"200": 998, "503": 1, "0": 1}


def test_a_window_names_the_readers_longest_pause_and_when_it_began() -> None:
    sends = [100.0 + i * 0.002 for i in range(500)]
    sends = [t if t < 100.5 else t + 0.060 for t in sends]  # the load generator lost its core for 60 ms at +0.5 s
    window = reader_with([(t, 200, 1.0) for t in sends]).window(100.0, 101.06)  # sends to its end
    assert 61 <= window.max_send_gap_ms <= 63
    assert window.max_send_gap_at_s == 0.5


def test_a_reader_silent_through_a_window_paused_through_all_of_it() -> None:
    window = reader_with([(100.0, 200, 1.0)]).window(101.0, 103.0)
    assert window.requests == 0 and window.max_send_gap_ms == 2000.0 and window.max_send_gap_at_s == 0.0

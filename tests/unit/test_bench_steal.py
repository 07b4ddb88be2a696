"""CPU steal in the benchmark: the share between readings, windows of samples, the report's lines."""

from __future__ import annotations

from bench.report import rounds_note, steal_note
from bench.steal import StealSampler, share_pct, steal_ticks, summary
from tests.helpers import wait_until


def test_share_is_steal_over_all_ticks_between_two_readings():
    assert share_pct((10, 1000), (30, 1200)) == 10.0
    assert share_pct((10, 1000), (10, 1000)) == 0.0


def test_this_machine_reports_steal_no_larger_than_all_ticks():
    steal, total = steal_ticks()
    assert 0 <= steal <= total and total > 0


def test_a_window_takes_the_samples_that_ended_inside_it():
    sampler = StealSampler()
    sampler.samples = [(1.0, 0.0), (2.0, 4.0), (3.0, 20.0), (4.0, 6.0), (5.0, 0.0)]
    assert sampler.between(1.0, 4.0) == {"mean_pct": 10.0, "max_pct": 20.0, "burst_s": 2, "seconds": 3}
    assert sampler.between(10.0, 11.0)["mean_pct"] is None
    assert sampler.whole()["seconds"] == 5


def test_the_sampler_collects_while_it_runs():
    with StealSampler(interval_s=0.01) as sampler:
        wait_until(lambda: len(sampler.samples) >= 3, 5, "three samples")
    assert all(0.0 <= pct <= 100.0 for _, pct in sampler.samples)


def test_the_report_shows_the_runs_steal_and_each_rounds():
    assert steal_note(summary([0.0, 21.0, 6.0])) == (
        " CPU steal (the hypervisor's, sampled each second): mean 9.0 %, max 21 %, 2 s above 5 %."
    )
    assert steal_note(None) == "" and steal_note(summary([])) == ""
    note = rounds_note(
        {
            "ours": [
                {"capacity_rps": 1000.0, "steal": summary([0.0, 1.0])},
                {"capacity_rps": 0.0, "steal": summary([9.0, 19.0])},
            ]
        }
    )
    assert "ours 1,000 (0.5 / 1), 0 (14.0 / 19)." in note


def test_the_growth_table_shows_the_steal_each_rebuild_had():
    from bench.growth_report import COLUMNS, table

    rows = [{key: None for key, _ in COLUMNS} | {"users": users} for users in (1_000_000, 10_000_000)]
    details = {"1000000": {"cpu_steal": {"rebuild": summary([0.0, 2.0])}}, "10000000": {}}
    results = {"date": "d", "machine": "m", "load_average_start": [0.1], "load_average_end": [0.2]}
    text = table(results | {"sizes": rows, "details": details, "rebuild_rate_ratio_10m_vs_1m": None})
    assert "| CPU steal during the rebuild, mean / max % | 1.0 / 2 | - |" in text


def test_each_capacity_round_is_paired_with_the_steal_of_its_window():
    from bench.run import rounds_with_steal

    sampler = StealSampler()
    sampler.samples = [(1.5, 0.0), (2.5, 30.0), (3.5, 10.0)]
    open_loop = {
        "capacity_rounds": {"ours": [1000, 250]},
        "windows": {"ours": [(1.0, 2.0), (2.0, 4.0)], "fallback": [(1.0, 2.0), (2.0, 4.0)]},
    }
    rounds = rounds_with_steal(open_loop, sampler)
    assert list(rounds) == ["ours"]
    assert [r["capacity_rps"] for r in rounds["ours"]] == [1000, 250]
    assert [r["steal"]["max_pct"] for r in rounds["ours"]] == [0.0, 30.0]

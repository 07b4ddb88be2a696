"""Write the results: bench/results/latest.json, latest.md (table), latest.png (chart), README's block."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import QUICK, ROOT, median, spread
from bench.overload_report import overload_chart, overload_table
from bench.plots import figure, save

README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

# (key, label, target text, is the target met?)
ROWS: list[tuple[str, str, str, Any]] = [
    ("projection_eps", "projection throughput, ours (events/s)", "", None),
    ("projection_vs_ceiling", "ours / ceiling (fenced script, pipelined, no Kafka)", ">= 0.7", lambda v: v >= 0.7),
    ("projection_vs_naive", "ours / naive tutorial loop", ">= 20", lambda v: v >= 20),
    ("projection_vs_quix", "ours / Quix Streams + Redis sink", ">= 2", lambda v: v >= 2),
    ("redis_bytes_per_user", "Redis memory per user (bytes)", "<= 128", lambda v: v <= 128),
    ("redis_bytes_per_user_text", "the same, values in the text format (UMS_VALUE_FORMAT=text)", "", None),
    (
        "projection_compact_vs_text",
        "ours / ours writing the text format (paired rounds, same run)",
        ">= 1 (no slower)",
        lambda v: v >= 1,
    ),
    ("consumer_rss_mb", "consumer peak RSS (MiB)", "", None),
    ("api_rps", "API req/s, projection hits (closed loop, 32 connections)", "", None),
    ("api_ceiling_rps", "ceiling req/s (the same)", "", None),
    ("api_seed_rps", "the article's FindService req/s (the same; MySQL hits)", "", None),
    (
        "api_vs_ceiling",
        "API / fixed-body Flask ceiling (same gunicorn; ours answers lookups before Flask)",
        ">= 0.75",
        lambda v: v >= 0.75,
    ),
    ("api_vs_seed", "API / the article's FindService (closed loop, 32 connections)", "", None),
    ("api_p50_ms", "API p50 (ms), projection hits, closed loop at saturation (queueing)", "", None),
    ("api_p99_ms", "API p99 (ms), the same (open-loop figures below are the latency users see)", "", None),
    ("fallback_rps", "API req/s, MySQL fallback hits", "", None),
    ("fallback_p99_ms", "API p99 (ms), MySQL fallback hits", "", None),
    ("not_found_rps", "API req/s, 404s", "", None),
    ("not_found_p99_ms", "API p99 (ms), 404s", "", None),
    (
        "api_capacity_at_p99_10ms_rps",
        "API capacity at p99 <= 10 ms, open loop (req/s)",
        ">= 1,200",
        lambda v: v >= 1200,
    ),
    (
        "api_capacity_vs_ceiling",
        "API capacity / fixed-body Flask ceiling's capacity at p99 <= 10 ms",
        ">= 0.8",
        lambda v: v >= 0.8,
    ),
    (
        "api_capacity_vs_ceiling_paired",
        "the same, paired round by round (median of the rounds' ratios)",
        "",
        None,
    ),
    ("seed_capacity_at_p99_10ms_rps", "seed capacity at p99 <= 10 ms, open loop (req/s)", "", None),
    ("ceiling_capacity_at_p99_10ms_rps", "ceiling capacity at p99 <= 10 ms, open loop (req/s)", "", None),
    ("overload_goodput_ratio_2x", "overload: goodput at 2x capacity / capacity", ">= 0.9", lambda v: v >= 0.9),
    ("overload_goodput_ratio_4x", "overload: goodput at 4x capacity / capacity", ">= 0.8", lambda v: v >= 0.8),
    ("overload_admitted_p99_ms_2x", "overload: 2xx p99 at 2x (ms)", "<= 50", lambda v: v <= 50),
    ("overload_client_timeouts_2x", "overload: client timeouts (1 s) at 2x", "0", lambda v: v == 0),
    ("overload_reject_p99_ms", "overload: 503 p99, worst step at >= 2x (ms)", "<= 5", lambda v: v <= 5),
    (
        "overload_floor_reject_p99_ms",
        "... the rig's floor: the same from a server that only answers 503 (ms)",
        "",
        None,
    ),
    ("overload_recovery_s", "overload: 4x -> 0.5x, s until p99 is back (next 5 s, rest)", "<= 5", lambda v: v <= 5),
    ("freshness_p50_ms", "freshness p50 at 20 events/s (ms)", "", None),
    ("freshness_p99_ms", "freshness p99 at 20 events/s (ms)", "<= 10", lambda v: v <= 10),
    ("freshness_before_p50_ms", "... p50 before the fetch change (ms)", "", None),
    ("freshness_before_p99_ms", "... p99 before the fetch change (ms)", "", None),
    ("freshness_loaded_p99_ms", "freshness p99 under 50k events/s background (ms)", "", None),
    ("freshness_before_loaded_p99_ms", "... before the fetch change (ms)", "", None),
    ("rebuild_1m_s", "replay of the whole topic under reads, until the flip (s)", "<= 15", lambda v: v <= 15),
    ("rebuild_with_cleanup_s", "... and until the old generation is deleted (s)", "", None),
    ("rebuild_failed_reads", "failed reads during the rebuild", "0", lambda v: v == 0),
    ("rebuild_readers_p99_ms", "readers' p99 during the rebuild (500 req/s open loop, ms)", "", None),
]


def paired_capacity(rounds: dict[str, list[dict[str, Any]]] | None) -> dict[str, Any]:
    """Ours over the ceiling's capacity within each round (the rounds alternate the two): its median and spread.

    The ratio of the medians is the issue's figure; when one capacity moves by a rung or two between
    rounds, the paired ratios say how much of it is the servers and how much the hour.
    """
    ours, ceiling = (rounds or {}).get("ours"), (rounds or {}).get("ceiling")
    if not ours or not ceiling:
        return {}
    pairs = zip(ours, ceiling, strict=True)
    ratios = [o["capacity_rps"] / c["capacity_rps"] for o, c in pairs if c["capacity_rps"]]
    if not ratios:
        return {}
    return {"api_capacity_vs_ceiling_paired": median(ratios), "api_capacity_vs_ceiling_paired_spread": spread(ratios)}


def table(results: dict[str, Any]) -> str:
    results = {**results, **paired_capacity(results.get("api_open_loop_rounds"))}
    lines = [
        f"Measured {results['date']} on {results['machine']}; scale {results['scale']} "
        f"({results['events']:,} events); medians of {results['rounds']} alternating rounds "
        "(min-max of the rounds in brackets)"
        + (
            f"; load average {results['load_average_start'][0]:.1f} at the start, "
            f"{results['load_average_end'][0]:.1f} at the end."
            if "load_average_start" in results
            else "."
        )
        + steal_note(results.get("cpu_steal")),
        "",
        "| figure | value | target | met |",
        "| --- | ---: | --- | --- |",
    ]
    for key, label, target, check in ROWS:
        value = results.get(key)
        if value is None:
            continue
        shown = number(value)
        if check is not None and not check(value) and check(float(shown.replace(",", ""))):
            shown = f"{value:.3f}"  # a miss the rounding would hide (0.749 shown as 0.75 against >= 0.75)
        spread = results.get(f"{key}_spread")
        if isinstance(spread, dict) and spread.get("n", 0) > 1:
            shown += f" ({number(spread['min'])}-{number(spread['max'])})"
        shown += bound_note(key, results.get("capacity_at_ladder_top", []))
        met = "" if check is None else ("yes" if check(value) else "**no**")
        lines.append(f"| {label} | {shown} | {target} | {met} |")
    return "\n".join(lines) + "\n"


# A capacity at the ladder's top rung is only a lower bound (bench/openloop.py), a ratio over it an upper one.
BOUNDED_BY = {
    "api_capacity_at_p99_10ms_rps": ("ours", "at least"),
    "ceiling_capacity_at_p99_10ms_rps": ("ceiling", "at least"),
    "seed_capacity_at_p99_10ms_rps": ("seed", "at least"),
    "api_capacity_vs_ceiling": ("ceiling", "at most"),
}


def bound_note(key: str, at_top: list[str]) -> str:
    """Said beside a figure that a series at the ladder's top makes a bound, not a measurement."""
    series, bound = BOUNDED_BY.get(key, ("", ""))
    return f", {bound}: {series} held the ladder's top" if series in at_top else ""


def steal_note(steal: dict[str, Any] | None) -> str:
    """The run's CPU steal (bench/steal.py), when it was measured."""
    if not steal or steal.get("mean_pct") is None:
        return ""
    return (
        f" CPU steal (the hypervisor's, sampled each second): mean {steal['mean_pct']:.1f} %, "
        f"max {steal['max_pct']:.0f} %, {steal['burst_s']} s above 5 %."
    )


PEERS = ["ours", "ceiling", "seed", "fallback", "unknown"]


def in_peer_order(by_peer: dict[str, Any]) -> list[str]:
    """Ours first, then the ceiling and the seed, whatever order a results file kept (latest.json sorts its keys)."""
    return sorted(by_peer, key=lambda n: (PEERS.index(n) if n in PEERS else len(PEERS), n))


def rounds_note(rounds: dict[str, list[dict[str, Any]]] | None) -> str:
    """Capacity round by round with each round's steal: a round that differs says why."""
    if not rounds:
        return ""

    def one(r: dict[str, Any]) -> str:
        steal = r["steal"]
        if steal.get("mean_pct") is None:
            return f"{r['capacity_rps']:,.0f}"
        return f"{r['capacity_rps']:,.0f} ({steal['mean_pct']:.1f} / {steal['max_pct']:.0f})"

    parts = [f"{name} " + ", ".join(one(r) for r in rounds[name]) for name in in_peer_order(rounds)]
    return (
        "\nCapacity at p99 <= 10 ms round by round, req/s (in brackets: CPU steal in the round, "
        "mean / max %): " + "; ".join(parts) + ".\n"
    )


def number(value: float) -> str:
    return f"{value:,.2f}" if isinstance(value, float) and value < 100 else f"{value:,.0f}"


def chart(results: dict[str, Any], path: Path) -> None:
    pairs = [
        ("vs ceiling\n(projection)", "projection_vs_ceiling", 0.7),
        ("vs naive", "projection_vs_naive", 20),
        ("vs Quix", "projection_vs_quix", 2),
        ("API vs ceiling", "api_vs_ceiling", 0.75),
        ("API vs seed", "api_vs_seed", 1),
    ]
    fig, ax = figure((8, 4))
    labels = [p[0] for p in pairs]
    values = [results[p[1]] for p in pairs]
    ax.bar(labels, values, color=["tab:green" if v >= p[2] else "tab:red" for v, p in zip(values, pairs, strict=True)])
    ax.scatter(labels, [p[2] for p in pairs], marker="_", s=600, color="black", label="target", zorder=3)
    ax.set_yscale("log")
    ax.set_ylabel("ratio (log scale)")
    ax.set_title(f"ums-find benchmarks, {results['date']}")
    ax.legend()
    save(fig, path)


def open_loop_table(results: dict[str, Any]) -> str:
    """p50 / p99 / p99.9 (ms) per peer and rate, medians over the rounds."""
    table = results.get("api_open_loop")
    if not table:
        return ""
    lines = ["", "Open-loop latency (vegeta, constant rate), p50 / p99 / p99.9 ms:", ""]
    rates = sorted({int(r) for rows in table.values() for r in rows})
    lines.append("| peer | " + " | ".join(f"{r:,}/s" for r in rates) + " |")
    lines.append("| --- |" + " ---: |" * len(rates))
    for name in in_peer_order(table):
        rows = table[name]
        cells = []
        for rate in rates:
            row = rows.get(str(rate))
            cells.append(f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f} / {row['p999_ms']:.1f}" if row else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + rounds_note(results.get("api_open_loop_rounds"))


def latency_chart(results: dict[str, Any], path: Path) -> None:
    """p99 against offered rate, one line per peer, log scale, with the 10 ms SLO."""
    fig, ax = figure((8, 4.5))
    for name, rows in results["api_open_loop"].items():
        rates = sorted(int(r) for r in rows)
        ax.plot(rates, [rows[str(r)]["p99_ms"] for r in rates], marker="o", label=name)
    ax.axhline(results.get("api_open_loop_slo_ms", 10), color="black", linestyle="--", label="SLO p99 10 ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (req/s, open loop)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(f"latency against rate, {results['date']}")
    ax.legend()
    save(fig, path)


def freshness_chart(results: dict[str, Any], path: Path) -> None:
    """Distribution (CDF) of produce -> visible, before and after the fetch change, low and loaded."""
    fig, ax = figure((8, 4.5))
    for variant, conditions in results["freshness_samples_ms"].items():
        for condition, samples in conditions.items():
            if samples:
                ys = [(i + 1) / len(samples) for i in range(len(samples))]
                ax.step(samples, ys, where="post", label=f"{variant}, {condition}")
    ax.set_xscale("log")
    ax.set_xlabel("event produced -> first GET that returns it (ms)")
    ax.set_ylabel("fraction of events")
    ax.set_title(f"freshness, {results['date']}")
    ax.legend()
    save(fig, path)


def write(results: dict[str, Any], directory: Path) -> str:
    """Results, table and plots into `directory` and the README; a quick run into `quick/`, README untouched."""

    if QUICK:  # harness checks never replace the published figures
        directory = directory / "quick"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    text = table(results) + open_loop_table(results) + overload_table(results)
    (directory / "latest.md").write_text(text)
    if "projection_vs_ceiling" in results:
        chart(results, directory / "latest.png")
    if results.get("api_open_loop"):
        latency_chart(results, directory / "latency.png")
    if results.get("freshness_samples_ms"):
        freshness_chart(results, directory / "freshness.png")
    if results.get("overload_by_peer"):
        overload_chart(results, directory / "overload.png")
    readme = README.read_text()
    if START in readme and END in readme and not QUICK:
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        plots = "![ratios](bench/results/latest.png)\n![latency against rate](bench/results/latency.png)\n"
        plots += "![freshness](bench/results/freshness.png)\n"
        if results.get("overload_by_peer"):
            plots += "![goodput and p99 against offered load](bench/results/overload.png)\n"
        README.write_text(f"{head}{START}\n{text}\n{plots}{END}{tail}")
    return text

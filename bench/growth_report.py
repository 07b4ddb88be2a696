"""Write a growth run: growth.json, growth.md (table), growth.png (log-log), and, for a full run, the README block."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.plots import save
from bench.report import README, number

START, END = "<!-- growth:start -->", "<!-- growth:end -->"

# (key, column heading)
COLUMNS = [
    ("users", "users"),
    ("events", "events"),
    ("consumer_eps_from_start", "consume ev/s (start)"),
    ("consumer_eps_steady", "consume ev/s (steady)"),
    ("rebuild_to_flip_s", "rebuild to flip (s)"),
    ("rebuild_total_s", "rebuild to old gen. deleted (s)"),
    ("rebuild_events_per_s", "rebuild ev/s"),
    ("readers_p99_ms_baseline", "readers p99 baseline (ms)"),
    ("readers_p99_ms_during_rebuild", "readers p99 rebuild (ms)"),
    ("readers_max_ms_during_rebuild", "readers max rebuild (ms)"),
    ("readers_p99_ms_during_gc", "readers p99 gc (ms)"),
    ("failed_reads", "failed reads"),
    ("gc_s", "gc (s)"),
    ("backfill_s", "backfill to flip (s)"),
    ("backfill_peak_rss_mib", "backfill peak RSS (MiB)"),
    ("reconcile_s", "reconcile (s)"),
    ("reconcile_peak_rss_mib", "reconcile peak RSS (MiB)"),
    ("redis_bytes_per_user", "Redis B/user"),
]
TIMES = [
    ("rebuild_to_flip_s", "rebuild to flip"),
    ("rebuild_total_s", "rebuild to deletion"),
    ("backfill_s", "backfill to flip"),
    ("reconcile_s", "reconcile"),
    ("gc_s", "gc"),
]
# CPU µs per event over the rebuild, by process (bench/growth_cpu.py), from the details.
CPU = [("command", "replay"), ("redis", "Redis"), ("kafka", "broker"), ("api", "API (readers)"), ("other", "other")]
WAITS = [("redis", "Redis"), ("api", "API (readers)"), ("kafka", "broker")]
MEMORY = [
    ("redis_used_bytes", "Redis used memory"),
    ("reconcile_peak_rss_mib", "reconcile peak RSS"),
    ("backfill_peak_rss_mib", "backfill peak RSS"),
]


def table(results: dict[str, Any]) -> str:
    """One column per size (sizes are few, figures many): transposed for reading."""
    rows = sorted(results["sizes"], key=lambda r: r["users"])
    ratio = results.get("rebuild_rate_ratio_10m_vs_1m")
    load = results["load_average_start"][0], results["load_average_end"][0]
    lines = [
        f"Growth run {results['date']} on {results['machine']}; load average {load[0]:.1f} at the start, "
        f"{load[1]:.1f} at the end; readers at 500 req/s (open loop) during every command."
        + (f" Rebuild rate 10M / 1M: {ratio:.2f} (target >= 0.9)." if ratio is not None else ""),
        "",
        "| figure | " + " | ".join(f"{r['users']:,}" for r in rows) + " |",
        "| --- |" + " ---: |" * len(rows),
    ]
    for key, label in COLUMNS[1:]:
        lines.append(f"| {label} | " + " | ".join("-" if r[key] is None else number(r[key]) for r in rows) + " |")
    cpu = [results.get("details", {}).get(str(r["users"]), {}).get("rebuild_cpu_us_per_event") for r in rows]
    for key, label in CPU if all(cpu) else []:
        cells = [number(c[key]) if c is not None and key in c else "-" for c in cpu]
        lines.append(f"| rebuild CPU µs/event: {label} | " + " | ".join(cells) + " |")
    waits = [results.get("details", {}).get(str(r["users"]), {}).get("run_queue_wait_s_per_s") for r in rows]
    for key, label in WAITS if all(waits) else []:
        cells = [f"{w['rebuild'].get(key, 0):.2f} / {w['baseline'].get(key, 0):.2f}" for w in waits]
        lines.append(f"| run-queue wait, rebuild / baseline (s per s): {label} | " + " | ".join(cells) + " |")
    steal = [results.get("details", {}).get(str(r["users"]), {}).get("cpu_steal", {}).get("rebuild") for r in rows]
    if any(s and s.get("mean_pct") is not None for s in steal):
        cells = ["-" if not s or s["mean_pct"] is None else f"{s['mean_pct']:.1f} / {s['max_pct']:.0f}" for s in steal]
        lines.append("| CPU steal during the rebuild, mean / max % | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _series(ax: Any, users: list[int], values: list[float], label: str, color: str) -> None:
    ax.plot(users, values, marker="o", label=label, color=color)
    if values and values[0] > 0:  # linear growth from the smallest size
        ax.plot(users, [values[0] * u / users[0] for u in users], linestyle="--", color=color, linewidth=0.8)


def chart(results: dict[str, Any], path: Path) -> None:
    rows = sorted(results["sizes"], key=lambda r: r["users"])
    users = [r["users"] for r in rows]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (key, label) in enumerate(TIMES):
        if all(r[key] is not None for r in rows):  # GROWTH_REBUILD_ONLY skips some commands
            _series(left, users, [float(r[key]) for r in rows], label, colors[i % len(colors)])
    consume = [r["events"] / r["consumer_eps_from_start"] for r in rows]
    _series(left, users, consume, "consume (from start)", colors[len(TIMES) % len(colors)])
    left.set_ylabel("seconds")
    left.set_title("time (dashed: linear from the smallest size)")
    for i, (key, label) in enumerate(MEMORY):
        scale = 2**20 if key.endswith("_bytes") else 1
        if all(r[key] is not None for r in rows):
            _series(right, users, [float(r[key]) / scale for r in rows], label, colors[i % len(colors)])
    replay = [results.get("details", {}).get(str(u), {}).get("replay_peak_rss_mib") for u in users]
    if all(replay):
        _series(right, users, [float(v) for v in replay], "replay peak RSS", colors[len(MEMORY) % len(colors)])
    right.set_ylabel("MiB")
    right.set_title("memory (dashed: linear from the smallest size)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("users")
        ax.legend(fontsize="small")
    fig.suptitle(f"ums-find growth, {results['date']}")
    save(fig, path)


def write(results: dict[str, Any], directory: Path, readme: bool) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "growth.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    text = table(results)
    (directory / "growth.md").write_text(text)
    chart(results, directory / "growth.png")
    if readme:
        content = README.read_text()
        if START in content and END in content:
            head, rest = content.split(START, 1)
            _, tail = rest.split(END, 1)
            README.write_text(f"{head}{START}\n{text}\n![growth](bench/results/growth.png)\n{END}{tail}")
    return f"{text}\nwritten to {directory}"

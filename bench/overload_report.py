"""The overload curve in the results: latest.json keys, the README table, overload.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.plots import figure, save

PEERS = ("ours", "ceiling", "seed")


def connections(settings: dict[str, Any]) -> str:
    """The client's connection bound, as the run had it (runs before it was recorded had none)."""
    bound = settings.get("client_max_connections")
    return f", at most {bound:,} connections" if bound else ", connections unbounded"


def step_at(steps: list[dict[str, Any]], multiple: float) -> dict[str, Any]:
    return next(s for s in steps if s["multiple"] == multiple)


def overload_keys(overload: dict[str, Any]) -> dict[str, Any]:
    """Headline keys (ours) and the full per-peer tables; ratios are goodput over our capacity."""
    capacity = overload["capacity_rps"]
    by_peer = overload["by_peer"]
    steps = by_peer["ours"]["steps"]
    two, four = step_at(steps, 2.0), step_at(steps, 4.0)
    rejects = [s["reject_p99_ms"] for s in steps if s["multiple"] >= 2 and s["rejected"]]
    floor = overload.get("floor") or []
    floor_rejects = [s["reject_p99_ms"] for s in floor if s["rejected"]]
    return {
        "overload_goodput_ratio_2x": two["goodput_rps"] / capacity,
        "overload_goodput_ratio_4x": four["goodput_rps"] / capacity,
        "overload_admitted_p99_ms_2x": two["admitted_p99_ms"],
        "overload_client_timeouts_2x": two["timeouts"],
        # The worst over the steps at 2x and above (None: nothing was rejected there).
        "overload_reject_p99_ms": max(rejects) if rejects else None,
        "overload_recovery_s": by_peer["ours"]["recovery_s"],
        # The rule until 2026-12-04 (every later 5 s window within), kept for comparison.
        "overload_recovery_every_window_s": by_peer["ours"].get("recovery_every_window_s"),
        "overload": by_peer["ours"],
        "overload_by_peer": by_peer,
        "overload_settings": {k: v for k, v in overload.items() if k not in ("by_peer", "floor")},
        # The same figure from a server that only answers 503 (bench/rig_floor.py): what the rig adds.
        "overload_floor_reject_p99_ms": max(floor_rejects) if floor_rejects else None,
        "overload_floor": floor,
    }


def cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:,.{digits}f}"


def overload_table(results: dict[str, Any]) -> str:
    """Per peer and offered load: goodput, admitted p99, 503s and their p99, timeouts; then recovery."""
    by_peer = results.get("overload_by_peer")
    if not by_peer:
        return ""
    settings = results["overload_settings"]
    lines = [
        "",
        f"Overload (vegeta open loop, {settings['step_s']:.0f} s per step, client timeout "
        f"{settings['client_timeout_s']:.0f} s{connections(settings)}; offered load in multiples of our capacity, "
        f"{settings['capacity_rps']:,} req/s from {settings['capacity_source']}; goodput = 2xx within "
        f"{settings['good_ms']:.0f} ms): goodput/s, 2xx p99 ms, 503s (p99 ms), those answered on arrival by gunicorn's "
        "main thread (the rest waited in the queue first), client timeouts, other errors:",
        "",
        "| peer | load | offered/s | goodput/s | 2xx p99 | 503 (p99) | of which on arrival (p99) | timeouts | other |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in [p for p in PEERS if p in by_peer]:
        for s in by_peer[name]["steps"]:
            rejected = f"{s['rejected']:,} ({cell(s['reject_p99_ms'])})" if s["rejected"] else "0"
            early = s["rejected_on_arrival"]
            arrival = f"{early:,} ({cell(s['reject_arrival_p99_ms'])})" if early else "0"
            lines.append(
                f"| {name} | {s['multiple']:g}x{behind(s)} | {s['offered_rps']:,} | {s['goodput_rps']:,.0f} | "
                f"{cell(s['admitted_p99_ms'])} | {rejected} | {arrival} | {s['timeouts']:,} | {s['other_errors']:,} |"
            )
    floor = results.get("overload_floor") or []
    lines += floor_rows(floor)
    lines += failed({**by_peer, "floor": {"steps": floor}} if floor else by_peer)
    peers = "; ".join(recovered(name, by_peer[name]) for name in PEERS if name in by_peer)
    lines += [
        "",
        f"Recovery from 4x to 0.5x ({settings['recovery_window_s']:.0f} s at 0.5x; the first second from which the "
        f"p99 of 2xx over the next {settings.get('recovery_p99_window_s', 1):.0f} s and over the rest of the run "
        f"are within the 0.5x step's p99 + {settings['recovery_margin_ms']:.0f} ms; the same rule on the 0.5x step "
        "itself, after a drain, as a control; in parentheses: every later window within, the rule until "
        f"2026-12-04): {peers}.",
    ]
    return "\n".join(lines) + "\n"


def behind(step: dict[str, Any]) -> str:
    return " (vegeta fell behind)" if step.get("generator_behind") else ""


def floor_rows(steps: list[dict[str, Any]]) -> list[str]:
    """The rig's floor (bench/rig_floor.py) as rows of the same table: a server that only answers 503."""
    return [
        f"| floor (the rig: only 503s) | {s['multiple']:g}x{behind(s)} | {s['offered_rps']:,} | - | - | "
        f"{s['rejected']:,} ({cell(s['reject_p99_ms'])}) | - | {s['timeouts']:,} | {s['other_errors']:,} |"
        for s in steps
    ]


def failed(by_peer: dict[str, Any]) -> list[str]:
    """A line per step where requests got no status: what vegeta said, and when the first and last were sent."""
    lines = []
    for name in [p for p in (*PEERS, "floor") if p in by_peer]:
        for s in by_peer[name]["steps"]:
            if not s.get("failures"):
                continue
            kinds = sorted(s["failures"].items(), key=lambda kv: (-kv[1], kv[0]))  # the most frequent first
            said = "; ".join(f"{n:,} x {text or '(no text)'}" for text, n in kinds)
            at = s.get("failed_span_s") or []
            span = f"sent {at[0]:.1f}-{at[-1]:.1f} s into the step" if at else "times not kept"
            lines.append(f"- {name} {s['multiple']:g}x, no status ({span}): {said}")
    return ["", "Requests with no status:", *lines] if lines else []


def recovered(name: str, peer: dict[str, Any]) -> str:
    def said(seconds: float | None) -> str:
        return "not within the window" if seconds is None else f"{seconds:.0f} s"

    text = f"{name} {said(peer['recovery_s'])}"
    if "control_recovery_s" in peer:
        text += f", control {said(peer['control_recovery_s'])}"
    if "recovery_every_window_s" in peer:
        text += f" ({said(peer['recovery_every_window_s'])}; control {said(peer['control_every_window_s'])})"
    return text


def overload_chart(results: dict[str, Any], path: Path) -> None:
    """Goodput against offered load per peer (left), admitted and rejection p99 (right)."""
    fig, (left, right) = figure((11, 4.5), panels=2)
    by_peer = results["overload_by_peer"]
    capacity = results["overload_settings"]["capacity_rps"]
    top = 0
    for i, name in enumerate(p for p in PEERS if p in by_peer):
        steps, color = by_peer[name]["steps"], f"C{i}"
        offered = [s["offered_rps"] for s in steps]
        top = max(top, *offered)
        left.plot(offered, [s["goodput_rps"] for s in steps], marker="o", color=color, label=name)
        right.plot(offered, [s["admitted_p99_ms"] for s in steps], marker="o", color=color, label=f"{name} 2xx p99")
        rejected = [(s["offered_rps"], s["reject_p99_ms"]) for s in steps if s["rejected"]]
        if rejected:
            xs, ys = zip(*rejected, strict=True)
            right.plot(xs, ys, marker="x", linestyle="--", color=color, label=f"{name} 503 p99")
    floor = [(s["offered_rps"], s["reject_p99_ms"]) for s in results.get("overload_floor") or [] if s["rejected"]]
    if floor:
        xs, ys = zip(*floor, strict=True)
        right.plot(
            xs,
            ys,
            marker="x",
            linestyle=":",
            color="grey",
            label="the rig's floor: 503 p99 of a server doing nothing else",
        )
    left.plot([0, top], [0, top], color="grey", linestyle=":", label="goodput = offered")
    left.axhline(capacity, color="black", linestyle="--", label=f"our capacity at the SLO ({capacity:,}/s)")
    left.set_xlabel("offered load (req/s, open loop)")
    left.set_ylabel("goodput (2xx within 50 ms, per s)")
    left.set_title(f"goodput against offered load, {results['date']}")
    left.legend(fontsize="small")
    right.set_yscale("log")
    right.set_xlabel("offered load (req/s, open loop)")
    right.set_ylabel("p99 latency (ms)")
    right.set_title("admitted (2xx) and rejected (503) p99")
    right.legend(fontsize="small")
    save(fig, path)

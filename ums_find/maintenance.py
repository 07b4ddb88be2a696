"""The `ums-find` commands that maintain the projection: replay, backfill, gc, pace, show, reconcile."""

from __future__ import annotations

import click

from adapters.settings import Settings
from domain import DomainError, Name


def _behind_serving(settings: Settings) -> None:
    """Maintenance runs at a lower CPU priority than the API, consumer and Redis it shares a host with.

    Called before any client or signal handler exists: where autogroups apply it may fork.
    """
    from ums_find.priority import step_behind

    step_behind(settings.maintenance_nice)


def _store_and_mysql(settings: Settings, with_mysql: bool):  # type: ignore[no-untyped-def]
    from adapters.clients import Role, mysql_users, projection_store

    return projection_store(settings, Role.ADMIN), (mysql_users(settings, role=Role.ADMIN) if with_mysql else None)


def _rebuild(settings: Settings, source: str, dry_run: bool) -> None:
    import threading

    from adapters.generations import ClaimLost, NoProjection, RebuildRunning
    from consumer.main import stop_on_signals
    from consumer.replay import Interrupted, Rebuild, RedisFull, TruncatedLog
    from consumer.tuning import tune_gc

    if not dry_run:
        tune_gc()
        _behind_serving(settings)
    stop = threading.Event()
    stop_on_signals(stop)  # SIGTERM (a CronJob's pod ending) or SIGINT: abandon cleanly, leak nothing
    store, mysql = _store_and_mysql(settings, source in ("mysql", "both"))
    rebuild = Rebuild(settings, store, mysql, from_kafka=source in ("kafka", "both"), stop=stop)
    if dry_run:
        plan = rebuild.plan()
        click.echo(f"live generation: {plan.live}; would build generation {plan.target} from {source}")
        for partition, (low, end) in sorted(plan.partitions.items()):
            click.echo(f"  {settings.topic}[{partition}]: offsets {low}..{end} ({end - low} events)")
        click.echo(f"  Kafka events: {plan.kafka_events}; MySQL rows: {plan.mysql_rows}")
        if source == "kafka" and any(low > 0 for low, _ in plan.partitions.values()):
            click.echo(
                "  warning: the topic no longer starts at offset 0 (retention); a Kafka-only replay is refused:"
                " add --source both",
                err=True,
            )
        return
    try:
        result = rebuild.run()
    except (RebuildRunning, NoProjection, TruncatedLog) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except (ClaimLost, Interrupted) as exc:
        click.echo(f"error: {exc}; nothing flipped, its generation deleted", err=True)
        raise SystemExit(3) from None
    except RedisFull as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(3) from None
    click.echo(
        f"generation {result.target} is live: {result.kafka_events} events, {result.mysql_rows} MySQL rows, "
        f"{result.poison_skipped} poison skipped, {result.deleted_old_keys} old keys deleted, "
        f"{result.seconds:.1f} s"
    )


@click.command()
@click.option(
    "--source",
    type=click.Choice(["kafka", "mysql", "both"]),
    default="kafka",
    show_default=True,
    help="Rebuild from the topic's earliest offsets, from a MySQL snapshot, or both.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be rebuilt; change nothing.")
@click.pass_obj
def replay(settings: Settings, source: str, dry_run: bool) -> None:
    """Rebuild the projection as a new generation while the current one serves reads, then flip."""
    _rebuild(settings, source, dry_run)


@click.command()
@click.option("--from-mysql", "from_mysql", is_flag=True, required=True, help="Fill a new generation from MySQL.")
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
@click.pass_obj
def backfill(settings: Settings, from_mysql: bool, dry_run: bool) -> None:
    """Fill a new generation from MySQL (for topics whose retention dropped old events); Kafka continues on top."""
    _rebuild(settings, "mysql", dry_run)


@click.command()
@click.pass_obj
def gc(settings: Settings) -> None:
    """Delete the keys of generations that are neither live nor claimed by a running rebuild."""
    from adapters.generations import Generations

    _behind_serving(settings)
    store, _ = _store_and_mysql(settings, False)
    deleted = Generations(store).sweep()
    click.echo(f"deleted {deleted} keys of abandoned generations")


@click.command()
@click.argument("events_per_s", type=float, required=False)
@click.pass_obj
def pace(settings: Settings, events_per_s: float | None) -> None:
    """Show, or change without stopping it, the running rebuild's pace in events a second (0: unpaced)."""
    import math

    from adapters.generations import Generations
    from consumer.pace import POLL_S

    if events_per_s is not None and not (math.isfinite(events_per_s) and events_per_s >= 0):
        raise click.BadParameter(f"{events_per_s} is not a number of events a second >= 0 (0: unpaced)")
    store, _ = _store_and_mysql(settings, False)
    generations = Generations(store)
    if events_per_s is None:
        pointer = generations.read()
        generation = pointer.building if pointer else None
        rate = generations.pace(generation) if generation is not None else None
    else:
        generation, rate = generations.set_pace(events_per_s), events_per_s
    if generation is None:
        click.echo("error: no rebuild is running (UMS_REBUILD_EVENTS_PER_S paces the next one)", err=True)
        raise SystemExit(1)
    said = "not set" if rate is None else "unpaced" if rate == 0 else f"{rate:,.0f} events/s"
    note = f" (every process of the rebuild takes it within {POLL_S:.0f} s)" if events_per_s is not None else ""
    click.echo(f"rebuild of generation {generation}: {said}{note}")


@click.command()
@click.argument("name")
@click.option("--generation", type=int, default=None, help="A generation other than the live one (a rebuild's).")
@click.pass_obj
def show(settings: Settings, name: str, generation: int | None) -> None:
    """Print what the projection holds for one user, decoded from either value format (exit 1: nothing)."""
    import json

    from adapters.values import describe

    try:
        canonical = Name(name).canonical
    except DomainError as exc:
        raise click.BadParameter(str(exc)) from None
    store, _ = _store_and_mysql(settings, False)
    generation = store.live_generation() if generation is None else generation
    if generation is None:
        click.echo("error: Redis holds no projection (no live generation)", err=True)
        raise SystemExit(2)
    key = store.key(generation, canonical)
    raw = store.client.get(key)
    click.echo(json.dumps({"generation": generation, "key": key, **describe(raw, canonical)}, indent=2))
    if raw is None:
        raise SystemExit(1)


@click.command()
@click.option("--repair", is_flag=True, help="Write the MySQL truth through the fence and remove extra keys.")
@click.pass_obj
def reconcile(settings: Settings, repair: bool) -> None:
    """Report drift between MySQL ums_users and the live projection (exit 1 when there is drift)."""
    import json

    from consumer.reconcile import Reconciler

    _behind_serving(settings)
    store, mysql = _store_and_mysql(settings, True)
    generation = store.live_generation()
    if generation is None:
        click.echo("error: Redis holds no projection (no live generation)", err=True)
        raise SystemExit(2)
    assert mysql is not None
    drift = Reconciler(store, mysql, generation).run(repair=repair)
    click.echo(json.dumps({"generation": generation, **drift.__dict__}, indent=2))
    if drift.total and not repair:
        raise SystemExit(1)


COMMANDS = (replay, backfill, gc, pace, show, reconcile)

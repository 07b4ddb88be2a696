"""The `ums-find` command line: consume, topics, probes, the AddService stand-in; maintenance.py adds the rest."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from adapters import logs
from adapters.settings import Settings
from domain import DomainError, Name, PhoneNumber, User, use_collation
from ums_find import maintenance


@click.group()
@click.option("--log-json/--log-text", default=None, help="Log as JSON lines (default: UMS_LOG_JSON).")
@click.pass_context
def main(ctx: click.Context, log_json: bool | None) -> None:
    """ums-find: the FindService read model (Kafka -> Redis, MySQL fallback)."""
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_json if log_json is None else log_json)
    use_collation(settings.name_collation)
    ctx.obj = settings


@main.command()
@click.pass_obj
def consume(settings: Settings) -> None:
    """Project AddService events into Redis until SIGTERM."""
    import threading

    from consumer.group import ConsumerFenced
    from consumer.main import main as consumer_main
    from consumer.main import stop_on_signals
    from consumer.tuning import tune_gc

    stop = threading.Event()
    stop_on_signals(stop)  # before the clients exist: a SIGTERM during start-up is clean too
    tune_gc()  # process-wide, so here in the process's entry point, not in the library
    try:
        consumer_main(settings, stop)
    except ConsumerFenced:
        raise SystemExit(1) from None  # logged with what to do; a non-zero exit makes the orchestrator restart it


@main.command()
@click.option(
    "--partitions", type=int, default=None, help="Partitions of the event topic (default: UMS_TOPIC_PARTITIONS)."
)
@click.pass_obj
def topics(settings: Settings, partitions: int | None) -> None:
    """Create the event topic and its dead-letter topic if missing."""
    from adapters.kafka import ensure_topics

    ensure_topics(settings, partitions)
    click.echo(f"topics ready: {settings.topic}, {settings.dead_letter_topic}")


def _addservice(settings: Settings):  # type: ignore[no-untyped-def]
    from adapters.clients import kafka_producer, mysql_users
    from devtools.addservice import AddService

    return AddService(mysql_users(settings, writer=True), kafka_producer(settings), settings.topic)


@main.command()
@click.argument("name")
@click.argument("phone", type=int)
@click.pass_obj
def add(settings: Settings, name: str, phone: int) -> None:
    """Add one user as the AddService does: save to MySQL, then publish the event."""
    try:
        user = User(Name(name), PhoneNumber(phone), datetime.now(UTC))
    except DomainError as exc:
        raise click.BadParameter(str(exc)) from None
    _addservice(settings).add_many([user])
    click.echo(f"added {user.name.value}")


@main.command()
@click.option("--count", type=int, default=0, show_default=True, help="Generated users to add.")
@click.option("--start", type=int, default=0, show_default=True, help="Index of the first generated user.")
@click.option("--demo/--no-demo", default=True, show_default=True, help="Also add the demo users (KrishnaMohan, ...).")
@click.pass_obj
def seed(settings: Settings, count: int, start: int, demo: bool) -> None:
    """Add demo and generated users through the AddService stand-in."""
    from devtools.addservice import demo_users, generated_users

    service = _addservice(settings)
    added = service.add_many(demo_users()) if demo else 0
    with click.progressbar(length=count, label="seeding", file=None) as bar:
        done = 0
        for chunk_start in range(start, start + count, 10_000):
            size = min(10_000, start + count - chunk_start)
            done += service.add_many(generated_users(size, start=chunk_start))
            bar.update(size)
    click.echo(f"seeded {added + done} users")


@main.group()
def probe() -> None:
    """Kubernetes exec probes for the consumer (they read its health file, nothing else)."""


@probe.command()
@click.option("--max-age", type=float, default=30.0, show_default=True, help="Seconds without a heartbeat.")
@click.pass_obj
def live(settings: Settings, max_age: float) -> None:
    """Exit 0 while the consume loop advances its heartbeat."""
    from consumer.health import check_live

    _probe_result(check_live(settings.heartbeat_file, max_age))


@probe.command()
@click.option("--max-lag", type=int, default=None, help="Default: UMS_READY_MAX_LAG.")
@click.option("--max-age", type=float, default=30.0, show_default=True)
@click.pass_obj
def ready(settings: Settings, max_lag: int | None, max_age: float) -> None:
    """Exit 0 when partitions are assigned and lag is under the limit."""
    from consumer.health import check_ready

    limit = settings.ready_max_lag if max_lag is None else max_lag
    _probe_result(check_ready(settings.heartbeat_file, limit, max_age))


def _probe_result(problem: str | None) -> None:
    if problem:
        click.echo(problem, err=True)
        raise SystemExit(1)
    click.echo("ok")


# replay, backfill, gc, pace, show and reconcile: the commands that maintain the projection.
for _command in maintenance.COMMANDS:
    main.add_command(_command)

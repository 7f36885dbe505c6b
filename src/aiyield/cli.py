"""Command line (docs/INTERFACE.md §5): `aiyield up | worker | gateway | exporter | send | simulate | report | rebuild |
reconcile | pull | prices | hook`."""

from __future__ import annotations

import csv
import io
import json
import logging
import signal
import sys
import time
from contextlib import ExitStack
from enum import Enum
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from aiyield.settings import Settings, SettingsError, redact_url

app = typer.Typer(help="aiyield: what your AI coding tools actually ship.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)
out = Console()


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _settings(**overrides) -> Settings:
    try:
        return Settings.from_env().with_overrides(**overrides)
    except SettingsError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


def _require(settings: Settings, kafka: bool = True, redis: bool = True) -> Settings:
    from aiyield.local import resolve_services

    resolved = resolve_services(settings)
    missing = [n for n, want, v in (("AIYIELD_KAFKA", kafka, resolved.kafka), ("AIYIELD_REDIS", redis, resolved.redis)) if want and not v]
    if missing:
        console.print(
            f"[red]{' and '.join(missing)} not set[/] and no `aiyield up` is running: set them, "
            "or start `aiyield up` in another terminal."
        )
        raise typer.Exit(2)
    return resolved


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def _terminate_on_sigterm() -> None:
    """SIGTERM behaves like Ctrl-C, so `finally` blocks stop children and clean up."""
    signal.signal(signal.SIGTERM, _interrupt)


@app.command()
def worker(log_level: str = typer.Option("warning", help="Log level.")) -> None:
    """Run one stream-processing worker (scale out by starting more; they split the partitions)."""
    from aiyield.worker import run_worker

    _logging(log_level)
    run_worker(_require(_settings()), loglevel=log_level)


@app.command()
def gateway(
    gateway_port: Optional[int] = typer.Option(None, help="Port to listen on (default 8787)."),
    otlp_grpc_port: Optional[int] = typer.Option(None, help="OTLP over gRPC port (default 4317; 0: off)."),
    log_level: str = typer.Option("info"),
) -> None:
    """Serve the HTTP ingest gateway: events, GitHub/GitLab/Argo CD webhooks, OTLP metrics and logs (HTTP and gRPC)."""
    from aiyield.gateway.app import run_gateway

    _logging(log_level)
    run_gateway(_require(_settings(gateway_port=gateway_port, otlp_grpc_port=otlp_grpc_port)))


@app.command()
def exporter(
    metrics_port: Optional[int] = typer.Option(None, help="Port for /metrics (default 9464)."),
    log_level: str = typer.Option("warning"),
) -> None:
    """Serve the Prometheus metrics, read from Redis at every scrape."""
    from aiyield.exporter import serve

    _logging(log_level)
    settings = _require(_settings(metrics_port=metrics_port), kafka=False)
    serve(settings.redis, settings.metrics_port, budgets=settings.budgets, caps=settings.caps,
          waste_grace=settings.waste_grace_seconds, **settings.redis_client_options())
    console.print(f"exporter on http://localhost:{settings.metrics_port}/metrics, "
                  f"live page http://localhost:{settings.metrics_port}/")
    _terminate_on_sigterm()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@app.command()
def send(
    file: str = typer.Argument("-", help="NDJSON file of events, or - for standard input."),
) -> None:
    """Validate NDJSON events and send the valid ones to Kafka; exit 1 if any line was rejected."""
    from aiyield.core.events import decode_lines, parse_items
    from aiyield.core.pseudonym import Pseudonymiser
    from aiyield.kafka import Publisher, dead_letters, ensure_topics

    settings = _require(_settings(), redis=False)
    stream = sys.stdin.buffer if file == "-" else open(file, "rb")
    with stream:
        body = stream.read()
    # Report line numbers: map each item back to its non-blank line.
    lines = [n for n, line in enumerate(body.splitlines(), 1) if line.strip()]
    good, bad = parse_items(decode_lines(body), time.time(), Pseudonymiser(settings.pseudonym_key.encode()))
    rejected = [(lines[r.index], r.error) for r in bad]
    ensure_topics(settings.kafka_client_config(), settings.topics, settings.partitions)
    publisher = Publisher(settings.kafka_client_config())
    try:
        publisher.publish_events(settings.events_topic, good)
        if rejected:
            publisher.publish(settings.dlq_topic, dead_letters(bad, "send"))
    finally:
        publisher.close()
    table = Table(title=f"aiyield send {file}")
    table.add_column("accepted", justify="right")
    table.add_column("rejected", justify="right")
    table.add_row(str(len(good)), str(len(rejected)))
    out.print(table)
    for number, err in rejected:
        out.print(f"line {number}: {err.reason}")
    if rejected:
        raise typer.Exit(1)


@app.command()
def simulate(
    rate: float = typer.Option(200.0, help="Events per second."),
    duration: Optional[float] = typer.Option(None, help="Seconds to run (default: until Ctrl-C)."),
    seed: int = typer.Option(7, help="Random seed of the synthetic organisation."),
) -> None:
    """Feed a synthetic organisation's events to Kafka (teams, tools, deployments, one team that ships nothing)."""
    from aiyield.kafka import Publisher, ensure_topics

    settings = _require(_settings(), redis=False)
    ensure_topics(settings.kafka_client_config(), settings.topics, settings.partitions)
    publisher = Publisher(settings.kafka_client_config())
    _terminate_on_sigterm()
    try:
        _simulate(publisher, settings, rate, duration, seed, show_metrics=False, check=lambda: None)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()


def _simulate(
    publisher, settings: Settings, rate: float, duration: float | None, seed: int, show_metrics: bool,
    check: Callable[[], None],
) -> None:
    """Produce at `rate` in real time, with a live line of progress (and the headline metrics under `up`).

    `check` runs every tick and raises to stop (under `up`: when one of its services died).
    """
    from rich.live import Live

    from aiyield.core.events import parse_items
    from aiyield.core.pseudonym import Pseudonymiser
    from aiyield.simulate import Organisation

    org = Organisation(seed)
    pseudonymise = Pseudonymiser(settings.pseudonym_key.encode())
    sent = 0
    started = time.monotonic()
    reader = _snapshot_reader(settings) if show_metrics else None
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        tick = 0
        while duration is None or time.monotonic() - started < duration:
            check()
            tick += 1
            target = started + tick * 0.5
            batch = org.tick(time.time(), max(1, round(rate * 0.5)))
            good, _bad = parse_items(batch, time.time(), pseudonymise)
            publisher.publish_events(settings.events_topic, good)
            sent += len(good)
            live.update(_progress(sent, time.monotonic() - started, reader))
            time.sleep(max(0.0, target - time.monotonic()))


def _snapshot_reader(settings: Settings):
    from aiyield import redisconn
    from aiyield.readout import read_snapshot

    client = redisconn.client(settings, timeout=2)
    return lambda: read_snapshot(client, time.time())


def _progress(sent: int, elapsed: float, reader) -> Table:
    table = Table(box=None, show_header=True)
    table.add_column("sent", justify="right")
    table.add_column("events/s", justify="right")
    row = [f"{sent:,}", f"{sent / max(elapsed, 1e-9):,.0f}"]
    if reader is not None:
        for name in ("accepted", "spend 1h", "normalized deployments 1h"):
            table.add_column(name, justify="right")
        try:
            snap = reader()
            accepted = sum(n for (_t, o), n in snap.events_total.items() if o == "accepted")
            rows = snap.team_summary("1h")
            row += [f"{accepted:,}", f"${sum(r.spend_usd for r in rows):,.2f}",
                    f"{sum(r.normalized_deployments for r in rows):,.1f}"]
        except Exception as exc:  # noqa: BLE001 - progress display only; the pipeline is unaffected
            row += ["?", "?", f"({type(exc).__name__})"]
    table.add_row(*row)
    return table


@app.command()
def report(
    window: str = typer.Option("24h", help="1h, 24h, 7d or 30d."),
    format: Format = typer.Option(Format.table, "--format", help="table, csv or json."),
    month: bool = typer.Option(
        False, "--month", help="Finance view: calendar month to date (UTC), forecast and budget, by team, tool and model."
    ),
) -> None:
    """Per-team spend, normalized deployments and cost per normalized deployment; or, with --month, the finance view."""
    from aiyield import redisconn
    from aiyield.core.windows import WINDOWS
    from aiyield.readout import read_snapshot

    if window not in WINDOWS:
        console.print(f"[red]unknown window {window!r}[/]; expected one of {', '.join(WINDOWS)}")
        raise typer.Exit(2)
    settings = _require(_settings(), kafka=False)
    snap = read_snapshot(redisconn.client(settings), time.time())
    if month:
        teams = snap.month(settings.budgets)
        detail = snap.month(settings.budgets, by=("team", "tool", "model"))
        _print_rows(format, "month", [*teams, *detail], {"month": teams[0].month if teams else None},
                    f"aiyield — month to date ({teams[0].month if teams else 'no data'})")
        return
    _print_rows(format, "window", snap.team_summary(window), {"window": window}, f"aiyield — last {window}")


def _print_rows(format: Format, key: str, rows: list, meta: dict, title: str) -> None:
    """Typed report rows (dataclasses) as JSON, CSV (one header from the row type) or a table."""
    import dataclasses

    dicts = [dataclasses.asdict(r) for r in rows]
    if format is Format.json:
        out.print_json(json.dumps({**meta, "rows" if key == "month" else "teams": dicts}))
        return
    names = [f.name for f in dataclasses.fields(type(rows[0]))] if rows else ["team"]
    if format is Format.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[key, *(n for n in names if n != key)])
        writer.writeheader()
        for d in dicts:
            writer.writerow({key: meta[key], **{k: "" if v is None else v for k, v in d.items() if k != key}})
        sys.stdout.write(buffer.getvalue())
        return
    from aiyield.report_view import show

    show(out, title, names, dicts)


@app.command()
def rebuild(
    yes: bool = typer.Option(False, "--yes", help="Do it (without it, only say what would be done)."),
    force: bool = typer.Option(False, "--force", help="Skip the check that the worker group has no members."),
) -> None:
    """Rebuild Redis from Kafka: clear aiyield's state; restarted workers re-apply every retained event.

    Stop every worker first; start them again afterwards. What is and is not restored: docs/RELIABILITY.md.
    """
    from aiyield import redisconn
    from aiyield.rebuild import RebuildError, rebuild as do_rebuild, worker_group

    settings = _require(_settings())
    if not yes:
        console.print(
            f"would delete the consumer group {worker_group(settings)!r} and aiyield's state in "
            f"{redact_url(settings.redis)} (keeping the gateway's OTLP state), so that workers re-read every topic "
            "from its oldest record. Stop every worker, then run again with --yes."
        )
        raise typer.Exit(1)
    client = redisconn.client(settings)
    try:
        done = do_rebuild(settings, client, force=force)
    except RebuildError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    group = f"deleted consumer group {worker_group(settings)!r}" if done.deleted_group else "no consumer group to delete"
    out.print(f"{group}; deleted {done.deleted_keys} Redis keys. Start the workers: they re-apply every retained "
              f"event of {settings.events_topic}.")


@app.command()
def reconcile(
    days: int = typer.Option(30, min=1, max=62, help="Complete UTC days to fetch (and overwrite), ending yesterday."),
    every: Optional[float] = typer.Option(
        None, min=60, help="Run again every SECONDS until stopped (compose); default: run once (CronJob)."),
) -> None:
    """Pull daily billed cost from the Anthropic and OpenAI admin cost APIs into Redis (aiyield_billed_usd).

    Providers without an admin key (AIYIELD_ANTHROPIC_ADMIN_KEY, AIYIELD_OPENAI_ADMIN_KEY) are skipped. Exit 1 when
    a provider failed (what the others fetched is stored), 2 when none is configured.
    """
    from aiyield import redisconn
    from aiyield.reconcile import configured, run

    settings = _require(_settings(), kafka=False)
    if not configured(settings):
        console.print("[red]no provider configured:[/] set AIYIELD_ANTHROPIC_ADMIN_KEY and/or AIYIELD_OPENAI_ADMIN_KEY")
        raise typer.Exit(2)
    client = redisconn.client(settings)
    _terminate_on_sigterm()

    def progress(provider: str, pages: int, found: int) -> None:
        console.print(f"{provider}: page {pages} fetched, {found} days so far")

    try:
        while True:
            console.print(f"reconciling {', '.join(configured(settings))}: the last {days} complete UTC days")
            try:
                outcomes = run(settings, client, time.time(), days, progress=progress)
            except redis.RedisError as exc:
                console.print(f"[red]cannot store in Redis ({redact_url(settings.redis)}):[/] {exc}")
                outcomes = None
            else:
                _print_reconciled(outcomes)
            failed = outcomes is None or any(o.error for o in outcomes)
            if every is None:
                if failed:
                    raise typer.Exit(1)
                return
            time.sleep(every)
    except KeyboardInterrupt:
        pass


def _print_reconciled(outcomes) -> None:
    """What was stored: one row per UTC day, one column per provider (USD), then the totals; errors below."""
    from datetime import datetime, timezone

    stored = [o for o in outcomes if o.error is None]
    table = Table(title="aiyield reconcile: billed USD stored")
    table.add_column("day (UTC)")
    for o in stored:
        table.add_column(o.provider, justify="right")
    for day in sorted({d for o in stored for d in o.days}):
        table.add_row(datetime.fromtimestamp(day, timezone.utc).strftime("%Y-%m-%d"),
                      *(f"{o.days[day]:,.2f}" if day in o.days else "—" for o in stored))
    table.add_section()
    table.add_row("total", *(f"{sum(o.days.values()):,.2f}" for o in stored))
    if stored:
        out.print(table)
    for o in outcomes:
        if o.error:
            console.print(f"[red]not stored:[/] {o.error}")


class Vendor(str, Enum):
    copilot = "copilot"
    cursor = "cursor"
    claude_code = "claude-code"


@app.command()
def pull(
    vendor: Vendor = typer.Argument(..., help="copilot, cursor or claude-code."),
    days: int = typer.Option(7, min=1, max=90, help="How far back a first pull reaches (UTC days); later pulls "
                             "continue from where the last one stopped."),
    every: Optional[float] = typer.Option(
        None, min=60, help="Pull again every SECONDS until stopped (compose); default: pull once (CronJob)."),
) -> None:
    """Pull a seat-based tool's admin API into events: spend, tool-reported figures, (Cursor) AI commits.

    Idempotent: a pull repeated over the same days counts nothing twice. Exit 1 when the vendor refused the
    credential or an answer could not be used, 2 when the credential is not set. docs/CONNECTORS.md.
    """
    from aiyield import redisconn
    from aiyield.kafka import Publisher, ensure_topics
    from aiyield.pulling import PullError, Unauthorized, connector as connector_of, run

    connector = connector_of(vendor.value)
    settings = _settings()
    if (missing := connector.missing(settings)) is not None:
        console.print(f"[red]{vendor.value}: {missing} is not set[/]")
        raise typer.Exit(2)
    settings = _require(settings)
    client = redisconn.client(settings)
    ensure_topics(settings.kafka_client_config(), settings.topics, settings.partitions)
    publisher = Publisher(settings.kafka_client_config())
    _terminate_on_sigterm()
    try:
        while True:
            failed = True
            try:
                outcome = run(connector, settings, client, publisher, time.time(), days)
            except Unauthorized as exc:
                console.print(f"{vendor.value}: the vendor refused {connector.credential(settings)} (HTTP {exc.status}); "
                              "check the credential and its scopes", markup=False, highlight=False)
            except PullError as exc:
                console.print(f"{vendor.value}: {exc}", markup=False, highlight=False)
            except redis.RedisError as exc:
                console.print(f"[red]cannot read or store the cursor in Redis ({redact_url(settings.redis)}):[/] {exc}")
            else:
                failed = False
                _print_pulled(outcome)
            if every is None:
                if failed:
                    raise typer.Exit(1)
                return
            time.sleep(every)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()


def _print_pulled(outcome) -> None:
    table = Table(title=f"aiyield pull {outcome.vendor}")
    table.add_column("accepted", justify="right")
    table.add_column("rejected", justify="right")
    for note in outcome.notes:
        table.add_column(note, justify="right")
    table.add_row(str(outcome.accepted), str(len(outcome.rejected)), *(str(n) for n in outcome.notes.values()))
    out.print(table)
    for r in outcome.rejected[:20]:
        out.print(f"dead-lettered: {r.error.reason}", markup=False, highlight=False)


@app.command()
def prices(
    file: Optional[Path] = typer.Option(None, "--prices", help="TOML price file (default: AIYIELD_PRICES)."),
    format: Format = typer.Option(Format.table, "--format", help="table, csv or json."),
) -> None:
    """The price table in use (USD per million tokens), each entry with its source and effective date."""
    from aiyield.core.pricing import PriceFileError, PriceTable

    settings = _settings(prices=str(file) if file else None)
    try:
        table = PriceTable.load(settings.prices)
    except PriceFileError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    rows = []
    for name, p in table.entries():
        lc = p.long_context
        rows.append({
            "model": name, "input": p.input, "output": p.output, "cache_read": p.cache_read,
            "cache_write": p.cache_write, "cache_write_1h": p.write_1h,
            "long_context_threshold": lc.threshold if lc else None,
            "long_context": None if lc is None else {
                "input": lc.input, "output": lc.output, "cache_read": lc.cache_read, "cache_write": lc.cache_write,
                "cache_write_1h": lc.write_1h},
            "source": p.source, "effective": p.effective,
        })
    if format is Format.json:
        out.print_json(json.dumps({"unit": "USD per million tokens", "models": rows}))
        return
    if format is Format.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[k for k in rows[0] if k != "long_context"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        out.print(buffer.getvalue(), end="", markup=False, highlight=False)
        return
    grid = Table(title=f"aiyield prices: USD per million tokens ({settings.prices or 'built-in table'})")
    for column in ("model", "input", "output", "cache read", "cache write 5m", "cache write 1h", "long context",
                   "source", "effective"):
        grid.add_column(column, justify="right" if column not in ("model", "source", "long context") else "left")
    for row in rows:
        lc = row["long_context"]
        grid.add_row(
            row["model"], *(f"{row[k]:g}" for k in ("input", "output", "cache_read", "cache_write", "cache_write_1h")),
            "—" if lc is None else (f"> {row['long_context_threshold']:,}: {lc['input']:g} / {lc['output']:g} / "
                                    f"{lc['cache_read']:g} / {lc['cache_write']:g} / {lc['cache_write_1h']:g}"),
            row["source"], row["effective"],
        )
    grid.caption = "long context: an event whose input + cache read + cache write tokens exceed the threshold is " \
                   "priced at input / output / cache read / cache write 5m / cache write 1h"
    out.print(grid)


@app.command()
def up(
    simulate: bool = typer.Option(False, "--simulate", help="Feed a synthetic organisation's events."),
    rate: float = typer.Option(200.0, help="Simulated events per second."),
    duration: Optional[float] = typer.Option(None, help="Stop after this many seconds."),
    gateway_port: Optional[int] = typer.Option(None, help="Gateway port (default 8787)."),
    metrics_port: Optional[int] = typer.Option(None, help="Exporter port (default 9464)."),
    otlp_grpc_port: Optional[int] = typer.Option(None, help="OTLP over gRPC port (default 4317; 0: off)."),
    prices: Optional[Path] = typer.Option(None, help="TOML price file overriding the built-in table."),
    workers: int = typer.Option(1, help="Worker processes."),
    data: Optional[Path] = typer.Option(
        None, "--data", help="Directory of the embedded broker's and Redis's data (default: the state directory, "
        "~/.local/state/aiyield): a restart on it loses and double-counts nothing."),
) -> None:
    """The whole pipeline in one process tree: worker, exporter, gateway (+ embedded Kafka and Redis)."""
    from aiyield.kafka import Publisher
    from aiyield.local import DataDirInUse, ServiceExited, data_dir, local_pipeline

    settings = _settings(gateway_port=gateway_port, metrics_port=metrics_port, otlp_grpc_port=otlp_grpc_port,
                         prices=str(prices) if prices else None)
    if settings.prices:
        from aiyield.core.pricing import PriceFileError, PriceTable

        try:
            PriceTable.load(settings.prices)
        except PriceFileError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
    _terminate_on_sigterm()
    with ExitStack() as stack:
        try:
            # Only the embedded services have data to keep.
            data = (data or data_dir()) if not (settings.kafka and settings.redis) else None
            running = stack.enter_context(local_pipeline(settings, workers, announce=console.print, data=data))
            settings = running.settings
            table = Table(title="aiyield is up", show_header=False)
            table.add_column(no_wrap=True)
            table.add_column(overflow="fold")  # a URL folded stays whole; an ellipsis would cut it
            table.add_row("page", running.page_url)
            table.add_row("metrics", running.metrics_url)
            table.add_row("gateway", f"{running.gateway_url}/v1/events")
            if settings.otlp_grpc_port:
                table.add_row("OTLP gRPC", running.otlp_grpc_address)
            table.add_row("kafka", settings.kafka)
            table.add_row("redis", redact_url(settings.redis))
            table.add_row("logs", str(running.workdir))
            if data is not None:
                table.add_row("data", str(data))
            table.add_row("report", "aiyield report --window 1h")
            out.print(table)

            if simulate:
                publisher = Publisher(settings.kafka_client_config())
                stack.callback(publisher.close)
                _simulate(publisher, settings, rate, duration, seed=7, show_metrics=True, check=running.check)
            else:
                running.wait(duration)
        except ServiceExited as exc:
            console.print(f"[red]{exc}:[/]\n{exc.child.tail()}")
            raise typer.Exit(1) from None
        except DataDirInUse as exc:
            console.print(f"[red]{exc}[/]: stop it first, or give this one another --data")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            pass
        console.print("\nstopping…")


@app.command()
def bench(
    events: int = typer.Option(300_000, help="Token events drained by the floor, the worker and the 2 workers."),
    phases: str = typer.Option("floor,minimal,worker,freshness,scrape,gateway,scale", help="Comma-separated phases to run."),
    batch_messages: int = typer.Option(100, help="Kafka messages per batch (each carries 100 events)."),
    scrape_series: int = typer.Option(10_000, help="About how many series the scrape phase serves."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Measure throughput (framework-free floor vs worker), freshness, scrape, gateway, scale-out and memory."""
    from aiyield.benchmark import PHASES, Options, run

    chosen = tuple(p.strip() for p in phases.split(",") if p.strip())
    unknown = [p for p in chosen if p not in PHASES]
    if unknown:
        console.print(f"[red]unknown phase(s) {', '.join(unknown)}[/]; choose from {', '.join(PHASES)}")
        raise typer.Exit(2)
    results = run(Options(events=events, batch_messages=batch_messages, scrape_series=scrape_series, phases=chosen),
                  progress=console.print)
    if as_json:
        print(json.dumps(results))
        return
    table = Table(title="aiyield bench", show_header=False)
    for name, value in results.items():
        table.add_row(name, json.dumps(value) if isinstance(value, dict) else f"{value:,}" if isinstance(value, (int, float)) else str(value))
    out.print(table)


from aiyield.plugins.hooks import hook_app  # noqa: E402 - mounted after the commands above, listed last in --help

app.add_typer(hook_app, name="hook", help="Git and Claude Code hooks that report AI tasks with their commits.")

from aiyield.plugins.provenance import provenance as _provenance  # noqa: E402

app.command("provenance")(_provenance)


def main() -> None:
    app()

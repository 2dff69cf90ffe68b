"""`kvheal serve` and `kvheal stress`: run the real worker, and hammer it with racing tabs.

Both build on `kvheal.impl`; configuration mistakes become one-line usage errors (exit 2).
"""

from __future__ import annotations

import json
import sys

import click

from kvheal.impl.config import VARIANTS, ConfigError

_VARIANT_HELP = (
    "Comma-separated design flags of SPEC §5: " + ", ".join(VARIANTS) + ". "
    "dedupe, atomic_cache and sweeper change the worker; keep_verifying, "
    "shared_pending and tab_crash change the clients (stress and tests), so the "
    "server accepts but ignores them. Empty is the seed design."
)


def _usage(exc: Exception) -> click.UsageError:
    return click.UsageError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@click.command()
@click.option(
    "--backend",
    default="sqlite",
    show_default=True,
    metavar="sqlite|redis|memory",
    help="Where the KV lives: SQLite (one file, no setup), a Redis server, or this process's memory.",
)
@click.option("--variant", default="", metavar="FLAGS", help=_VARIANT_HELP)
@click.option(
    "--workers", type=int, default=1, show_default=True, help="uvicorn worker processes (memory needs 1)."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8787, show_default=True)
@click.option(
    "--db",
    default="kvheal.sqlite3",
    show_default=True,
    help="SQLite file (its heal-token secret is kept in DB.secret).",
)
@click.option("--redis-url", default="redis://127.0.0.1:6379/0", show_default=True)
@click.option("--cap", type=int, default=200, show_default=True, help="Cache capacity.")
@click.option(
    "--sweep-interval",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between sweeper passes (with --variant sweeper).",
)
@click.option(
    "--stale-ms",
    type=float,
    default=0.0,
    show_default=True,
    help="Emulate Workers KV locations: each process may serve reads this many ms old.",
)
@click.option("--op-log", default="", metavar="PATH", help="Append every KV call to this JSONL file.")
@click.option("--log-level", default="warning", show_default=True)
@click.option(
    "--sqlite-sync",
    default="full",
    show_default=True,
    metavar="full|normal",
    help="SQLite synchronous mode: full survives power loss, normal only process crashes.",
)
@click.option(
    "--allow-volatile",
    is_flag=True,
    help="Serve a Redis without AOF (acknowledged posts are lost when it restarts).",
)
@click.option(
    "--secret",
    default="",
    metavar="TEXT",
    help="Key of the heal tokens (keep it across restarts; default: SQLite keeps one in DB.secret, "
    "other backends draw a fresh one). Prefer --secret-file: a command line is visible to others.",
)
@click.option("--secret-file", default="", metavar="PATH", help="Read the heal-token key from this file.")
@click.option(
    "--post-rate",
    type=float,
    default=10.0,
    show_default=True,
    help="Posts per second per client address (token bucket; 0: no limit).",
)
@click.option(
    "--post-burst", type=int, default=50, show_default=True, help="Posts a client may send at once."
)
@click.option(
    "--heal-rate",
    type=float,
    default=20.0,
    show_default=True,
    help="Heals per second per client address (0: no limit).",
)
@click.option(
    "--heal-burst", type=int, default=100, show_default=True, help="Heals a client may send at once."
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="Let browser pages from ORIGIN call the API (repeatable; default: no CORS headers).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="HOST",
    help="Serve only requests whose Host header is HOST (repeatable, '*.example.org' allowed; default: any).",
)
@click.option(
    "--body-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds a request body may take to arrive (then 408 and the connection is closed).",
)
@click.option(
    "--header-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds a request's headers may take to arrive (then 408 and the connection is closed).",
)
@click.option(
    "--max-future-ms",
    type=int,
    default=60_000,
    show_default=True,
    help="Refuse posts timestamped more than this far ahead of the server's clock.",
)
def serve(
    backend,
    variant,
    workers,
    host,
    port,
    db,
    redis_url,
    cap,
    sweep_interval,
    stale_ms,
    op_log,
    log_level,
    sqlite_sync,
    allow_volatile,
    secret,
    secret_file,
    post_rate,
    post_burst,
    heal_rate,
    heal_burst,
    cors_origins,
    allowed_hosts,
    body_timeout,
    header_timeout,
    max_future_ms,
):
    """Serve the worker (SPEC §8) with uvicorn until interrupted."""
    from kvheal.impl.server import ServeConfig, preflight
    from kvheal.impl.server import serve as run_server

    try:
        secret_hex = _secret_hex(secret, secret_file)
        config = ServeConfig(
            backend=backend,
            variants=variant,
            workers=workers,
            host=host,
            port=port,
            db=db,
            redis_url=redis_url,
            cap=cap,
            sweep_interval=sweep_interval,
            stale_ms=stale_ms,
            op_log=op_log,
            log_level=log_level,
            sqlite_sync=sqlite_sync,
            allow_volatile=allow_volatile,
            secret=secret_hex,
            post_rate=post_rate,
            post_burst=post_burst,
            heal_rate=heal_rate,
            heal_burst=heal_burst,
            cors_origins=cors_origins,
            allowed_hosts=allowed_hosts,
            body_timeout=body_timeout,
            header_timeout=header_timeout,
            max_future_ms=max_future_ms,
        )
        for warning in preflight(config):
            click.echo(f"kvheal: warning: {warning}", err=True)
        config = config.with_secret()
    except (ConfigError, OSError) as exc:
        raise _usage(exc) from None
    if backend == "redis" and not secret_hex:
        click.echo(
            "kvheal: warning: no --secret-file: heal tokens are signed with a key drawn now, and "
            "every token handed out stops working when serve restarts",
            err=True,
        )
    if not _is_loopback(host):
        click.echo(
            f"kvheal: warning: --host {host} serves beyond this machine, and the API has no "
            "authentication (anyone who can reach it can post); put it behind a proxy you trust",
            err=True,
        )
    click.echo(
        f"kvheal: serving {backend} ({', '.join(sorted(config.variants)) or 'seed design'}) "
        f"on http://{host}:{port} with {workers} process(es)",
        err=True,
    )
    try:
        run_server(config)
    except ConfigError as exc:
        raise _usage(exc) from None


def _secret_hex(secret: str, secret_file: str) -> str:
    """The heal-token key as ServeConfig wants it (hex), from --secret or --secret-file ("" if neither)."""
    if secret and secret_file:
        raise ConfigError("give --secret or --secret-file, not both")
    if secret_file:
        try:
            with open(secret_file, "rb") as f:
                secret_bytes = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --secret-file {secret_file}: {exc.strerror or exc}") from None
        if not secret_bytes:
            raise ConfigError(f"--secret-file {secret_file} is empty")
        return secret_bytes.hex()
    return secret.encode().hex()


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--tabs", type=int, default=8, show_default=True, help="Clients posting at the same instant.")
@click.option("--per-tab", "per_tab", type=int, default=1, show_default=True, help="Messages each tab posts.")
@click.option("--variant", default="", metavar="FLAGS", help=_VARIANT_HELP)
@click.option(
    "--backend",
    default="sqlite",
    show_default=True,
    metavar="sqlite|redis|memory",
    help="redis starts a throwaway redis-server unless --redis-url is given.",
)
@click.option("--workers", type=int, default=4, show_default=True, help="uvicorn worker processes.")
@click.option("--runs", type=int, default=10, show_default=True, help="Independent runs (fresh store each).")
@click.option("--cap", type=int, default=200, show_default=True, help="Cache capacity.")
@click.option("--max-rounds", type=int, default=30, show_default=True, help="Poll rounds per run at most.")
@click.option(
    "--poll-ms",
    default="20,10,200",
    show_default=True,
    metavar="FIRST,STEP,MAX",
    help="Poll schedule in milliseconds (the original: 5000,2000,300000).",
)
@click.option(
    "--timeout", type=float, default=300.0, show_default=True, help="Start no run after this many seconds."
)
@click.option(
    "--sweep-interval",
    type=float,
    default=0.5,
    show_default=True,
    help="Seconds between sweeper passes (with --variant sweeper).",
)
@click.option("--db", default="", help="SQLite file (default: a temporary one).")
@click.option("--redis-url", default="", help="Use this Redis server instead of starting one.")
@click.option(
    "--op-log", default="", metavar="PATH", help="Append every KV call of the worker to this JSONL file."
)
@click.option(
    "--record",
    default="",
    metavar="LOG",
    help="Log every KV call to LOG (a new file) and check the log is a behaviour of the model "
    "(trace validation); exit 1 if it is not.",
)
@click.option("--force", is_flag=True, help="Let --record overwrite an existing LOG.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def stress(
    tabs,
    per_tab,
    variant,
    backend,
    workers,
    runs,
    cap,
    max_rounds,
    poll_ms,
    timeout,
    sweep_interval,
    db,
    redis_url,
    op_log,
    record,
    force,
    as_json,
):
    """Race tabs against a served worker (127.0.0.1 only) and report what the cache lost and how it healed.

    Exit status: 0 done; 1 a converging design (atomic_cache,dedupe; dedupe,keep_verifying;
    dedupe,sweeper) lost an acknowledged message or did not converge, or --record's log is not
    a behaviour of the model; 2 usage error."""
    from kvheal.impl.server import BACKENDS
    from kvheal.impl.stress import StressConfig, run_stress

    try:
        first, step, maximum = (float(x) for x in poll_ms.split(","))
    except ValueError:
        raise click.UsageError(f"--poll-ms wants FIRST,STEP,MAX in milliseconds, got {poll_ms!r}") from None
    if backend not in BACKENDS:
        raise click.UsageError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if workers < 1:
        raise click.UsageError(f"--workers must be at least 1, got {workers}")
    if record:
        if op_log and op_log != record:
            raise click.UsageError("--record LOG is the operation log: give --op-log or --record, not both")
        from kvheal.impl.procs import check_new_file

        try:
            check_new_file(record, "--record", force=force)
            open(record, "w").close()  # a fresh log: validation reads every line of it
        except ConfigError as exc:
            raise _usage(exc) from None
        except OSError as exc:
            raise click.UsageError(f"cannot write {record}: {exc.strerror or exc}") from None
        op_log = record
    try:
        config = StressConfig(
            tabs=tabs,
            per_tab=per_tab,
            variants=variant,
            backend=backend,
            workers=workers,
            runs=runs,
            cap=cap,
            max_rounds=max_rounds,
            poll_first_ms=first,
            poll_step_ms=step,
            poll_max_ms=maximum,
            timeout_s=timeout,
            sweep_interval=sweep_interval,
            db=db,
            redis_url=redis_url,
            op_log=op_log,
        )
    except ConfigError as exc:
        raise _usage(exc) from None

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    with Progress(
        TextColumn("[bold]stress[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(f"{tabs}x{per_tab} {','.join(sorted(config.variants)) or 'seed'}", total=runs)
        try:
            report = run_stress(config, on_run=lambda _: bar.advance(task))
        except ConfigError as exc:
            raise _usage(exc) from None
        except RuntimeError as exc:
            raise click.ClickException(str(exc).splitlines()[0]) from None
    validation = None
    if record:
        from kvheal.conformance.validate import validate_log

        validation = validate_log(record, tabs=tabs, cap=cap, variants=config.variants)
    if as_json:
        out = report.to_dict()
        if validation is not None:
            out["validation"] = validation.as_json()
        click.echo(json.dumps(out))
    else:
        _print_report(report)
        if validation is not None:
            _print_validation(validation, record)
    for warning in report.config.get("warnings", []):
        click.echo(f"kvheal: warning: {warning}", err=True)
    if report.failure:
        click.echo(
            f"kvheal: {','.join(sorted(config.variants))} should converge, but {report.failure}", err=True
        )
        return 1
    return 1 if validation is not None and validation.status == "illegal" else 0


def _print_validation(validation, path) -> None:
    if validation.status == "ok":
        click.echo(
            f"trace validation: ok, the {validation.operations} KV calls of {validation.runs} run(s) "
            f"in {path} are a behaviour of the model"
        )
    elif validation.status == "illegal":
        click.echo(f"trace validation: ILLEGAL at {path}:{validation.line}: {validation.reason}")
        click.echo(f"  {json.dumps(validation.record)}")
    else:
        click.echo(f"trace validation: unknown ({validation.reason})")


def _print_report(report) -> None:
    from rich.console import Console
    from rich.table import Table

    s = report.summary
    c = report.config
    design = ",".join(c["variants"]) or "seed design"
    table = Table(
        title=f"kvheal stress: {c['tabs']} tabs x {c['per_tab']}, {design}, "
        f"{c['backend']} with {c['workers']} process(es), {s['runs']} runs"
    )
    table.add_column("measure")
    table.add_column("total", justify="right")
    total = s["acked"] + s["failed_posts"]
    rows = [
        ("posts acknowledged", f"{s['acked']} / {total}"),
        ("in the cache right after posting", str(s["in_cache_after_post"])),
        (
            "missing right after posting",
            f"{s['missing_after_post']} (in {s['runs_with_missing_after_post']} runs)",
        ),
        ("in the cache after healing", str(s["in_cache_after_heal"])),
        ("missing after healing", str(s["missing_after_heal"])),
        ("  of which evicted (older than the full cache)", str(s["evicted"])),
        ("  of which lost", str(s["lost"])),
        ("duplicates in the final cache", str(s["duplicates"])),
        ("runs converged", f"{s['converged_runs']} / {s['runs']}"),
        ("poll cycles to converge (max / mean)", f"{s['converge_polls_max']} / {s['converge_polls_mean']}"),
        ("heals sent", str(s["heals_sent"])),
        ("  ids given up (not found, or outside the cache's window)", str(s["heals_given_up"])),
        ("seconds", str(s["seconds"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console(file=sys.stdout).print(table)

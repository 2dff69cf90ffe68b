"""`kvheal replay`: drive the real implementation through a counterexample of `kvheal check`.

    kvheal check --tabs 2 --json > check.json
    kvheal replay check.json                   # every violated property in the file
    kvheal replay check.json --property NoDuplicates --backend memory --json

TRACE.json (or `-` for stdin) is `kvheal check --json`'s or `kvheal prove --json`'s output
(one layout, SPEC §9), an object ``{"property": NAME, "trace": [...], "config": {...}}``, or a
bare list of steps (then give ``--property``). The design comes from the file's ``config`` when
it has one; ``--tabs``, ``--per-tab``, ``--cap`` and ``--variant`` override it. Each trace is
first checked to be a counterexample in the model (it replays, and the property fails at its
end or around its fair loop); one that is not, e.g. a truncated trace, is a usage error naming
the step. Exit status: 1 when the real system shows a violation, 0 when it follows every trace
without showing one, 3 when it could not follow a trace, 2 for a usage error.

The as-built flags the real system has (the `as_built` preset and `stale_reads`: SPEC §6 "What
the real system has") replay like the others, the clock, reloads, refused puts, stale reads and
failed POSTs injected step by step:

    kvheal check --tabs 2 --variant as_built --json > b.json && kvheal replay b.json   # exit 1

A flag that is modelled only is a usage error naming it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from kvheal.model import Config, ConfigError
from kvheal.model.results import Trace, TraceError, exit_status


def _load(path: str) -> Any:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.UsageError(f"{path} is not JSON: {exc}") from None


def _config(data: Any, tabs, per_tab, cap, variant) -> Config:
    found = data.get("config", {}) if isinstance(data, dict) else {}
    if not isinstance(found, dict):
        found = {}
    fv = found.get("variant", found.get("variants", ""))
    if isinstance(fv, list):
        fv = ",".join(str(v) for v in fv)
    if fv == "seed":
        fv = ""
    try:
        return Config.make(
            tabs=tabs if tabs is not None else int(found.get("tabs", 2)),
            per_tab=per_tab if per_tab is not None else int(found.get("per_tab", 1)),
            cap=cap if cap is not None else (int(found["cap"]) if found.get("cap") is not None else None),
            variants=variant if variant is not None else (fv or ""),
        )
    except (ConfigError, ValueError, TypeError) as exc:
        raise click.UsageError(str(exc).splitlines()[0]) from None


def _implemented(config: Config) -> Config:
    """``config``, or a usage error naming a flag the real system does not have (replay runs
    the real worker and clients)."""
    from kvheal.flags import IMPL_VARIANTS

    missing = sorted(config.variants - set(IMPL_VARIANTS))
    if missing:
        raise click.UsageError(
            f"{missing[0]} is modelled only: the real worker and client do not have it, so its "
            "counterexamples cannot be replayed (kvheal check and prove decide it)"
        )
    return config


def _traces(data: Any, only: str | None) -> list[tuple[str, list]]:
    if isinstance(data, list):
        if not only:
            raise click.UsageError("a bare list of steps needs --property NAME")
        return [(only, data)]
    if not isinstance(data, dict):
        raise click.UsageError(
            'TRACE.json must be kvheal check\'s JSON, {"property", "trace"} or a list of steps'
        )
    if "trace" in data:
        name = only or data.get("property")
        if not isinstance(name, str):
            raise click.UsageError("the trace names no property: give --property NAME")
        return [(name, data["trace"])]
    props = data.get("properties")
    if not isinstance(props, dict):
        raise click.UsageError('TRACE.json has neither "trace" nor "properties"')
    out = [
        (name, p.get("trace", []))
        for name, p in props.items()
        if isinstance(p, dict) and p.get("status") == "violated" and (not only or name == only)
    ]
    if only and not out:
        raise click.UsageError(f"no violated property {only!r} in the file")
    return out


@click.command()
@click.argument("trace_file", metavar="TRACE.json")
@click.option("--property", "only", default=None, metavar="NAME", help="Replay only this property's trace.")
@click.option(
    "--backend",
    default="sqlite",
    show_default=True,
    metavar="sqlite|memory|redis",
    help="The real KV: a SQLite file, this process's memory, or a Redis server.",
)
@click.option(
    "--db", default=None, help="SQLite file (default: a temporary one; an existing file is replaced)."
)
@click.option("--redis-url", default=None, help="Redis server (default: start a throwaway redis-server).")
@click.option(
    "--passes", type=click.IntRange(1, 100), default=2, show_default=True, help="Times around a lasso's loop."
)
@click.option("--tabs", type=int, default=None, help="Override the file's number of tabs.")
@click.option("--per-tab", "per_tab", type=int, default=None, help="Override the file's messages per tab.")
@click.option("--cap", type=int, default=None, help="Override the file's cache capacity.")
@click.option("--variant", default=None, metavar="FLAGS", help="Override the file's design flags.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def replay(trace_file, only, backend, db, redis_url, passes, tabs, per_tab, cap, variant, as_json) -> int:
    """Replay a counterexample through the real worker and clients and show the violation there.

    TRACE.json is `kvheal check --json`'s or `kvheal prove --json`'s output (SPEC §9). Each
    trace must be a counterexample in the model first, or it is refused naming the step.
    Exit status: 1 the real system shows the violation, 0 it does not, 3 it could not follow
    the trace, 2 usage error (a trace that is not a counterexample included)."""
    from kvheal.conformance.replay import replay as run_replay
    from kvheal.model.trace import NotACounterexample

    if backend not in ("sqlite", "memory", "redis"):
        raise click.UsageError(f"unknown backend {backend!r} (known: sqlite, memory, redis)")
    data = _load(trace_file)
    # prove --all-tabs's file has no one size (and no trace): nothing to build then
    config = _implemented(_config(data, tabs, per_tab, cap, variant)) if _has_fixed_size(data) else None
    found = _traces(data, only)
    if not found:
        if as_json:
            click.echo(json.dumps({"config": config and _config_json(config), "results": []}))
        else:
            click.echo("nothing to replay: no property is violated in the file")
        return 0
    if config is None:
        config = _config(data, tabs, per_tab, cap, variant)
    traces: list[tuple[str, Trace]] = []
    for name, steps in found:
        try:
            traces.append((name, Trace.from_json(steps)))
        except TraceError as exc:
            raise click.UsageError(f"{name}: {exc}") from None
    server = None
    path = db
    if backend == "sqlite" and db is not None or backend == "redis" and redis_url is not None:
        _preflight(backend, db, redis_url)  # before any replay: one line and exit 2
    try:
        if backend == "redis":
            path = redis_url
            if path is None:
                from kvheal.impl.redis_server import RedisServer, redis_server_binary

                if redis_server_binary() is None:
                    raise click.UsageError("the redis backend needs --redis-url or an installed redis-server")
                server = RedisServer().start()
                path = server.url
        results = []
        for name, trace in traces:
            try:
                results.append(run_replay(config, name, trace, backend=backend, path=path, passes=passes))
            except NotACounterexample as exc:
                raise click.UsageError(f"{name}: not a counterexample in the model: {exc}") from None
            except TraceError as exc:
                raise click.UsageError(
                    f"{name}: the trace does not replay through the model: {exc}"
                ) from None
            except ValueError as exc:
                raise click.UsageError(f"{name}: {str(exc).splitlines()[0]}") from None
    finally:
        if server is not None:
            server.stop()
    if as_json:
        click.echo(json.dumps({"config": _config_json(config), "results": [r.as_json() for r in results]}))
    else:
        _render(config, results)
    return exit_status(r.status for r in results)


def _has_fixed_size(data: Any) -> bool:
    """Whether the file's configuration is one size (not `prove --all-tabs`'s "all")."""
    found = data.get("config") if isinstance(data, dict) else None
    return not (isinstance(found, dict) and found.get("tabs") == "all")


def _preflight(backend: str, db: str | None, redis_url: str | None) -> None:
    from kvheal.impl.config import ConfigError as ImplConfigError
    from kvheal.impl.server import ServeConfig, preflight

    try:
        preflight(
            ServeConfig(
                backend=backend, db=db or "x", redis_url=redis_url or "", allow_volatile=True, port=0
            ),
            bind=False,
        )
    except ImplConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _config_json(config: Config) -> dict:
    return {
        "tabs": config.tabs,
        "per_tab": config.per_tab,
        "cap": config.cap,
        "variant": sorted(config.variants),
    }


def _render(config: Config, results) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for r in results:
        short = {real: f"#{m}" for m, real in enumerate(r.ids)}
        table = Table(
            title=f"kvheal replay: {r.property} on the real worker ({r.backend}), tabs={config.tabs} "
            f"per_tab={config.per_tab} cap={config.cap} variant={config.variant_label()}",
            title_justify="left",
        )
        table.add_column("step", justify="right")
        table.add_column("action")
        table.add_column("real KV / store calls")
        table.add_column("real cache")
        table.add_column("violated here")
        for s in r.steps:
            action = (f"↻{s.pass_no} " if s.loop else "") + s.action
            cache = "[" + ",".join(short.get(i, i) for i in s.cache) + "]"
            table.add_row(
                str(s.number),
                escape(action),
                escape(", ".join(s.calls)),
                escape(cache),
                "yes" if s.violation else "",
            )
        console.print(table)
        console.print("  ids: " + ", ".join(f"#{m} = {real}" for m, real in enumerate(r.ids)))
        if r.reproduced:
            console.print(f"  [bold red]reproduced[/]: {escape(r.evidence)}")
        else:
            why = r.diverged or r.evidence or "the real system does not show it"
            console.print(f"  [yellow]not reproduced[/]: {escape(why)}")


@click.command()
@click.argument("log", metavar="LOG.jsonl")
@click.option(
    "--tabs",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Tabs of the run (default: from kvheal stress's ids r<run>-t<tab>-m<m>).",
)
@click.option(
    "--cap",
    type=click.IntRange(1),
    default=None,
    help="Cache capacity (default: the messages of a run; kvheal stress uses 200).",
)
@click.option(
    "--variant",
    default=None,
    metavar="FLAGS",
    help="The design the run used (SPEC §5 flags; default: the log's design header, else the seed).",
)
@click.option(
    "--ids",
    "ids_file",
    default=None,
    metavar="IDS.json",
    help="The message ids in timestamp order (default: inferred from the ids).",
)
@click.option(
    "--budget",
    type=click.IntRange(1),
    default=200_000,
    show_default=True,
    help="Search states before giving up (verdict unknown, exit 3).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def validate(log, tabs, cap, variant, ids_file, budget, as_json) -> int:
    """Check that a log of KV operations (kvheal serve/stress --op-log) is a behaviour of the model.

    Exit status: 0 ok, 1 an operation no order explains, 2 usage error, 3 unknown (budget)."""
    import re

    from kvheal.conformance.validate import load_log, validate_records
    from kvheal.model import parse_variants

    try:
        records = load_log(log)
    except OSError as exc:
        raise click.UsageError(f"cannot read {log}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    header = next((r for r in records if r.get("op") == "design"), None)  # written by kvheal serve
    try:
        variants = parse_variants(
            variant if variant is not None else ",".join(header["variants"]) if header else ""
        )
        if header is not None and variant is not None and set(variants) != set(header["variants"]):
            raise ConfigError(
                f"{log} was recorded with the design {','.join(header['variants']) or 'seed'}, "
                f"not {','.join(sorted(variants)) or 'seed'}: omit --variant to use the log's"
            )
        if cap is None and header is not None and isinstance(header.get("cap"), int):
            cap = header["cap"]
        Config.make(tabs=tabs or 1, variants=variants)
    except ConfigError as exc:
        raise click.UsageError(str(exc).splitlines()[0]) from None
    ids = None
    if ids_file is not None:
        ids = _load(ids_file)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise click.UsageError(f"{ids_file} must be a JSON list of message ids")
    if tabs is None:
        found = [
            int(m.group(1))
            for r in records
            if (m := re.match(r"^r\d+-t(\d+)-m\d+$", str(r.get("mid") or "")))
        ]
        if not found:
            raise click.UsageError("cannot tell the number of tabs from the ids: give --tabs")
        tabs = max(found) + 1
    try:
        result = validate_records(records, tabs=tabs, cap=cap, variants=variants, ids=ids, budget=budget)
    except ValueError as exc:
        raise click.UsageError(str(exc).splitlines()[0]) from None
    if as_json:
        click.echo(json.dumps(result.as_json()))
    elif result.status == "ok":
        click.echo(
            f"ok: {result.operations} operations in {result.runs} run(s) are a behaviour of the "
            f"model (tabs={tabs}, variant={','.join(sorted(variants)) or 'seed'})"
        )
        if result.invariant_violations:
            click.echo(
                f"  the states reached violate {', '.join(result.invariant_violations)} "
                "(which this design allows)"
            )
    elif result.status == "illegal":
        click.echo(f"illegal: line {result.line}: {json.dumps(result.record)}")
        click.echo(f"  {result.reason}")
        click.echo(f"  state there: {json.dumps(result.state)}")
    else:
        click.echo(f"unknown: {result.reason}")
    return exit_status([result.verdict])

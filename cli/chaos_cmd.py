"""`kvheal chaos`: the fault suite (see `kvheal.impl.chaos`)."""

from __future__ import annotations

import json

import click

from kvheal.impl.config import ConfigError


@click.command()
@click.option(
    "--backend",
    default="sqlite",
    show_default=True,
    metavar="sqlite|redis",
    help="A real SQLite file, or a throwaway redis-server in --redis-persistence mode.",
)
@click.option(
    "--variant",
    default="atomic_cache,dedupe",
    show_default=True,
    metavar="FLAGS",
    help="The design served (converging designs must lose nothing).",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    metavar="NAME",
    help="Run only these scenarios (repeatable; default: all that apply to the backend).",
)
@click.option("--workers", type=int, default=2, show_default=True, help="uvicorn worker processes.")
@click.option("--clients", type=int, default=16, show_default=True, help="Concurrent clients of the load.")
@click.option(
    "--load",
    "load_s",
    type=float,
    default=3.0,
    show_default=True,
    help="Seconds of load per scenario (the fault fires after a third).",
)
@click.option(
    "--pause", "pause_s", type=float, default=2.0, show_default=True, help="Seconds a SIGSTOP lasts."
)
@click.option(
    "--redis-persistence",
    default="aof",
    show_default=True,
    metavar="aof|aof-always|rdb|none",
    help="The redis-server's persistence (serve requires AOF; the others show why).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"scenarios": [{"name", "tried", "failed", "unknown", "lost", ...}]}.',
)
def chaos(
    backend,
    variant,
    scenarios,
    workers,
    clients,
    load_s,
    pause_s,
    redis_persistence,
    seed,
    list_only,
    as_json,
):
    """Kill and pause the real system's processes under load, play hostile clients, and check that
    nothing acknowledged was lost.

    Exit status: 0 nothing acknowledged lost and no promise broken in any scenario; 1 otherwise;
    2 usage error."""
    from kvheal.impl.chaos import SCENARIOS, ChaosConfig, run_chaos

    if list_only:
        for name in SCENARIOS:
            click.echo(name)
        return 0
    try:
        config = ChaosConfig(
            backend=backend,
            variants=variant,
            scenarios=tuple(scenarios),
            workers=workers,
            clients=clients,
            load_s=load_s,
            pause_s=pause_s,
            redis_persistence=redis_persistence,
            seed=seed,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc).splitlines()[0]) from None

    def progress(result) -> None:
        if not as_json:
            click.echo(f"  {result.name}: {'ok' if result.ok else 'FAILED'} ({result.seconds} s)", err=True)

    try:
        report = run_chaos(config, on_scenario=progress)
    except ConfigError as exc:
        raise click.UsageError(str(exc).splitlines()[0]) from None
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        _print(report)
    return 0 if report.ok else 1


def _print(report) -> None:
    c = report.config
    design = ",".join(c["variants"]) or "seed design"
    where = c["backend"] + (f" ({c['redis_persistence']})" if c["backend"] == "redis" else "")
    click.echo(
        f"kvheal chaos: {design} on {where}, {c['workers']} worker process(es), {c['clients']} clients"
    )
    click.echo(
        f"{'scenario':<22}{'tried':>7}{'acked':>7}{'failed':>7}{'unknown':>8}{'retried':>8}{'lost':>6}"
        f"{'evicted':>8}{'orphaned':>9}  verdict"
    )
    for s in report.scenarios:
        click.echo(
            f"{s.name:<22}{s.tried:>7}{s.acked:>7}{s.failed:>7}{s.unknown:>8}{s.retried:>8}{s.lost:>6}"
            f"{s.evicted:>8}{s.orphaned:>9}  {'ok' if s.ok else 'FAILED'}"
        )
        for v in s.violations:
            click.echo(f"    ! {v}")
        for n in s.notes:
            click.echo(f"    - {n}")
    click.echo("all scenarios passed" if report.ok else "some scenarios FAILED")

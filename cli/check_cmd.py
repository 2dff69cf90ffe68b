"""`kvheal check` (SPEC §9) and `kvheal bench`: the explicit-state checker on the command line."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from kvheal.model import VIOLATED, CheckResult, KVHealModel, Progress, Trace, Verdict
from kvheal.model import check as run_check
from kvheal.model.results import exit_status  # noqa: F401  (SPEC §9's exit status; prove's too)
from kvheal.model.trace import changes, fmt_value, replay_trace

from .options import config_options, make_config

STYLE = {Verdict.HOLDS: "green", Verdict.VIOLATED: "bold red", Verdict.UNKNOWN: "yellow"}


class ProgressPrinter:
    """Progress lines on stderr (states, states/s, queue), only once a run passes a second."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.printed = False

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        rate = p.states / p.seconds if p.seconds else 0.0
        line = (
            f"explored {p.states:,} states, {p.transitions:,} transitions "
            f"({rate:,.0f} states/s), queue {p.queue:,}, {p.seconds:.0f}s"
        )
        end = "\r" if self.tty else "\n"
        sys.stderr.write(line + end)
        sys.stderr.flush()
        self.printed = True

    def close(self) -> None:
        if self.printed and self.tty:
            sys.stderr.write("\n")


def render_trace(console: Console, model: KVHealModel, name: str, trace: Trace) -> None:
    """A counterexample as a table: step, action and arguments, what changed."""
    trace = Trace.of(trace)
    states = replay_trace(model, trace)
    loop = trace.loop_start
    kind = "lasso" if loop is not None else "path"
    table = Table(
        title=f"{name}: counterexample ({kind} of {len(trace)} steps)", title_justify="left", show_lines=False
    )
    table.add_column("step", justify="right")
    table.add_column("action")
    table.add_column("what changed")
    for i, step in enumerate(trace):
        action = str(step)
        what = "; ".join(changes(model, states[i], states[i + 1])) or "(nothing: stutters for ever)"
        marker = ""
        if loop is not None and i == loop:
            marker = "loop starts ↻ "
        table.add_row(str(i + 1), marker + action, what)
    console.print(table)
    last = model.view(states[-1])
    if loop is None:
        console.print(
            f"  violated in the last state: cache {list(last['cache'])}, "
            f"posts {', '.join(fmt_value(p) for p in last['post'])}"
        )
    else:
        console.print(
            "  the loop returns to the state where it starts, for ever, and the goal fails on every pass."
        )


def render(console: Console, model: KVHealModel, result: CheckResult) -> None:
    """The verdict table and every counterexample, for people."""
    cfg = model.config
    design = "" if cfg.design is None else f"design={cfg.design_name()} "
    table = Table(
        title=f"kvheal check: {design}tabs={cfg.tabs} per_tab={cfg.per_tab} cap={cfg.cap} "
        f"variant={cfg.variant_label()}",
        title_justify="left",
    )
    table.add_column("property")
    table.add_column("kind")
    table.add_column("verdict")
    table.add_column("counterexample")
    for name, p in result.properties.items():
        cex = ""
        if p.status == VIOLATED:
            loop = p.trace.loop_start
            cex = f"{len(p.trace)} steps" + (f", loop from step {loop + 1}" if loop is not None else "")
        table.add_row(name, p.kind.replace("_", " "), f"[{STYLE[p.status]}]{p.status}[/]", cex)
    console.print(table)
    rate = result.states / result.explore_seconds if result.explore_seconds else 0
    done = "" if result.complete else f" (stopped early: {result.stop_reason or 'search incomplete'})"
    console.print(
        f"{result.states:,} states, {result.transitions:,} transitions, "
        f"{result.seconds:.2f}s ({rate:,.0f} states/s){done}"
    )
    if result.coverage is not None:
        cov = Table(title="coverage: transitions per action", title_justify="left")
        cov.add_column("action")
        cov.add_column("transitions", justify="right")
        for action, n in result.coverage["actions"].items():
            cov.add_row(action, f"{n:,}" if n else "[red]0[/]")
        console.print(cov)
        never = result.coverage["never_enabled"]
        console.print(
            "never enabled: " + (", ".join(never) if never else "none (every action instance was taken)")
        )
    for name, p in result.properties.items():
        if p.status == VIOLATED:
            console.print()
            render_trace(console, model, name, p.trace)


@click.command()
@config_options
@click.option(
    "--no-reduction",
    is_flag=True,
    help="Explore the exact state space of SPEC §3-4 (no reduction is applied today "
    "either way; the flag is part of the contract).",
)
@click.option(
    "--max-states",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many distinct states; unfinished verdicts are 'unknown'.",
)
@click.option(
    "--property", "only", multiple=True, metavar="NAME", help="Decide only this property (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (SPEC §9).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@click.option(
    "--memory",
    "memory",
    default=None,
    metavar="SIZE",
    help="Memory budget (e.g. 4G, 800M; 0 for none). Past it the search stops with "
    "'unknown' (exit 3) instead of running out of memory. Default: 3/4 of the "
    "memory available, and 85% of an address-space limit (ulimit -v).",
)
@click.option(
    "--coverage",
    "show_coverage",
    is_flag=True,
    help="Also report how many transitions each action produced and which action "
    'instances were never enabled (in --json: a "coverage" object).',
)
@click.option(
    "--simulate",
    "simulate_runs",
    type=click.IntRange(min=1),
    default=None,
    metavar="RUNS",
    help="Instead of enumerating, take RUNS seeded random walks (see --depth, --seed): "
    "finds invariant violations in spaces too big to explore; never 'holds'.",
)
@click.option(
    "--depth",
    "walk_depth",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Steps per random walk (with --simulate).",
)
@click.option(
    "--seed",
    "seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the random walks (with --simulate): one seed, one set of walks.",
)
@click.option(
    "--itf",
    "itf_path",
    default=None,
    metavar="FILE",
    help="Also write the counterexample as ITF JSON (Apalache/Quint's trace format) to "
    "FILE; with several, one file each, the property's name before the extension.",
)
@click.option(
    "--engine",
    "engine",
    type=click.Choice(["auto", "compiled", "python"]),
    default="auto",
    show_default=True,
    help="The search: 'compiled' runs the kernel generated from the definition as "
    "machine code (numba) over packed states; 'python' the interpreted search; 'auto' "
    "the compiled one where it can run. Both give the same counts, verdicts and traces.",
)
@click.option(
    "--workers",
    "workers",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Threads for the compiled search (default: every core). Counts, depths and "
    "verdicts are those of one worker; with --max-states the search uses one.",
)
@click.option(
    "--cluster",
    "cluster",
    default=None,
    metavar="ADDRESS",
    help="Explore on a Ray cluster, states partitioned over its workers: 'local:N' starts N "
    "worker processes here; else Ray's address (HOST:6379, ray://HOST:10001, auto). Needs "
    "pip install 'kvheal[cluster]'. Same counts and verdicts (docs/cluster.md).",
)
@click.option(
    "--fingerprint",
    "fingerprint",
    is_flag=True,
    help="Hash compaction: tell states apart by a 64-bit hash alone (8 bytes a state "
    "whatever its width, the words kept only for the levels not yet expanded), for spaces "
    "whose states take more than one word. A collision would hide a state: the odds are "
    'printed, as TLC prints them (in --json: a "fingerprint" object).',
)
def check(
    tabs: int,
    per_tab: int,
    cap: int | None,
    variant: str,
    no_reduction: bool,
    max_states: int | None,
    only: tuple[str, ...],
    as_json: bool,
    quiet: bool,
    memory: str | None = None,
    show_coverage: bool = False,
    simulate_runs: int | None = None,
    walk_depth: int = 100,
    seed: int = 0,
    itf_path: str | None = None,
    engine: str = "auto",
    workers: int | None = None,
    cluster: str | None = None,
    fingerprint: bool = False,
) -> int:
    """Explore every reachable state and decide each SPEC §7 property.

    Exit status: 0 when every property holds, 1 when one is violated, 2 for a usage or
    configuration error, 3 when none is violated but some are unknown (--max-states).
    """
    cfg = make_config(tabs, per_tab, cap, variant)
    model = KVHealModel(cfg)
    names = [p.name for p in model.properties()]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise click.UsageError(f"property {unknown[0]!r} does not apply here; choose from {', '.join(names)}")
    if simulate_runs is not None and cluster is not None:
        raise click.UsageError("--cluster explores every state; --simulate takes random walks: choose one")
    if fingerprint:
        clash = [
            opt
            for opt, given in (
                ("--simulate", simulate_runs is not None),
                ("--cluster", cluster is not None),
                ("--max-states", max_states is not None),
                ("--engine python", engine == "python"),
            )
            if given
        ]
        if clash:
            raise click.UsageError(
                f"--fingerprint runs the compiled search over the whole space; drop {clash[0]}"
            )
        engine_for(model, "compiled", 2)
    if simulate_runs is not None:
        from kvheal.model.engine import simulate

        result = simulate(model, simulate_runs, walk_depth, seed, only=set(only) if only else None)
    elif cluster is not None:
        result = cluster_check(
            model, cluster, max_states, quiet, set(only) if only else None, memory, show_coverage
        )
    else:
        budget = memory_budget(memory)
        printer = ProgressPrinter(enabled=not quiet)
        result = run_check(
            model,
            max_states=max_states,
            progress=printer,
            only=set(only) if only else None,
            budget=budget,
            with_coverage=show_coverage,
            engine=engine_for(model, engine, workers or os.cpu_count() or 1),
            workers=workers or os.cpu_count() or 1,
            fingerprint=fingerprint,
        )
        printer.close()
        if result.stop_reason:
            click.echo(stop_message(result), err=True)
    if itf_path:
        from kvheal.model.itf import itf_outputs

        for path, text in itf_outputs(itf_path, model, result).items():
            try:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as e:
                raise click.UsageError(f"cannot write {path}: {e.strerror}") from None
    if as_json:
        out = result.as_json()
        out["config"] = config_json(cfg)
        out["reduction"] = "none"
        if fingerprint:
            out["fingerprint"] = collision_odds(result)
        click.echo(json.dumps(out))
    else:
        render(Console(), model, result)
        if fingerprint:
            odds = collision_odds(result)
            click.echo(
                "hash compaction: the probability that a collision hid a state is "
                f"{odds['calculated']:.2g} (from the counts), {odds['observed']:.2g} (from the hashes)"
            )
    return exit_status(result.properties.values())


def cluster_check(model: Any, address: str, max_states, quiet, only, memory, show_coverage) -> Any:
    """``check --cluster``: the search on a Ray cluster (kvheal.model.cluster); a usage error
    (exit 2) saying how to install Ray when it is missing."""
    from kvheal.model import cluster
    from kvheal.model.fast import CompiledUnavailable

    if not cluster.available():
        raise click.UsageError(f"--cluster: {cluster.INSTALL_HINT}")
    printer = ProgressPrinter(enabled=not quiet)
    try:
        model.compiled()
        result = cluster.check(
            model, address, max_states, printer, only, memory_budget(memory), with_coverage=show_coverage
        )
    except (cluster.ClusterUnavailable, CompiledUnavailable) as e:
        raise click.UsageError(f"--cluster: {e}") from None
    printer.close()
    if result.stop_reason.startswith("a cluster"):
        click.echo(f"kvheal: {result.stop_reason}: every verdict is 'unknown'.", err=True)
    elif result.stop_reason:
        click.echo(stop_message(result), err=True)
    return result


def collision_odds(result: Any) -> dict[str, float]:
    """TLC's two estimates, from a --fingerprint check's figures."""
    f = result.figures
    return {
        "calculated": f["fingerprint_collision_calculated"],
        "observed": f["fingerprint_collision_observed"],
    }


def engine_for(model: Any, engine: str, workers: int = 1) -> str:
    """``engine``, checked: ``compiled`` where it cannot run is a usage error naming why."""
    from kvheal.model.engine import pick_engine
    from kvheal.model.fast import CompiledUnavailable

    if engine != "compiled":
        return engine
    try:
        pick_engine(model, engine, workers)
    except CompiledUnavailable as e:
        raise click.UsageError(f"--engine compiled: {e}") from None
    return engine


def cold_compile(model: Any, workers: int = 1) -> tuple[float, str]:
    """Build ``model``'s compiled kernel from nothing (numba's cache in a fresh folder, as
    SPIN compiles its verifier every run): the seconds it took and the engine to use
    (``python`` where the compiled one cannot run)."""
    import os
    import tempfile

    from kvheal.model.fast import CompiledUnavailable

    t0 = time.perf_counter()
    old = os.environ.get("KVHEAL_CACHE")
    with tempfile.TemporaryDirectory(prefix="kvheal-bench-") as tmp:
        os.environ["KVHEAL_CACHE"] = tmp
        try:
            model.compiled().ready(parallel=workers > 1)
        except CompiledUnavailable:
            return 0.0, "python"
        finally:
            if old is None:
                del os.environ["KVHEAL_CACHE"]
            else:
                os.environ["KVHEAL_CACHE"] = old
    return time.perf_counter() - t0, "compiled"


def memory_budget(text: str | None) -> Any:
    """The :class:`~kvheal.memory.MemoryBudget` of ``--memory`` (None for ``0``), or a usage
    error naming the bad size."""
    from kvheal.memory import MemoryBudget, default_budget, parse_size

    if text is None:
        return default_budget()
    try:
        size = parse_size(text)
    except ValueError as e:
        raise click.UsageError(f"--memory: {e}") from None
    return MemoryBudget(size) if size else None


def stop_message(result: Any) -> str:
    """One line saying why a check stopped early, how far it got, and what to try."""
    return (
        f"kvheal: stopped early: {result.stop_reason}, after {result.states:,} states at depth "
        f"{result.depth}; unfinished verdicts are 'unknown'. Try a smaller --tabs/--per-tab/"
        f"--cap, --property to decide fewer properties, or a larger --memory."
    )


def config_json(cfg: Any) -> dict[str, Any]:
    """SPEC §9's ``config`` object of check's (and prove's) JSON."""
    return {"tabs": cfg.tabs, "per_tab": cfg.per_tab, "cap": cfg.cap, "variant": sorted(cfg.variants)}


@click.command()
@config_options(tabs=3, variant="dedupe")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--memory",
    "memory",
    default=None,
    metavar="SIZE",
    help="Memory budget, as for check (default: 3/4 of the memory available).",
)
@click.option(
    "--workers",
    "workers",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Threads for the compiled search, as for check (default: every core).",
)
@click.option(
    "--spin",
    "with_spin",
    is_flag=True,
    help="Also run SPIN on the configuration's Promela export (kvheal export --promela; "
    "safety only) and print both side by side. Needs spin and gcc (make spin).",
)
def bench(
    tabs: int,
    per_tab: int,
    cap: int | None,
    variant: str,
    as_json: bool,
    memory: str | None = None,
    with_spin: bool = False,
    workers: int | None = None,
) -> int:
    """Time a full verdict (defaults: the target configuration, tabs 3 with dedupe) and print
    time, distinct states/s, transitions/s and peak memory; with --spin, SPIN's beside them."""
    cfg = make_config(tabs, per_tab, cap, variant)
    if with_spin:
        from kvheal.model.promela import spin_missing

        if spin_missing():
            raise click.UsageError(f"--spin: {spin_missing()}")
    model = KVHealModel(cfg)
    t0 = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    compile_s, engine = cold_compile(model, workers)
    result = run_check(model, budget=memory_budget(memory), engine=engine, workers=workers)
    wall = time.perf_counter() - t0
    if result.stop_reason:
        click.echo(stop_message(result), err=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "config": f"tabs={cfg.tabs} per_tab={cfg.per_tab} cap={cfg.cap} variant={cfg.variant_label()}",
        "states": result.states,
        "transitions": result.transitions,
        "seconds": round(wall, 2),
        "engine": result.engine,
        "workers": workers if result.engine == "compiled" else 1,
        "compile_seconds": round(compile_s, 2),
        "explore_seconds": round(result.explore_seconds, 2),
        "states_per_s_exploring": round(result.states / result.explore_seconds),
        "transitions_per_s_exploring": round(result.transitions / result.explore_seconds),
        "peak_rss_mib": round(peak_mib),
        **result.figures,
        "verdicts": {n: str(p.status) for n, p in result.properties.items()},
    }
    if with_spin:
        from .export_cmd import side_by_side, spin_figures

        figures["spin"] = spin_figures(cfg, figures)
    if as_json:
        click.echo(json.dumps(figures))
    else:
        for k, v in figures.items():
            if k != "spin":
                click.echo(f"{k:28s} {v}")
        if with_spin:
            click.echo(side_by_side(figures))
    return 0

"""`kvheal prove`: z3's verdict on every SPEC §7 property (holds / violated / unknown, the
words of `kvheal check`; how each was reached is its method: induction, a ranking argument,
BMC, a lasso), as a table, as JSON in `kvheal check --json`'s layout (SPEC §9, so `kvheal
replay` reads it), or as a Markdown report a reader can check without running anything."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from kvheal.model import Config, ConfigError, Verdict

from .check_cmd import exit_status
from .options import current_design, remember_design

STYLE = {Verdict.HOLDS: "green", Verdict.VIOLATED: "bold red", Verdict.UNKNOWN: "yellow"}


def _fail(msg: str) -> None:
    click.echo(f"kvheal prove: {msg}", err=True)
    sys.exit(2)


def render(console: Console, result: Any) -> None:
    cfg = result.config
    table = Table(
        title=f"kvheal prove: tabs={cfg.tabs} per_tab={cfg.per_tab} cap={cfg.cap} "
        f"variant={cfg.variant_label()}",
        title_justify="left",
    )
    for col in ("property", "status", "method", "depth/k", "queries", "seconds"):
        table.add_column(col)
    for name, p in result.properties.items():
        dk = (
            ""
            if p.depth is None and p.k is None
            else f"{p.depth if p.depth is not None else ''}" + (f" k={p.k}" if p.k else "")
        )
        table.add_row(
            name,
            f"[{STYLE[p.status]}]{p.status}[/]",
            p.method,
            dk.strip(),
            str(len(p.queries)),
            f"{p.seconds:.2f}",
        )
    console.print(table)
    for name, p in result.properties.items():
        if p.trace:
            steps = " → ".join(
                ("↻ " if s.get("loop") and (i == 0 or not p.trace[i - 1].get("loop")) else "")
                + s["action"]
                + "("
                + ", ".join(f"{k}={v}" for k, v in s["args"].items())
                + ")"
                for i, s in enumerate(p.trace)
            )
            console.print(f"[bold]{name}[/] counterexample ({len(p.trace)} steps): {steps}")
        elif p.note and p.status != Verdict.HOLDS:
            console.print(f"[bold]{name}[/]: {p.note}")


def _view_text(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def report_markdown(result: Any) -> str:
    """The whole argument in Markdown: model, assumptions, invariants, every query and answer."""
    from kvheal.model.strengthen import CANDIDATES

    cfg = result.config
    lines = [
        f"# kvheal prove: tabs={cfg.tabs}, per_tab={cfg.per_tab}, cap={cfg.cap}, "
        f"variant={cfg.variant_label()}",
        "",
    ]
    model_text = getattr(result, "model_text", None) or (
        "SPEC §3-5 as a z3 transition system (`kvheal.model.symbolic`): the cache is a "
        "count per id (a sorted tuple is determined by its counts), each phase that holds a "
        "snapshot has its own counts, cleared when the phase ends; `T(s,s')` is the "
        "disjunction of the action instances of SPEC §4 with this variant's changes (§5), "
        "a selector naming the instance taken. A test checks it against the explicit model "
        "transition for transition."
    )
    lines += ["## Model", "", model_text, ""]
    if hasattr(result, "assumptions"):
        lines += ["## Assumptions", ""] + [f"- {a}" for a in result.assumptions] + [""]
    if result.invariant:
        lines += [
            "## Strengthening invariant `Inv`",
            "",
            "The largest inductive subset of the named candidates (Houdini); each holds "
            "initially and is kept by every step from a state satisfying all of them.",
            "",
        ]
        why = {c.name: c.why for c in CANDIDATES}
        lines += [f"- **{n}**: {why.get(n, '')}" for n in result.invariant] + [""]
    lines += [
        "## Verdicts",
        "",
        "| property | status | method | depth | queries | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in result.properties.items():
        lines.append(
            f"| {name} | {p.status} | {p.method} | {'' if p.depth is None else p.depth} | "
            f"{len(p.queries)} | {p.seconds:.2f} |"
        )
    lines.append("")
    for name, p in result.properties.items():
        lines += [f"## {name}: {p.status}", ""]
        if p.note:
            lines += [p.note, ""]
        if p.status == Verdict.HOLDS and p.method.startswith("inductive invariant +"):
            lines += [
                "The premises below are the ones of `kvheal.model.prove.Argument`: the stable "
                "set implies the goal and is closed; no step outside it raises the rank "
                "(a tuple of naturals, compared lexicographically); every state outside it "
                "designates a fair step (`D_h`); a designated step is enabled and lowers the "
                "rank or enters the stable set; and a step that keeps the rank keeps every "
                "designation. Under weak fairness a run outside the stable set would, once "
                "its rank stops falling, keep one step designated and enabled for ever "
                "without taking it, so every fair run enters the stable set and the goal "
                "holds from then on.",
                "",
            ]
        if p.cti:
            lines += [
                "Counterexample to induction of the property alone (a state satisfying it, "
                "a step, a state violating it; the first state is unreachable, which the "
                "strengthening shows):",
                "",
                f"- state: `{_view_text(p.cti['state'])}`",
                f"- step: `{_view_text(p.cti['step'])}`",
                f"- next: `{_view_text(p.cti['next'])}`",
                "",
            ]
        if p.trace:
            lines += ["Counterexample trace (SPEC §9 format; `loop` marks the cycle):", ""]
            lines += [
                f"{i + 1}. {s['action']}({', '.join(f'{k}={v}' for k, v in s['args'].items())})"
                + ("  ↻" if s.get("loop") else "")
                for i, s in enumerate(p.trace)
            ]
            lines.append("")
        if p.queries:
            lines += ["| # | query | formula | needs | z3 | seconds |", "|---|---|---|---|---|---|"]
            for i, q in enumerate(p.queries):
                lines.append(
                    f"| {i + 1} | {q.purpose} | `{q.formula}` | {q.expect} | {q.answer} | {q.seconds:.3f} |"
                )
            lines.append("")
    ok = all(p.status == Verdict.HOLDS for p in result.properties.values())
    bad = [n for n, p in result.properties.items() if p.status == Verdict.VIOLATED]
    lines += ["## Conclusion", ""]
    if ok:
        lines.append(
            "Every property is proved: each premise query above is unsatisfiable, as the argument needs."
        )
    elif bad:
        lines.append(f"Violated: {', '.join(bad)} (counterexamples above).")
    else:
        lines.append("Not every property is decided; see the notes of those marked unknown.")
    return "\n".join(lines) + "\n"


@click.command("prove")
@click.option("--tabs", type=int, default=2, show_default=True, help="Number of tabs (T).")
@click.option("--all-tabs", is_flag=True, help="Parameterized proof for every number of tabs.")
@click.option(
    "--per-tab", "per_tab", type=int, default=1, show_default=True, help="Messages each tab posts (K)."
)
@click.option(
    "--cap", type=int, default=None, help="Cache capacity C (default M: T*K, plus one with bot_replies)."
)
@click.option(
    "--variant", default="", metavar="FLAGS", help="Comma-separated SPEC §5 flags; empty is the seed design."
)
@click.option(
    "--design",
    default=None,
    metavar="FILE.py:NAME",
    expose_value=False,
    callback=remember_design,
    is_eager=True,
    help="Prove a design of your own (a Definition in a Python file; docs/designs.md).",
)
@click.option("--property", "prop", default=None, metavar="P", help="Only this property (a SPEC §7 name).")
@click.option("--depth", type=int, default=None, help="BMC depth for invariants (default 12).")
@click.option(
    "--lasso-depth", type=int, default=None, help="Lasso search depth (default 26 at 2 messages, else 0)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--report", type=click.Path(dir_okay=False), default=None, help="Write a Markdown report to FILE.md."
)
def prove(
    tabs: int,
    all_tabs: bool,
    per_tab: int,
    cap: int | None,
    variant: str,
    prop: str | None,
    depth: int | None,
    lasso_depth: int | None,
    as_json: bool,
    report: str | None,
) -> None:
    """Prove or refute SPEC §7's properties with z3.

    Exit status, as `kvheal check`: 0 when every property asked is proved, 1 when one has a
    counterexample, 2 for a usage or configuration error (one line on stderr), 3 when none
    has a counterexample but some are unknown.
    """
    from kvheal.model.prove import prove as run_prove

    try:
        cfg = Config.make(tabs=tabs, per_tab=per_tab, cap=cap, variants=variant, design=current_design())
    except ConfigError as e:
        _fail(str(e))
    if depth is not None and depth < 0:
        _fail("--depth must be at least 0")
    if all_tabs:
        from kvheal.model.param import prove_all_tabs

        if cfg.design is not None:
            _fail("--all-tabs proves kvheal's own designs only; drop --design (fixed sizes work)")
        if cap is not None:
            _fail(
                "--all-tabs proves every size with a capacity of at least the number of messages; drop --cap"
            )

        try:
            with _interruptible() as say:
                say("all-tabs proof: quantified invariants and per-message premises")
                result = prove_all_tabs(cfg.variants, properties={prop} if prop else None)
        except ConfigError as e:
            _fail(str(e))
    else:
        from kvheal.model.symbolic import SymbolicModel

        names = set(SymbolicModel(cfg).invariants()) | set(SymbolicModel(cfg).goals())
        if prop is not None and prop not in names:
            _fail(f"unknown property {prop!r} for this variant; one of: {', '.join(sorted(names))}")
        with _interruptible() as say:
            result = run_prove(
                cfg, properties={prop} if prop else None, depth=depth, lasso_depth=lasso_depth, progress=say
            )
    if report:
        Path(report).write_text(report_markdown(result), encoding="utf-8")
    if as_json:
        from kvheal.model.prove import proof_json

        click.echo(json.dumps(proof_json(result)))
    else:
        render(Console(), result)
    sys.exit(prove_status(result))


@contextlib.contextmanager
def _interruptible():
    """Progress on stderr (a spinner naming what z3 is asked, on a terminal) and a clean stop
    on Ctrl-C: the command ends with one line and exit status 130 instead of a traceback, or
    of minutes spent ignoring the key.

    A Python signal handler runs only between bytecodes, and the main thread sits inside z3's
    C code for as long as a query takes; so the signal also wakes a watcher thread (through
    ``signal.set_wakeup_fd``), which interrupts z3's current query at once (z3 allows that
    from another thread). z3's own Ctrl-C handling is off, so the signal is not swallowed."""
    import z3

    stop = threading.Event()
    z3.set_param("ctrl_c", False)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch() -> None:
        try:
            while data := os.read(read_fd, 16):
                if signal.SIGINT in data:
                    stop.set()
                    z3.main_ctx().interrupt()
        except OSError:
            pass
        finally:
            os.close(read_fd)

    def on_sigint(_signum, _frame) -> None:  # runs once z3's interrupted call has returned
        stop.set()
        # z3 objects the interrupt catches half-built fail in their finalizers ("Exception
        # ignored in __del__"): harmless on the way out, and not worth a screenful.
        sys.unraisablehook = lambda _unraisable: None
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    previous_fd = signal.set_wakeup_fd(write_fd)
    threading.Thread(target=watch, name="kvheal-sigint", daemon=True).start()
    console = Console(stderr=True)
    try:
        with console.status("z3: starting", spinner="dots") as status:

            def say(message: str) -> None:
                if stop.is_set():
                    raise KeyboardInterrupt
                status.update(f"z3: {message}")

            yield say
        if stop.is_set():
            raise KeyboardInterrupt
    except Exception:  # after Ctrl-C, whatever z3 or ctypes raised is the interrupt
        # The handler's KeyboardInterrupt can surface wrapped (ctypes turns one raised while it
        # converts a call's arguments into an ArgumentError), so once Ctrl-C was seen, any
        # exception is the interrupt.
        if not stop.is_set():
            raise
        _interrupted()
    except KeyboardInterrupt:
        _interrupted()
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous)
        os.close(write_fd)  # the watcher reads end-of-file, closes its end and returns


def _interrupted() -> None:
    """One line, exit 130, at once: z3 objects caught half-built by the interrupt would
    otherwise print their finalizers' errors on the way out."""
    click.echo("kvheal: interrupted (Ctrl-C): no verdict", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def prove_status(result: Any) -> int:
    """The exit status of a proof result: `kvheal check`'s :func:`exit_status` of its verdicts
    (the same :class:`Verdict` values)."""
    return exit_status(result.properties.values())

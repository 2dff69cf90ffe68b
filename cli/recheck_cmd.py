"""`kvheal recheck DIR`: re-run every SMT-LIB query a report wrote (DIR/smt/**.smt2, or the
files given) under z3 and compare each answer with the one the proof needs."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from kvheal.model.smtlib import expected
from kvheal.model.smtlib import recheck as rerun


def find_files(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    root = target / "smt" if (target / "smt").is_dir() else target
    return sorted(root.rglob("*.smt2"))


@click.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path), metavar="DIR")
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help="Seconds z3 may spend on one query.",
)
@click.option("--quiet", "-q", is_flag=True, help="Only the summary line.")
def recheck(target: Path, timeout: int, quiet: bool) -> int:
    """Re-run a report's SMT-LIB queries (DIR/smt/...) under z3 and compare each answer with
    its `; expect:` comment.

    Exit status: 0 every answer as expected, 1 some differ (or time out), 2 no query found."""
    files = find_files(target)
    if not files:
        raise click.UsageError(f"no .smt2 files under {target}")
    console = Console(stderr=True, quiet=quiet)
    table = Table(title=f"kvheal recheck: {len(files)} queries", title_justify="left")
    for col in ("file", "expect", "z3 now", "seconds"):
        table.add_column(col)
    bad = 0
    t0 = time.perf_counter()
    with console.status("re-running queries") as status:
        for i, f in enumerate(files):
            status.update(f"re-running {i + 1}/{len(files)}: {f.name}")
            text = f.read_text(encoding="utf-8")
            want = expected(text)
            t1 = time.perf_counter()
            got = rerun(text, timeout * 1000)
            ok = want is not None and got == want
            bad += not ok
            if not ok or not quiet:
                style = "green" if ok else "bold red"
                table.add_row(
                    str(f.relative_to(target) if f != target else f.name),
                    want or "(none)",
                    f"[{style}]{got}[/]",
                    f"{time.perf_counter() - t1:.2f}",
                )
    if not quiet:
        console.print(table)
    summary = (
        f"{len(files) - bad} of {len(files)} queries answered as expected ({time.perf_counter() - t0:.1f}s)"
    )
    click.echo(summary if not bad else f"{summary}; {bad} differ")
    return 1 if bad else 0

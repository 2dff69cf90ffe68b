"""`kvheal audit URL`: a black-box audit of any deployed poll-and-heal worker.

    kvheal audit                                      # the worker on http://127.0.0.1:8787
    kvheal audit https://chat.example.com --tabs 16 --rounds 8 --report audit/
    kvheal audit URL --dialect mine.toml --json --history run.jsonl

Probes the worker (and says which dialect it detected), drives it with concurrent tabs, records
every request, and checks the history (`kvheal.conformance.history`). Exit status: 0 nothing
found, 1 an anomaly, 3 nothing found but something unknown, 2 usage error or unreachable worker
(one line on stderr, before any long work).
"""

from __future__ import annotations

import asyncio
import json
import os

import click

_DEFAULT_URL = "http://127.0.0.1:8787"


def _usage(message: str) -> click.UsageError:
    return click.UsageError(message.splitlines()[0] if message else "error")


def render_text(run) -> str:
    """The human report: what was detected, figures, a verdict table, each anomaly's step table."""
    from kvheal.conformance.history import step_table

    check = run.check
    s = check.stats
    rate = s["requests"] / run.drive_seconds if run.drive_seconds else 0.0
    lines = [f"kvheal audit {run.url} (run {run.run_id})", f"dialect: {run.dialect.describe()}"]
    lines += [f"  probe: {note}" for note in run.detected]
    lines.append(
        f"{s['requests']} requests in {run.drive_seconds:.2f} s ({rate:.0f}/s) by {run.config.tabs} tabs "
        f"({run.config.client} client): {s['acknowledged']} messages acknowledged, "
        f"{s['missing_after_ack']} missing from a read after their acknowledgement, "
        f"{s['heals']} heals, {s['refused']} refused, {s['unanswered']} unanswered; "
        f"checked in {s['check_seconds']:.2f} s"
    )
    lines += ["", "| property | verdict | why |", "|---|---|---|"]
    for name, result in check.properties.items():
        lines.append(f"| {name} | {result.status} | {result.reason.replace('|', '/')} |")
    for result in check.properties.values():
        if result.anomaly is not None:
            lines += ["", step_table(result.anomaly, origin=0.0).rstrip()]
    return "\n".join(lines) + "\n"


def write_report(run, directory: str) -> list[str]:
    """report.md and one SVG sequence diagram per anomaly in `directory`; the paths written."""
    from kvheal.conformance.history import sequence_svg

    os.makedirs(directory, exist_ok=True)
    written = []
    path = os.path.join(directory, "report.md")
    text = render_text(run)
    for name, result in run.check.properties.items():
        if result.anomaly is not None:
            svg = os.path.join(directory, f"{name}.svg")
            with open(svg, "w", encoding="utf-8") as f:
                f.write(sequence_svg(result.anomaly))
            written.append(svg)
            text += f"\n![{name}]({name}.svg)\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return [path] + written


@click.command()
@click.argument("url", default=_DEFAULT_URL, required=False)
@click.option("--tabs", type=int, default=8, show_default=True, help="Tabs acting at the same instant.")
@click.option(
    "--per-tab",
    "per_tab",
    type=int,
    default=2,
    show_default=True,
    help="Messages each tab posts at once per round.",
)
@click.option("--rounds", type=int, default=5, show_default=True, help="Posting rounds at most.")
@click.option(
    "--duration",
    type=float,
    default=30.0,
    show_default=True,
    help="Start no posting round after this many seconds.",
)
@click.option(
    "--max-requests",
    type=int,
    default=5000,
    show_default=True,
    help="Start no posting round after this many requests.",
)
@click.option(
    "--client",
    default="original",
    show_default=True,
    metavar="original|keep-verifying",
    help="How tabs heal: like the original app (an id is forgotten once a read shows it) "
    "or keep verifying every id they posted.",
)
@click.option("--no-heal-present", is_flag=True, help="Do not also heal ids a read did show.")
@click.option("--no-repost", is_flag=True, help="Do not repost ids already posted (retries).")
@click.option(
    "--heal-rounds",
    type=int,
    default=20,
    show_default=True,
    help="Poll-and-heal rounds after posting, while something is pending.",
)
@click.option(
    "--settle",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds the final reads wait for every acknowledged message (e.g. for a sweeper).",
)
@click.option(
    "--reconciler",
    is_flag=True,
    help="The worker has a background writer (a sweeper): ids may appear without a request.",
)
@click.option(
    "--dialect",
    "dialect_file",
    default="",
    metavar="FILE",
    help="JSON or TOML settings of the worker's API (paths, fields, order); the rest is probed.",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request.")
@click.option(
    "--max-steps",
    type=int,
    default=500_000,
    show_default=True,
    help="Budget of the consistency search in steps (unknown when exhausted).",
)
@click.option(
    "--check-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="Budget of the consistency search in seconds (unknown when exhausted).",
)
@click.option(
    "--history", "history_file", default="", metavar="FILE", help="Write the history as JSON lines."
)
@click.option(
    "--report",
    "report_dir",
    default="",
    metavar="DIR",
    help="Write report.md and an SVG sequence diagram per anomaly.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def audit(
    url,
    tabs,
    per_tab,
    rounds,
    duration,
    max_requests,
    client,
    no_heal_present,
    no_repost,
    heal_rounds,
    settle,
    reconciler,
    dialect_file,
    timeout,
    max_steps,
    check_seconds,
    history_file,
    report_dir,
    as_json,
):
    """Audit a deployed worker over HTTP: does it lose acknowledged messages, duplicate, heal?

    Exit status: 0 nothing found, 1 an anomaly, 3 something unknown, 2 usage error."""
    from kvheal.conformance.audit import AuditConfig, AuditError, load_dialect, run_audit, write_history

    if not url.startswith(("http://", "https://")):
        raise _usage(f"URL must start with http:// or https://, got {url!r}")
    try:
        config = AuditConfig(
            tabs=tabs,
            per_tab=per_tab,
            rounds=rounds,
            duration=duration,
            max_requests=max_requests,
            client=client,
            heal_present=not no_heal_present,
            repost=not no_repost,
            heal_rounds=heal_rounds,
            settle=settle,
            timeout=timeout,
            reconciler=reconciler,
            max_steps=max_steps,
            max_check_seconds=check_seconds,
        )
        overrides = load_dialect(dialect_file) if dialect_file else None
        for path, what in ((history_file, "--history"), (report_dir, "--report")):
            parent = os.path.dirname(os.path.abspath(path)) if path else ""
            if path and not os.path.isdir(parent):
                raise AuditError(f"{what}: no directory {parent}")
        run = asyncio.run(run_audit(url.rstrip("/"), config, overrides=overrides))
    except AuditError as exc:
        raise _usage(str(exc)) from None
    if history_file:
        write_history(run, history_file)
    if report_dir:
        write_report(run, report_dir)
    if as_json:
        click.echo(json.dumps(run.to_json(), indent=2, default=str))
    else:
        click.echo(render_text(run), nl=False)
    return run.check.exit_code

"""The `kvheal` command line: one click group whose subcommands load lazily.

Each subcommand lives in its own module beside this one (``kvheal.<module>``) and is
imported only when it runs, so `kvheal check` never pays for Starlette or z3.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# name -> "module:attribute" of a click.Command; the order is the order of `--help`.
COMMANDS: dict[str, str] = {
    "check": "kvheal.check_cmd:check",
    "bench": "kvheal.check_cmd:bench",
    "prove": "kvheal.prove_cmd:prove",
    "serve": "kvheal.serve_cmd:serve",
    "bot": "kvheal.bot_cmd:bot",
    "stress": "kvheal.serve_cmd:stress",
    "replay": "kvheal.replay_cmd:replay",
    "validate": "kvheal.replay_cmd:validate",
    "chaos": "kvheal.chaos_cmd:chaos",
    "spec": "kvheal.spec_cmd:spec",
    "recheck": "kvheal.recheck_cmd:recheck",
    "report": "kvheal.report_cmd:report",
    "graph": "kvheal.graph_cmd:graph",
    "audit": "kvheal.audit_cmd:audit",
    "export": "kvheal.export_cmd:export",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Run, turning every usage or configuration error into one line and exit status 2
        (click's own format spans several lines)."""
        kwargs.pop("standalone_mode", None)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            click.echo(f"kvheal: error: {e.format_message()}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"kvheal: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("kvheal: aborted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kvheal")
def main() -> None:
    """kvheal: does a poll-and-heal cache on a last-write-wins KV store really heal itself?

    "SPEC §n" in these help texts is section n of kvheal's specification: `kvheal spec n`
    prints it."""

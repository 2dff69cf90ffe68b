"""What the replay tests share: one full check per configuration for the whole session, the
replay of each of its counterexamples on real SQLite, and `kvheal check --json` piped into
`kvheal replay`."""

from __future__ import annotations

import functools
import json

from click.testing import CliRunner

from kvheal.cli import main
from kvheal.conformance.replay import replay
from kvheal.model import Config, KVHealModel, check


@functools.cache
def checked(tabs: int, per_tab: int = 1, cap: int | None = None, variants: str = ""):
    """The configuration and its full check (cached: the tests of several files share it)."""
    config = Config.make(tabs=tabs, per_tab=per_tab, cap=cap, variants=variants)
    return config, check(KVHealModel(config))


def assert_replays(config: Config, result, expected: dict, tmp_path) -> None:
    """Every violated property of `result`: (trace length, steps replayed, a piece of the
    evidence) as `expected` says, reproduced on real SQLite without leaving the model's path."""
    violated = {n: p for n, p in result.properties.items() if str(p.status) == "violated"}
    assert {n: len(p.trace) for n, p in violated.items()} == {n: e[0] for n, e in expected.items()}
    for name, p in violated.items():
        r = replay(config, name, p.trace, path=str(tmp_path / f"{name}.sqlite3"))
        assert (r.status, r.diverged, r.backend) == ("violated", "", "sqlite"), (name, r.diverged)
        assert (len(r.steps), expected[name][2] in r.evidence) == (expected[name][1], True), (
            name,
            r.evidence,
        )


def assert_cli_replays(check_args: list[str], violated: list[str], tmp_path, replay_args: tuple = ()) -> None:
    """`kvheal check ARGS --json > f; kvheal replay f` exits 1, with exactly `violated`
    reproduced, in this order."""
    runner = CliRunner()
    checked_run = runner.invoke(main, ["check", *check_args, "--json"])
    assert checked_run.exit_code == 1, checked_run.output
    path = tmp_path / "check.json"
    path.write_text(checked_run.output)
    result = runner.invoke(main, ["replay", str(path), *replay_args, "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert [(r["property"], r["status"]) for r in data["results"]] == [(n, "violated") for n in violated]

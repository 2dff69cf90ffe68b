"""The app as deployed (SPEC §6, the as_built preset) on the real worker and clients: each
counterexample `kvheal check --tabs 2 --variant as_built` finds replays call by call on real
SQLite and shows the same violation there.

So do those of `as_built,stale_reads` at one tab with two messages (the stale reads at tabs 2
are past the checker's budget, SPEC §6). The checks take 15 to 75 s, so the traces are fixtures
(data/*.json, written by make_as_built_traces.py); the slow test runs the checks again and
compares.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kvheal.cli import main
from kvheal.conformance.replay import replay
from kvheal.model import Config, KVHealModel
from kvheal.model.trace import check_counterexample

from .make_as_built_traces import FIXTURES, generate, path

FIXTURE = path("as_built_t2")
DATA = json.loads(FIXTURE.read_text())
CONFIG = Config.make(tabs=2, variants="as_built")
STALE = json.loads(path("as_built_stale_t1").read_text())
STALE_CONFIG = Config.make(tabs=1, per_tab=2, variants="as_built,stale_reads")

#: property -> (trace length, steps replayed (a lasso's loop twice; HealOnlyMissing's faulty
#: step taken), a piece of the evidence read off the real system)
EXPECTED = {
    "NoDuplicates": (9, 9, "occurs 2 times in the real cache"),
    "HealOnlyMissing": (
        8,
        9,
        "sent a heal request for 1761868800000-5feceb, which the cache its poll read holds",
    ),
    "HealsTerminate": (17, 17, "tab 0 sent 3 heal requests for 1761868800000-5feceb (the bound is 2)"),
    "Converges": (15, 19, "acknowledged 1761868800000-5feceb absent from the real cache []"),
    "PendingDrains": (27, 34, "live tab 0's pending store still holds ['1761868800000-5feceb']"),
    "EveryoneSees": (14, 18, "live tab 1 has not shown 1761868800000-5feceb (its page shows [])"),
}


def test_the_fixture_holds_the_six_counterexamples():
    assert DATA["config"] == {
        "tabs": 2,
        "per_tab": 1,
        "cap": 2,
        "variant": ["found_in_response", "post_fails", "put_fails", "reload", "tab_view"],
    }
    assert DATA["states"] == 11_474_320
    model = KVHealModel(CONFIG)
    assert {n: len(p["trace"]) for n, p in DATA["properties"].items()} == {
        n: e[0] for n, e in EXPECTED.items()
    }
    for name, p in DATA["properties"].items():
        check_counterexample(model, name, p["trace"])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_as_built_counterexample_replays_on_real_sqlite(name, tmp_path):
    r = replay(CONFIG, name, DATA["properties"][name]["trace"], path=str(tmp_path / "kv.sqlite3"))
    assert (r.status, r.diverged, r.backend) == ("violated", "", "sqlite")
    assert len(r.steps) == EXPECTED[name][1]
    assert EXPECTED[name][2] in r.evidence


def test_the_replays_use_the_as_built_actions():
    """The traces exercise every as-built action the real system now takes: the clock, a
    reload, a put refused by the write limit, a POST failing after its key."""
    actions = {s["action"] for p in DATA["properties"].values() for s in p["trace"]}
    assert {"Tick", "Reload", "PostWriteFail", "PostFail"} <= actions


def test_cli_replays_the_as_built_file(tmp_path):
    path = tmp_path / "as_built.json"
    path.write_text(FIXTURE.read_text())
    result = CliRunner().invoke(main, ["replay", str(path), "--backend", "memory", "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert [(r["property"], r["status"]) for r in data["results"]] == [(n, "violated") for n in EXPECTED]
    assert data["config"]["variant"] == sorted(CONFIG.variants)


#: the same for as_built,stale_reads at one tab with two messages
STALE_EXPECTED = {
    "NoDuplicates": (9, 9, "occurs 2 times in the real cache"),
    "HealOnlyMissing": (8, 9, "which the cache its poll read holds"),
    "HealsTerminate": (16, 16, "tab 0 sent 3 heal requests for 1761868800000-5feceb (the bound is 2)"),
    "Converges": (12, 14, "acknowledged 1761868800000-5feceb absent from the real cache []"),
    "PendingDrains": (24, 29, "live tab 0's pending store still holds ['1761868800000-5feceb']"),
    "EveryoneSees": (12, 14, "live tab 0 has not shown 1761868800000-5feceb (its page shows [])"),
}


@pytest.mark.parametrize("name", list(STALE_EXPECTED))
def test_every_stale_reads_counterexample_replays_on_real_sqlite(name, tmp_path):
    """The stale reads are the emulation's (a read served the cache's value before its last
    write, until the clock ticks): the polls' stale answers make the tab heal a message the
    cache holds, a third time within a tick."""
    trace = STALE["properties"][name]["trace"]
    assert len(trace) == STALE_EXPECTED[name][0]
    r = replay(STALE_CONFIG, name, trace, path=str(tmp_path / "kv.sqlite3"))
    assert (r.status, r.diverged) == ("violated", "")
    assert len(r.steps) == STALE_EXPECTED[name][1]
    assert STALE_EXPECTED[name][2] in r.evidence


def test_the_stale_fixture_reads_stale():
    assert STALE["states"] == 3_517_270
    actions = [s["action"] for s in STALE["properties"]["HealsTerminate"]["trace"]]
    assert actions.count("PollReadStale") == 3


@pytest.mark.slow  # the checks: 15-75 s each and up to 1.9 GiB on two cores
@pytest.mark.parametrize("name", list(FIXTURES))
def test_the_fixtures_are_what_check_finds(name):
    assert generate(name) == json.loads(path(name).read_text())

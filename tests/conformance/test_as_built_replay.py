"""The app as deployed (SPEC §6, the as_built preset) on the real worker and clients: each
counterexample `kvheal check --tabs 2 --variant as_built` finds replays call by call on real
SQLite and shows the same violation there.

The check takes 20 to 75 s, so the traces are a fixture (data/as_built_t2.json, written by
make_as_built_traces.py); the slow test runs the check again and compares.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kvheal.cli import main
from kvheal.conformance.replay import replay
from kvheal.model import Config, KVHealModel
from kvheal.model.trace import check_counterexample

from .make_as_built_traces import FIXTURE, generate

DATA = json.loads(FIXTURE.read_text())
CONFIG = Config.make(tabs=2, variants="as_built")

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
    assert DATA["states"] == 11_395_743
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


@pytest.mark.slow  # the check: 20-75 s and up to 1.9 GiB on two cores
def test_the_fixture_is_what_check_finds():
    assert generate() == DATA

"""Random walks (--simulate) and coverage (--coverage) of the explicit checker."""

from __future__ import annotations

import json
import subprocess
import sys

from kvheal.model import Config, KVHealModel
from kvheal.model.definition import KVHEAL
from kvheal.model.dsl import ActionDef
from kvheal.model.engine import check, simulate
from kvheal.model.trace import check_counterexample


def test_coverage_counts_every_transition_by_action() -> None:
    model = KVHealModel(Config.make(tabs=2, variants="dedupe,atomic_cache"))
    result = check(model, with_coverage=True)
    assert result.coverage == {
        "actions": {
            "PostKey": 112,
            "PostCache": 112,
            "PostAck": 268,
            "PollRead": 514,
            "PollDone": 1046,
            "HealKey": 320,
            "HealCache": 320,
        },
        "never_enabled": [],
    }
    assert sum(result.coverage["actions"].values()) == result.transitions == 2692
    assert "coverage" in result.as_json() and "coverage" not in check(model).as_json()


def test_coverage_names_an_action_whose_guard_is_never_true() -> None:
    def never(cfg, s, x, m):  # acknowledged and unsent at once: impossible
        return s.post[m].is_("Acked") & s.post[m].is_("Unsent"), {}

    design = KVHEAL.derive("with_dead_action", add=[ActionDef("Never", "m", "request", never)])
    model = KVHealModel(Config.make(tabs=2, variants="dedupe", design=design))
    result = check(model, with_coverage=True)
    assert result.coverage["never_enabled"] == ["Never(m=0)", "Never(m=1)"]
    assert result.coverage["actions"]["Never"] == 0
    assert result.states == 3329  # the dead action changes nothing else


def test_a_seeded_walk_finds_a_violation_and_replays_it() -> None:
    model = KVHealModel(Config.make(tabs=3))
    a = simulate(model, runs=300, depth=60, seed=3)
    b = simulate(model, runs=300, depth=60, seed=3)
    dup = a.properties["NoDuplicates"]
    assert dup.status == "violated" and len(dup.trace) == 32
    assert b.properties["NoDuplicates"].trace == dup.trace  # one seed, one set of walks
    check_counterexample(model, "NoDuplicates", dup.trace.as_json())
    assert {p.status for n, p in a.properties.items() if n != "NoDuplicates"} == {"unknown"}
    assert a.complete is False and a.stop_reason.startswith("simulation: 300 random walks")


def test_walks_never_claim_a_property_holds() -> None:
    result = simulate(KVHealModel(Config.make(tabs=2, variants="dedupe,atomic_cache")), runs=50, depth=40)
    assert {str(p.status) for p in result.properties.values()} == {"unknown"}
    assert 0 < result.states <= 780


def test_cli_simulate_is_reproducible_and_exits_1_on_a_violation() -> None:
    args = [
        sys.executable,
        "-m",
        "kvheal",
        "check",
        "--tabs",
        "3",
        "--simulate",
        "300",
        "--depth",
        "60",
        "--seed",
        "3",
        "--json",
    ]
    one = subprocess.run(args, capture_output=True, text=True, timeout=120)
    two = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert one.returncode == two.returncode == 1
    t1 = json.loads(one.stdout)["properties"]["NoDuplicates"]["trace"]
    assert t1 == json.loads(two.stdout)["properties"]["NoDuplicates"]["trace"] and len(t1) == 32

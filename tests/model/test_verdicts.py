"""The full verdict table of every design at tabs 2 (each flag alone and with dedupe, and
notable combinations), with exact counterexample lengths; every counterexample replayed."""

from __future__ import annotations

import pytest

from kvheal.model import Config, KVHealModel, check

from .conftest import checked

# variants -> {property: None (holds) | length of the counterexample}
TABLE = {
    "": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": 9,
        "Converges": 16,
        "PendingDrains": 22,
    },
    "dedupe": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": 16,
        "PendingDrains": None,
    },
    "keep_verifying": {"AckedIsStored": None, "CacheFromStore": None, "NoDuplicates": 9, "Converges": 20},
    "atomic_cache": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": 7,
        "Converges": 18,
        "PendingDrains": 18,
    },
    "sweeper": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": 6,
        "Converges": 23,
        "PendingDrains": 23,
    },
    "tab_crash": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": 9,
        "Converges": 11,
        "PendingDrains": 19,
    },
    "heal_atomic": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": 8,
        "Converges": 16,
        "PendingDrains": 20,
    },
    "dedupe,heal_atomic": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": 16,
        "PendingDrains": None,
    },
    "dedupe,keep_verifying": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": None,
    },
    "dedupe,atomic_cache": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": None,
        "PendingDrains": None,
    },
    "dedupe,sweeper": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": None,
        "PendingDrains": None,
    },
    "dedupe,tab_crash": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": 11,
        "PendingDrains": None,
    },
    "dedupe,shared_pending": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": 17,
        "PendingDrains": None,
    },
    "dedupe,keep_verifying,heal_atomic": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": None,
    },
    "dedupe,keep_verifying,tab_crash": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": 11,
    },
    "dedupe,atomic_cache,sweeper,tab_crash": {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
        "Converges": None,
        "PendingDrains": None,
    },
}


@pytest.mark.parametrize("variants", list(TABLE), ids=lambda v: v or "seed")
def test_verdict_table_tabs_2(variants, check_counterexample):
    model, result = checked(2, 1, None, variants)
    got = {name: (len(p.trace) if p.status == "violated" else None) for name, p in result.properties.items()}
    assert got == TABLE[variants]
    for name, p in result.properties.items():
        assert p.status == ("violated" if TABLE[variants][name] else "holds")
        if p.status == "violated":
            check_counterexample(model, name, p.trace)
    assert result.ok == all(v is None for v in TABLE[variants].values())


@pytest.mark.slow
def test_verdicts_seed_shared_pending(check_counterexample):
    model = KVHealModel(Config.make(tabs=2, variants="shared_pending"))
    result = check(model)
    assert {n: p.status for n, p in result.properties.items()} == {
        "AckedIsStored": "holds",
        "CacheFromStore": "holds",
        "NoDuplicates": "violated",
        "Converges": "violated",
        "PendingDrains": "violated",
    }
    assert len(result.properties["NoDuplicates"].trace) == 10  # = BMC's, test_prove.py
    for name, p in result.properties.items():
        if p.status == "violated":
            check_counterexample(model, name, p.trace)


def test_tabs_3_counterexamples_replay(check_counterexample):
    model = KVHealModel(Config.make(tabs=3, variants="atomic_cache"))
    result = check(model)
    lengths = {n: len(p.trace) for n, p in result.properties.items() if p.status == "violated"}
    assert lengths == {"NoDuplicates": 7, "Converges": 25, "PendingDrains": 25}
    for name in lengths:
        check_counterexample(model, name, result.properties[name].trace)


def test_seed_lost_message_story():
    """The seed's own story: two racing posts, the poll that saw a message stops tracking it,
    a later stale write drops it, and nobody heals it again (Converges' lasso)."""
    model = KVHealModel(Config.make(tabs=2))
    trace = check(model, only={"Converges"}).properties["Converges"].trace
    names = [s["action"] for s in trace]
    assert names.count("PostWrite") == 2
    assert trace[-1].get("loop") and not trace[0].get("loop")


def test_stutter_lasso_when_every_tab_crashes(check_counterexample):
    """With tab_crash a message can be lost while its owner is dead and then nothing is left
    to act: the lasso's loop is the stutter of a state with no enabled action."""
    model = KVHealModel(Config.make(tabs=2, variants="dedupe,tab_crash"))
    result = check(model)
    trace = result.properties["Converges"].trace
    assert result.properties["Converges"].status == "violated"
    assert [s["action"] for s in trace[-3:]] == ["Crash", "Crash", "Stutter"]
    assert trace[-1] == {"action": "Stutter", "args": {}, "loop": True}
    check_counterexample(model, "Converges", trace)


def test_max_states_gives_unknown():
    model = KVHealModel(Config.make(tabs=3, variants="dedupe"))
    result = check(model, max_states=5000)
    assert not result.complete
    assert result.states == 5000
    assert {p.status for p in result.properties.values()} == {"unknown"}


def test_max_states_still_reports_an_invariant_violation_it_found(check_counterexample):
    model = KVHealModel(Config.make(tabs=3))
    result = check(model, max_states=20000)
    assert result.properties["NoDuplicates"].status == "violated"
    assert len(result.properties["NoDuplicates"].trace) == 9
    check_counterexample(model, "NoDuplicates", result.properties["NoDuplicates"].trace)
    assert result.properties["Converges"].status == "unknown"


def test_only_restricts_properties():
    result = check(KVHealModel(Config.make(tabs=2)), only={"NoDuplicates"})
    assert list(result.properties) == ["NoDuplicates"]

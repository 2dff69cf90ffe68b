"""The app as deployed (SPEC §6): the flags tab_view, found_in_response, reload, full_poll, the
presets as_built and as_built_fixed, the DSL's bounded integers in both engines, and
EveryoneSees (SPEC §7). Counts, verdicts and counterexample lengths are pinned; every
counterexample is replayed; z3 agrees with the kernel on every reachable state."""

from __future__ import annotations

import json

import pytest
import z3

from kvheal.flags import (
    CLIENT_VARIANTS,
    FAULT_VARIANTS,
    IMPL_VARIANTS,
    MODELLED_ONLY,
    PRESETS,
    WORKER_VARIANTS,
    ConfigError,
    parse_variants,
    valid_combinations,
)
from kvheal.model import Config, KVHealModel, check
from kvheal.model.definition import HEAL_BOUND, HORIZON, KVHEAL, LAG, heal_bound
from kvheal.model.dsl import ActionDef, BoolType, Definition, DefinitionError, IntType, PropertyDef, Var
from kvheal.model.kernel import Kernel
from kvheal.model.prove import bmc
from kvheal.model.symbolic import Evaluator, SymbolicModel
from kvheal.model.trace import flatten, replay_trace

from .conftest import checked

NEW = ("tab_view", "found_in_response", "reload", "full_poll")
#: every combination of the registry's flags that the parser accepts
COMBOS = 898560

# (tabs, per_tab, variants) -> (states, transitions, {property: None (holds) | trace length}),
# every property but AckedIsStored and CacheFromStore (which hold everywhere)
PINNED = {
    (1, 1, "tab_view"): (
        128,
        247,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 1, "as_built"): (
        1098,
        2518,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": 8,
            "HealsTerminate": 17,
            "Converges": 10,
            "PendingDrains": 22,
            "EveryoneSees": 10,
        },
    ),
    (1, 1, "as_built_fixed"): (
        326,
        853,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 1, "tab_view,put_fails"): (
        256,
        514,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 2, "tab_view"): (
        15110,
        35564,
        {
            "NoDuplicates": 9,
            "HealOnlyMissing": None,
            "HealsTerminate": 19,
            "Converges": 15,
            "PendingDrains": 29,
            "EveryoneSees": None,
        },
    ),
    (1, 2, "as_built"): (
        260012,
        734909,
        {
            "NoDuplicates": 9,
            "HealOnlyMissing": 8,
            "HealsTerminate": 17,
            "Converges": 12,
            "PendingDrains": 24,
            "EveryoneSees": 12,
        },
    ),
    (1, 2, "as_built_fixed"): (
        10048,
        33086,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 2, "as_built,shared_pending"): (
        615922,
        1745178,
        {
            "NoDuplicates": 10,
            "HealOnlyMissing": 10,
            "HealsTerminate": 20,
            "Converges": 15,
            "PendingDrains": 28,
            "EveryoneSees": 15,
        },
    ),
    (1, 2, "as_built_fixed,shared_pending"): (
        22498,
        73141,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 2, "tab_view,full_poll,reload"): (
        49274,
        129697,
        {
            "NoDuplicates": 9,
            "HealOnlyMissing": None,
            "HealsTerminate": 19,
            "Converges": 15,
            "PendingDrains": 29,
            "EveryoneSees": 16,
        },
    ),
    (2, 1, "tab_view"): (
        395369,
        1284343,
        {
            "NoDuplicates": 9,
            "HealOnlyMissing": None,
            "HealsTerminate": 19,
            "Converges": 17,
            "PendingDrains": 35,
            "EveryoneSees": 17,
        },
    ),
    (2, 1, "as_built_fixed"): (
        157128,
        729056,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (2, 1, "tab_view,clock_skew"): (
        183123,
        617552,
        {
            "NoDuplicates": 9,
            "HealOnlyMissing": None,
            "HealsTerminate": 19,
            "Converges": 17,
            "PendingDrains": 35,
            "EveryoneSees": 17,
        },
    ),
    (2, 1, "as_built_fixed,clock_skew"): (
        157128,
        729056,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 1, "as_built,stale_reads"): (
        3659,
        11751,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": 8,
            "HealsTerminate": 16,
            "Converges": 10,
            "PendingDrains": 22,
            "EveryoneSees": 10,
        },
    ),
    (1, 1, "as_built_fixed,stale_reads"): (
        1065,
        3343,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": 13,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 2, "tab_view,stale_reads"): (
        344657,
        1242519,
        {
            "NoDuplicates": 9,
            "HealOnlyMissing": None,
            "HealsTerminate": 16,
            "Converges": 15,
            "PendingDrains": 29,
            "EveryoneSees": None,
        },
    ),
    (1, 2, "as_built_fixed,stale_reads"): (
        68779,
        263729,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": 13,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 1, "as_built,fire_and_forget"): (
        2826,
        8130,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": 8,
            "HealsTerminate": 19,
            "Converges": 10,
            "PendingDrains": 29,
            "EveryoneSees": 10,
        },
    ),
    (1, 2, "as_built_fixed,fire_and_forget"): (
        19740,
        71448,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 2, "as_built,repost"): (
        834605,
        2837408,
        {
            "NoDuplicates": 7,
            "HealOnlyMissing": 8,
            "HealsTerminate": 17,
            "Converges": 13,
            "PendingDrains": 27,
            "EveryoneSees": 13,
        },
    ),
    (1, 2, "as_built_fixed,repost"): (
        14296,
        54268,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
    (1, 2, "tab_view,sweeper"): (
        809257,
        2839995,
        {
            "NoDuplicates": 6,
            "HealOnlyMissing": None,
            "HealsTerminate": 19,
            "ScanWritesNothing": 9,
            "Converges": 19,
            "PendingDrains": 32,
            "EveryoneSees": None,
        },
    ),
    (1, 2, "tab_view,post_fails"): (
        19735,
        47365,
        {
            "NoDuplicates": 9,
            "HealOnlyMissing": None,
            "HealsTerminate": 19,
            "Converges": 13,
            "PendingDrains": 29,
            "EveryoneSees": None,
        },
    ),
    (2, 1, "as_built_fixed,fire_and_forget"): (
        317424,
        1577632,
        {
            "NoDuplicates": None,
            "HealOnlyMissing": None,
            "HealsTerminate": None,
            "Converges": None,
            "PendingDrains": None,
            "EveryoneSees": None,
        },
    ),
}


@pytest.mark.parametrize("tabs,per_tab,variants", list(PINNED), ids=lambda v: str(v))
def test_pinned_counts_and_verdicts(tabs, per_tab, variants, check_counterexample):
    model, result = checked(tabs, per_tab, None, variants)
    states, transitions, verdicts = PINNED[(tabs, per_tab, variants)]
    assert (result.states, result.transitions) == (states, transitions)
    got = {n: (len(p.trace) if p.status == "violated" else None) for n, p in result.properties.items()}
    assert got == {"AckedIsStored": None, "CacheFromStore": None, **verdicts}
    for name, p in result.properties.items():
        if p.status == "violated":
            check_counterexample(model, name, p.trace)


@pytest.mark.slow
def test_as_built_fixed_and_stale_reads_at_tabs_2():
    """The fix survives stale reads but for HealsTerminate: a poll served the value before the
    post's write misses the message and heals it (a no-op), again and again within a tick."""
    result = check(KVHealModel(Config.make(tabs=2, variants="as_built_fixed,stale_reads")))
    assert (result.states, result.transitions) == (1408027, 7744156)
    got = {n: len(p.trace) for n, p in result.properties.items() if p.status == "violated"}
    assert got == {"HealsTerminate": 13}


@pytest.mark.slow
def test_as_built_tabs_2(check_counterexample):
    """Issue 10's target (about a minute with the compiled engine, 2 GiB): EveryoneSees and
    Converges violated at tabs 2."""
    model = KVHealModel(Config.make(tabs=2, variants="as_built"))
    result = check(model)
    assert (result.states, result.transitions) == (11474320, 47047956)
    got = {n: (len(p.trace) if p.status == "violated" else None) for n, p in result.properties.items()}
    assert got == {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": 9,
        "HealOnlyMissing": 8,
        "HealsTerminate": 17,
        "Converges": 15,
        "PendingDrains": 27,
        "EveryoneSees": 14,
    }
    for name, p in result.properties.items():
        if p.status == "violated":
            check_counterexample(model, name, p.trace)


#: SPEC §6: changes to as_built other than as_built_fixed's, at tabs 2, and what they leave violated
NOT_ENOUGH = {
    "full_poll,atomic_cache,dedupe": {"Converges": 13, "EveryoneSees": 13},  # the snapshot kept
    "full_poll,atomic_cache": {
        "NoDuplicates": 7,
        "HealsTerminate": 20,
        "Converges": 13,
        "PendingDrains": 29,
        "EveryoneSees": 13,
    },
    "atomic_cache,dedupe": {
        "HealOnlyMissing": 7,
        "HealsTerminate": 14,
        "Converges": 14,
        "PendingDrains": 23,
        "EveryoneSees": 13,
    },
    "full_poll,dedupe,keep_verifying": {"HealsTerminate": 19, "Converges": 12, "EveryoneSees": 12},
    "full_poll,heal_atomic,dedupe": {"HealsTerminate": 17, "Converges": 14, "EveryoneSees": 14},
}


@pytest.mark.parametrize(
    "change", [pytest.param(c, marks=pytest.mark.slow) if i >= 2 else c for i, c in enumerate(NOT_ENOUGH)]
)
def test_smaller_changes_do_not_fix_as_built(change, check_counterexample):
    model, result = checked(2, 1, None, f"as_built,{change}")
    got = {n: len(p.trace) for n, p in result.properties.items() if p.status == "violated"}
    assert got == NOT_ENOUGH[change]
    for name in got:
        check_counterexample(model, name, result.properties[name].trace)


def test_everyone_sees_counterexample_is_a_cursor_passing_a_message():
    """tabs 1, as_built: the tab reloads after the clock moved; its cursor restarts at the load
    time, past the message's timestamp, so the page never shows the message again."""
    model, result = checked(1, 1, None, "as_built")
    trace = result.properties["EveryoneSees"].trace
    assert [str(s) for s in trace] == [
        "PostKey(m=0)",
        "PostRead(m=0)",
        "PostWrite(m=0)",
        "PostAck(m=0)",
        "PollRead(t=0)",
        "PollDone(t=0)",
        "Tick()",
        "Reload(t=0)",
        "PollRead(t=0)",
        "PollDone(t=0)",
    ]
    states = replay_trace(model, trace)
    last = flatten(model.view(states[-1]))
    # the readable view has the clock, the cursor, the shown set, the snapshot
    assert {k: last[k] for k in ("clock", "ts[0]", "cursor[0]", "shown[0]", "frozen[0]", "cache")} == {
        "clock": "1",
        "ts[0]": "0",
        "cursor[0]": "1",
        "shown[0]": "[]",
        "frozen[0]": "[0]",
        "cache": "[0]",
    }


def test_a_failed_cache_write_and_a_reload_lose_a_message_for_good():
    """as_built_fixed keeping the page-load snapshot: the post's atomic update fails (the write
    limit) yet it is acknowledged; the owner reloads, its snapshot holds the message, the
    pending check counts it as found, and nothing ever heals it. (Tab 1's POST fails after its
    key: the shortest way for the lasso to finish tab 1's post.)"""
    model, result = checked(2, 1, None, "as_built,full_poll,atomic_cache,dedupe")
    trace = result.properties["Converges"].trace
    assert [str(s) for s in trace] == [
        "PostKey(m=0)",
        "PostCacheFail(m=0)",
        "PostAck(m=0)",
        "PostKey(m=1)",
        "PostFail(m=1)",
        "Reload(t=0)",
        "PollRead(t=0)",
        "PollDone(t=0)",
        "Tick()",
        "PollRead(t=0)",
        "PollRead(t=1)",
        "PollDone(t=0)",
        "PollDone(t=1)",
    ]
    assert [bool(s.loop) for s in trace] == [False] * 9 + [True] * 4
    states = replay_trace(model, trace)
    after = flatten(model.view(states[8]))
    assert {k: after[k] for k in ("cache", "pending[0]", "frozen[0]", "post[0]", "post[1]", "stored")} == {
        "cache": "[]",
        "pending[0]": "[]",
        "frozen[0]": "[0]",
        "post[0]": "Acked",
        "post[1]": "Failed",
        "stored": "[0,1]",
    }


def test_a_skewed_clock_hides_a_message_that_is_in_the_cache():
    """Tab 1's clock is a lag behind: a message it posts after tab 0 polled at tick 1 is stamped
    0, below tab 0's cursor, so tab 0 never shows it although it is in the cache. Without the
    skew the same steps show it."""
    steps = [
        ("Tick", {}),
        ("PollRead", {"t": 0}),
        ("PollDone", {"t": 0}),
        ("PostKey", {"m": 1}),
        ("PostRead", {"m": 1}),
        ("PostWrite", {"m": 1}),
        ("PostAck", {"m": 1}),
        ("PollRead", {"t": 0}),
        ("PollDone", {"t": 0}),
    ]
    trace = [{"action": a, "args": args} for a, args in steps]
    for variants, ts, shown in (("tab_view,clock_skew", "0", "[]"), ("tab_view", "1", "[1]")):
        model = KVHealModel(Config.make(tabs=2, variants=variants))
        last = flatten(model.view(replay_trace(model, trace)[-1]))
        assert {k: last[k] for k in ("cache", "clock", "ts[1]", "cursor[0]", "shown[0]")} == {
            "cache": "[1]",
            "clock": "1",
            "ts[1]": ts,
            "cursor[0]": "1",
            "shown[0]": shown,
        }, variants


# ------------------------------------------------------------------ failed POSTs, open clients, heals
def test_a_failed_post_is_stored_and_dropped_by_its_tab():
    """post_fails: the POST fails after put comment:<id> (before or after the cache update); the
    key is stored, the page drops its optimistic copy, nothing is pending, nothing is acked."""
    model = KVHealModel(Config.make(tabs=1, variants="as_built"))
    for steps, cache in (
        (["PostKey", "PostFail"], "[]"),
        (["PostKey", "PostRead", "PostWrite", "PostFail"], "[0]"),
    ):
        states = replay_trace(model, [{"action": a, "args": {"m": 0}} for a in steps])
        view = flatten(model.view(states[-1]))
        assert {k: view[k] for k in ("stored", "cache", "post[0]", "pending[0]", "shown[0]")} == {
            "stored": "[0]",
            "cache": cache,
            "post[0]": "Failed",
            "pending[0]": "[]",
            "shown[0]": "[]",
        }
        # a failed message is no acknowledged message: no property asks for it; nothing is enabled
        # for it any more (no retry without repost)
        assert [a.name for a in model.actions(states[-1])] == ["PollRead", "Reload", "Tick"]


def test_reposting_an_id_that_exists_duplicates_it():
    """repost: the answer of a POST that wrote the cache is lost, the client resends the same id,
    and the worker (no check for an id already cached) pushes it again: NoDuplicates in 5 steps.
    With dedupe the resend writes nothing."""
    model, result = checked(2, 1, None, "atomic_cache,post_fails,repost")
    trace = result.properties["NoDuplicates"].trace
    assert [str(s) for s in trace] == [
        "PostKey(m=0)",
        "PostCache(m=0)",
        "PostFail(m=0)",
        "PostAgain(m=0)",
        "PostCache(m=0)",
    ]
    assert flatten(model.view(replay_trace(model, trace)[-1]))["cache"] == "[0,0]"
    dedupe = KVHealModel(Config.make(tabs=2, variants="atomic_cache,dedupe,post_fails,repost"))
    assert flatten(dedupe.view(replay_trace(dedupe, trace)[-1]))["cache"] == "[0]"


def test_fire_and_forget_keeps_two_heals_in_flight():
    """fire_and_forget: a poll sends a heal while the previous one of the same id still runs (at
    most two); when the older ends, the newer takes the first slot (the slots are the older and
    the newer heal in flight); each heal sent counts in the ghost ``heals``."""
    model = KVHealModel(Config.make(tabs=1, variants="tab_view,put_fails,fire_and_forget"))
    one = [("PostKey", {"m": 0}), ("PostRead", {"m": 0}), ("PostWriteFail", {"m": 0}), ("PostAck", {"m": 0})]
    poll = [("PollRead", {"t": 0}), ("PollDone", {"t": 0})]
    steps = one + poll + [("HealKey", {"m": 0}), ("HealRead", {"m": 0})] + poll + poll
    states = replay_trace(model, [{"action": a, "args": args} for a, args in steps])
    view = flatten(model.view(states[-1]))
    # the third poll found both slots busy: no third heal
    assert {k: view[k] for k in ("heal[0]", "heal2[0]", "heals[0]", "cache")} == {
        "heal[0]": "CacheRead([])",
        "heal2[0]": "Requested",
        "heals[0]": "2",
        "cache": "[]",
    }
    after = flatten(model.view(model.step(states[-1], model.action("HealWrite", {"m": 0}))))
    assert {k: after[k] for k in ("heal[0]", "heal2[0]", "cache")} == {
        "heal[0]": "Requested",
        "heal2[0]": "Idle",
        "cache": "[0]",
    }


def test_heal_only_missing_counterexample_is_a_poll_whose_cursor_passed_the_id():
    """as_built: the poll's answer holds the message's cache entry, but its timestamp is below
    the cursor, so the pending check does not find it: the next PollDone would heal an id the
    cache holds. The counterexample ends in the state before that request."""
    model, result = checked(1, 1, None, "as_built")
    trace = result.properties["HealOnlyMissing"].trace
    assert [str(s) for s in trace] == [
        "PostKey(m=0)",
        "PostRead(m=0)",
        "PostWrite(m=0)",
        "PollRead(t=0)",
        "Tick()",
        "PollDone(t=0)",
        "PostAck(m=0)",
        "PollRead(t=0)",
    ]
    states = replay_trace(model, trace)
    last = flatten(model.view(states[-1]))
    assert {k: last[k] for k in ("poll[0]", "pending[0]", "ts[0]", "cursor[0]", "heal[0]")} == {
        "poll[0]": "Read([0])",
        "pending[0]": "[0]",
        "ts[0]": "0",
        "cursor[0]": "1",
        "heal[0]": "Idle",
    }
    nxt = flatten(model.view(model.step(states[-1], model.action("PollDone", {"t": 0}))))
    assert (nxt["heal[0]"], nxt["heals[0]"]) == ("Requested", "1")


def test_heals_terminate_counterexample_is_a_third_heal():
    """as_built_fixed with stale reads: polls served the value before the post's write miss the
    message, which is in the cache, and heal it (no-ops with dedupe) a third time within one
    tick; the bound (two: a heal, and one from a poll that read before it landed) is passed."""
    model, result = checked(1, 1, None, "as_built_fixed,stale_reads")
    trace = result.properties["HealsTerminate"].trace
    assert [s.action for s in trace].count("PollReadStale") == 3
    assert len(trace) == 13 and trace[-1].action == "PollDone"
    last = flatten(model.view(replay_trace(model, trace)[-1]))
    assert {k: last[k] for k in ("cache", "prev", "heals[0]", "clock", "pending[0]")} == {
        "cache": "[0]",
        "prev": "[]",
        "heals[0]": "3",
        "clock": "0",
        "pending[0]": "[0]",
    }
    assert heal_bound(model.config) == HEAL_BOUND == 2
    assert heal_bound(Config.make(tabs=1, variants="tab_view,fire_and_forget")) == 3


def test_a_sweeper_scan_with_nothing_to_change_writes_its_snapshot_back():
    """tab_view with the sweeper: a duplicate fills the cache, the sweeper finds an id missing,
    but adding it and trimming gives back the value it read: the write about to happen changes
    nothing (ScanWritesNothing fails in the state before it)."""
    model, result = checked(1, 2, None, "tab_view,sweeper")
    trace = result.properties["ScanWritesNothing"].trace
    assert [str(s) for s in trace] == [
        "PostKey(m=0)",
        "PostKey(m=1)",
        "SweepList()",
        "SweepRead()",
        "SweepWrite()",
        "PostRead(m=1)",
        "PostWrite(m=1)",
        "SweepList()",
        "SweepRead()",
    ]
    states = replay_trace(model, trace)
    assert flatten(model.view(states[-1]))["sweep"] == "Read([0,1], [1,1])"
    after = flatten(model.view(model.step(states[-1], model.action("SweepWrite"))))
    assert after["cache"] == "[1,1]"


def test_new_properties_apply_only_with_the_tab_view():
    names = lambda v: [p.name for p in KVHealModel(Config.make(tabs=1, variants=v)).properties()]  # noqa: E731
    assert names("sweeper,post_fails,fire_and_forget") == [
        "AckedIsStored",
        "CacheFromStore",
        "NoDuplicates",
        "Converges",
        "PendingDrains",
    ]
    assert names("tab_view,sweeper") == [
        "AckedIsStored",
        "CacheFromStore",
        "NoDuplicates",
        "HealOnlyMissing",
        "HealsTerminate",
        "ScanWritesNothing",
        "Converges",
        "PendingDrains",
        "EveryoneSees",
    ]


@pytest.mark.parametrize("name,length", [("HealOnlyMissing", 8), ("HealsTerminate", 17)])
def test_bmc_finds_the_heal_properties_at_the_bfs_length(name, length):
    """z3's BMC finds as_built's shortest counterexamples of the new invariants at one tab at
    BFS's lengths (PINNED), and nothing shorter; each replays in the kernel."""
    cfg = Config.make(tabs=1, variants="as_built")
    assert PINNED[(1, 1, "as_built")][2][name] == length
    sym = SymbolicModel(cfg)
    prop = {name: sym.prop(name)}
    got, trace, _ = bmc(sym, prop, length)[name]
    assert got == length
    model = KVHealModel(cfg)
    assert not {p.name: p for p in model.properties()}[name].holds(replay_trace(model, trace)[-1])
    assert bmc(sym, prop, length - 1)[name][0] is None


def test_z3_at_three_tabs():
    """Beyond the checker's reach of as_built: z3's BMC finds HealOnlyMissing's counterexample at
    tabs 3 (8 steps, nothing shorter), and as_built_fixed's HealOnlyMissing is 1-inductive there."""
    sym = SymbolicModel(Config.make(tabs=3, variants="as_built"))
    prop = {"HealOnlyMissing": sym.prop("HealOnlyMissing")}
    got, trace, _ = bmc(sym, prop, 8)["HealOnlyMissing"]
    assert got == 8 and bmc(sym, prop, 7)["HealOnlyMissing"][0] is None
    model = KVHealModel(Config.make(tabs=3, variants="as_built"))
    assert not {p.name: p for p in model.properties()}["HealOnlyMissing"].holds(
        replay_trace(model, trace)[-1]
    )
    fixed = SymbolicModel(Config.make(tabs=3, variants="as_built_fixed"))
    s0, s1 = fixed.fresh("a"), fixed.fresh("b")
    inv = fixed.prop("HealOnlyMissing")
    solver = z3.Solver()
    solver.add(fixed.dom(s0), fixed.dom(s1), inv(s0), fixed.trans(s0, s1, z3.Int("sel")), z3.Not(inv(s1)))
    assert solver.check() == z3.unsat  # inductive: no step leaves it
    solver = z3.Solver()
    solver.add(fixed.init(s0), z3.Not(inv(s0)))
    assert solver.check() == z3.unsat


BOT_SCAN = {
    # the bot's pending scan writes back the array it read: a design that converges stops
    # converging; an atomic cache update makes the scan harmless (no step of its own)
    (2, 1, "dedupe,keep_verifying"): (1318, 4708, {}),
    (2, 1, "dedupe,keep_verifying,bot_scan"): (14026, 64856, {"Converges": 17}),
    (2, 1, "heal_atomic,dedupe,keep_verifying,bot_scan"): (5764, 25886, {"Converges": 16}),
    (2, 1, "atomic_cache,dedupe,bot_scan"): (780, 2692, {}),
    (1, 1, "bot_scan"): (141, 393, {"Converges": 13, "PendingDrains": 12}),
    (1, 1, "as_built,bot_scan"): (
        9938,
        33659,
        {
            "HealOnlyMissing": 8,
            "HealsTerminate": 17,
            "Converges": 12,
            "PendingDrains": 24,
            "EveryoneSees": 12,
        },
    ),
    (1, 2, "as_built_fixed,bot_scan"): (10048, 33086, {}),
}


@pytest.mark.parametrize("tabs,per_tab,variants", list(BOT_SCAN), ids=lambda v: str(v))
def test_the_bots_scan_loses_messages_unless_the_cache_update_is_atomic(
    tabs, per_tab, variants, check_counterexample
):
    model, result = checked(tabs, per_tab, None, variants)
    states, transitions, violated = BOT_SCAN[(tabs, per_tab, variants)]
    assert (result.states, result.transitions) == (states, transitions)
    assert {n: len(p.trace) for n, p in result.properties.items() if p.status == "violated"} == violated
    for name in violated:
        check_counterexample(model, name, result.properties[name].trace)
    if "atomic_cache" in variants:
        assert not {"ScanRead", "ScanWrite"} & {a.name for a in model.instances}


def test_the_bots_scan_overwrites_a_post():
    """The scan reads the cache, a post lands, the scan puts back what it read: the post is gone
    from the cache though it is acknowledged; with keep_verifying the owner heals it, and the
    scan may drop it again (the Converges lasso of dedupe,keep_verifying,bot_scan)."""
    model, result = checked(2, 1, None, "dedupe,keep_verifying,bot_scan")
    trace = result.properties["Converges"].trace
    assert {"ScanRead", "ScanWrite"} <= {s.action for s in trace[trace.loop_start :]}
    steps = [("ScanRead", {}), ("PostKey", {"m": 0}), ("PostRead", {"m": 0}), ("PostWrite", {"m": 0})]
    steps += [("PostAck", {"m": 0}), ("ScanWrite", {})]
    last = flatten(model.view(replay_trace(model, [{"action": a, "args": g} for a, g in steps])[-1]))
    assert {k: last[k] for k in ("cache", "post[0]", "pending[0]", "scan")} == {
        "cache": "[]",
        "post[0]": "Acked",
        "pending[0]": "[0]",
        "scan": "Idle",
    }


AI_CHANNEL = {
    (1, 1, "as_built,ai_channel"): (
        1106,
        2616,
        {"HealOnlyMissing": 5, "HealsTerminate": 16, "Converges": 10, "PendingDrains": 22},
    ),
    (2, 1, "as_built_fixed,ai_channel"): (106834, 498425, {}),
    (1, 2, "tab_view,full_poll,ai_channel,atomic_cache,dedupe"): (580, 1594, {}),
}


@pytest.mark.parametrize("tabs,per_tab,variants", list(AI_CHANNEL), ids=lambda v: str(v))
def test_a_tab_on_the_ai_channel(tabs, per_tab, variants, check_counterexample):
    """ai_channel: the last tab's polls ask for AI messages only. Its own (human) posts are never
    in its poll's answer, so with found_in_response it heals them for ever although the cache
    holds them; EveryoneSees asks a tab only for the messages of its channel (none there), so
    with one tab it holds. The fix judges found by the cache the poll read: it holds."""
    model, result = checked(tabs, per_tab, None, variants)
    states, transitions, violated = AI_CHANNEL[(tabs, per_tab, variants)]
    assert (result.states, result.transitions) == (states, transitions)
    assert {n: len(p.trace) for n, p in result.properties.items() if p.status == "violated"} == violated
    for name in violated:
        check_counterexample(model, name, result.properties[name].trace)


def test_the_ai_channel_tab_heals_its_own_message_at_once():
    model = KVHealModel(Config.make(tabs=2, variants="as_built,ai_channel"))
    steps = [("PostKey", {"m": 1}), ("PostRead", {"m": 1}), ("PostWrite", {"m": 1}), ("PostAck", {"m": 1})]
    steps += [("PollRead", {"t": 1})]
    states = replay_trace(model, [{"action": a, "args": g} for a, g in steps])
    prop = {p.name: p for p in model.properties()}["HealOnlyMissing"]
    assert [prop.holds(s) for s in states] == [True] * 5 + [False]
    nxt = flatten(model.view(model.step(states[-1], model.action("PollDone", {"t": 1}))))
    assert {k: nxt[k] for k in ("cache", "pending[1]", "heal[1]", "shown[1]")} == {
        "cache": "[1]",
        "pending[1]": "[1]",
        "heal[1]": "Requested",
        "shown[1]": "[1]",  # shown at once when posted, never by a poll
    }
    # tab 0, on the human channel, is shown it by the same poll
    states = replay_trace(model, [{"action": a, "args": g} for a, g in steps[:4] + [("PollRead", {"t": 0})]])
    assert (
        flatten(model.view(model.step(states[-1], model.action("PollDone", {"t": 0}))))["shown[0]"] == "[1]"
    )


CLAIMS = {
    (1, 1, "bot_claims"): (206, 602, {"ClaimedOnce": 7}),
    (2, 1, "atomic_cache,dedupe,bot_claims"): (59136, 338728, {"ClaimedOnce": 6}),
    (2, 1, "atomic_cache,dedupe,bot_claims,claim_cas"): (9936, 52688, {}),
    (1, 1, "as_built_fixed,bot_claims,claim_cas"): (1052, 3630, {}),
}


@pytest.mark.parametrize("tabs,per_tab,variants", list(CLAIMS), ids=lambda v: str(v))
def test_each_message_is_claimed_once_only_with_a_compare_and_swap(
    tabs, per_tab, variants, check_counterexample
):
    model, result = checked(tabs, per_tab, None, variants)
    states, transitions, violated = CLAIMS[(tabs, per_tab, variants)]
    assert (result.states, result.transitions) == (states, transitions)
    assert {n: len(p.trace) for n, p in result.properties.items() if p.status == "violated"} == violated
    for name in violated:
        check_counterexample(model, name, result.properties[name].trace)


def test_two_bot_polls_claim_one_message():
    """bot_claims: two overlapping bot polls both get the message's key before either puts it
    claimed: both reply (ClaimedOnce fails in 7 steps at one tab: the post, then the claims)."""
    model, result = checked(1, 1, None, "bot_claims")
    trace = result.properties["ClaimedOnce"].trace
    assert [str(s) for s in trace] == [
        "PostKey(m=0)",
        "PostRead(m=0)",
        "PostWrite(m=0)",
        "ClaimRead(m=0)",
        "ClaimRead2(m=0)",
        "ClaimWrite(m=0)",
        "ClaimWrite2(m=0)",
    ]
    last = flatten(model.view(replay_trace(model, trace)[-1]))
    assert {k: last[k] for k in ("claimed", "replies[0]", "claim[0]", "claim2[0]")} == {
        "claimed": "[0]",
        "replies[0]": "2",
        "claim[0]": "Done",
        "claim2[0]": "Done",
    }


# ------------------------------------------------------------------ registry and presets
def test_presets_expand_and_label():
    assert (
        parse_variants("as_built")
        == PRESETS["as_built"]
        == {"tab_view", "found_in_response", "reload", "put_fails", "post_fails"}
    )
    # the fix: poll the whole cache, update it atomically without duplicates, and judge a
    # pending id by that answer alone (no page-load snapshot)
    assert parse_variants("as_built_fixed") == (PRESETS["as_built"] - {"found_in_response"}) | {
        "full_poll",
        "atomic_cache",
        "dedupe",
    }
    assert parse_variants("as_built,shared_pending") == PRESETS["as_built"] | {"shared_pending"}
    assert (
        Config.make(variants="as_built").variant_label()
        == "tab_view,found_in_response,reload,put_fails,post_fails"
    )
    # fire_and_forget is the app's too, but beyond the ten-minute budget at tabs 2 (SPEC §6)
    assert not {"fire_and_forget", "repost", "stale_reads", "shared_pending"} & PRESETS["as_built"]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("reload", "reload needs tab_view; add it to the variant list"),
        ("found_in_response", "found_in_response needs tab_view; add it to the variant list"),
        ("full_poll,dedupe", "full_poll needs tab_view; add it to the variant list"),
        ("repost", "repost needs post_fails; add it to the variant list"),
        ("tab_view,repost,dedupe", "repost needs post_fails; add it to the variant list"),
        ("ai_channel", "ai_channel needs tab_view; add it to the variant list"),
        ("claim_cas", "claim_cas needs bot_claims; add it to the variant list"),
    ],
)
def test_flags_that_need_the_tab_view(spec, message):
    with pytest.raises(ConfigError) as err:
        parse_variants(spec)
    assert str(err.value) == message


def test_tab_view_needs_a_cache_that_evicts_nothing():
    for build in (lambda c: KVHealModel(c), lambda c: SymbolicModel(c)):
        with pytest.raises(ConfigError) as err:
            build(Config.make(tabs=2, cap=1, variants="tab_view"))
        assert str(err.value) == (
            "tab_view needs cap >= tabs*per_tab = 2 (Converges and EveryoneSees take the newest "
            "ids as the newest messages); got cap 1"
        )
        assert "\n" not in str(err.value)
    from click.testing import CliRunner

    from kvheal.cli import main

    res = CliRunner().invoke(main, ["check", "--tabs", "2", "--cap", "1", "--variant", "as_built"])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "kvheal: error: tab_view needs cap >= tabs*per_tab = 2 (Converges and "
        "EveryoneSees take the newest ids as the newest messages); got cap 1"
    ]


def test_modelled_only_flags_stay_out_of_the_implementation():
    # both presets are implemented (the worker, the client and fault injection: SPEC §6)
    assert MODELLED_ONLY == frozenset()
    assert not MODELLED_ONLY & (WORKER_VARIANTS | CLIENT_VARIANTS | FAULT_VARIANTS)
    assert IMPL_VARIANTS == (
        "dedupe",
        "keep_verifying",
        "atomic_cache",
        "heal_atomic",
        "sweeper",
        "tab_crash",
        "shared_pending",
        "tab_view",
        "found_in_response",
        "reload",
        "full_poll",
        "put_fails",
        "stale_reads",
        "clock_skew",
        "post_fails",
        "repost",
        "bot_scan",
        "ai_channel",
        "bot_claims",
        "claim_cas",
        "fire_and_forget",
        "statuses",
        "bot_replies",
    )
    assert PRESETS["as_built"] <= set(IMPL_VARIANTS) and PRESETS["as_built_fixed"] <= set(IMPL_VARIANTS)
    assert set(NEW) <= set(KVHEAL.flag_names())


@pytest.mark.slow
def test_valid_combinations_count_and_requirements():
    """Every valid flag combination (enumerating them takes about 9 s): their number, and a
    flag needing tab_view or post_fails never comes without it."""
    combos = valid_combinations()
    assert len(combos) == COMBOS
    assert all(
        "tab_view" in c
        for c in combos
        if c & {"reload", "found_in_response", "full_poll", "stale_reads", "clock_skew", "ai_channel"}
    )
    assert all("post_fails" in c for c in combos if "repost" in c)


def test_existing_designs_have_no_time():
    """An existing design's state is what it was: none of SPEC §6's variables, no Tick."""
    model = KVHealModel(Config.make(tabs=2, variants="dedupe"))
    assert model.width == 9  # cache, post[0..1], pending[0..1], poll[0..1], heal[0..1]
    assert not {"clock", "ts", "cursor", "shown", "frozen", "reloaded", "heals", "heal2", "put_failed"} & set(
        model.view(model.init_states()[0])
    )
    assert not {"Tick", "PostFail", "PostAgain", "HealKey2"} & {a.name for a in model.instances}
    assert [p.name for p in model.properties()] == [
        "AckedIsStored",
        "CacheFromStore",
        "NoDuplicates",
        "Converges",
        "PendingDrains",
    ]


def test_timestamps_exist_only_with_a_cursor_or_the_caches_order():
    """With full_poll and dedupe nothing reads a timestamp (no cursor; no duplicate, so a cache
    of cap >= M never drops an entry and its order decides nothing), so the model has none:
    states that differ only in timestamps would be one state of the app (SPEC §3's rule for
    values nothing holds). Without dedupe the cache's order by timestamp decides which copy a
    full cache drops, so the timestamps are kept."""
    model = KVHealModel(Config.make(tabs=2, variants="tab_view,full_poll,dedupe"))
    view = model.view(model.init_states()[0])
    assert "ts" not in view and "cursor" not in view and view["clock"] == 0
    assert check(model, only=set()).states == 37696
    model = KVHealModel(Config.make(tabs=2, variants="tab_view,full_poll"))
    view = model.view(model.init_states()[0])
    assert view["ts"] == (0, 0) and "cursor" not in view
    assert check(model, only=set()).states == 195268


def test_the_cache_orders_by_timestamp_then_id():
    """SPEC §6: with the tab view a full cache drops the entry with the oldest timestamp (then
    the lowest id), as the real cache does. Message 1 stamped at tick 0, message 0 at tick 1,
    a heal duplicates message 0: the copy of message 1 goes, not message 0's."""
    from kvheal.model.kernel import CacheValues

    cv = CacheValues(2, 2, dedupe=False, ordered=True)
    n = len(cv.values)
    assert (n, len(cv), len(cv.ids), len(cv.dup)) == (6, 24, 24, 24)  # one block of rows per late mask
    full = cv.code[(0, 1)]
    assert [cv.values[cv.add[full + n * late][0]] for late in range(4)] == [(0, 1), (0, 0), (0, 1), (0, 1)]
    assert cv.values[cv.union(cv.code[(0, 0)] + n * 1, 0b10)] == (0, 0)  # 1 is older than both copies
    model = KVHealModel(Config.make(tabs=2, variants="tab_view"))
    steps = [("PostKey", {"m": 1}), ("Tick", {}), ("PostRead", {"m": 1}), ("PostWrite", {"m": 1})]
    steps += [("PostAck", {"m": 1}), ("PollRead", {"t": 0}), ("PostKey", {"m": 0}), ("PostRead", {"m": 0})]
    steps += [("PostWrite", {"m": 0}), ("PostAck", {"m": 0}), ("PollDone", {"t": 0}), ("HealKey", {"m": 0})]
    steps += [("HealRead", {"m": 0})]  # tab 0's poll read the cache before message 0 reached it
    states = replay_trace(model, [{"action": a, "args": g} for a, g in steps])
    view = flatten(model.view(states[-1]))
    assert (view["cache"], view["ts[0]"], view["ts[1]"]) == ("[0,1]", "1", "0")
    after = flatten(model.view(model.step(states[-1], model.action("HealWrite", {"m": 0}))))
    assert after["cache"] == "[0,0]"  # ordered by id it would have been [0,1]
    assert cv.values[cv.add[full][0]] == (0, 1)


def test_z3_agrees_with_the_cache_order_on_every_reachable_state():
    """The ordered trim in z3 (a rank by (ts, id)) and in the kernel (the late mask's rows)
    agree on every reachable state where timestamps do not follow ids (tab_view,clock_skew at
    tabs 2: the compiled comparison of test_agreement.py)."""
    from .test_agreement import CompiledAgreement

    rep = CompiledAgreement(Config.make(tabs=2, variants="tab_view,clock_skew")).run()
    assert (rep.states, rep.transitions) == (183123, 617552)
    assert rep.shortest["NoDuplicates"] == 9


def test_time_domain():
    assert (HORIZON, LAG) == (1, 1)
    model = KVHealModel(Config.make(tabs=1, variants="tab_view"))
    view = model.view(model.init_states()[0])
    assert (view["clock"], view["ts"], view["cursor"], view["shown"]) == (0, (0,), (0,), ((),))


# ------------------------------------------------------------------ z3 agrees with the kernel
def _agree(cfg: Config) -> int:
    """z3's compiled relation lists exactly the kernel's successors, in every reachable state.
    Returns the number of transitions compared."""
    model, sym = KVHealModel(cfg), SymbolicModel(cfg)
    ev = Evaluator(sym)
    solver = z3.Solver()
    s0 = sym.fresh("s0")
    solver.add(sym.init(s0), z3.Not(sym.encode_view(s0, model.view(model.init_states()[0]))))
    assert solver.check() == z3.unsat  # one initial state, the kernel's
    seen, todo, compared = {model.init_states()[0]}, [model.init_states()[0]], 0
    while todo:
        s = todo.pop()
        vals = ev.values_of(model.view(s))
        # z3's variable values, against the kernel's successors' views turned into those values
        got = sorted((i.name, i.pairs, repr(sorted(v.items()))) for i, v in ev.successors(vals))
        want = sorted(
            (
                model.instances[lab].name,
                model.instances[lab].pairs,
                repr(sorted(ev.values_of(model.view(t)).items())),
            )
            for lab, t in model.successors(s)
        )
        assert got == want, model.view(s)
        compared += len(want)
        for _, t in model.successors(s):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return compared


@pytest.mark.parametrize(
    "tabs,per_tab,variants,transitions",
    [
        (1, 1, "as_built", 2518),
        (1, 1, "as_built_fixed", 853),
        (1, 1, "as_built,shared_pending", None),
        (1, 1, "as_built,stale_reads", 11751),
        (1, 1, "as_built,clock_skew", None),
        (1, 1, "as_built,fire_and_forget", 8130),
        pytest.param(1, 1, "as_built,bot_scan", 33659, marks=pytest.mark.slow),  # 5 s
        (1, 1, "as_built,ai_channel", 2616),
        pytest.param(1, 1, "as_built,bot_claims", 28504, marks=pytest.mark.slow),  # 5 s
        (1, 1, "as_built_fixed,bot_claims,claim_cas", 3630),
        (1, 2, "tab_view,full_poll,ai_channel,atomic_cache,dedupe", 1594),
        # the two largest: 70 s and 12 s of z3 on this machine
        pytest.param(1, 1, "as_built,bot_scan,stale_reads,fire_and_forget", None, marks=pytest.mark.slow),
        pytest.param(1, 1, "as_built,fire_and_forget,repost,stale_reads", None, marks=pytest.mark.slow),
        (1, 1, "as_built_fixed,fire_and_forget,repost", None),
        (1, 1, "tab_view,stale_reads,sweeper,heal_atomic", None),
        (1, 1, "tab_view,reload,found_in_response,tab_crash,keep_verifying", None),
        (1, 1, "tab_view,fire_and_forget,shared_pending,heal_atomic,put_fails", None),
        (1, 1, "tab_view,sweeper", 2849),
        (1, 1, "tab_view,sweeper,fire_and_forget,post_fails", 3516),
        pytest.param(1, 2, "as_built", 734909, marks=pytest.mark.slow),  # a few minutes
        pytest.param(1, 2, "as_built_fixed,shared_pending", 73141, marks=pytest.mark.slow),
    ],
)
def test_z3_agrees_on_every_reachable_state(tabs, per_tab, variants, transitions):
    n = _agree(Config.make(tabs=tabs, per_tab=per_tab, variants=variants))
    if transitions is not None:
        assert n == transitions


@pytest.mark.parametrize(
    "per_tab,variants,failing",
    [
        (1, "as_built", {"HealOnlyMissing", "HealsTerminate", "Converges", "PendingDrains", "EveryoneSees"}),
        (2, "as_built", {"NoDuplicates", "HealOnlyMissing", "Converges", "PendingDrains", "EveryoneSees"}),
        (2, "tab_view,sweeper", {"NoDuplicates", "ScanWritesNothing", "Converges", "PendingDrains"}),
        (
            2,
            "tab_view,found_in_response,ai_channel",
            {"NoDuplicates", "HealOnlyMissing", "HealsTerminate", "Converges", "PendingDrains"},
        ),
        (
            1,
            "as_built,fire_and_forget,repost",
            {"HealOnlyMissing", "HealsTerminate", "Converges", "PendingDrains", "EveryoneSees"},
        ),
    ],
)
def test_z3_properties_agree_with_the_kernel(per_tab, variants, failing):
    """Every property's z3 predicate equals the kernel's on the first 300 states (BFS) and on
    up to 40 states where each property fails (among the first 40,000), at tabs 1."""
    cfg = Config.make(tabs=1, per_tab=per_tab, variants=variants)
    model, sym = KVHealModel(cfg), SymbolicModel(cfg)
    s = sym.fresh("s")
    solver = z3.Solver()
    props = model.properties()
    sample, bad = [], {p.name: 0 for p in props}
    for n, st in enumerate(checked_states(model)):
        if n == 40_000:
            break
        fails = [p.name for p in props if not p.holds(st) and bad[p.name] < 40]
        if n < 300 or fails:
            sample.append(st)
        for name in fails:
            bad[name] += 1
    assert {name for name, k in bad.items() if k} == failing
    for st in sample:
        want = {p.name: p.holds(st) for p in props}
        solver.push()
        solver.add(sym.encode_view(s, model.view(st)))
        for name in want:
            assert solver.check(z3.Not(sym.prop(name)(s))) == (z3.unsat if want[name] else z3.sat), name
        solver.pop()


def checked_states(model):
    seen, todo = {model.init_states()[0]}, [model.init_states()[0]]
    while todo:
        s = todo.pop(0)
        yield s
        for _, t in model.successors(s):
            if t not in seen:
                seen.add(t)
                todo.append(t)


def test_bmc_finds_the_invariant_counterexample_at_the_bfs_length():
    """as_built at tabs 1 with 2 messages: NoDuplicates fails after 9 steps (BFS), and BMC finds
    it at exactly that bound; its trace replays in the kernel."""
    cfg = Config.make(tabs=1, per_tab=2, variants="as_built")
    sym = SymbolicModel(cfg)
    out = bmc(sym, {"NoDuplicates": sym.prop("NoDuplicates")}, 9)
    length, trace, _ = out["NoDuplicates"]
    assert length == PINNED[(1, 2, "as_built")][2]["NoDuplicates"] == 9
    model = KVHealModel(cfg)
    states = replay_trace(model, trace)
    assert not {p.name: p for p in model.properties()}["NoDuplicates"].holds(states[-1])
    # and nothing shorter: with 8 steps there is none
    assert bmc(sym, {"NoDuplicates": sym.prop("NoDuplicates")}, 8)["NoDuplicates"][0] is None


# ------------------------------------------------------------------ the DSL's bounded integers
def _counter_def() -> Definition:
    """A tiny design: an integer n in -1..2 moved by +2 (saturating), -1 (saturating), reset to a
    constant when n == 0, and a flag b set when n > m (another integer)."""
    n_t, m_t = IntType(-1, 2), IntType(0, 3)

    def up(cfg, s, x):
        return s.n < 2, {s.n: s.n + 2}

    def down(cfg, s, x):
        return s.n >= 0, {s.n: s.n - 1, s.m: x.ite(s.n.eq(0), 3, s.m)}

    def mark(cfg, s, x):
        return ~s.b & (s.n > s.m) | (s.m <= 0), {s.b: x.ite(s.n.eq(s.m), s.b, ~s.b)}

    return Definition(
        "counter",
        [Var("n", n_t, init=lambda cfg, _: 1), Var("m", m_t), Var("b", BoolType())],
        [],
        [
            ActionDef("Up", "", "tab", up),
            ActionDef("Down", "", "tab", down),
            ActionDef("Mark", "", "tab", mark),
        ],
        [PropertyDef("Low", "invariant", lambda cfg, s, x: s.n <= 1, "n stays at most 1")],
        [],
    )


def test_int_type_in_both_engines():
    d = _counter_def()
    cfg = Config.make(tabs=1, design=d)
    k = Kernel(d, cfg)
    # n is kept as n - lo: the initial 1 is slot value 2
    assert k.init_state == (2, 0, 0)
    seen, todo = {k.init_state}, [k.init_state]
    while todo:
        for _, t in k.successors(todo.pop()):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    views = sorted(tuple(k.decode(s).values()) for s in seen)
    # the same set, enumerated by hand from the actions' meaning
    assert views == [
        (-1, 3, False),
        (-1, 3, True),
        (0, 0, False),
        (0, 0, True),
        (0, 3, False),
        (0, 3, True),
        (1, 0, False),
        (1, 0, True),
        (1, 3, False),
        (1, 3, True),
        (2, 0, False),
        (2, 0, True),
        (2, 3, False),
        (2, 3, True),
    ]
    assert "min(" in k.source and "max(" in k.source
    model, sym = KVHealModel(cfg, d), SymbolicModel(cfg, d)
    ev = Evaluator(sym)
    s = sym.fresh("s")
    solver = z3.Solver()
    solver.add(sym.dom(s), z3.Not(s["n"] >= -1))
    assert solver.check() == z3.unsat  # dom states the range from lo
    for st in seen:
        got = sorted((i.name, repr(sym.view(v))) for i, v in ev.successors(ev.values_of(model.view(st))))
        want = sorted((model.instances[lab].name, repr(model.view(t))) for lab, t in model.successors(st))
        assert got == want
    result = check(model)
    assert result.properties["Low"].status == "violated" and len(result.properties["Low"].trace) == 1


def test_int_type_errors():
    with pytest.raises(DefinitionError):
        IntType(2, 1)
    d = _counter_def()
    bad = Definition(
        "bad", d.variables, [], [ActionDef("Far", "", "tab", lambda cfg, s, x: (s.b, {s.n: 5}))], [], []
    )
    with pytest.raises(DefinitionError, match="outside n's range"):
        Kernel(bad, Config.make(tabs=1, design=bad))
    worse = Definition(
        "worse",
        d.variables,
        [],
        [ActionDef("Mul", "", "tab", lambda cfg, s, x: (s.b, {s.n: s.n + s.n}))],
        [],
        [],
    )
    with pytest.raises(DefinitionError, match="plus a constant"):
        Kernel(worse, Config.make(tabs=1, design=worse))


def test_check_as_built_fixed_exits_0():
    from click.testing import CliRunner

    from kvheal.cli import main

    res = CliRunner().invoke(main, ["check", "--tabs", "2", "--variant", "as_built_fixed", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["states"], out["transitions"]) == (157128, 729056)
    assert set(out["properties"]) == {
        "AckedIsStored",
        "CacheFromStore",
        "NoDuplicates",
        "HealOnlyMissing",
        "HealsTerminate",
        "Converges",
        "PendingDrains",
        "EveryoneSees",
    }
    assert all(p["status"] == "holds" for p in out["properties"].values())


# ---------------------------------------------------------------------- z3 proves the fix
#: what Houdini keeps for as_built_fixed: the first eight are the seed designs' strengthenings,
#: the last five are written for the fix (model/strengthen.py, SPEC §6)
FIX_STRENGTHENING = [
    "StoredIsPosted",
    "SnapshotsCleared",
    "ValuesFit",
    "ValuesFromStore",
    "ValuesNoDuplicates",
    "PendingIsAcked",
    "HealsAreAcked",
    "KeyReadIsStored",
    "UncachedWriteIsFailedPut",
    "HealedIsCached",
    "LastHealPollsSee",
    "PollsReadTheCache",
    "UncachedAckIsPending",
]
FIX_PROOFS = {
    "AckedIsStored": ("holds", "1-induction"),
    "CacheFromStore": ("holds", "induction with strengthening"),
    "NoDuplicates": ("holds", "1-induction"),
    "HealOnlyMissing": ("holds", "1-induction"),
    "HealsTerminate": ("holds", "induction with strengthening"),
    "Converges": ("holds", "inductive invariant + heal-ranking (WF premises)"),
    "PendingDrains": ("holds", "inductive invariant + drain-ranking (WF premises)"),
    "EveryoneSees": ("holds", "inductive invariant + shown-ranking (WF premises)"),
}


@pytest.mark.parametrize(
    "tabs,per_tab,variants",
    [
        (2, 1, "as_built_fixed"),
        (3, 1, "as_built_fixed"),
        (2, 1, "as_built_fixed,ai_channel"),
        (2, 1, "as_built_fixed,clock_skew"),
        (2, 1, "as_built_fixed,fire_and_forget"),
        pytest.param(2, 2, "as_built_fixed", marks=pytest.mark.slow),  # 2 s of CPU
        pytest.param(6, 1, "as_built_fixed", marks=pytest.mark.slow),  # 5 s
    ],
)
def test_z3_proves_as_built_fixed(tabs, per_tab, variants):
    """`kvheal prove --tabs 2 --variant as_built_fixed` decides every property, as the explicit
    checker does (all hold): the invariants by induction (HealsTerminate with the fix's
    strengthenings), the three eventually-always goals by ranking arguments; every query is
    answered as the argument needs. At tabs 3 too (beyond the checker's budget; slow: tabs 6,
    and two messages per tab), and with the AI-channel tab, the skewed clock or two heals of an
    id in flight (bound 3), which the explicit checker also finds fixed."""
    from kvheal.model.prove import prove

    cfg = Config.make(tabs=tabs, per_tab=per_tab, variants=variants)
    bound = heal_bound(cfg)
    assert bound == (3 if "fire_and_forget" in variants else 2)
    result = prove(cfg, lasso_depth=0)
    assert {n: (p.status.value, p.method) for n, p in result.properties.items()} == FIX_PROOFS
    assert result.invariant == FIX_STRENGTHENING
    # every query is answered as the proof needs, but the one asking whether an invariant is
    # inductive alone, where the proof goes on with the strengthening
    assert [q.name for n, p in result.properties.items() for q in p.queries if not q.holds] == [
        "step-CacheFromStore",
        "step-HealsTerminate",
    ]
    # HealsTerminate is not inductive alone: its counterexample to induction is a poll that
    # counts a third heal (from a state no run reaches)
    cti = result.properties["HealsTerminate"].cti
    assert cti["step"]["action"] == "PollDone"
    assert any(cti["state"]["heals"][h] == bound and n == bound + 1 for h, n in cti["next"]["heals"].items())
    # a reload may undo EveryoneSees (the page starts over), finitely often: premise 0
    es = result.properties["EveryoneSees"]
    budget = sorted(q.name for q in es.queries if q.name.startswith("budget-"))
    assert [n for n in budget if n.startswith("budget-lowered-")] == [
        f"budget-lowered-Reload(t={t})" for t in range(tabs)
    ]
    assert len(budget) == len(SymbolicModel(cfg).instances)
    assert "Reload may leave the stable set" in es.note


def test_the_fix_strengthenings_hold_on_every_reachable_state():
    """Every candidate stated for as_built_fixed holds in all 157,128 reachable states at tabs 2,
    checked on the explicit state space before z3 is asked; the check finds a false one:
    WrittenIsCached (not stated with put_fails: a failed cache put leaves a written message
    out of the cache)."""
    from kvheal.model.strengthen import CANDIDATES, candidates_for, failing_on_reachable

    cfg = Config.make(tabs=2, variants="as_built_fixed")
    stated = candidates_for(SymbolicModel(cfg))
    assert [c.name for c in stated] == FIX_STRENGTHENING
    written = next(c for c in CANDIDATES if c.name == "WrittenIsCached")
    got = failing_on_reachable(cfg, [*stated, written])
    assert {n for n, v in got.items() if v is not None} == {"WrittenIsCached"}
    bad = got["WrittenIsCached"]
    assert bad["put_failed"] and ("CacheWritten",) in bad["post"] and bad["cache"] == ()


def test_every_query_of_the_fix_proof_is_named_in_smtlib():
    """Houdini drops no candidate for as_built_fixed, so each z3 call the proof makes pairs
    with a logged query (what `kvheal report` writes as SMT-LIB files), and z3 answers each as
    the proof needs but the two asking whether an invariant is inductive alone."""
    from kvheal.model.prove import prove
    from kvheal.model.smtlib import capture, paired

    with capture() as calls:
        result = prove(Config.make(tabs=2, variants="as_built_fixed"))
    named = paired(result, calls)
    assert len(named) == len(calls) == 250
    assert not any(q["name"].startswith("call ") for q in named)
    assert [q["name"] for q in named if q["answer"] != q["expect"]] == [
        "step-CacheFromStore",
        "step-HealsTerminate",
    ]


def test_each_fix_strengthening_is_needed():
    """Dropping any one of the three counting strengthenings leaves HealsTerminate unproved
    (Houdini keeps only what stays inductive without it), and dropping either of the two
    about polls and pending ids breaks the heal chain of every convergence argument."""
    from kvheal.model.prove import (
        drain_argument,
        everyone_argument,
        heal_argument,
        houdini,
        induction,
        prove_eventually,
    )
    from kvheal.model.strengthen import candidates_for

    sym = SymbolicModel(Config.make(tabs=2, variants="as_built_fixed"))
    every = candidates_for(sym)

    def kept_without(name):
        return houdini(sym, [c for c in every if c.name != name])[0]

    heals = sym.prop("HealsTerminate")
    assert induction(sym, "HealsTerminate", heals, houdini(sym)[0]).status.value == "holds"
    for name in ("UncachedWriteIsFailedPut", "HealedIsCached", "LastHealPollsSee"):
        pf = induction(sym, "HealsTerminate", heals, kept_without(name))
        assert pf.status.value == "unknown", name
        assert pf.note == "not inductive even with the strengthening invariant"
    args = {
        "Converges": heal_argument(sym),
        "PendingDrains": drain_argument(sym),
        "EveryoneSees": everyone_argument(sym),
    }
    for name in ("PollsReadTheCache", "UncachedAckIsPending"):
        kept = kept_without(name)
        for goal, arg in args.items():
            ok, qs = prove_eventually(sym, sym.goals()[goal], arg, kept)
            assert not ok, (name, goal)
            assert {"helper-helps-PollDone(t=0)", "rank-no-increase-PollDone(t=0)"} <= {
                q.name for q in qs if not q.holds
            }


class _Forced:
    """A configuration that answers ``has`` for ``extra`` flags too (to force an argument onto
    a design it was not written for)."""

    def __init__(self, cfg, extra):
        self._cfg, self._extra = cfg, extra

    def has(self, flag):
        return flag in self._extra or self._cfg.has(flag)

    def __getattr__(self, name):
        return getattr(self._cfg, name)


def test_the_shown_ranking_needs_its_escape_and_is_not_vacuous():
    """Without Reload as an escape, the stable set of EveryoneSees is not closed (a reload
    empties the page); forced onto the fix without full_poll (the cursor passes a message:
    EveryoneSees is violated, `kvheal check`), the argument's premises fail at PollDone."""
    import dataclasses

    from kvheal.model.prove import everyone_argument, houdini, prove_eventually

    sym = SymbolicModel(Config.make(tabs=2, variants="as_built_fixed"))
    inv = houdini(sym)[0]
    arg = dataclasses.replace(everyone_argument(sym), escapes=())
    ok, qs = prove_eventually(sym, sym.goals()["EveryoneSees"], arg, inv)
    assert not ok and [q.name for q in qs if not q.holds] == ["stable-closed"]

    cfg = Config.make(tabs=2, variants="tab_view,atomic_cache,dedupe,reload,put_fails")
    assert check(KVHealModel(cfg)).properties["EveryoneSees"].status.value == "violated"
    sym = SymbolicModel(cfg)
    assert everyone_argument(sym) is None  # written for full_poll only
    sym.config = _Forced(cfg, {"full_poll"})
    arg = everyone_argument(sym)
    sym.config = cfg
    ok, qs = prove_eventually(sym, sym.goals()["EveryoneSees"], arg, houdini(sym)[0])
    assert not ok
    assert sorted(q.name for q in qs if not q.holds) == [
        "helper-helps-PollDone(t=0)",
        "helper-helps-PollDone(t=1)",
        "helper-stays-PollDone(t=0)",
        "helper-stays-PollDone(t=1)",
        "rank-no-increase-PollDone(t=0)",
        "rank-no-increase-PollDone(t=1)",
    ]

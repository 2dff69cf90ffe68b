"""Exact state and transition counts (SPEC §9: distinct reachable states; enabled action
instances summed over them), pinned, and cross-checked against an independent enumerator."""

from __future__ import annotations

import pytest

from kvheal.model import Config, KVHealModel, check

from .conftest import checked
from .spec_reference import Reference

# (tabs, per_tab, cap, variants, states, transitions)
PINNED = [
    (2, 1, None, "", 7070, 23756),
    (2, 1, None, "dedupe", 3329, 11786),
    (2, 1, None, "keep_verifying", 2433, 8271),
    (2, 1, None, "dedupe,keep_verifying", 1318, 4708),
    (2, 1, None, "atomic_cache", 1182, 3790),
    (2, 1, None, "dedupe,atomic_cache", 780, 2692),
    (2, 1, None, "sweeper", 307038, 1378217),
    (2, 1, None, "dedupe,sweeper", 102083, 470617),
    (2, 1, None, "tab_crash", 12104, 54114),
    (2, 1, None, "dedupe,tab_crash", 6035, 27336),
    (2, 1, None, "dedupe,shared_pending", 811568, 4450906),
    (2, 1, None, "heal_atomic", 2907, 9262),
    (2, 1, None, "dedupe,heal_atomic", 1897, 6474),
    (2, 1, None, "dedupe,keep_verifying,atomic_cache", 372, 1304),
    (2, 1, None, "dedupe,atomic_cache,sweeper,tab_crash", 7654, 42290),
    (2, 1, 1, "", 2126, 7572),
    (1, 2, None, "", 1328, 3166),
    (1, 2, None, "shared_pending", 3707, 9250),
    (3, 1, None, "dedupe,atomic_cache", 60230, 308526),
    (3, 1, None, "dedupe,keep_verifying,atomic_cache", 19496, 101064),
    (3, 1, None, "atomic_cache", 158298, 731738),
    (3, 1, None, "dedupe,keep_verifying", 426612, 2260704),
]


@pytest.mark.parametrize("tabs,per_tab,cap,variants,states,transitions", PINNED)
def test_pinned_counts(tabs, per_tab, cap, variants, states, transitions):
    _, result = checked(tabs, per_tab, cap, variants)
    assert (result.states, result.transitions) == (states, transitions)
    assert result.complete


@pytest.mark.slow
@pytest.mark.parametrize(
    "tabs,variants,states,transitions",
    [
        (2, "shared_pending", 6225349, 32932409),
        (3, "dedupe", 2194874, 11514840),  # also measured by `kvheal bench`
    ],
)
def test_pinned_counts_large(tabs, variants, states, transitions):
    result = check(KVHealModel(Config.make(tabs=tabs, variants=variants)))
    assert (result.states, result.transitions) == (states, transitions)


def test_hand_count_one_tab_atomic_dedupe_cap_one():
    """tabs=1, per_tab=1, cap=1, atomic_cache+dedupe, counted by hand:

    post Unsent or KeyWritten: cache (), pending {}, poll Idle or Read(()) -> 2 + 2 states.
    CacheWritten: cache (0); poll Idle, Read(()) (read earlier) or Read((0)) -> 3.
    Acked with pending {0} and heal Idle: poll Idle, Read(()), Read((0)) -> 3; with heal
    Requested or KeyRead (only after PollDone consumed Read(())): poll Idle or Read((0)) -> 4;
    pending {} (PollDone saw (0)): poll Idle or Read((0)), heal Idle/Requested/KeyRead -> 6.
    20 states. Transitions: 2 in each of the 4 pre-cache states, 2 in each of the 3
    CacheWritten states (PostAck and a poll step), and in the 13 Acked states one poll step
    each plus a heal step in the 8 with a heal in flight: 8 + 6 + 21 = 35.
    """
    result = check(KVHealModel(Config.make(tabs=1, cap=1, variants="atomic_cache,dedupe")))
    assert (result.states, result.transitions) == (20, 35)


REFERENCE_CASES = [
    (1, 1, None, ""),
    (1, 1, 1, "atomic_cache,dedupe"),
    (1, 2, None, ""),
    (2, 1, 1, ""),
    (2, 1, None, ""),
    (2, 1, None, "dedupe"),
    (2, 1, None, "keep_verifying"),
    (2, 1, None, "atomic_cache"),
    (2, 1, None, "tab_crash"),
    (2, 1, None, "dedupe,keep_verifying"),
    (2, 1, None, "dedupe,atomic_cache"),
    (2, 1, None, "dedupe,tab_crash"),
    (2, 1, None, "atomic_cache,sweeper"),
    (1, 2, None, "shared_pending"),
    (1, 2, None, "shared_pending,tab_crash,keep_verifying"),
    (2, 1, 1, "shared_pending,atomic_cache"),
    (1, 2, 1, "sweeper,dedupe"),
]


@pytest.mark.parametrize("tabs,per_tab,cap,variants", REFERENCE_CASES)
def test_counts_match_independent_enumerator(tabs, per_tab, cap, variants):
    flags = [v for v in variants.split(",") if v]
    expected = Reference(tabs, per_tab, cap, flags).explore()
    result = check(KVHealModel(Config.make(tabs=tabs, per_tab=per_tab, cap=cap, variants=variants)))
    assert (result.states, result.transitions) == expected


def test_every_successor_matches_the_reference_on_a_sample():
    """Not just counts: along a BFS of the reference, each state's successor set equals the
    model's (compared through the model's SPEC-level view)."""
    for variants in ["", "sweeper", "shared_pending,tab_crash"]:
        flags = [v for v in variants.split(",") if v]
        ref = Reference(1 if "shared" in variants else 2, 2 if "shared" in variants else 1, None, flags)
        model = KVHealModel(Config.make(tabs=ref.T, per_tab=ref.M // ref.T, variants=variants))
        frontier = [(ref.init(), model.init_states()[0])]
        seen = set()
        while frontier and len(seen) < 400:
            r, s = frontier.pop(0)
            if r in seen:
                continue
            seen.add(r)
            assert _as_ref(model, s) == r
            ref_next = {t for _, t in ref.next(r)}
            mod_next = {_as_ref(model, t): t for _, t in model.successors(s)}
            assert set(mod_next) == ref_next
            frontier.extend((t, mod_next[t]) for t in sorted(ref_next, key=repr))


def _as_ref(model, s):
    v = model.view(s)
    shared = "lists" in v
    pending = (frozenset(v["pending"]),) if shared else tuple(frozenset(p) for p in v["pending"])
    heal = tuple(v["heal"][k] for k in sorted(v["heal"]))
    post = tuple(p if p[0] != "CacheRead" else ("CacheRead", p[1]) for p in v["post"])
    sweep = v["sweep"]
    if sweep[0] != "Idle":
        sweep = (sweep[0], frozenset(sweep[1])) + tuple(sweep[2:])
    lists = tuple(p if p[0] == "Idle" else ("Write", frozenset(p[1])) for p in v.get("lists", ()))
    return (frozenset(v["stored"]), v["cache"], post, pending, v["poll"], heal, v["alive"], sweep, lists)

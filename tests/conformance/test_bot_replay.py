"""The bot's actions on the real system (SPEC §8): its pending scan and its claims, driven step
by step in lockstep with the model, and the bot designs' counterexamples replayed on real
SQLite, showing the same violations."""

from __future__ import annotations

import pytest

from kvheal.conformance.lockstep import lockstep_machine
from kvheal.conformance.replay import replay
from kvheal.model import Config
from kvheal.model.results import VIOLATED

from .replaying import checked


def _checked(variants: str):
    return checked(2, variants=variants)


def _script(variants: str, steps: list[tuple[str, dict]]) -> dict:
    machine = lockstep_machine(Config.make(tabs=2, variants=variants))()
    try:
        machine.start()
        for name, args in steps:
            machine.do(name, **args)  # each step in lockstep: Divergence if the sides differ
        return machine.system.view()
    finally:
        machine.teardown()


POSTED = [("PostKey", {"m": 0}), ("PostCache", {"m": 0})]


def test_two_get_then_put_claims_both_succeed():
    """bot_claims as built: both polls read the status key pending, both put it claimed, both
    reply (ClaimedOnce's violation, on the real worker)."""
    claims = [
        ("ClaimRead", {"m": 0}),
        ("ClaimRead2", {"m": 0}),
        ("ClaimWrite", {"m": 0}),
        ("ClaimWrite2", {"m": 0}),
    ]
    view = _script("dedupe,atomic_cache,bot_claims", POSTED + claims)
    assert (view["claim"], view["claim2"], view["claimed"], view["replies"]) == (
        (("Done",), ("Idle",)),
        (("Done",), ("Idle",)),
        (0,),
        (2, 0),
    )


def test_compare_and_swap_claims_once():
    """claim_cas: the second poll's swap finds the key claimed; one reply."""
    view = _script(
        "dedupe,atomic_cache,bot_claims,claim_cas", POSTED + [("ClaimCas", {"m": 0}), ("ClaimCas2", {"m": 0})]
    )
    assert (view["claimed"], view["replies"]) == ((0,), (1, 0))


def test_the_as_built_scan_drops_a_post_made_during_it():
    """bot_scan: the scan reads the cache, a post adds m1, the scan writes back what it read."""
    steps = [
        ("PostKey", {"m": 0}),
        ("PostRead", {"m": 0}),
        ("PostWrite", {"m": 0}),
        ("ScanRead", {}),
        ("PostKey", {"m": 1}),
        ("PostRead", {"m": 1}),
        ("PostWrite", {"m": 1}),
    ]
    view = _script("dedupe,keep_verifying,bot_scan", steps)
    assert (view["cache"], view["scan"]) == ((0, 1), ("Read", (0,)))
    view = _script("dedupe,keep_verifying,bot_scan", steps + [("ScanWrite", {})])
    assert (view["stored"], view["cache"], view["scan"]) == ((0, 1), (0,), ("Idle",))


@pytest.mark.parametrize(
    "variants, prop, length, evidence",
    [
        (
            "dedupe,atomic_cache,bot_claims",
            "ClaimedOnce",
            6,
            "both bot polls claimed 1761868800000-5feceb: 2 claims of its status key succeeded",
        ),
        (
            "dedupe,keep_verifying,bot_scan",
            "Converges",
            17,
            "acknowledged 1761868800000-5feceb absent from the real cache ['1761868801000-6b86b2']",
        ),
    ],
)
def test_the_bot_designs_counterexamples_replay_on_real_sqlite(variants, prop, length, evidence):
    cfg, result = _checked(variants)
    trace = result.properties[prop].trace
    assert len(trace) == length
    r = replay(cfg, prop, trace, backend="sqlite")
    assert (r.reproduced, r.status, r.diverged) == (True, VIOLATED, "")
    assert evidence in r.evidence


def test_compare_and_swap_claims_hold_in_the_model():
    _, result = _checked("dedupe,atomic_cache,bot_claims,claim_cas")
    assert str(result.properties["ClaimedOnce"].status) == "holds"

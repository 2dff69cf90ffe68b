"""The real worker and clients in lockstep with the model, in every design at tabs 2 and 3."""
from __future__ import annotations

import pytest
from hypothesis.stateful import run_state_machine_as_test

from kvheal.conformance.lockstep import lockstep_machine
from kvheal.model import VARIANTS, Config

#: every flag alone and with dedupe, the seed design, and two larger combinations
DESIGNS = [""] + list(VARIANTS) + [f"dedupe,{v}" for v in VARIANTS if v != "dedupe"] + [
    "dedupe,atomic_cache,sweeper,tab_crash", "keep_verifying,shared_pending,tab_crash"]


@pytest.mark.parametrize("tabs", [2, 3])
@pytest.mark.parametrize("variants", DESIGNS, ids=lambda v: v or "seed")
def test_lockstep(variants, tabs):
    run_state_machine_as_test(lockstep_machine(Config.make(tabs=tabs, variants=variants)))


@pytest.mark.parametrize("variants", ["", "atomic_cache", "dedupe,sweeper"], ids=lambda v: v or "seed")
def test_lockstep_with_eviction_and_two_posts_per_tab(variants):
    """cap < messages: the cache trims; each tab posts twice."""
    run_state_machine_as_test(lockstep_machine(Config.make(tabs=2, per_tab=2, cap=2, variants=variants)))


def test_lockstep_on_sqlite():
    """The same machine over a real SQLite file (each KV call on the backend's thread)."""
    from hypothesis import settings
    run_state_machine_as_test(lockstep_machine(Config.make(tabs=2, variants="atomic_cache"), backend="sqlite"),
                              settings=settings(settings.default, max_examples=5))

"""BMC finds each invariant's counterexample at the BFS length, for every flag combination at
tabs 2.

The BFS lengths are ``test_agreement.PINNED``'s: its BFS over every reachable state of every
combination checks them (the depth of the first state that breaks each invariant). In the
default run ``test_prove.py::test_bmc_finds_the_bfs_shortest_counterexample`` covers 13
designs (each flag alone, with dedupe, and one pair). Here the other combinations are
``slow`` (BMC at tabs 2 takes about 10 to 110 s per design on this 2-core machine):
``pytest -m slow tests/model/test_agreement_bmc.py`` covers them. A combination with a
NoDuplicates counterexample of length L is unrolled to depth L: BMC tries the lengths in
order, so it must find none before L and one at L; a combination where BFS finds none is
unrolled to ``DEPTH``, past the longest counterexample of every design (10), and BMC must find
none either.
"""

from __future__ import annotations

import pytest

from kvheal.model import Config, KVHealModel
from kvheal.model.prove import bmc
from kvheal.model.symbolic import SymbolicModel
from kvheal.model.trace import replay_trace

from .test_agreement import PINNED
from .test_prove import NO_DUP

#: The unrolling depth where BFS finds no counterexample: the longest of any design is 10.
DEPTH = 10


def test_the_pinned_lengths_are_the_ones_test_prove_uses() -> None:
    assert {v: PINNED[v][2] for v in NO_DUP} == NO_DUP
    assert max(n for _, _, n in PINNED.values() if n is not None) == DEPTH


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the configured 300 s is too short for the larger unrollings
@pytest.mark.parametrize("variant", [v for v in PINNED if v not in NO_DUP], ids=lambda v: v or "seed")
def test_bmc_finds_the_bfs_shortest_counterexample_in_every_design(variant: str) -> None:
    length = PINNED[variant][2]
    cfg = Config.make(tabs=2, variants=variant)
    sym = SymbolicModel(cfg)
    found = bmc(sym, sym.invariants(), DEPTH if length is None else length)
    assert {n: r[0] for n, r in found.items()} == {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": length,
    }
    if length is not None:
        model = KVHealModel(cfg)
        last = replay_trace(model, found["NoDuplicates"][1])[-1]
        assert not next(p for p in model.properties() if p.name == "NoDuplicates").holds(last)

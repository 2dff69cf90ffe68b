"""Parameterized (all tabs) proofs."""
from __future__ import annotations

from kvheal.model.param import prove_all_tabs
from kvheal.model.prove import PROVED, UNKNOWN


def test_atomic_dedupe_converges_for_every_number_of_tabs() -> None:
    result = prove_all_tabs({"atomic_cache", "dedupe"})
    assert {n: p.status for n, p in result.properties.items()} == {
        "AckedIsStored": PROVED, "CacheFromStore": PROVED, "NoDuplicates": PROVED, "Converges": PROVED}
    qs = result.properties["Converges"].queries
    assert len(qs) == 9 and all(q.answer == "unsat" for q in qs)


def test_other_variants_are_unknown_not_proved() -> None:
    result = prove_all_tabs({"dedupe", "keep_verifying"})
    assert result.properties["Converges"].status == UNKNOWN and not result.ok

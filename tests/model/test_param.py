"""Parameterized (all tabs) proofs."""
from __future__ import annotations

from collections import Counter

import pytest

from kvheal.model import param
from kvheal.model.param import prove_all_tabs
from kvheal.model.prove import PROVED, UNKNOWN


def test_atomic_dedupe_converges_for_every_number_of_tabs() -> None:
    result = prove_all_tabs({"atomic_cache", "dedupe"})
    assert {n: p.status for n, p in result.properties.items()} == {
        "AckedIsStored": PROVED, "CacheFromStore": PROVED, "NoDuplicates": PROVED, "Converges": PROVED}
    qs = result.properties["Converges"].queries
    assert len(qs) == 9 and all(q.answer == "unsat" for q in qs)


def _kinds(queries) -> Counter:
    return Counter(q.name.split("(")[0].rsplit("-", 1)[0] if "(" in q.name else q.name for q in queries)


def test_keep_verifying_converges_for_every_number_of_tabs() -> None:
    result = prove_all_tabs({"dedupe", "keep_verifying"})
    assert {n: p.status for n, p in result.properties.items()} == {
        "AckedIsStored": PROVED, "CacheFromStore": PROVED, "NoDuplicates": PROVED, "Converges": PROVED}
    conv = result.properties["Converges"]
    assert all(q.answer == "unsat" for q in conv.queries)
    # 9 action schemas; per-message chain over 5 designated steps; ghost levels.
    assert _kinds(conv.queries) == Counter({
        "init": 1, "step": 9, "post-frame": 9, "post-advances": 4, "post-enabled": 1, "cache-frame": 9,
        "chain-no-increase": 9, "chain-designated": 1, "chain-enabled": 5, "chain-helps": 5,
        "acked-stays": 9, "ghost": 9, "level": 9, "top-no-new": 9, "writer-stays": 9,
        "level-falls": 1, "level-zero": 1})
    assert not any("FiniteEffectiveWrites" in a for a in result.assumptions)  # no extra assumption
    assert "weak fairness" in conv.note


def test_keep_verifying_premises_are_not_vacuous(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without AckedIsPending (a tab that may drop an id), the chain's PollDone premises fail."""
    orig = param._KeepVerifying.invariant

    def weaker(self):
        parts = orig(self)
        parts.pop("AckedIsPending")
        return parts

    monkeypatch.setattr(param._KeepVerifying, "invariant", weaker)
    conv = prove_all_tabs({"dedupe", "keep_verifying"}).properties["Converges"]
    assert conv.status == UNKNOWN
    assert sorted(q.name for q in conv.queries if q.answer != "unsat") == [
        "chain-helps-PollDone(t1)", "chain-no-increase-PollDone(t1)"]


def test_ghost_levels_catch_a_wrong_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A heal that could write as many missing ids as the cache lacks breaks the level argument."""
    import z3

    orig = z3.If

    def no_minus_one(c, a, b, ctx=None):  # the effective read's bound nm - 1 becomes nm
        if isinstance(a, z3.ArithRef) and str(a) == "nm - 1":
            a = z3.Int("nm")
        return orig(c, a, b, ctx)

    monkeypatch.setattr(z3, "If", no_minus_one)
    conv = prove_all_tabs({"dedupe", "keep_verifying"}).properties["Converges"]
    assert conv.status == UNKNOWN
    assert [q.name for q in conv.queries if q.answer != "unsat"] == ["top-no-new-HealRead(m1)"]


def test_other_variants_are_unknown_not_proved() -> None:
    for variants in ({"dedupe"}, set(), {"dedupe", "sweeper"}):
        result = prove_all_tabs(variants)
        assert result.properties["Converges"].status == UNKNOWN and not result.ok

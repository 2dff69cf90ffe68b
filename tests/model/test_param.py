"""Parameterized (all tabs) proofs."""
from __future__ import annotations

import re
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
    """Query names without the action schema they are about."""
    return Counter(re.sub(r"-(Post|Poll|Heal|Sweep)\w*(\(\w*\))?$", "", q.name) for q in queries)


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


def test_sweeper_converges_for_every_number_of_tabs() -> None:
    result = prove_all_tabs({"dedupe", "sweeper"})
    assert {n: p.status for n, p in result.properties.items()} == {
        "AckedIsStored": PROVED, "CacheFromStore": PROVED, "NoDuplicates": PROVED, "Converges": PROVED}
    conv = result.properties["Converges"]
    assert all(q.answer == "unsat" for q in conv.queries)
    # 12 action schemas; the chain is the sweeper's 3 steps; two writers and two readers in W.
    assert _kinds(conv.queries) == Counter({
        "init": 1, "step": 12, "post-frame": 12, "post-advances": 4, "post-enabled": 1, "cache-frame": 12,
        "chain-no-increase": 12, "chain-designated": 1, "chain-enabled": 3, "chain-helps": 3,
        "acked-stays": 12, "ghost": 12, "level": 12, "top-no-new": 12, "writer-stays": 12,
        "sweeper-stays": 11, "level-falls": 2, "level-zero": 2})
    assert "sweeper's loop" in conv.note


def test_other_variants_are_unknown_not_proved() -> None:
    for variants in ({"dedupe"}, set(), {"dedupe", "sweeper", "keep_verifying"}, {"dedupe", "tab_crash"}):
        result = prove_all_tabs(variants)
        assert result.properties["Converges"].status == UNKNOWN and not result.ok


@pytest.mark.parametrize("variant,tabs,per_tab,stride", [
    ("dedupe,keep_verifying", 2, 1, 10), ("dedupe,keep_verifying", 1, 2, 4),
    ("dedupe,sweeper", 2, 1, 120), ("dedupe,sweeper", 1, 2, 120)])
def test_all_tabs_encoding_agrees_with_the_explicit_model(variant: str, tabs: int, per_tab: int, stride: int) -> None:
    """With Msg and Tab closed to the config's ids, each schema at each parameter admits exactly
    the explicit model's successor (and nothing where the explicit instance is disabled)."""
    import z3

    from kvheal.model import Config, KVHealModel
    from kvheal.model.symbolic import SymbolicModel

    cfg = Config.make(tabs=tabs, per_tab=per_tab, variants=variant)
    sweeper = "sweeper" in variant
    model, sym = KVHealModel(cfg), SymbolicModel(cfg)
    kv = param._KeepVerifying(keep_verifying=not sweeper, sweeper=sweeper)
    M, T = cfg.messages, cfg.tabs
    E = [z3.Const(f"e{i}", kv.Msg) for i in range(M)]
    A = [z3.Const(f"a{i}", kv.Tab) for i in range(T)]
    x, y = z3.Const("x", kv.Msg), z3.Const("y", kv.Tab)
    closed = [z3.Distinct(*E), z3.ForAll([x], z3.Or([x == e for e in E])),
              z3.Distinct(*A) if T > 1 else z3.BoolVal(True), z3.ForAll([y], z3.Or([y == a for a in A]))]
    closed += [kv.owner(E[m]) == A[cfg.owner(m)] for m in range(M)]
    post = [kv.UNSENT, kv.KEYW, kv.PREAD, kv.CW, kv.ACKED]
    heal = [kv.IDLE, kv.REQ, kv.KEYR, kv.HREAD]

    def enc(st: dict, v: dict) -> list:
        out = []
        for m in range(M):
            out += [st["post"](E[m]) == post[v[f"post[{m}]"]], st["stored"](E[m]) == v[f"stored[{m}]"],
                    st["cache"](E[m]) == (v[f"cache[{m}]"] >= 1), st["heal"](E[m]) == heal[v[f"heal[{m}]"]],
                    st["pending"](E[m]) == v[f"pending[{cfg.owner(m)}][{m}]"]]
            out += [st["psnap"](E[m], E[j]) == (v[f"postsnap[{m}][{j}]"] >= 1) for j in range(M)]
            out += [st["hsnap"](E[m], E[j]) == (v[f"healsnap[{m}][{j}]"] >= 1) for j in range(M)]
        for t in range(T):
            out.append(st["poll"](A[t]) == v[f"poll[{t}]"])
            out += [st["snap"](A[t], E[j]) == (v[f"pollsnap[{t}][{j}]"] >= 1) for j in range(M)]
        if sweeper:
            out.append(st["sweep"] == [kv.SIDLE, kv.SLISTED, kv.SREAD][v["sweep"]])
            out += [st["slist"](E[j]) == v[f"sweeplist[{j}]"] for j in range(M)]
            out += [st["ssnap"](E[j]) == (v[f"sweepsnap[{j}]"] >= 1) for j in range(M)]
        return out

    (s0,) = model.init_states()
    states, seen = [s0], {s0}
    for s in states:
        if len(states) >= 12_000:  # the sweeper's spaces are large: sample the first BFS layers
            break
        for _, t in model.successors(s):
            if t not in seen:
                seen.add(t)
                states.append(t)
    checked = 0
    for s in states[::stride]:
        want = {(model.instances[lab].name, model.instances[lab].pairs): sym.values_of(model.view(t))
                for lab, t in model.successors(s)}
        slv = z3.Solver()
        slv.add(*closed, *enc(kv.s, sym.values_of(model.view(s))))
        for name, (_, rel, _) in kv.actions().items():
            params = ([(kv.m1, E[m], (("m", m),)) for m in range(M)] if "m1" in name
                      else [(kv.t1, A[t], (("t", t),)) for t in range(T)] if "t1" in name
                      else [(z3.BoolVal(True), z3.BoolVal(True), ())])
            for var, val, pairs in params:
                key = (name.split("(")[0], pairs)
                slv.push()
                slv.add(var == val, rel)
                if key in want:
                    assert slv.check() == z3.sat, (key, model.view(s))
                    slv.add(z3.Not(z3.And(enc(kv.s2, want[key]))))
                assert slv.check() == z3.unsat, (key, model.view(s))
                slv.pop()
                checked += 1
    assert checked > 400

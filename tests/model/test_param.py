"""Parameterized (all tabs) proofs."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections import Counter
from collections.abc import Callable

import pytest
import z3

from kvheal.model import param
from kvheal.model.dsl import DefinitionError
from kvheal.model.param import prove_all_tabs
from kvheal.model.prove import PROVED, UNKNOWN


def test_atomic_dedupe_converges_for_every_number_of_tabs() -> None:
    result = prove_all_tabs({"atomic_cache", "dedupe"})
    assert {n: p.status for n, p in result.properties.items()} == {
        "AckedIsStored": PROVED,
        "CacheFromStore": PROVED,
        "NoDuplicates": PROVED,
        "Converges": PROVED,
    }
    qs = result.properties["Converges"].queries
    assert len(qs) == 9 and all(q.answer == "unsat" for q in qs)


def _kinds(queries) -> Counter:
    """Query names without the action schema they are about."""
    return Counter(re.sub(r"-(Post|Poll|Heal|Sweep|Reload|Tick)\w*(\(\w*\))?$", "", q.name) for q in queries)


def test_keep_verifying_converges_for_every_number_of_tabs() -> None:
    result = prove_all_tabs({"dedupe", "keep_verifying"})
    assert {n: p.status for n, p in result.properties.items()} == {
        "AckedIsStored": PROVED,
        "CacheFromStore": PROVED,
        "NoDuplicates": PROVED,
        "Converges": PROVED,
    }
    conv = result.properties["Converges"]
    assert all(q.answer == "unsat" for q in conv.queries)
    # 9 action schemas; per-message chain over 5 designated steps; ghost levels.
    assert _kinds(conv.queries) == Counter(
        {
            "init": 1,
            "step": 9,
            "post-frame": 9,
            "post-advances": 4,
            "post-enabled": 1,
            "cache-frame": 9,
            "chain-no-increase": 9,
            "chain-designated": 1,
            "chain-enabled": 5,
            "chain-helps": 5,
            "acked-stays": 9,
            "ghost": 9,
            "level": 9,
            "top-no-new": 9,
            "writer-stays": 9,
            "level-falls": 1,
            "level-zero": 1,
        }
    )
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
        "chain-helps-PollDone(t1)",
        "chain-no-increase-PollDone(t1)",
    ]


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
        "AckedIsStored": PROVED,
        "CacheFromStore": PROVED,
        "NoDuplicates": PROVED,
        "Converges": PROVED,
    }
    conv = result.properties["Converges"]
    assert all(q.answer == "unsat" for q in conv.queries)
    # 12 action schemas; the chain is the sweeper's 3 steps; two writers and two readers in W.
    assert _kinds(conv.queries) == Counter(
        {
            "init": 1,
            "step": 12,
            "post-frame": 12,
            "post-advances": 4,
            "post-enabled": 1,
            "cache-frame": 12,
            "chain-no-increase": 12,
            "chain-designated": 1,
            "chain-enabled": 3,
            "chain-helps": 3,
            "acked-stays": 12,
            "ghost": 12,
            "level": 12,
            "top-no-new": 12,
            "writer-stays": 12,
            "sweeper-stays": 11,
            "level-falls": 2,
            "level-zero": 2,
        }
    )
    assert "sweeper's loop" in conv.note


FIXED_PROPERTIES = (
    "AckedIsStored",
    "CacheFromStore",
    "NoDuplicates",
    "HealOnlyMissing",
    "HealsTerminate",
    "Converges",
    "PendingDrains",
    "EveryoneSees",
)


def _failing(result) -> list[str]:
    return sorted({q.name for p in result.properties.values() for q in p.queries if q.answer != "unsat"})


def test_as_built_fixed_for_every_number_of_tabs() -> None:
    """The fix (preset as_built_fixed): its eight §7 properties for every number of tabs and
    messages, from one inductive invariant and three ranking arguments."""
    result = prove_all_tabs({"as_built_fixed"})
    assert {n: p.status for n, p in result.properties.items()} == dict.fromkeys(FIXED_PROPERTIES, PROVED)
    assert result.ok and result.assumptions == param.FIXED_ASSUMPTIONS
    assert all(q.answer == "unsat" for p in result.properties.values() for q in p.queries)
    safety = {"init": 1, "step": 12}
    heal = {
        "acked-stays": 12,
        "cached-stays": 12,
        "heal-no-increase": 12,
        "heal-designated": 1,
        "heal-enabled": 4,
        "heal-helps": 4,
    }
    for name in ("AckedIsStored", "CacheFromStore", "HealOnlyMissing", "HealsTerminate"):
        assert _kinds(result.properties[name].queries) == Counter({**safety, f"{name}-implied": 1})
    assert _kinds(result.properties["NoDuplicates"].queries) == Counter(safety)
    assert _kinds(result.properties["Converges"].queries) == Counter({**safety, **heal})
    assert _kinds(result.properties["PendingDrains"].queries) == Counter(
        {
            **safety,
            **heal,
            "drained-stays": 12,
            "drain-no-increase": 12,
            "drain-designated": 1,
            "drain-enabled": 2,
            "drain-helps": 2,
        }
    )
    assert _kinds(result.properties["EveryoneSees"].queries) == Counter(
        {
            **safety,
            **heal,
            "shown-no-increase": 12,
            "shown-designated": 1,
            "shown-enabled": 2,
            "shown-helps": 2,
        }
    )
    assert (
        "no heal can fail" in result.properties["Converges"].note
        and "escape" in result.properties["Converges"].note
    )


def test_as_built_fixed_premises_say_something() -> None:
    """Each query asked again without its last assertion (the negated conclusion): only three
    hold vacuously, and for a reason: with an acknowledged id missing the one failed put has
    happened, so no put can fail (two no-increase premises), and HealCache(m0) always caches m0."""
    from kvheal.model.smtlib import capture, paired, qualified_enums

    with qualified_enums(), capture() as calls:
        proof = prove_all_tabs({"as_built_fixed"})
    qs = paired(proof, calls)
    assert len(qs) == 108 and all(q["answer"] == "unsat" for q in qs)
    assert sorted(q["name"] for q in qs if q["premises"] != "sat") == [
        "heal-helps-HealCache(m1)",
        "heal-no-increase-HealCacheFail(m1)",
        "heal-no-increase-PostCacheFail(m1)",
    ]


def _without(monkeypatch: pytest.MonkeyPatch, part: str) -> None:
    orig = param._Fixed.invariant

    def weaker(self):
        parts = orig(self)
        parts.pop(part)
        return parts

    monkeypatch.setattr(param._Fixed, "invariant", weaker)


def test_as_built_fixed_heals_terminate_needs_its_strengthening(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without LastHealPollsSee a poll could send a third heal: no property is proved."""
    _without(monkeypatch, "LastHealPollsSee")
    result = prove_all_tabs({"as_built_fixed"})
    assert {p.status for p in result.properties.values()} == {UNKNOWN}
    assert _failing(result) == ["step-PollDone(t1)"]


def test_as_built_fixed_convergence_premises_are_not_vacuous(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without UncachedAckIsPending (a missing acknowledged id might be off its owner's list)
    the invariant still holds, but the owner's poll need not heal it: the goals are unknown."""
    _without(monkeypatch, "UncachedAckIsPending")
    result = prove_all_tabs({"as_built_fixed"})
    assert [n for n, p in result.properties.items() if p.status == PROVED] == list(FIXED_PROPERTIES[:5])
    assert _failing(result) == ["heal-helps-PollDone(t1)", "heal-no-increase-PollDone(t1)"]


def test_as_built_fixed_reloads_are_the_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tab that could reload again and again (each reload ends its poll and empties its page each time)
    breaks every ranking: the one reload per tab is what the escape rests on."""
    orig = param._Fixed._steps

    def again(self):
        out = orig(self)
        s, t1 = self.s, self.t1
        _, _, eff = out["Reload"]
        out["Reload"] = (
            z3.BoolVal(True),
            z3.And(
                self.upd_tab("poll", lambda t: z3.And(s["poll"](t), t != t1)),
                self.upd_pairs("snap", lambda t, x: z3.And(s["snap"](t, x), t != t1)),
                self.upd_pairs("shown", lambda t, x: z3.And(s["shown"](t, x), t != t1)),
                *self.same("poll", "snap", "shown"),
            ),
            eff,
        )
        return out

    monkeypatch.setattr(param._Fixed, "_steps", again)
    result = prove_all_tabs({"as_built_fixed"})
    assert [n for n, p in result.properties.items() if p.status == PROVED] == list(FIXED_PROPERTIES[:5])
    assert _failing(result) == [
        "drain-no-increase-Reload(t1)",
        "heal-no-increase-Reload(t1)",
        "shown-no-increase-Reload(t1)",
    ]


def test_as_built_fixed_takes_only_its_faults_as_unforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(param, "FIXED_UNFORCED", ("PostCacheFail", "PostFail", "HealCacheFail"))
    with pytest.raises(DefinitionError, match=r"assumes weak fairness, but \['Reload'\] are unfair"):
        param.encoding("as_built_fixed").steps()


def test_as_built_fixed_rankings_lean_on_fair_steps_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ranking whose designated step the definition did not make fair is refused."""
    orig = param.name_steps

    def poll_done_unfair(*args, **kwargs):
        out = orig(*args, **kwargs)
        out["PollDone"] = dataclasses.replace(out["PollDone"], fair=False)
        return out

    monkeypatch.setattr(param, "name_steps", poll_done_unfair)
    with pytest.raises(
        DefinitionError, match=r"heal ranking designates PollDone\(t1\), which the definition"
    ):
        prove_all_tabs({"as_built_fixed"})


def test_other_variants_are_unknown_not_proved() -> None:
    for variants in ({"dedupe"}, set(), {"dedupe", "sweeper", "keep_verifying"}, {"dedupe", "tab_crash"}):
        result = prove_all_tabs(variants)
        assert result.properties["Converges"].status == UNKNOWN and not result.ok


# ---------------------------------------------------------------------- the encodings against the model
def finite(formula: z3.ExprRef, sizes: dict[str, int]) -> Callable[[dict], bool]:
    """``formula`` of an all-tabs encoding evaluated in one finite structure: Msg and Tab are
    ``range(sizes[...])``, each quantifier a loop over them; ``V`` gives every function of the
    formula as a table (arguments tuple -> value) and every constant (a parameter ``m1``, the
    sweeper's phase) as a value; enumeration constants are their names."""
    counter = itertools.count()

    def go(e: z3.ExprRef, bound: list[str]) -> str:
        if z3.is_var(e):
            return bound[-1 - z3.get_var_index(e)]
        if z3.is_quantifier(e):
            names = [f"_q{next(counter)}" for _ in range(e.num_vars())]
            loops = " ".join(f"for {n} in range({sizes[str(e.var_sort(i))]})" for i, n in enumerate(names))
            return f"{'all' if e.is_forall() else 'any'}({go(e.body(), bound + names)} {loops})"
        if z3.is_true(e):
            return "True"
        if z3.is_false(e):
            return "False"
        k, args = e.decl().kind(), [go(c, bound) for c in e.children()]
        if k == z3.Z3_OP_DT_CONSTRUCTOR and not args:
            return repr(e.decl().name())
        if k == z3.Z3_OP_UNINTERPRETED:
            name = e.decl().name()
            return f"V[{name!r}][({', '.join(args)},)]" if args else f"V[{name!r}]"
        ops = {
            z3.Z3_OP_AND: lambda a: "(" + " and ".join(a) + ")",
            z3.Z3_OP_OR: lambda a: "(" + " or ".join(a) + ")",
            z3.Z3_OP_NOT: lambda a: f"(not {a[0]})",
            z3.Z3_OP_IMPLIES: lambda a: f"((not {a[0]}) or {a[1]})",
            z3.Z3_OP_EQ: lambda a: f"({a[0]} == {a[1]})",
            z3.Z3_OP_ITE: lambda a: f"({a[1]} if {a[0]} else {a[2]})",
            z3.Z3_OP_DISTINCT: lambda a: f"(len({{{', '.join(a)}}}) == {len(a)})",
        }
        if k not in ops:
            raise ValueError(f"not in the finite fragment: {e.decl()}")
        return ops[k](args)

    return eval(f"lambda V: {go(formula, [])}")  # noqa: S307 - code generated from our own formulas


def tables(enc, view: dict, cfg, tag: str = "") -> dict:
    """An explicit state (its view) as the all-tabs encoding's functions (suffixed ``tag``):
    Msg and Tab are the configuration's ids, every snapshot the set of ids it holds."""
    M, T = cfg.messages, cfg.tabs

    def held(phase: tuple, name: str) -> set:
        return set(phase[1]) if phase[0] == name else set()

    out = {
        "post": {(m,): view["post"][m][0] for m in range(M)},
        "cache": {(m,): m in view["cache"] for m in range(M)},
        "pending": {(m,): m in view["pending"][cfg.owner(m)] for m in range(M)},
        "heal": {(m,): view["heal"][m][0] for m in range(M)},
        "poll": {(t,): view["poll"][t][0] == "Read" for t in range(T)},
        "snap": {(t, j): j in held(view["poll"][t], "Read") for t in range(T) for j in range(M)},
    }
    if "stored" in enc.s:  # as_built_fixed derives it, as the definition does
        out["stored"] = {(m,): m in view["stored"] for m in range(M)}
    if "shown" in enc.s:  # as_built_fixed: the tab view, the reloads, the failed put, the ghost
        out["clock"] = f"Clock{view['clock']}"
        out["shown"] = {(t, j): j in view["shown"][t] for t in range(T) for j in range(M)}
        out["reloaded"] = {(t,): view["reloaded"][t] for t in range(T)}
        out["put_failed"] = view["put_failed"]
        out["heals"] = {(m,): f"Heals{view['heals'][m]}" for m in range(M)}
    if "psnap" in enc.s:
        out["psnap"] = {(m, j): j in held(view["post"][m], "CacheRead") for m in range(M) for j in range(M)}
        out["hsnap"] = {(m, j): j in held(view["heal"][m], "CacheRead") for m in range(M) for j in range(M)}
    if "sweep" in enc.s:
        sweep = view["sweep"]
        out["sweep"] = sweep[0]
        out["slist"] = {(j,): sweep[0] != "Idle" and j in sweep[1] for j in range(M)}
        out["ssnap"] = {(j,): sweep[0] == "Read" and j in sweep[2] for j in range(M)}
    assert set(out) == set(enc.s)
    return {k + tag: v for k, v in out.items()}


#: (design, tabs, per_tab) -> (reachable states, explicit transitions): every one checked.
ENCODING_SIZES = {
    ("atomic_cache,dedupe", 2, 1): (780, 2692),
    ("atomic_cache,dedupe", 1, 2): (202, 504),
    ("atomic_cache,dedupe", 3, 1): (60230, 308526),
    ("dedupe,keep_verifying", 2, 1): (1318, 4708),
    ("dedupe,keep_verifying", 1, 2): (364, 956),
    ("dedupe,keep_verifying", 3, 1): (426612, 2260704),
    ("dedupe,sweeper", 2, 1): (102083, 470617),
    ("dedupe,sweeper", 1, 2): (24231, 87606),
    ("as_built_fixed", 1, 1): (326, 853),
    ("as_built_fixed", 1, 2): (10048, 33086),
    ("as_built_fixed", 2, 1): (157128, 729056),
}
#: Past about 10 s: in ``pytest -m slow`` (each about 0.5 ms per state).
SLOW_SIZES = {
    ("atomic_cache,dedupe", 3, 1),
    ("dedupe,keep_verifying", 3, 1),
    ("dedupe,sweeper", 2, 1),
    ("as_built_fixed", 2, 1),
}


def test_every_all_tabs_design_is_checked_against_the_model() -> None:
    assert {d for d, _, _ in ENCODING_SIZES} == set(param.ALL_TABS_DESIGNS)
    for design in param.ALL_TABS_DESIGNS:  # the schemas are the definition's actions, in its order
        assert list(param.encoding(design).steps()) == [
            a.name for a in param.design_actions(design.split(","))
        ]


def test_an_encoding_that_misses_an_action_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    orig = param._KeepVerifying._steps

    def fewer(self):
        out = orig(self)
        out.pop("HealRead")
        out["HealMaybe"] = out["HealKey"]
        return out

    monkeypatch.setattr(param._KeepVerifying, "_steps", fewer)
    with pytest.raises(DefinitionError, match=r"lacks \['HealRead'\], it has \['HealMaybe'\]"):
        param.encoding("dedupe,keep_verifying").steps()


@pytest.mark.parametrize("design", param.ALL_TABS_DESIGNS)
def test_all_tabs_steps_are_deterministic(design: str) -> None:
    """For every size: a schema relates a state to at most one next state (so a schema that
    admits the explicit successor admits nothing else)."""
    enc = param.encoding(design)
    s2, s3 = enc.s2, enc.state("''")
    funs = [(s2[k], s3[k]) for k in enc.s if isinstance(s2[k], z3.FuncDeclRef)]
    consts = [(s2[k], s3[k]) for k in enc.s if not isinstance(s2[k], z3.FuncDeclRef)]

    def differ(k: str) -> z3.BoolRef:
        f = s2[k]
        if not isinstance(f, z3.FuncDeclRef):
            return f != s3[k]
        xs = [z3.Const(f"x{i}", f.domain(i)) for i in range(f.arity())]
        return z3.Exists(xs, f(*xs) != s3[k](*xs))

    for st in enc.steps().values():
        other = z3.substitute_funs(
            z3.substitute(st.rel, *consts) if consts else st.rel,
            *[(a, b(*[z3.Var(i, a.domain(i)) for i in range(a.arity())])) for a, b in funs],
        )
        slv = z3.Solver()
        slv.add(st.rel, other, z3.Or([differ(k) for k in enc.s]))
        assert slv.check() == z3.unsat, st.label


@pytest.mark.parametrize(
    "design,tabs,per_tab",
    [
        pytest.param(
            d, t, k, marks=[pytest.mark.slow, pytest.mark.timeout(3600)] if (d, t, k) in SLOW_SIZES else []
        )
        for d, t, k in ENCODING_SIZES
    ],
)
def test_all_tabs_encoding_agrees_with_the_explicit_model(design: str, tabs: int, per_tab: int) -> None:
    """The hand-written all-tabs encoding, instantiated with Msg and Tab the configuration's ids
    (evaluated by :func:`finite`), against the explicit model, on every reachable state: the
    invariant ``Inv`` holds; for each schema (named by the definition's action) at each value
    of its parameter, the explicit instance of that action with that argument is enabled iff
    the schema's guard holds, and then the schema relates the state to the explicit successor
    (with ``test_all_tabs_steps_are_deterministic``: to it alone); ``Init`` holds in the initial
    state; where the encoding states the §7 properties (``as_built_fixed``), each statement is
    the definition's property in every reachable state. The sizes of ``SLOW_SIZES`` (tabs 3; ``dedupe,sweeper`` at tabs 2: 60k-430k states) are
    ``slow``: ``pytest -m slow tests/model/test_param.py`` checks them, every state too."""
    from kvheal.model import Config, KVHealModel
    from kvheal.model.dsl import args_of

    cfg = Config.make(tabs=tabs, per_tab=per_tab, variants=design)
    model, enc = KVHealModel(cfg), param.encoding(design)
    sizes = {"Msg": cfg.messages, "Tab": cfg.tabs}
    owner = {"owner": {(m,): cfg.owner(m) for m in range(cfg.messages)}}
    steps = []
    for st in enc.steps().values():
        values = range(cfg.tabs) if st.per == "t" else range(cfg.messages) if st.per else [None]
        labels = [model.action(st.action, args_of(st.per, v) if st.per else {}).label for v in values]
        name = str(st.param) if st.param is not None else None
        steps.append((st, name, finite(st.guard, sizes), finite(st.rel, sizes), list(zip(values, labels))))
    inv = {name: finite(f(enc.s), sizes) for name, f in enc.invariant().items()}
    stated = {}  # the §7 properties as the encoding states them (as_built_fixed): the definition's
    if hasattr(enc, "goals"):
        stated = {n: finite(f, sizes) for n, f in {**enc.properties(enc.s), **enc.goals(enc.s)}.items()}
        props = {p.name: p.holds for p in model.properties()}
        assert set(stated) | {"NoDuplicates"} == set(props)
    (s0,) = model.init_states()
    assert finite(enc.init(), sizes)({**owner, **tables(enc, model.view(s0), cfg)})
    primed: dict = {}  # state -> its tables as s' (computed once per state)

    def after(t) -> dict:
        got = primed.get(t)
        if got is None:
            got = primed[t] = tables(enc, model.view(t), cfg, "'")
        return got

    seen, queue, transitions = {s0}, [s0], 0
    for s in queue:
        succ = dict(model.successors(s))
        V = {**owner, **{k[:-1]: v for k, v in after(s).items()}}
        bad = [name for name, holds in inv.items() if not holds(V)]
        assert not bad, (bad, model.view(s))
        differ = [name for name, holds in stated.items() if holds(V) != props[name](s)]
        assert not differ, (differ, model.view(s))
        for st, name, guard, rel, instances in steps:
            for value, label in instances:
                if name is not None:
                    V[name] = value
                t = succ.get(label)
                if t is None:
                    assert not guard(V), (st.label, value, model.view(s))
                    continue
                transitions += 1
                assert rel({**V, **after(t)}), (st.label, value, model.view(s))
        for t in succ.values():
            if t not in seen:
                seen.add(t)
                queue.append(t)
    assert (len(queue), transitions) == ENCODING_SIZES[(design, tabs, per_tab)]

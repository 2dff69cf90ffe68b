"""Parameterized proofs: properties for every number of tabs (and messages), with tabs and
messages as uninterpreted sorts and the state as functions over them.

The queries stay in EPR (effectively propositional logic: only universal quantifiers under
the invariant, phases as finite enumerations, the one function ``owner : Msg → Tab``
pointing from messages to tabs), so z3 decides them.

Done for ``atomic_cache,dedupe`` (with a cache capacity of at least the number of messages):
the invariant ``Inv`` below is inductive for every size, and it implies the goal of
``Converges`` in every reachable state, so ``Converges`` holds with no fairness assumption
at all (the goal is an invariant). Other variants get ``unknown``: the ranking argument of
:mod:`kvheal.model.prove` for ``dedupe,keep_verifying`` counts sets (its Φ term), which is
outside EPR; its parameterized proof is not done.
"""
from __future__ import annotations

import time
from collections.abc import Iterable

import z3

from .config import ConfigError, VARIANTS
from .prove import PROVED, UNKNOWN, PropertyProof, Query

ASSUMPTIONS = (
    "Any number of tabs T ≥ 1 and messages (each message has one owner tab; a tab posts each of "
    "its messages once, so posts are finite); the cache capacity is at least the number of "
    "messages (SPEC §2's default T·K), so with dedupe nothing is ever trimmed.",
    "No fairness is needed for atomic_cache,dedupe: its Converges goal is an invariant.",
)


class ParamResult:
    """The parameterized verdicts, shaped like :class:`kvheal.model.prove.ProveResult`."""

    def __init__(self, variants: frozenset[str], properties: dict[str, PropertyProof], seconds: float,
                 invariant: list[str]) -> None:
        self.variants, self.properties, self.seconds, self.invariant = variants, properties, seconds, invariant
        self.assumptions = ASSUMPTIONS
        label = ",".join(v for v in VARIANTS if v in variants) or "seed"
        self.config = type("AllTabs", (), {"tabs": "all", "per_tab": "any", "cap": "≥ messages",
                                           "variant_label": staticmethod(lambda: label)})()

    @property
    def ok(self) -> bool:
        return all(p.status == PROVED for p in self.properties.values())

    @property
    def violated(self) -> bool:
        return False

    def as_json(self) -> dict:
        return {"tabs": "all", "variant": self.config.variant_label(), "seconds": round(self.seconds, 3),
                "invariant": self.invariant, "assumptions": list(self.assumptions),
                "properties": {n: p.as_json() for n, p in self.properties.items()}}


def _atomic_dedupe() -> tuple[dict[str, PropertyProof], list[str]]:
    Tab, Msg = z3.DeclareSort("Tab"), z3.DeclareSort("Msg")
    Post, (UNSENT, KEYW, CW, ACKED) = z3.EnumSort("Post", ["Unsent", "KeyWritten", "CacheWritten", "Acked"])
    Heal, (IDLE, REQ, KEYR) = z3.EnumSort("Heal", ["Idle", "Requested", "KeyRead"])
    owner = z3.Function("owner", Msg, Tab)
    m, j = z3.Consts("m j", Msg)
    t, u = z3.Consts("t u", Tab)

    def state(tag: str) -> dict:
        return {"post": z3.Function(f"post{tag}", Msg, Post), "stored": z3.Function(f"stored{tag}", Msg, z3.BoolSort()),
                "cache": z3.Function(f"cache{tag}", Msg, z3.BoolSort()),
                "pending": z3.Function(f"pending{tag}", Msg, z3.BoolSort()),
                "poll": z3.Function(f"poll{tag}", Tab, z3.BoolSort()),
                "snap": z3.Function(f"snap{tag}", Tab, Msg, z3.BoolSort()),
                "heal": z3.Function(f"heal{tag}", Msg, Heal)}

    s, s2 = state(""), state("'")
    m0, t0 = z3.Const("m0", Msg), z3.Const("t0", Tab)

    def same(*except_: str) -> list[z3.BoolRef]:
        out = []
        for k in ("post", "stored", "cache", "pending", "heal"):
            if k not in except_:
                out.append(z3.ForAll([m], s2[k](m) == s[k](m)))
        if "poll" not in except_:
            out.append(z3.ForAll([t], s2["poll"](t) == s["poll"](t)))
        if "snap" not in except_:
            out.append(z3.ForAll([t, m], s2["snap"](t, m) == s["snap"](t, m)))
        return out

    def upd(k: str, key: z3.ExprRef, val: z3.ExprRef) -> z3.BoolRef:
        return z3.ForAll([m], s2[k](m) == z3.If(m == key, val, s[k](m)))

    actions = {
        "PostKey(m0)": z3.And(s["post"](m0) == UNSENT, upd("post", m0, KEYW), upd("stored", m0, z3.BoolVal(True)),
                              *same("post", "stored")),
        "PostCache(m0)": z3.And(s["post"](m0) == KEYW, upd("post", m0, CW), upd("cache", m0, z3.BoolVal(True)),
                                *same("post", "cache")),
        "PostAck(m0)": z3.And(s["post"](m0) == CW, upd("post", m0, ACKED), upd("pending", m0, z3.BoolVal(True)),
                              *same("post", "pending")),
        "PollRead(t0)": z3.And(z3.Not(s["poll"](t0)),
                               z3.ForAll([t], s2["poll"](t) == z3.Or(s["poll"](t), t == t0)),
                               z3.ForAll([t, m], s2["snap"](t, m) == z3.If(t == t0, s["cache"](m), s["snap"](t, m))),
                               *same("poll", "snap")),
        "PollDone(t0)": z3.And(
            s["poll"](t0), z3.ForAll([t], s2["poll"](t) == z3.And(s["poll"](t), t != t0)),
            z3.ForAll([t, m], s2["snap"](t, m) == z3.And(s["snap"](t, m), t != t0)),
            z3.ForAll([m], s2["pending"](m) == z3.And(s["pending"](m), z3.Not(z3.And(owner(m) == t0, s["snap"](t0, m))))),
            z3.ForAll([m], s2["heal"](m) == z3.If(z3.And(owner(m) == t0, s["pending"](m), z3.Not(s["snap"](t0, m)),
                                                         s["heal"](m) == IDLE), REQ, s["heal"](m))),
            *same("poll", "snap", "pending", "heal")),
        "HealKey(m0)": z3.And(s["heal"](m0) == REQ, upd("heal", m0, z3.If(s["stored"](m0), KEYR, IDLE)), *same("heal")),
        "HealCache(m0)": z3.And(s["heal"](m0) == KEYR, upd("heal", m0, IDLE), upd("cache", m0, z3.BoolVal(True)),
                                *same("heal", "cache")),
    }
    inv_parts = {
        "StoredIsPosted": lambda st: z3.ForAll([m], st["stored"](m) == (st["post"](m) != UNSENT)),
        "WrittenIsCached": lambda st: z3.ForAll([m], z3.Implies(z3.Or(st["post"](m) == CW, st["post"](m) == ACKED), st["cache"](m))),
        "CacheFromStore": lambda st: z3.ForAll([m], z3.Implies(st["cache"](m), st["stored"](m))),
        "HealsAreAcked": lambda st: z3.ForAll([m], z3.Implies(st["heal"](m) != IDLE, st["post"](m) == ACKED)),
        "PendingIsAcked": lambda st: z3.ForAll([m], z3.Implies(st["pending"](m), st["post"](m) == ACKED)),
    }
    init = z3.And(z3.ForAll([m], z3.And(s["post"](m) == UNSENT, z3.Not(s["stored"](m)), z3.Not(s["cache"](m)),
                                        z3.Not(s["pending"](m)), s["heal"](m) == IDLE)),
                  z3.ForAll([t], z3.Not(s["poll"](t))), z3.ForAll([t, m], z3.Not(s["snap"](t, m))))
    inv = z3.And([f(s) for f in inv_parts.values()])
    inv2 = z3.And([f(s2) for f in inv_parts.values()])
    queries: list[Query] = []

    def ask(name: str, purpose: str, formula: str, *facts: z3.BoolRef) -> bool:
        slv = z3.Solver()
        slv.add(*facts)
        t1 = time.perf_counter()
        ans = str(slv.check())
        queries.append(Query(name, purpose, formula, "unsat", ans, time.perf_counter() - t1))
        return ans == "unsat"

    ok = ask("init", "does every initial state, for any number of tabs and messages, satisfy Inv?",
             "Init(s) ∧ ¬Inv(s)", init, z3.Not(inv))
    for name, act in actions.items():
        ok &= ask(f"step-{name}", f"does {name} keep Inv, for every size?", f"Inv(s) ∧ {name}(s,s') ∧ ¬Inv(s')",
                  inv, act, z3.Not(inv2))
    goal = z3.ForAll([m], z3.Implies(s["post"](m) == ACKED, s["cache"](m)))
    ok_goal = ask("goal", "does Inv imply that every acknowledged message is in the cache?",
                  "Inv(s) ∧ ¬(∀m. post(m) = Acked → cache(m))", inv, z3.Not(goal))
    nodup = ok  # the cache is a set: ids are added only by `cache(m) := true`
    out: dict[str, PropertyProof] = {}
    for name, holds in (("AckedIsStored", ok), ("CacheFromStore", ok), ("NoDuplicates", nodup),
                        ("Converges", ok and ok_goal)):
        pf = PropertyProof(name, "invariant" if name != "Converges" else "eventually_always",
                           PROVED if holds else UNKNOWN, "parameterized inductive invariant (EPR)",
                           queries=list(queries), invariants=list(inv_parts))
        pf.seconds = sum(q.seconds for q in queries)
        if name == "NoDuplicates":
            pf.note = ("the cache is modelled as a set (dedupe: an id is added only when absent), "
                       "so no id repeats")
        if name == "Converges":
            pf.note = "the goal (every acknowledged message is cached) is implied by Inv in every reachable state"
        out[name] = pf
    return out, list(inv_parts)


def prove_all_tabs(variants: Iterable[str], properties: set[str] | None = None) -> ParamResult:
    """Parameterized verdicts for a variant (see the module docstring)."""
    t0 = time.perf_counter()
    vs = frozenset(variants)
    if vs == {"atomic_cache", "dedupe"}:
        props, inv = _atomic_dedupe()
    else:
        props, inv = {}, []
        for name in ("Converges",):
            pf = PropertyProof(name, "eventually_always", UNKNOWN, "none")
            pf.note = ("no parameterized argument for this variant: only atomic_cache,dedupe is done "
                       "(dedupe,keep_verifying's ranking counts sets, outside EPR)")
            props[name] = pf
    if properties:
        unknown = properties - set(props)
        if unknown:
            raise ConfigError(f"no parameterized proof of {sorted(unknown)[0]} for this variant")
        props = {n: p for n, p in props.items() if n in properties}
    return ParamResult(vs, props, time.perf_counter() - t0, inv)

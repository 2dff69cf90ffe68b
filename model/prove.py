"""z3 proofs about the kvheal model: bounded model checking, inductive invariants, and
eventual convergence (inductive invariant + ranking premises, each a one-step query).

    >>> from kvheal.model import Config
    >>> result = prove(Config.make(tabs=2, variants="atomic_cache,dedupe"))
    >>> pf = result.properties["Converges"]
    >>> pf.status, pf.method
    (<Verdict.HOLDS: 'holds'>, 'inductive invariant + heal-ranking (WF premises)')

The verdicts are :class:`~kvheal.model.results.Verdict`'s, as the explicit checker's: a
property z3 proves ``holds`` (``method`` says how: induction, a ranking argument), one it
refutes is ``violated`` (``method``: BMC or a lasso), and the rest ``unknown``.

Everything here returns values (:class:`ProveResult`, :class:`PropertyProof`, :class:`Query`);
nothing prints. A query is recorded with its purpose, its formula in words, and z3's answer,
so a report can show the whole argument.

Methods, by property kind:

* invariants: BMC with one incremental solver (one ``push``/``pop`` per depth) for the
  shortest counterexample; when none is found to the depth, a proof by induction: the
  invariant alone (1-induction, with its counterexample to induction decoded when it is
  not inductive), else the invariant plus the largest inductive subset of the named
  strengthenings of :mod:`kvheal.model.strengthen` (Houdini).
* ``Converges`` / ``PendingDrains`` / ``EveryoneSees``: the premises of a ranking argument
  (:class:`Argument`: :func:`heal_argument`, :func:`pending_argument`, :func:`drain_argument`,
  :func:`everyone_argument`) where one applies to the variant; when they do not all hold, a
  search for a fair lasso by BMC (loop closure and weak fairness as constraints on the
  unrolling), whose cost grows steeply with its depth (at tabs 2 of the as-built designs:
  about 5 s of CPU to depth 10, 25 s to 14, over 70 s to 18).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import z3

from .config import Config
from .definition import KVHEAL, POST
from .definition import channel as channel_of  # the ids a tab's channel shows (SPEC §6)
from .results import Trace, Verdict
from .strengthen import Strengthening, candidates_for
from .symbolic import (
    HEAL_CACHE_READ,
    IDLE,
    KEY_READ,
    POST_CACHE_READ,
    REQUESTED,
    SWEEP_IDLE,
    SWEEP_LISTED,
    SWEEP_READ,
    State,
    SymbolicModel,
)

#: The phase of a POST that failed after its key (``post_fails``): final, never acknowledged.
FAILED = POST.code("Failed")

#: The shared verdicts under prove's old names: proved is HOLDS, a counterexample VIOLATED.
PROVED, COUNTEREXAMPLE, UNKNOWN = Verdict.HOLDS, Verdict.VIOLATED, Verdict.UNKNOWN

#: What every convergence proof assumes, in the words reports use.
ASSUMPTIONS = (
    "Weak fairness on every action instance except Crash(t): an instance that stays enabled "
    "is eventually taken (SPEC §7); a state with no enabled action stutters for ever.",
    "Finitely many posts: each tab posts per_tab messages, once each (SPEC §2).",
    "The configuration's parameters are fixed (tabs, per_tab, cap); see the parameterized "
    "proofs of kvheal.model.param for all numbers of tabs.",
)


@dataclass
class Query:
    """One question put to z3: ``holds`` when the answer is the one the argument needs."""

    name: str
    purpose: str
    formula: str
    expect: str  # "unsat" (a premise) or "sat" (a counterexample was looked for)
    answer: str
    seconds: float
    witness: Any = None
    #: how many solver checks this query stands for (one per step for the grouped premises)
    calls: int = 1

    @property
    def holds(self) -> bool:
        return self.answer == self.expect

    def as_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "purpose": self.purpose,
            "formula": self.formula,
            "expect": self.expect,
            "answer": self.answer,
            "seconds": round(self.seconds, 4),
        }
        if self.witness is not None:
            out["witness"] = self.witness
        return out


@dataclass
class PropertyProof:
    """The verdict on one SPEC §7 property and how it was reached."""

    name: str
    kind: str
    status: Verdict = UNKNOWN
    #: how the verdict was reached: "1-induction", "bmc", "lasso bmc", "inductive invariant + ..."
    method: str = ""
    depth: int | None = None
    k: int | None = None
    seconds: float = 0.0
    queries: list[Query] = field(default_factory=list)
    trace: Trace = field(default_factory=Trace)
    cti: dict[str, Any] | None = None
    invariants: list[str] = field(default_factory=list)
    note: str = ""

    def __setattr__(self, name: str, value: Any) -> None:
        # status and trace stay typed however they are set (the engines set them late)
        if name == "status":
            value = Verdict(value)
        elif name == "trace":
            value = Trace.of(value)
        object.__setattr__(self, name, value)

    def as_json(self) -> dict[str, Any]:
        """``kvheal check --json``'s ``{"status", "trace"}`` (SPEC §9) and prove's own fields."""
        return {
            "status": str(self.status),
            "trace": self.trace.as_json(),
            "method": self.method,
            "depth": self.depth,
            "k": self.k,
            "queries": len(self.queries),
            "seconds": round(self.seconds, 3),
            "cti": self.cti,
            "invariants": self.invariants,
            "note": self.note,
            "query_log": [q.as_json() for q in self.queries],
        }


@dataclass
class ProveResult:
    """Every property's proof for one configuration."""

    config: Config
    properties: dict[str, PropertyProof]
    seconds: float
    invariant: list[str] = field(default_factory=list)
    assumptions: tuple[str, ...] = ASSUMPTIONS

    @property
    def ok(self) -> bool:
        return all(p.status == PROVED for p in self.properties.values())

    @property
    def violated(self) -> bool:
        return any(p.status == COUNTEREXAMPLE for p in self.properties.values())

    def as_json(self) -> dict[str, Any]:
        """The layout of ``kvheal check --json`` (SPEC §9): see :func:`proof_json`."""
        return proof_json(self)


def proof_json(result: Any) -> dict[str, Any]:
    """A proof result (this module's or :mod:`kvheal.model.param`'s) in the layout of
    ``kvheal check --json`` (SPEC §9), so ``kvheal replay`` reads either: ``states`` and
    ``transitions`` are null (z3 explores no state graph), ``complete`` is true when no
    verdict is unknown, ``config`` is the configuration (``"tabs": "all"`` for every number
    of tabs), and each property's ``{"status", "trace"}`` has prove's fields beside it
    (``method``, ``queries``, ...). prove's own top-level fields: ``engine``, ``invariant``,
    ``assumptions``."""
    cfg = result.config
    if isinstance(cfg, Config):
        config = {"tabs": cfg.tabs, "per_tab": cfg.per_tab, "cap": cfg.cap, "variant": sorted(cfg.variants)}
    else:  # every number of tabs (kvheal.model.param)
        config = {
            "tabs": "all",
            "per_tab": "any",
            "cap": None,
            "variant": sorted(getattr(result, "variants", ())),
        }
    props = result.properties
    return {
        "states": None,
        "transitions": None,
        "seconds": round(result.seconds, 3),
        "complete": all(p.status != UNKNOWN for p in props.values()),
        "config": config,
        "properties": {n: p.as_json() for n, p in props.items()},
        "engine": "z3",
        "invariant": list(result.invariant),
        "assumptions": list(getattr(result, "assumptions", ())),
    }


def _ask(solver: z3.Solver, *assumptions: z3.BoolRef) -> tuple[str, float]:
    t0 = time.perf_counter()
    r = solver.check(*assumptions)
    return str(r), time.perf_counter() - t0


def _trace(sym: SymbolicModel, model: z3.ModelRef, sels: list[z3.ArithRef], loop: int | None = None) -> Trace:
    steps = []
    for i, sel in enumerate(sels):
        inst = sym.instance_at(model, sel)
        step = {"action": "Stutter", "args": {}} if inst is None else inst.as_json()
        if loop is not None and i >= loop:
            step["loop"] = True
        steps.append(step)
    return Trace.from_json(steps)


# ---------------------------------------------------------------------- bounded model checking
class Unrolling:
    """One incremental solver holding ``Init(s0) ∧ T(s0,s1,a0) ∧ … ∧ T(sk-1,sk,ak-1)``."""

    def __init__(self, sym: SymbolicModel, stutter: bool = False, tag: str = "") -> None:
        self.sym, self.stutter, self.tag = sym, stutter, tag
        self.solver = z3.Solver()
        self.states: list[State] = [sym.fresh(f"{tag}0")]
        self.sels: list[z3.ArithRef] = []
        self.solver.add(sym.init(self.states[0]))

    @property
    def depth(self) -> int:
        return len(self.sels)

    def extend(self) -> None:
        k = self.depth
        s2 = self.sym.fresh(f"{self.tag}{k + 1}")
        sel = z3.Int(f"a{self.tag}{k}")
        self.solver.add(self.sym.trans(self.states[k], s2, sel, stutter=self.stutter))
        self.states.append(s2)
        self.sels.append(sel)


def bmc(
    sym: SymbolicModel, props: dict[str, Callable[[State], z3.BoolRef]], depth: int
) -> dict[str, tuple[int | None, list[dict], list[Query]]]:
    """For each invariant, the length and trace of a shortest counterexample within ``depth``
    steps (``None`` and ``[]`` when there is none), with the queries asked."""
    un = Unrolling(sym)
    out: dict[str, tuple[int | None, list[dict], list[Query]]] = {n: (None, [], []) for n in props}
    open_ = set(props)
    for k in range(depth + 1):
        if k:
            un.extend()
        for name in sorted(open_):
            un.solver.push()
            un.solver.add(z3.Not(props[name](un.states[k])))
            ans, secs = _ask(un.solver)
            q = Query(
                f"bmc-{name}-{k}",
                f"is {name} false after exactly {k} steps?",
                f"Init(s0) ∧ T(s0,s1) ∧ … ∧ T(s{k - 1},s{k}) ∧ ¬{name}(s{k})"
                if k
                else f"Init(s0) ∧ ¬{name}(s0)",
                "sat",
                ans,
                secs,
            )
            out[name][2].append(q)
            if ans == "sat":
                tr = _trace(sym, un.solver.model(), un.sels)
                out[name] = (k, tr, out[name][2])
                open_.discard(name)
            un.solver.pop()
        if not open_:
            break
    return out


# ---------------------------------------------------------------------- induction
def _names(invs: list[Strengthening]) -> str:
    return " ∧ ".join(c.name for c in invs) or "true"


def houdini(
    sym: SymbolicModel, cands: list[Strengthening] | None = None
) -> tuple[list[Strengthening], list[Query]]:
    """The largest subset of the candidates that holds initially and is inductive, with the
    queries of the final round (each a premise the proof rests on)."""
    cands = list(candidates_for(sym) if cands is None else cands)
    s0, s, s2, sel = sym.fresh("h0"), sym.fresh("h"), sym.fresh("h'"), z3.Int("a_h")
    init = z3.Solver()
    init.add(sym.init(s0))
    queries: list[Query] = []
    kept = []
    for c in cands:
        init.push()
        init.add(z3.Not(c.formula(sym, s0)))
        ans, secs = _ask(init)
        init.pop()
        if ans == "unsat":
            kept.append(c)
            queries.append(
                Query(
                    f"init-{c.name}",
                    f"does every initial state satisfy {c.name}?",
                    f"Init(s) ∧ ¬{c.name}(s)",
                    "unsat",
                    ans,
                    secs,
                )
            )
    step = z3.Solver()
    step.add(sym.dom(s), sym.trans(s, s2, sel))
    lits = {c.name: z3.Bool(f"assume_{c.name}") for c in kept}
    for c in kept:
        step.add(z3.Implies(lits[c.name], c.formula(sym, s)))
    while True:
        dropped = False
        round_queries = []
        for c in list(kept):
            step.push()
            step.add(z3.Not(c.formula(sym, s2)))
            ans, secs = _ask(step, *[lits[d.name] for d in kept])
            step.pop()
            round_queries.append(
                Query(
                    f"step-{c.name}",
                    f"does every step from a state satisfying the invariant keep {c.name}?",
                    f"{_names(kept)} (s) ∧ T(s,s') ∧ ¬{c.name}(s')",
                    "unsat",
                    ans,
                    secs,
                )
            )
            if ans != "unsat":
                kept.remove(c)
                dropped = True
                break
        if not dropped:
            return kept, [q for q in queries if q.name[5:] in {c.name for c in kept}] + round_queries


def induction(
    sym: SymbolicModel, name: str, prop: Callable[[State], z3.BoolRef], strengthening: list[Strengthening]
) -> PropertyProof:
    """Prove invariant ``prop``: 1-induction alone, else with ``strengthening``."""
    pf = PropertyProof(name, "invariant")
    s0, s, s2, sel = sym.fresh("i0"), sym.fresh("i"), sym.fresh("i'"), z3.Int("a_i")
    slv = z3.Solver()
    slv.add(sym.init(s0), z3.Not(prop(s0)))
    ans, secs = _ask(slv)
    pf.queries.append(
        Query(
            f"init-{name}",
            f"does every initial state satisfy {name}?",
            f"Init(s) ∧ ¬{name}(s)",
            "unsat",
            ans,
            secs,
        )
    )
    slv = z3.Solver()
    slv.add(sym.dom(s), prop(s), sym.trans(s, s2, sel), z3.Not(prop(s2)))
    ans, secs = _ask(slv)
    pf.queries.append(
        Query(
            f"step-{name}",
            f"is {name} inductive on its own?",
            f"{name}(s) ∧ T(s,s') ∧ ¬{name}(s')",
            "unsat",
            ans,
            secs,
        )
    )
    if ans == "unsat":
        pf.status, pf.method, pf.k = PROVED, "1-induction", 1
        return pf
    if ans == "sat":
        m = slv.model()
        inst = sym.instance_at(m, sel)
        pf.cti = {
            "state": _jsonable(sym.decode(m, s)),
            "step": inst.as_json() if inst else None,
            "next": _jsonable(sym.decode(m, s2)),
        }
    # Strengthened: Inv ∧ prop is inductive because Inv is (Houdini) and Inv ∧ prop keeps prop.
    inv = [c.formula(sym, s) for c in strengthening]
    slv = z3.Solver()
    slv.add(sym.dom(s), *inv, prop(s), sym.trans(s, s2, sel), z3.Not(prop(s2)))
    ans, secs = _ask(slv)
    pf.queries.append(
        Query(
            f"step-{name}-strengthened",
            f"is {name} inductive relative to the strengthening invariant?",
            f"{_names(strengthening)} (s) ∧ {name}(s) ∧ T(s,s') ∧ ¬{name}(s')",
            "unsat",
            ans,
            secs,
        )
    )
    pf.invariants = [c.name for c in strengthening]
    if ans == "unsat":
        pf.status, pf.method, pf.k = PROVED, "induction with strengthening", 1
        pf.note = "not inductive alone; counterexample to induction recorded in cti"
    else:
        pf.note = "not inductive even with the strengthening invariant"
    return pf


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {
            (",".join(map(str, k)) if isinstance(k, tuple) else str(k)): _jsonable(x) for k, x in v.items()
        }
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    return v


# ---------------------------------------------------------------------- lassos
def find_lasso(
    sym: SymbolicModel, goal: Callable[[State], z3.BoolRef], depth: int
) -> tuple[list[dict], list[Query]]:
    """A shortest fair lasso (at most ``depth`` steps) on which ``goal`` fails somewhere in
    every pass of the cycle, as a SPEC §9 trace; ``[]`` when there is none to that depth."""
    un = Unrolling(sym, stutter=True, tag="L")
    n = len(sym.instances)
    fair = [i for i in range(n) if sym.is_fair(i)]
    queries: list[Query] = []
    enabled_at: list[dict[int, z3.BoolRef]] = []
    for k in range(1, depth + 1):
        enabled_at.append({i: sym.enabled(i, un.states[k - 1]) for i in fair})
        un.extend()
        sk = un.states[k]
        loop = z3.Int(f"loop{k}")
        cond = [loop >= 0, loop < k]
        for l in range(k):
            same = z3.And([sk[v] == un.states[l][v] for v in sym.var_names])
            cond.append(z3.Implies(loop == l, same))
        for i in fair:
            cond.append(
                z3.Or([z3.And(loop <= j, z3.Or(un.sels[j] == i, z3.Not(enabled_at[j][i]))) for j in range(k)])
            )
        cond.append(z3.Or([z3.And(loop <= j, z3.Not(goal(un.states[j]))) for j in range(k)]))
        un.solver.push()
        un.solver.add(cond)
        ans, secs = _ask(un.solver)
        queries.append(
            Query(
                f"lasso-{k}",
                f"is there a fair lasso of {k} steps on which the goal keeps failing?",
                f"Init(s0) ∧ T(s0,s1) ∧ … ∧ T(s{k - 1},s{k}) ∧ s{k} = s_l ∧ fair(l..{k}) ∧ ∃j≥l ¬goal(s_j)",
                "sat",
                ans,
                secs,
            )
        )
        if ans == "sat":
            m = un.solver.model()
            tr = _trace(sym, m, un.sels, loop=m.eval(loop).as_long())
            un.solver.pop()
            return tr, queries
        un.solver.pop()
    return [], queries


# ---------------------------------------------------------------------- convergence
@dataclass
class Argument:
    """A ranking argument for ``eventually always goal`` under weak fairness.

    ``stable`` is a set of states closed under every step in which the goal holds; ``rank``
    is a tuple of natural numbers compared lexicographically; ``helper(h, s)`` (optional)
    names, for fair instance ``h``, a simple condition ``D_h`` under which ``h`` is the step
    that helps. The premises, each a one-step query under the invariant ``Inv``, are

    1. ``Inv ∧ stable ⇒ goal``, and ``Inv ∧ stable ∧ T ⇒ stable'``; every rank component
       is a natural number under ``Inv``;
    2. for each instance ``i``: ``Inv ∧ ¬stable ∧ s' = i(s) ∧ ¬stable' ⇒ rank' ≤lex rank``
       (no step raises the rank);
    3. ``Inv ∧ ¬stable ⇒ ∨_h D_h`` (some fair instance is designated);
    4. for each fair ``h``: ``Inv ∧ ¬stable ∧ D_h ⇒ enabled_h ∧ (stable(h(s)) ∨
       rank(h(s)) <lex rank(s))`` (a designated step is enabled and helps);
    5. for each instance ``i``: ``Inv ∧ ¬stable ∧ s' = i(s) ∧ ¬stable' ∧ rank' = rank ⇒
       ∧_h (D_h ⇒ D_h')`` (a step that keeps the rank keeps every designation). Only the
       ``h`` whose ``D_h`` reads a variable ``i`` writes are asked about: for the others
       ``D_h' = D_h`` by the frame.

    Without ``helper``, ``D_h`` is "``h`` is enabled and its step lowers the rank or enters
    ``stable``" and premise 5 is asked per ``(h, i)``.

    With ``escapes`` (unfair actions such as ``Reload`` that may undo the goal, finitely
    often), premise 1's closure is asked of every other step, and

    0. for each instance ``i``: ``Inv ∧ s' = i(s) ⇒ rank[0](s') ≤ rank[0](s)``, strictly
       for the instances of an escape action (inside ``stable`` too).

    Then a run takes finitely many escape steps (``rank[0]`` is a natural number that they
    lower and nothing raises), and after the last one the argument below applies.

    Why this proves it: on a fair run that stays outside ``stable``, the rank never rises
    (2) and, the lexicographic order on tuples of naturals being well-founded, is
    eventually constant (the arguments below put the post steps still to come first: they
    are finitely many because each message is posted once); from then on some ``D_h`` holds (3) and keeps holding (5), so
    ``h`` is enabled for ever (4) and weak fairness takes it, which lowers the rank or
    enters ``stable`` (4): a contradiction. (Premises 3 and 4 also rule out a deadlock
    outside ``stable``.) Once in ``stable`` the run stays there (1) and the goal holds for
    ever. The run reaches a state satisfying ``Inv`` because ``Inv`` is inductive.
    """

    name: str
    stable: Callable[[State], z3.BoolRef]
    rank: Callable[[State], list[z3.ArithRef]]
    stable_text: str
    rank_text: list[str]
    helper: Callable[[int, State], z3.BoolRef | None] | None = None
    helper_text: str = ""
    #: actions (by name) whose steps may leave ``stable``: each lowers ``rank[0]``, which no
    #: step raises (premise 0), so a run takes finitely many of them
    escapes: tuple[str, ...] = ()


def _lex_lt(a: list[z3.ArithRef], b: list[z3.ArithRef]) -> z3.BoolRef:
    if not a:
        return z3.BoolVal(False)
    return z3.Or(a[0] < b[0], z3.And(a[0] == b[0], _lex_lt(a[1:], b[1:])))


def _eq(a: list[z3.ArithRef], b: list[z3.ArithRef]) -> z3.BoolRef:
    return z3.And([x == y for x, y in zip(a, b)])


def _free_vars(e: z3.ExprRef, names: dict[int, str]) -> frozenset[str]:
    """The state variables (by name) a term reads."""
    out: set[str] = set()
    seen: set[int] = set()
    todo = [e]
    while todo:
        x = todo.pop()
        k = x.get_id()
        if k in seen:
            continue
        seen.add(k)
        if k in names:
            out.add(names[k])
        else:
            todo.extend(x.children())
    return frozenset(out)


#: The rank component of the reloads still possible (``reload``: each tab reloads at most once).
RELOADS_TEXT = "reloads: tabs that may still reload (a reload ends the tab's poll in flight)"


def reloads_left(sym: SymbolicModel, s: State) -> z3.ArithRef:
    """How many tabs may still reload (``reload``: once each)."""
    return z3.Sum([z3.If(s[f"reloaded[{t}]"], 0, 1) for t in range(sym.T)])


def heal_argument(sym: SymbolicModel) -> Argument | None:
    """The ranking argument for designs whose cache is repaired by the tabs' heals.

    It applies with ``dedupe``, a cap of at least M, no shared list, no crashes unless the
    sweeper repairs, and ``atomic_cache``, ``keep_verifying`` or ``sweeper``. With crashes, a
    message still Unsent whose tab is dead is never posted: it is left out of ``posts`` and of
    the stable set (it is never acknowledged, so the goal does not ask for it). With
    ``post_fails`` a failed POST is settled (final, never acknowledged, its id need not be
    cached). The rank is

    * ``reloads`` (``reload`` only): the tabs that may still reload; a reload ends the tab's
      poll in flight (raising ``chain``) and nothing raises it;
    * ``posts``: post steps still to come (each post step lowers it; posts are finite; 0 for
      a failed POST);
    * ``Φ`` (non-atomic): the writers in flight form a tree, which bounds the writes to come.
      Let ``X`` be the ids missing from the cache. A writer whose snapshot lacks its own id is
      *effective*; its write will make the missing set ``token = ids ∖ (snapshot + id)``.
      ``Φ = Σ_effective F(|token|) + Σ_{heal slots not effective, id in X} F(|X| - 1)`` with
      ``F(0) = 1``, ``F(k) = 1 + (B·k + S)·F(k-1)`` (B heal slots per id; S = 1 with the
      sweeper, one more slot: effective when its listing holds an id its snapshot lacks, its
      token the ids in neither, its potential ``F(|X| - 1)`` while X is not empty). An
      effective read turns a potential into a token of at most the same size; an effective
      write removes a token of size k and creates at most ``B·k + S`` potentials of size
      ``k-1``: ``Φ`` falls by at least one. Nothing else writes the cache (a write whose
      snapshot holds its id, or a sweep finding nothing missing, writes nothing). With
      ``atomic_cache`` the cache only grows: Φ is 0, or the number of missing ids with the
      sweeper.
    * ``chain``: with ``keep_verifying`` and no sweeper, for each missing acknowledged id, how
      far its heal is from an effective read (Idle with the owner's poll Read-missing 3, Idle
      4, Read-present 5, Requested 2, KeyRead 1, a no-op CacheRead 6, an effective CacheRead
      0). With the sweeper (tabs may have dropped an id they once saw), while an acknowledged
      id is missing: how far the sweeper's loop is from an effective read (Idle 3, Listed with
      a missing id 1, Listed without 5, a no-op Read 4, an effective Read 0); the listing
      holds every acknowledged id because it is stored.

    The designated helpers ``D_h`` (premise 3 of :class:`Argument`): a post step of a
    message whose post is in that step's phase; ``HealWrite(m)`` of an effective heal (Φ
    falls) or of a no-op one for a missing id (chain falls); for a missing id ``m``, the next
    step of its chain (``PollRead``/``PollDone`` of its owner while its heal is Idle,
    ``HealKey``, ``HealRead`` or ``HealCache``). With the sweeper: post steps, effective
    heal writes, and the sweeper's next step while an acknowledged id is missing or its write
    is effective. A step that keeps the rank writes no cache value, so it keeps every missing
    id missing and every designation.
    """
    if not (
        sym.dedupe
        and sym.C >= sym.M
        and not sym.shared
        and (sym.sweeper or not sym.tab_crash)
        and (sym.atomic or sym.keep_verifying or sym.sweeper)
    ):
        return None
    if sym.config.has("heal_atomic"):  # written for plain or all-atomic cache updates only
        return None
    M = sym.M
    R = sym.config.reply  # the bot's reply (bot_replies), or None
    B = 1
    S = 1 if sym.sweeper else 0  # the sweeper is one more writer slot
    fails = sym.config.has("post_fails")
    reloads = sym.config.has("reload")
    F = [1]
    for k in range(1, M + 1):
        F.append(1 + (B * k + S) * F[-1])

    def table(n: z3.ArithRef) -> z3.ArithRef:
        out: z3.ArithRef = z3.IntVal(F[0])
        for k in range(1, M + 1):
            out = z3.If(n == k, F[k], out)
        return out

    def missing(s: State, j: int) -> z3.BoolRef:
        return s[f"cache[{j}]"] == 0

    def effective(s: State, h: Any) -> z3.BoolRef:
        if sym.atomic:
            return z3.BoolVal(False)
        k = sym.hk(h)
        return z3.And(s[f"heal[{k}]"] == HEAL_CACHE_READ, s[f"healsnap[{k}][{sym.heal_msg(h)}]"] == 0)

    def post_effective(s: State, m: int) -> z3.BoolRef:
        return z3.And(s[f"post[{m}]"] == POST_CACHE_READ, s[f"postsnap[{m}][{m}]"] == 0)

    def token_size(s: State, prefix: str) -> z3.ArithRef:
        return M - 1 - z3.Sum(sym.snap(s, prefix))

    def n_missing(s: State) -> z3.ArithRef:
        return z3.Sum([z3.If(missing(s, j), 1, 0) for j in range(M)])

    def never_posted(s: State, m: int) -> z3.BoolRef:
        # with tab_crash: unsent, and its tab is dead, so it never will be (and is never acked)
        if m == R:  # the bot's reply, posted once message 0 is cached: never when nothing will
            # cache 0 (its POST failed before its cache update, and no sweeper repairs)
            if fails and not sym.sweeper:
                return z3.And(s[f"post[{m}]"] == 0, s["post[0]"] == FAILED, missing(s, 0))
            return z3.BoolVal(False)
        return z3.And(s[f"post[{m}]"] == 0, z3.Not(sym.alive(s, sym.owner[m])))

    def sweep_effective(s: State) -> z3.BoolRef:
        if not sym.sweeper or sym.atomic:
            return z3.BoolVal(False)
        return z3.And(
            s["sweep"] == SWEEP_READ,
            z3.Or([z3.And(s[f"sweeplist[{j}]"], s[f"sweepsnap[{j}]"] == 0) for j in range(M)]),
        )

    def sweep_token(s: State) -> z3.ArithRef:
        return M - z3.Sum(
            [z3.If(z3.Or(s[f"sweeplist[{j}]"], s[f"sweepsnap[{j}]"] >= 1), 1, 0) for j in range(M)]
        )

    def acked_missing(s: State) -> z3.BoolRef:
        return z3.Or([z3.And(sym.acked(s, m), missing(s, m)) for m in range(M)])

    def repairs(s: State) -> z3.BoolRef:
        # the sweeper's loop matters while an acknowledged id is missing, and (bot_replies)
        # while the bot's reply waits for message 0, stored and missing, which the sweeper
        # lists and caches
        if R is None:
            return acked_missing(s)
        waits = z3.And(s[f"post[{R}]"] == 0, s["post[0]"] != 0, missing(s, 0))
        return z3.Or(acked_missing(s), waits)

    def phi(s: State) -> z3.ArithRef:
        if sym.atomic:
            # the cache only grows: each effective write removes a missing id for good
            return n_missing(s) if sym.sweeper else z3.IntVal(0)
        terms = []
        pot = table(n_missing(s) - 1)
        if sym.sweeper:
            terms.append(z3.If(sweep_effective(s), table(sweep_token(s)), z3.If(n_missing(s) >= 1, pot, 0)))
        for h in sym.heal_keys:
            k = sym.hk(h)
            terms.append(
                z3.If(
                    effective(s, h),
                    table(token_size(s, f"healsnap[{k}]")),
                    z3.If(missing(s, sym.heal_msg(h)), pot, 0),
                )
            )
        for m in range(M):
            terms.append(z3.If(post_effective(s, m), table(token_size(s, f"postsnap[{m}]")), 0))
        return z3.Sum(terms)

    def dist(s: State, m: int) -> z3.ArithRef:
        hv = s[f"heal[{m}]"]
        if m == R:  # the bot's reply: its BotVerify requests the heal
            idle: z3.ArithRef = z3.IntVal(3)
        else:
            o = sym.owner[m]
            poll, seen = s[f"poll[{o}]"], s[f"pollsnap[{o}][{m}]"] >= 1
            idle = z3.If(poll, z3.If(seen, 5, 3), 4)
        noop = z3.IntVal(6) if not sym.atomic else z3.IntVal(0)
        eff = effective(s, m)
        return z3.If(
            hv == IDLE, idle, z3.If(hv == REQUESTED, 2, z3.If(hv == KEY_READ, 1, z3.If(eff, 0, noop)))
        )

    def sweep_dist(s: State) -> z3.ArithRef:
        # Idle 3 -> Listed (an acknowledged missing id is stored, so listed) 1 -> an effective
        # Read 0; a listing without a missing id 5 -> a no-op Read 4 -> Idle 3.
        listed_missing = z3.Or([z3.And(s[f"sweeplist[{j}]"], missing(s, j)) for j in range(M)])
        ph = s["sweep"]
        read = z3.IntVal(4) if sym.atomic else z3.If(sweep_effective(s), 0, 4)
        return z3.If(ph == SWEEP_IDLE, 3, z3.If(ph == SWEEP_LISTED, z3.If(listed_missing, 1, 5), read))

    def to_come(s: State, m: int) -> z3.ArithRef:
        left = 4 - s[f"post[{m}]"]
        if fails:  # a failed POST is final: nothing more to come
            left = z3.If(s[f"post[{m}]"] == FAILED, 0, left)
        return left

    def rank(s: State) -> list[z3.ArithRef]:
        posts = z3.Sum([z3.If(never_posted(s, m), 0, to_come(s, m)) for m in range(M)])
        if sym.sweeper:  # the sweeper repairs: its loop is the chain
            chain = z3.If(repairs(s), sweep_dist(s), 0)
        else:
            chain = z3.Sum([z3.If(z3.And(missing(s, m), sym.acked(s, m)), dist(s, m), 0) for m in range(M)])
        if reloads:  # a reload ends a poll in flight: the reloads still possible come first
            return [reloads_left(sym, s), posts, phi(s), chain]
        return [posts, phi(s), chain]

    def stable(s: State) -> z3.BoolRef:
        if fails:  # a failed POST is settled, and its id need not be cached
            parts = [z3.Or(sym.acked(s, m), never_posted(s, m), s[f"post[{m}]"] == FAILED) for m in range(M)]
            parts += [z3.Implies(sym.acked(s, j), z3.Not(missing(s, j))) for j in range(M)]
        else:
            parts = [z3.Or(sym.acked(s, m), never_posted(s, m)) for m in range(M)]
            parts += [z3.Implies(z3.Not(never_posted(s, j)), z3.Not(missing(s, j))) for j in range(M)]
        if not sym.atomic:
            parts += [
                z3.Implies(effective(s, h), token_size(s, f"healsnap[{sym.hk(h)}]") == 0)
                for h in sym.heal_keys
            ]
        if sym.sweeper and not sym.atomic:
            parts.append(z3.Implies(sweep_effective(s), sweep_token(s) == 0))
        return z3.And(parts)

    def waiting(s: State, t: int) -> z3.BoolRef:
        # some id of tab t is acknowledged, missing, and its heal is Idle: t's poll is its next step
        return z3.Or([z3.And(sym.acked(s, m), missing(s, m), s[f"heal[{m}]"] == IDLE) for m in sym.own[t]])

    def helper(i: int, s: State) -> z3.BoolRef | None:
        inst = sym.instances[i]
        a = inst.args
        if inst.name.startswith("Post"):
            return sym.enabled(i, s)
        if inst.name.startswith("Sweep"):
            phase = {
                "SweepList": SWEEP_IDLE,
                "SweepRead": SWEEP_LISTED,
                "SweepCache": SWEEP_LISTED,
                "SweepWrite": SWEEP_READ,
            }[inst.name]
            return z3.And(s["sweep"] == phase, z3.Or(repairs(s), sweep_effective(s)))
        if sym.sweeper:  # the tabs' heals only matter as writers: an effective one is designated
            return (
                z3.And(s[f"heal[{a['m']}]"] == HEAL_CACHE_READ, effective(s, a["m"]))
                if inst.name == "HealWrite"
                else None
            )
        if inst.name == "BotVerify":  # the bot's pass while its reply is missing
            return z3.And(s[f"verify[{R}]"], s[f"heal[{R}]"] == IDLE, missing(s, R))
        if inst.name == "PollRead":
            return z3.And(z3.Not(s[f"poll[{a['t']}]"]), waiting(s, a["t"]))
        if inst.name == "PollDone":
            return z3.And(s[f"poll[{a['t']}]"], waiting(s, a["t"]))
        m = a.get("m")
        if inst.name == "HealKey":
            return z3.And(s[f"heal[{m}]"] == REQUESTED, missing(s, m))
        if inst.name in ("HealRead", "HealCache"):
            return z3.And(s[f"heal[{m}]"] == KEY_READ, missing(s, m))
        if inst.name == "HealWrite":
            return z3.And(s[f"heal[{m}]"] == HEAL_CACHE_READ, z3.Or(effective(s, m), missing(s, m)))
        return None

    return Argument(
        "heal-ranking",
        stable,
        rank,
        (
            "every message is acknowledged or its POST failed, every acknowledged id is in the cache"
            if fails
            else "every message is acknowledged, every id is in the cache"
        )
        + ", and every effective heal in flight writes a value holding every id",
        ([RELOADS_TEXT] if reloads else [])
        + [
            "posts: post steps still to come",
            "Φ: the tree bound on effective cache writes to come"
            + (" (0: the cache update is atomic)" if sym.atomic else ""),
            "chain: steps until the sweeper reads the cache while an acknowledged id is missing"
            if sym.sweeper
            else "chain: steps until each missing acknowledged id's heal reads the cache",
        ],
        helper,
        "a post step in its phase; an effective HealWrite; "
        + (
            "the sweeper's next step while an acknowledged id is missing"
            if sym.sweeper
            else "for a missing acknowledged id, the next step of its poll/heal chain"
        ),
    )


def pending_argument(sym: SymbolicModel) -> Argument | None:
    """``PendingDrains`` for atomic_cache,dedupe (no crash, no shared list): every acked id
    is in the cache for good, so each poll removes its tab's ids. Rank: post steps to come,
    then for each pending id the steps until its tab's PollDone sees it (Read-present 1,
    Idle 2, Read-missing 3)."""
    if not (
        sym.atomic
        and sym.dedupe
        and sym.C >= sym.M
        and not sym.shared
        and not sym.tab_crash
        and not sym.keep_verifying
    ):
        return None
    if any(sym.config.has(f) for f in ("put_fails", "post_fails", "reload")):
        # an acked id may be missing (a failed put), a POST may fail, a reload may end a poll:
        # drain_argument's rank covers those
        return None
    M, N = sym.M, sym.config.tab_messages  # the tabs' messages: every one but the bot's reply

    def rank(s: State) -> list[z3.ArithRef]:
        posts = z3.Sum([4 - s[f"post[{m}]"] for m in range(M)])
        terms = []
        for m in range(N):
            o = sym.owner[m]
            poll, seen = s[f"poll[{o}]"], s[f"pollsnap[{o}][{m}]"] >= 1
            terms.append(z3.If(s[f"pending[{o}][{m}]"], z3.If(poll, z3.If(seen, 1, 3), 2), 0))
        return [posts, z3.Sum(terms)]

    def stable(s: State) -> z3.BoolRef:
        return z3.And(
            [sym.acked(s, m) for m in range(M)]
            + [z3.Not(s[f"pending[{sym.owner[m]}][{m}]"]) for m in range(N)]
        )

    return Argument(
        "pending-ranking",
        stable,
        rank,
        "every message is acknowledged and every pending list is empty",
        ["posts: post steps still to come", "polls: steps until each pending id is seen"],
    )


def _poll_helper(sym: Any, conv: Any, i: int, s: State, waiting: Any) -> z3.BoolRef | None:
    """The helpful steps of a ranking that waits on polls: the convergence argument's, and once
    the cache has converged, a tab's PollRead/PollDone while it has something ``waiting(t)``
    for (a pending id, an id its page has not shown)."""
    inst = sym.instances[i]
    d = conv.helper(i, s)
    if inst.name in ("PollRead", "PollDone"):
        t = inst.args["t"]
        want = s[f"poll[{t}]"] if inst.name == "PollDone" else z3.Not(s[f"poll[{t}]"])
        mine = z3.And(want, conv.stable(s), z3.Or(waiting(t)))
        return mine if d is None else z3.Or(d, mine)
    return d


def drain_argument(sym: SymbolicModel) -> Argument | None:
    """``PendingDrains`` where :func:`heal_argument` proves ``Converges`` and the tabs drop the
    ids they see (no keep_verifying): first the cache converges, then each poll clears its
    tab's ids.

    The stable set is the one of ``Converges`` (closed, every id in the cache for good) with
    every pending list empty; the rank is the one of ``Converges`` followed by ``polls``: in
    that stable set, for each pending id the steps until its tab's PollDone sees it
    (Read-present 1, Idle 2, Read-missing 3), else 0. Entering the stable set of
    ``Converges`` takes a post step or an effective write, which lowers the rank before
    ``polls``, so ``polls`` may start at any value. The designated steps are those of
    ``Converges``, and, in its stable set, the polls of a tab with a pending id."""
    conv = heal_argument(sym)
    if conv is None or sym.keep_verifying or sym.tab_crash or conv.helper is None:
        return None
    M = sym.config.tab_messages  # the bot's reply is on no tab's pending list

    def pending(s: State, m: int) -> z3.BoolRef:
        return s[f"pending[{sym.owner[m]}][{m}]"]

    def polls(s: State) -> z3.ArithRef:
        terms = []
        for m in range(M):
            o = sym.owner[m]
            poll, seen = s[f"poll[{o}]"], s[f"pollsnap[{o}][{m}]"] >= 1
            terms.append(z3.If(pending(s, m), z3.If(poll, z3.If(seen, 1, 3), 2), 0))
        return z3.If(conv.stable(s), z3.Sum(terms), 0)

    def stable(s: State) -> z3.BoolRef:
        return z3.And(conv.stable(s), *[z3.Not(pending(s, m)) for m in range(M)])

    def helper(i: int, s: State) -> z3.BoolRef | None:
        return _poll_helper(sym, conv, i, s, lambda t: [pending(s, m) for m in sym.own[t]])

    return Argument(
        "drain-ranking",
        stable,
        lambda s: conv.rank(s) + [polls(s)],
        conv.stable_text + ", and every pending list is empty",
        conv.rank_text + ["polls: once the cache has converged, steps until each pending id is seen"],
        helper,
        conv.helper_text + "; once the cache has converged, the polls of a tab with a pending id",
    )


def everyone_argument(sym: SymbolicModel) -> Argument | None:
    """``EveryoneSees`` where :func:`heal_argument` proves ``Converges`` and every poll shows
    the whole cache of its channel (``full_poll``; no tab dies): first the cache converges,
    then each tab's polls show every acknowledged id of its channel. The stable set is the one of
    ``Converges`` with every acknowledged id shown on every tab; the rank is the one of
    ``Converges`` followed by ``shows``: in that stable set, for each tab and acknowledged id
    it has not shown, the steps until its PollDone shows it (a read holding it 1, Idle 2, a
    read from before the id was cached 3), else 0. The designated steps are those of
    ``Converges`` and, in its stable set, the polls of a tab with an id to show. A reload
    clears the tab's shown set: it is an escape (premise 0 of :class:`Argument`), lowering
    ``reloads``, the first rank component."""
    cfg = sym.config
    conv = heal_argument(sym)
    if (
        conv is None
        or conv.helper is None
        or not cfg.has("tab_view")
        or not cfg.has("full_poll")
        or sym.tab_crash
    ):
        return None
    M, T = sym.M, sym.T
    due = [set(channel_of(cfg, t)) for t in range(T)]  # the ids tab t's channel shows

    def unshown(s: State, t: int, m: int) -> z3.BoolRef:
        if m not in due[t]:
            return z3.BoolVal(False)
        return z3.And(sym.acked(s, m), z3.Not(s[f"shown[{t}][{m}]"]))

    def shows(s: State) -> z3.ArithRef:
        terms = []
        for t in range(T):
            poll = s[f"poll[{t}]"]
            for m in range(M):
                seen = s[f"pollsnap[{t}][{m}]"] >= 1
                terms.append(z3.If(unshown(s, t, m), z3.If(poll, z3.If(seen, 1, 3), 2), 0))
        return z3.If(conv.stable(s), z3.Sum(terms), 0)

    def stable(s: State) -> z3.BoolRef:
        return z3.And(conv.stable(s), *[z3.Not(unshown(s, t, m)) for t in range(T) for m in range(M)])

    def helper(i: int, s: State) -> z3.BoolRef | None:
        return _poll_helper(sym, conv, i, s, lambda t: [unshown(s, t, m) for m in range(M)])

    return Argument(
        "shown-ranking",
        stable,
        lambda s: conv.rank(s) + [shows(s)],
        conv.stable_text + ", and every tab has shown every acknowledged id",
        conv.rank_text
        + ["shows: once the cache has converged, steps until each tab shows each acknowledged id"],
        helper,
        conv.helper_text + "; once the cache has converged, the polls of a tab with an id to show",
        escapes=("Reload",) if cfg.has("reload") else (),
    )


def prove_eventually(
    sym: SymbolicModel, goal: Callable[[State], z3.BoolRef], arg: Argument, invariant: list[Strengthening]
) -> tuple[bool, list[Query]]:
    """Check the premises of ``arg`` (see :class:`Argument`); all hold iff the result is True.

    Every query is about one state ``s`` and, where a step is involved, one instance's
    successor written as terms over ``s`` (built once per instance): z3 answers the many
    small queries far faster than one over the whole disjunction ``T``."""
    s, s2, sel = sym.fresh("c"), sym.fresh("c'"), z3.Int("a_c")
    inv = z3.And([sym.dom(s)] + [c.formula(sym, s) for c in invariant])
    queries: list[Query] = []
    n = len(sym.instances)
    fair = [i for i in range(n) if sym.is_fair(i)]
    r = arg.rank(s)
    st = arg.stable(s)
    nxt = [sym.successor(i, s) for i in range(n)]
    r_nxt = [arg.rank(x) for x in nxt]
    st_nxt = [arg.stable(x) for x in nxt]

    def record(
        name: str, purpose: str, formula: str, slv: z3.Solver, ans: str, secs: float, step: int | None = None
    ) -> bool:
        q = Query(name, purpose, formula, "unsat", ans, secs)
        if ans == "sat":
            m = slv.model()
            q.witness = {"state": _jsonable(sym.decode(m, s))}
            if step is not None:
                q.witness["step"] = sym.instances[step].as_json()
        queries.append(q)
        return ans == "unsat"

    def ask(name: str, purpose: str, formula: str, *facts: z3.BoolRef) -> bool:
        slv = z3.Solver()
        slv.add(*facts)
        ans, secs = _ask(slv)
        return record(name, purpose, formula, slv, ans, secs)

    ok = ask(
        "stable-goal",
        "does the stable set imply the goal?",
        "Inv(s) ∧ Stable(s) ∧ ¬goal(s)",
        inv,
        st,
        z3.Not(goal(s)),
    )
    escapes = [i for i in range(n) if sym.instances[i].name in arg.escapes]
    ok &= ask(
        "stable-closed",
        "is the stable set closed under every step" + (f" but {', '.join(arg.escapes)}?" if escapes else "?"),
        "Inv(s) ∧ Stable(s) ∧ T(s,s') ∧ ¬Stable(s')" + (f" ∧ ¬{'/'.join(arg.escapes)}" if escapes else ""),
        inv,
        st,
        sym.trans(s, s2, sel),
        *[sel != i for i in escapes],
        z3.Not(arg.stable(s2)),
    )
    if escapes:
        # premise 0: no step raises rank[0]; an escape step lowers it
        for i in range(n):
            esc = i in escapes
            ok &= ask(
                f"budget-{'lowered' if esc else 'kept'}-{sym.instances[i]}",
                f"can {sym.instances[i]} {'keep or raise' if esc else 'raise'} the first rank component?",
                f"Inv(s) ∧ s' = {sym.instances[i]}(s) ∧ rank[0](s') {'≥' if esc else '>'} rank[0](s)",
                inv,
                sym.enabled(i, s),
                (r_nxt[i][0] >= r[0]) if esc else (r_nxt[i][0] > r[0]),
            )
    ok &= ask(
        "rank-natural",
        "is every rank component a natural number?",
        "Inv(s) ∧ ∨_i rank_i(s) < 0",
        inv,
        z3.Or([x < 0 for x in r]),
    )
    base = z3.Solver()
    base.add(inv, z3.Not(st))
    for i in range(n):
        base.push()
        base.add(sym.enabled(i, s), z3.Not(st_nxt[i]), _lex_lt(r, r_nxt[i]))
        ans, secs = _ask(base)
        ok &= record(
            f"rank-no-increase-{sym.instances[i]}",
            f"can {sym.instances[i]} outside the stable set raise the rank?",
            f"Inv(s) ∧ ¬Stable(s) ∧ s' = {sym.instances[i]}(s) ∧ ¬Stable(s') ∧ rank(s) <lex rank(s')",
            base,
            ans,
            secs,
            i,
        )
        base.pop()
    if arg.helper is None:
        return _helpful_premises(sym, arg, s, s2, inv, st, r, nxt, r_nxt, st_nxt, fair, queries, ok)

    names = {v.get_id(): k for k, v in s.items()}
    D = {h: arg.helper(h, s) for h in fair}
    D = {h: d for h, d in D.items() if d is not None}
    ok &= ask(
        "helper-exists",
        "is some fair step designated in every state outside the stable set?",
        "Inv(s) ∧ ¬Stable(s) ∧ ∧_h ¬D_h(s)",
        inv,
        z3.Not(st),
        *[z3.Not(d) for d in D.values()],
    )
    for h, d in D.items():
        base.push()
        base.add(d, z3.Not(z3.And(sym.enabled(h, s), z3.Or(st_nxt[h], _lex_lt(r_nxt[h], r)))))
        ans, secs = _ask(base)
        ok &= record(
            f"helper-helps-{sym.instances[h]}",
            f"is {sym.instances[h]}, where designated, enabled and does it lower the rank "
            f"or reach the stable set?",
            f"Inv(s) ∧ ¬Stable(s) ∧ D_h(s) ∧ ¬(enabled_h(s) ∧ (Stable(h(s)) ∨ rank(h(s)) <lex rank(s)))"
            f"  [h = {sym.instances[h]}]",
            base,
            ans,
            secs,
            h,
        )
        base.pop()
    reads = {h: _free_vars(d, names) for h, d in D.items()}
    for i in range(n):
        writes = {k for k, v in nxt[i].items() if not v.eq(s[k])}
        touched = [h for h in D if reads[h] & writes]
        if not touched:
            continue
        base.push()
        base.add(
            sym.enabled(i, s),
            z3.Not(st_nxt[i]),
            _eq(r_nxt[i], r),
            z3.Or(
                [
                    z3.And(D[h], z3.Not(z3.substitute(D[h], *[(s[k], nxt[i][k]) for k in writes])))
                    for h in touched
                ]
            ),
        )
        ans, secs = _ask(base)
        ok &= record(
            f"helper-stays-{sym.instances[i]}",
            f"can {sym.instances[i]}, keeping the rank, end a designation? "
            f"({len(touched)} designations read what it writes; the others keep by the frame)",
            f"Inv(s) ∧ ¬Stable(s) ∧ s' = {sym.instances[i]}(s) ∧ ¬Stable(s') ∧ rank(s') = rank(s)"
            f" ∧ ∨_h (D_h(s) ∧ ¬D_h(s'))",
            base,
            ans,
            secs,
            i,
        )
        base.pop()
    return ok, queries


def _helpful_premises(
    sym: SymbolicModel,
    arg: Argument,
    s: State,
    s2: State,
    inv: z3.BoolRef,
    st: z3.BoolRef,
    r: list,
    nxt: list,
    r_nxt: list,
    st_nxt: list,
    fair: list[int],
    queries: list[Query],
    ok: bool,
) -> tuple[bool, list[Query]]:
    """Premises 3-5 with ``D_h`` = "``h`` is helpful" (enabled, and its step lowers the rank
    or enters the stable set), premise 5 one query per ``(h, i)``."""
    n = len(sym.instances)

    def helpful(i: int, st_: State, r_: list, r_next: list, st_next: z3.BoolRef) -> z3.BoolRef:
        return z3.And(sym.enabled(i, st_), z3.Or(st_next, _lex_lt(r_next, r_)))

    help_s = {h: helpful(h, s, r, r_nxt[h], st_nxt[h]) for h in fair}
    slv = z3.Solver()
    slv.add(inv, z3.Not(st), *[z3.Not(x) for x in help_s.values()])
    ans, secs = _ask(slv)
    q = Query(
        "helpful-exists",
        "does every state outside the stable set have a helpful fair step?",
        "Inv(s) ∧ ¬Stable(s) ∧ ∧_h ¬help_h(s)",
        "unsat",
        ans,
        secs,
    )
    queries.append(q)
    ok &= ans == "unsat"
    r2 = arg.rank(s2)
    base = z3.Solver()
    base.add(inv, z3.Not(st), z3.Not(arg.stable(s2)), _eq(r, r2))
    lits = []
    for i in range(n):
        lit = z3.Bool(f"step_{i}")
        base.add(z3.Implies(lit, z3.And([sym.enabled(i, s)] + [s2[v] == nxt[i][v] for v in sym.var_names])))
        lits.append(lit)
    for h in fair:
        x = sym.successor(h, s2)
        base.push()
        base.add(help_s[h], z3.Not(helpful(h, s2, r2, arg.rank(x), arg.stable(x))))
        secs_h, answers, witness = 0.0, set(), None
        for i in range(n):
            ans, secs = _ask(base, lits[i])
            secs_h += secs
            answers.add(ans)
            if ans == "sat" and witness is None:
                m = base.model()
                witness = {"state": _jsonable(sym.decode(m, s)), "step": sym.instances[i].as_json()}
        base.pop()
        ans = "unsat" if answers == {"unsat"} else ("sat" if "sat" in answers else "unknown")
        queries.append(
            Query(
                f"helpful-stays-{sym.instances[h]}",
                f"can a step that keeps the rank stop {sym.instances[h]} being helpful? ({n} queries, one per step)",
                f"Inv(s) ∧ ¬Stable(s) ∧ help_h(s) ∧ s' = i(s) ∧ ¬Stable(s') ∧ rank(s') = rank(s) ∧ ¬help_h(s')"
                f"  [h = {sym.instances[h]}, every instance i]",
                "unsat",
                ans,
                secs_h,
                witness,
                calls=n,
            )
        )
        ok &= ans == "unsat"
    return ok, queries


def _candidates_that_apply(sym: SymbolicModel) -> list[Strengthening]:
    """The named strengthenings that can be stated over a user's design (those that read only
    variables it has); Houdini keeps whichever of them are inductive there."""
    probe = sym.fresh("probe")
    out = []
    for c in candidates_for(sym):
        try:
            c.formula(sym, probe)
        except (KeyError, IndexError):
            continue
        out.append(c)
    return out


# ---------------------------------------------------------------------- the whole verdict
def prove(
    config: Config,
    properties: set[str] | None = None,
    depth: int | None = None,
    lasso_depth: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> ProveResult:
    """Decide each SPEC §7 property of ``config`` with z3 (see the module docstring).

    ``depth`` bounds BMC for invariants (default 12, the longest shortest counterexample at
    tabs 2 is 10); ``lasso_depth`` bounds the lasso search (default 26 at tabs 2, 0 beyond:
    lassos are looked for only where the search is cheap). ``progress`` is told, in a few
    words, what is being asked of z3 next (it may raise to stop the proof)."""
    t0 = time.perf_counter()
    sym = SymbolicModel(config)
    depth = 12 if depth is None else depth
    if lasso_depth is None:
        lasso_depth = 26 if config.messages <= 2 else 0
    invs = sym.invariants()
    goals = sym.goals()
    wanted = [n for n in [*invs, *goals] if properties is None or n in properties]
    out: dict[str, PropertyProof] = {}

    # The named strengthenings and ranking arguments are written for kvheal's own definition;
    # a user's design gets BMC, plain induction and the lasso search. With the bot's reply
    # (``bot_replies``: a message no tab owns) only the strengthenings that can be stated over
    # it are candidates (Houdini keeps the inductive ones), and the ranking arguments treat
    # the reply as the bot's (healed after its BotVerify, no tab's pending list).
    own = sym.definition is KVHEAL
    named = own and sym.config.reply is None
    say = progress or (lambda _msg: None)
    say("strengthening invariants (Houdini)")
    strengthening, h_queries = houdini(sym, None if named else _candidates_that_apply(sym))
    inv_names = [c.name for c in strengthening]

    inv_wanted = {n: invs[n] for n in wanted if n in invs}
    refuted: dict[str, PropertyProof] = {}
    for name in inv_wanted:
        t1 = time.perf_counter()
        say(f"{name}: induction")
        pf = induction(sym, name, invs[name], strengthening)
        if pf.status == PROVED and pf.invariants:
            pf.queries = h_queries + pf.queries
        pf.seconds = time.perf_counter() - t1
        out[name] = pf
        if pf.status != PROVED:
            refuted[name] = pf
    if refuted:
        # Not provable by induction: look for a shortest counterexample.
        t1 = time.perf_counter()
        say(f"{', '.join(refuted)}: bounded model checking to depth {depth}")
        found = bmc(sym, {n: invs[n] for n in refuted}, depth)
        for name, pf in refuted.items():
            length, tr, qs = found[name]
            pf.queries += qs
            pf.depth = length if length is not None else depth
            if length is not None:
                pf.status, pf.method, pf.trace, pf.note = COUNTEREXAMPLE, "bmc", tr, ""
            else:
                pf.method = "bmc"
                pf.note = f"not inductive with the strengthening, and no counterexample within {depth} steps"
            pf.seconds += (time.perf_counter() - t1) / len(refuted)

    for name in [n for n in wanted if n in goals]:
        t1 = time.perf_counter()
        pf = PropertyProof(name, "eventually_always")
        arg = (
            None
            if not own
            else (
                heal_argument(sym)
                if name == "Converges"
                else everyone_argument(sym)
                if name == "EveryoneSees"
                else (pending_argument(sym) or drain_argument(sym))
            )
        )
        if arg is not None:
            say(f"{name}: ranking argument ({arg.name})")
            ok, qs = prove_eventually(sym, goals[name], arg, strengthening)
            pf.queries = h_queries + qs
            pf.invariants = inv_names
            if ok:
                pf.status, pf.method = PROVED, f"inductive invariant + {arg.name} (WF premises)"
                pf.note = f"stable set: {arg.stable_text}; rank: " + "; ".join(arg.rank_text)
                if arg.helper_text:
                    pf.note += f"; designated steps: {arg.helper_text}"
                if arg.escapes:
                    pf.note += (
                        f"; {', '.join(arg.escapes)} may leave the stable set, finitely often "
                        "(each lowers the first rank component, which no step raises)"
                    )
            else:
                pf.note = "a premise of the ranking argument failed (see its query)"
        if pf.status != PROVED and lasso_depth:
            say(f"{name}: looking for a fair lasso up to {lasso_depth} steps")
            tr, qs = find_lasso(sym, goals[name], lasso_depth)
            pf.queries += qs
            if tr:
                pf.status, pf.method, pf.trace, pf.depth = COUNTEREXAMPLE, "lasso bmc", tr, len(tr)
                pf.note = ""
            else:
                pf.method = pf.method or "lasso bmc"
                pf.depth = lasso_depth
                pf.note = (
                    pf.note
                    or f"no fair lasso within {lasso_depth} steps and no ranking argument for this variant"
                )
        elif pf.status != PROVED and not pf.note:
            pf.note = "no ranking argument for this variant; lasso search is run at tabs*per_tab <= 2"
        pf.seconds = time.perf_counter() - t1
        out[name] = pf
    return ProveResult(config, out, time.perf_counter() - t0, inv_names)

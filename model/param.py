"""Parameterized proofs: properties for every number of tabs (and messages), with tabs and
messages as uninterpreted sorts and the state as functions over them.

The invariant and per-message queries stay in EPR (effectively propositional logic: only
universal quantifiers under the invariant, phases as finite enumerations, the one function
``owner : Msg → Tab`` pointing from messages to tabs), so z3 decides them; the bound on
cache writes adds integer ghosts (below).

Done for ``atomic_cache,dedupe`` (with a cache capacity of at least the number of messages):
the invariant ``Inv`` below is inductive for every size, and it implies the goal of
``Converges`` in every reachable state, so ``Converges`` holds with no fairness assumption
at all (the goal is an invariant).

Done for ``dedupe,keep_verifying`` (capacity at least the number of messages, weak
fairness): an inductive invariant (EPR), then ``Converges`` from per-message queries (EPR:
every post finishes; while no effective write happens, a missing acknowledged id's poll/heal
chain advances) and from queries that bound the effective cache writes (ghost integer
bounds with one-to-one numberings, quantifiers over messages with linear arithmetic: outside
EPR, but z3 answers each at once). :data:`KV_ARGUMENT` is the whole argument in words,
:data:`KV_ASSUMPTIONS` what it assumes. ``dedupe,sweeper`` the same way, the sweeper's loop
being the chain and the sweeper one more writer (:data:`SWEEPER_ARGUMENT`).

Done for ``as_built_fixed`` (the preset: ``tab_view,reload,put_fails,post_fails,full_poll,
atomic_cache,dedupe``; its eight properties): an inductive invariant (EPR: the fix's
strengthenings of :mod:`kvheal.model.strengthen` for the sets, HealsTerminate among them)
gives the five invariants; ``Converges``, ``PendingDrains`` and ``EveryoneSees`` follow from
per-message (per tab and message) ranking premises (EPR with a ground integer rank): the cache
only grows, so no bound on writes is needed, and a reload, which may undo a poll's progress, is
the escape (one per tab, first in each rank). The faults and reloads are the definition's
unfair actions, never forced (:data:`FIXED_UNFORCED`); :data:`FIXED_ARGUMENT_CONVERGES` and its
sequels say how the queries combine, :data:`FIXED_ASSUMPTIONS` what they assume. Other
variants get ``unknown``.

The schemas are hand-written (:func:`encoding` gives a design's), but each is a :class:`Step`
named by the definition's action it encodes: :func:`name_steps` takes the list of actions,
their order and their parameters from :data:`kvheal.model.definition.ACTIONS` and refuses an
encoding that lacks one of the design's actions or has one the design does not.
``tests/model/test_param.py`` checks every schema against the explicit model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import z3

from .config import VARIANTS, Config, ConfigError, parse_variants
from .definition import KVHEAL
from .dsl import DefinitionError
from .prove import PROVED, UNKNOWN, PropertyProof, Query

ASSUMPTIONS = (
    "Any number of tabs T ≥ 1 and messages (each message has one owner tab; a tab posts each of "
    "its messages once, so posts are finite); the cache capacity is at least the number of "
    "messages (SPEC §2's default T·K), so with dedupe nothing is ever trimmed.",
    "No fairness is needed for atomic_cache,dedupe: its Converges goal is an invariant.",
)


_ENUMS: dict[str, tuple[z3.DatatypeSortRef, list[z3.ExprRef]]] = {}


def _ask_unsat(log: list[Query], name: str, purpose: str, formula: str, *facts: z3.BoolRef) -> bool:
    """Ask z3 whether ``facts`` are unsatisfiable (what every query here needs), on a fresh
    solver, and record the query with its answer in ``log``."""
    slv = z3.Solver()
    slv.add(*facts)
    t0 = time.perf_counter()
    ans = str(slv.check())
    log.append(Query(name, purpose, formula, "unsat", ans, time.perf_counter() - t0))
    return ans == "unsat"


def _inductive(
    log: list[Query], init: z3.BoolRef, inv: z3.BoolRef, inv2: z3.BoolRef, rels: dict[str, z3.BoolRef]
) -> bool:
    """Whether ``inv`` (over s; ``inv2`` over s') is inductive for every size: it holds in
    every initial state (query ``init``) and each schema of ``rels`` keeps it (``step-<name>``);
    every query is asked and recorded in ``log``."""
    ok = _ask_unsat(
        log,
        "init",
        "does every initial state, for any number of tabs and messages, satisfy Inv?",
        "Init(s) ∧ ¬Inv(s)",
        init,
        z3.Not(inv),
    )
    for name, rel in rels.items():
        ok &= _ask_unsat(
            log,
            f"step-{name}",
            f"does {name} keep Inv, for every size?",
            f"Inv(s) ∧ {name}(s,s') ∧ ¬Inv(s')",
            inv,
            rel,
            z3.Not(inv2),
        )
    return ok


def _enum(name: str, values: list[str]) -> tuple[z3.DatatypeSortRef, list[z3.ExprRef]]:
    """z3's enumeration sort ``name``, declared once per process (z3 refuses a second one)."""
    if name not in _ENUMS:
        _ENUMS[name] = z3.EnumSort(name, values)
    return _ENUMS[name]


#: The designs with an all-tabs encoding: what ``prove --all-tabs`` proves.
ALL_TABS_DESIGNS = ("atomic_cache,dedupe", "dedupe,keep_verifying", "dedupe,sweeper", "as_built_fixed")


@dataclass(frozen=True)
class Step:
    """One transition schema of an all-tabs encoding: the definition's action it encodes
    (``action``, a name of :data:`kvheal.model.definition.ACTIONS`), that action's parameter
    kind (``per``), the schema's parameter (a constant of sort Msg or Tab, None for the
    sweeper's steps), its guard, its whole step relation (guard, updates, frame, over ``s`` and
    ``s'``) and whether the step is an effective cache write."""

    action: str
    per: str
    #: who runs the action, from the definition (``request``: the worker's POST steps)
    actor: str
    param: z3.ExprRef | None
    guard: z3.BoolRef
    rel: z3.BoolRef
    effective: z3.BoolRef
    #: whether the definition makes the action weakly fair (a fault or a reload is not)
    fair: bool = True

    @property
    def label(self) -> str:
        """The schema's name in query names and reports: ``PostKey(m1)``, ``SweepList``."""
        return f"{self.action}({self.param})" if self.param is not None else self.action


def design_actions(variants: Iterable[str]) -> list:
    """The definition's actions of a design (:meth:`Definition.actions_of`), in its order."""
    return KVHEAL.actions_of(Config.make(tabs=1, variants=frozenset(variants)))


def name_steps(
    variants: Iterable[str],
    steps: dict[str, tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]],
    params: dict[str, z3.ExprRef],
    unforced: Iterable[str] = (),
) -> dict[str, Step]:
    """Hand-written schemas, ``steps`` (the definition's action name -> (guard, relation,
    effective)), as :class:`Step`s in the definition's order, each with the parameter of its
    action's kind (``params``: ``per`` -> constant) and the definition's fairness. The list of
    actions comes from the definition: :class:`DefinitionError` unless ``steps`` names exactly
    the design's actions and each is weakly fair, but those of ``unforced`` (the actions an
    argument takes as never forced: its faults and reloads)."""
    vs = frozenset(variants)
    acts = design_actions(vs)
    names = [a.name for a in acts]
    lacks, extra = [n for n in names if n not in steps], sorted(set(steps) - set(names))
    label = ",".join(v for v in VARIANTS if v in vs) or "seed"
    if lacks or extra:
        raise DefinitionError(
            f"the all-tabs encoding of {label} does not match the definition's actions: "
            f"it lacks {lacks}, it has {extra} the design does not"
        )
    allowed = set(unforced)
    unfair = [a.name for a in acts if not a.fair and a.name not in allowed]
    if unfair:
        raise DefinitionError(
            f"the all-tabs argument of {label} assumes weak fairness, but {unfair} are unfair"
        )
    return {
        a.name: Step(a.name, a.per, a.actor, params.get(a.per), *steps[a.name], fair=a.fair) for a in acts
    }


#: The all-tabs encoding, in the words reports use.
MODEL_TEXT = (
    "SPEC §3-5 for any number of tabs and messages (`kvheal.model.param`): Tab and Msg are "
    "uninterpreted sorts, owner : Msg → Tab, every state variable a function over them (phases "
    "as enumerations, the cache and every snapshot a set: a relation snap(holder, id)); each "
    "action is a schema with a parameter (m1 or t1) whose frame is stated with ∀. A query is "
    "about one state s and one step of one schema, for every size at once. The invariants' "
    "names are those of kvheal.model.strengthen, stated for the sets. The schemas are written by "
    "hand, each named by the definition's action it encodes (kvheal.model.definition.ACTIONS; the "
    "list of actions and their fairness come from the definition). For each design proved "
    "(atomic_cache,dedupe, dedupe,keep_verifying, dedupe,sweeper, as_built_fixed) a test closes the "
    "sorts to the ids of small configurations (tabs 2, tabs 1 with 2 messages each, tabs 3; "
    "as_built_fixed at tabs 1 and 2, and tabs 1 with 2 messages each) and checks, on every "
    "reachable state of the explicit model, that Inv holds and that each schema admits exactly the "
    "explicit successor of the same action."
)


class ParamResult:
    """The parameterized verdicts, shaped like :class:`kvheal.model.prove.ProveResult`."""

    def __init__(
        self,
        variants: frozenset[str],
        properties: dict[str, PropertyProof],
        seconds: float,
        invariant: list[str],
    ) -> None:
        self.variants, self.properties, self.seconds, self.invariant = (
            variants,
            properties,
            seconds,
            invariant,
        )
        self.assumptions = ASSUMPTIONS
        #: what the report says of the model
        self.model_text = MODEL_TEXT
        label = ",".join(v for v in VARIANTS if v in variants) or "seed"
        self.config = type(
            "AllTabs",
            (),
            {
                "tabs": "all",
                "per_tab": "any",
                "cap": "≥ messages",
                "variant_label": staticmethod(lambda: label),
            },
        )()

    @property
    def ok(self) -> bool:
        return all(p.status == PROVED for p in self.properties.values())

    @property
    def violated(self) -> bool:
        return False

    def as_json(self) -> dict:
        return {
            "tabs": "all",
            "variant": self.config.variant_label(),
            "seconds": round(self.seconds, 3),
            "invariant": self.invariant,
            "assumptions": list(self.assumptions),
            "properties": {n: p.as_json() for n, p in self.properties.items()},
        }


class _Encoding:
    """What the all-tabs encodings share: a state ``s`` (and ``s2``, the next) maps each
    variable's name to a z3 function over the sorts Msg and Tab; ``m`` is a Msg variable."""

    s: dict
    s2: dict
    m: z3.ExprRef

    def upd(self, k: str, key: z3.ExprRef, val: z3.ExprRef) -> z3.BoolRef:
        """``k(key) := val``; the other messages' values unchanged."""
        m = self.m
        return z3.ForAll([m], self.s2[k](m) == z3.If(m == key, val, self.s[k](m)))

    @staticmethod
    def _step(guard: z3.BoolRef, *updates: z3.BoolRef) -> tuple[z3.BoolRef, z3.BoolRef]:
        return guard, z3.And(guard, *updates)

    def init_messages(self) -> z3.BoolRef:
        """Every message initially unsent, not stored, cached or pending, its heal idle."""
        s, m = self.s, self.m
        return z3.ForAll(
            [m],
            z3.And(
                s["post"](m) == self.UNSENT,
                z3.Not(s["stored"](m)),
                z3.Not(s["cache"](m)),
                z3.Not(s["pending"](m)),
                s["heal"](m) == self.IDLE,
            ),
        )


class _AtomicDedupe(_Encoding):
    """``atomic_cache,dedupe`` (cap ≥ messages) for any number of tabs and messages: tabs and
    messages are uninterpreted sorts, every SPEC §3 variable a function over them (the cache
    and the poll snapshots sets: with dedupe no value repeats an id, nothing is trimmed);
    schemas with parameter ``m0`` or ``t0``, named by the definition's actions."""

    variants = frozenset({"atomic_cache", "dedupe"})

    def __init__(self) -> None:
        self.Tab, self.Msg = z3.DeclareSort("Tab"), z3.DeclareSort("Msg")
        self.Post, (self.UNSENT, self.KEYW, self.CW, self.ACKED) = _enum(
            "Post", ["Unsent", "KeyWritten", "CacheWritten", "Acked"]
        )
        self.Heal, (self.IDLE, self.REQ, self.KEYR) = _enum("Heal", ["Idle", "Requested", "KeyRead"])
        self.owner = z3.Function("owner", self.Msg, self.Tab)
        self.m, self.j = z3.Consts("m j", self.Msg)
        self.t, self.u = z3.Consts("t u", self.Tab)
        self.m0, self.t0 = z3.Const("m0", self.Msg), z3.Const("t0", self.Tab)
        self.s, self.s2 = self.state(""), self.state("'")

    def state(self, tag: str) -> dict:
        Msg, Tab, B = self.Msg, self.Tab, z3.BoolSort()
        return {
            "post": z3.Function(f"post{tag}", Msg, self.Post),
            "stored": z3.Function(f"stored{tag}", Msg, B),
            "cache": z3.Function(f"cache{tag}", Msg, B),
            "pending": z3.Function(f"pending{tag}", Msg, B),
            "poll": z3.Function(f"poll{tag}", Tab, B),
            "snap": z3.Function(f"snap{tag}", Tab, Msg, B),
            "heal": z3.Function(f"heal{tag}", Msg, self.Heal),
        }

    def same(self, *except_: str) -> list[z3.BoolRef]:
        s, s2, m, t = self.s, self.s2, self.m, self.t
        out = []
        for k in ("post", "stored", "cache", "pending", "heal"):
            if k not in except_:
                out.append(z3.ForAll([m], s2[k](m) == s[k](m)))
        if "poll" not in except_:
            out.append(z3.ForAll([t], s2["poll"](t) == s["poll"](t)))
        if "snap" not in except_:
            out.append(z3.ForAll([t, m], s2["snap"](t, m) == s["snap"](t, m)))
        return out

    def steps(self) -> dict[str, Step]:
        """The schemas, by the definition's action names."""
        s, s2, m, t, m0, t0, owner = self.s, self.s2, self.m, self.t, self.m0, self.t0, self.owner
        upd, same, T = self.upd, self.same, z3.BoolVal(True)
        no = z3.BoolVal(False)
        written = z3.Not(s["cache"](m0))  # dedupe: the atomic write adds m0 only when absent
        steps = {
            "PostKey": self._step(
                s["post"](m0) == self.UNSENT,
                upd("post", m0, self.KEYW),
                upd("stored", m0, T),
                *same("post", "stored"),
            )
            + (no,),
            "PostCache": self._step(
                s["post"](m0) == self.KEYW,
                upd("post", m0, self.CW),
                upd("cache", m0, T),
                *same("post", "cache"),
            )
            + (written,),
            "PostAck": self._step(
                s["post"](m0) == self.CW,
                upd("post", m0, self.ACKED),
                upd("pending", m0, T),
                *same("post", "pending"),
            )
            + (no,),
            "PollRead": self._step(
                z3.Not(s["poll"](t0)),
                z3.ForAll([t], s2["poll"](t) == z3.Or(s["poll"](t), t == t0)),
                z3.ForAll([t, m], s2["snap"](t, m) == z3.If(t == t0, s["cache"](m), s["snap"](t, m))),
                *same("poll", "snap"),
            )
            + (no,),
            "PollDone": self._step(
                s["poll"](t0),
                z3.ForAll([t], s2["poll"](t) == z3.And(s["poll"](t), t != t0)),
                z3.ForAll([t, m], s2["snap"](t, m) == z3.And(s["snap"](t, m), t != t0)),
                z3.ForAll(
                    [m],
                    s2["pending"](m)
                    == z3.And(s["pending"](m), z3.Not(z3.And(owner(m) == t0, s["snap"](t0, m)))),
                ),
                z3.ForAll(
                    [m],
                    s2["heal"](m)
                    == z3.If(
                        z3.And(
                            owner(m) == t0,
                            s["pending"](m),
                            z3.Not(s["snap"](t0, m)),
                            s["heal"](m) == self.IDLE,
                        ),
                        self.REQ,
                        s["heal"](m),
                    ),
                ),
                *same("poll", "snap", "pending", "heal"),
            )
            + (no,),
            "HealKey": self._step(
                s["heal"](m0) == self.REQ,
                upd("heal", m0, z3.If(s["stored"](m0), self.KEYR, self.IDLE)),
                *same("heal"),
            )
            + (no,),
            "HealCache": self._step(
                s["heal"](m0) == self.KEYR,
                upd("heal", m0, self.IDLE),
                upd("cache", m0, T),
                *same("heal", "cache"),
            )
            + (written,),
        }
        return name_steps(self.variants, steps, {"m": m0, "heal": m0, "t": t0})

    def init(self) -> z3.BoolRef:
        s, m, t = self.s, self.m, self.t
        return z3.And(
            self.init_messages(),
            z3.ForAll([t], z3.Not(s["poll"](t))),
            z3.ForAll([t, m], z3.Not(s["snap"](t, m))),
        )

    def invariant(self) -> dict[str, Callable[[dict], z3.BoolRef]]:
        """The all-tabs inductive invariant, by the names of :mod:`kvheal.model.strengthen`."""
        m, UNSENT, CW, ACKED, IDLE = self.m, self.UNSENT, self.CW, self.ACKED, self.IDLE
        return {
            "StoredIsPosted": lambda st: z3.ForAll([m], st["stored"](m) == (st["post"](m) != UNSENT)),
            "WrittenIsCached": lambda st: z3.ForAll(
                [m], z3.Implies(z3.Or(st["post"](m) == CW, st["post"](m) == ACKED), st["cache"](m))
            ),
            "CacheFromStore": lambda st: z3.ForAll([m], z3.Implies(st["cache"](m), st["stored"](m))),
            "HealsAreAcked": lambda st: z3.ForAll(
                [m], z3.Implies(st["heal"](m) != IDLE, st["post"](m) == ACKED)
            ),
            "PendingIsAcked": lambda st: z3.ForAll([m], z3.Implies(st["pending"](m), st["post"](m) == ACKED)),
        }

    def goal(self, st: dict) -> z3.BoolRef:
        """Converges' goal with cap ≥ messages: every acknowledged message is in the cache."""
        m = self.m
        return z3.ForAll([m], z3.Implies(st["post"](m) == self.ACKED, st["cache"](m)))


def _atomic_dedupe() -> tuple[dict[str, PropertyProof], list[str]]:
    enc = _AtomicDedupe()
    s, s2 = enc.s, enc.s2
    actions = {st.label: st.rel for st in enc.steps().values()}
    inv_parts = enc.invariant()
    inv = z3.And([f(s) for f in inv_parts.values()])
    inv2 = z3.And([f(s2) for f in inv_parts.values()])
    queries: list[Query] = []

    def ask(name: str, purpose: str, formula: str, *facts: z3.BoolRef) -> bool:
        return _ask_unsat(queries, name, purpose, formula, *facts)

    ok = _inductive(queries, enc.init(), inv, inv2, actions)
    goal = enc.goal(s)
    ok_goal = ask(
        "goal",
        "does Inv imply that every acknowledged message is in the cache?",
        "Inv(s) ∧ ¬(∀m. post(m) = Acked → cache(m))",
        inv,
        z3.Not(goal),
    )
    nodup = ok  # the cache is a set: ids are added only by `cache(m) := true`
    out: dict[str, PropertyProof] = {}
    for name, holds in (
        ("AckedIsStored", ok),
        ("CacheFromStore", ok),
        ("NoDuplicates", nodup),
        ("Converges", ok and ok_goal),
    ):
        pf = PropertyProof(
            name,
            "invariant" if name != "Converges" else "eventually_always",
            PROVED if holds else UNKNOWN,
            "parameterized inductive invariant (EPR)",
            queries=list(queries),
            invariants=list(inv_parts),
        )
        pf.seconds = sum(q.seconds for q in queries)
        if name == "NoDuplicates":
            pf.note = (
                "the cache is modelled as a set (dedupe: an id is added only when absent), so no id repeats"
            )
        if name == "Converges":
            pf.note = (
                "the goal (every acknowledged message is cached) is implied by Inv in every reachable state"
            )
        out[name] = pf
    return out, list(inv_parts)


# ---------------------------------------------------------------------- dedupe,keep_verifying / sweeper
class _KeepVerifying(_Encoding):
    """``dedupe,keep_verifying`` (non-atomic cache update, cap ≥ messages) for any number of
    tabs and messages: tabs and messages are uninterpreted sorts, every SPEC §3 variable a
    function over them, every snapshot a relation ``snap(holder, id)``. With
    ``keep_verifying=False, sweeper=True`` it is ``dedupe,sweeper`` (the sweeper's phase a
    constant, its listing and snapshot relations over ids).

    The cache is a set: with ``dedupe`` a writer adds its id only when its snapshot lacks it,
    snapshots are copies of the cache, so no value ever repeats an id, and a value without
    repeats has at most ``messages ≤ cap`` entries, so ``add`` never trims (the fixed-size
    proofs check both facts as ``ValuesNoDuplicates`` and ``ValuesFit``). A write is
    *effective* when the writer's snapshot lacks its id: it sets the cache to ``snapshot +
    id``; any other write leaves the cache as it is.
    """

    def __init__(self, keep_verifying: bool = True, sweeper: bool = False) -> None:
        self.keep_verifying, self.sweeper = keep_verifying, sweeper
        self.Tab, self.Msg = z3.DeclareSort("Tab"), z3.DeclareSort("Msg")
        self.Sweep, (self.SIDLE, self.SLISTED, self.SREAD) = _enum("SweepKV", ["Idle", "Listed", "Read"])
        self.Post, (self.UNSENT, self.KEYW, self.PREAD, self.CW, self.ACKED) = _enum(
            "PostKV", ["Unsent", "KeyWritten", "CacheRead", "CacheWritten", "Acked"]
        )
        self.Heal, (self.IDLE, self.REQ, self.KEYR, self.HREAD) = _enum(
            "HealKV", ["Idle", "Requested", "KeyRead", "CacheRead"]
        )
        self.owner = z3.Function("owner", self.Msg, self.Tab)
        self.m, self.j = z3.Consts("m j", self.Msg)
        self.t = z3.Const("t", self.Tab)
        self.m1, self.t1 = z3.Const("m1", self.Msg), z3.Const("t1", self.Tab)
        self.s, self.s2 = self.state(""), self.state("'")

    def state(self, tag: str) -> dict:
        B, Msg, Tab = z3.BoolSort(), self.Msg, self.Tab
        return {
            "post": z3.Function(f"post{tag}", Msg, self.Post),
            "stored": z3.Function(f"stored{tag}", Msg, B),
            "psnap": z3.Function(f"psnap{tag}", Msg, Msg, B),
            "cache": z3.Function(f"cache{tag}", Msg, B),
            "pending": z3.Function(f"pending{tag}", Msg, B),
            "poll": z3.Function(f"poll{tag}", Tab, B),
            "snap": z3.Function(f"snap{tag}", Tab, Msg, B),
            "heal": z3.Function(f"heal{tag}", Msg, self.Heal),
            "hsnap": z3.Function(f"hsnap{tag}", Msg, Msg, B),
            **(
                {
                    "sweep": z3.Const(f"sweep{tag}", self.Sweep),
                    "slist": z3.Function(f"slist{tag}", Msg, B),
                    "ssnap": z3.Function(f"ssnap{tag}", Msg, B),
                }
                if self.sweeper
                else {}
            ),
        }

    # -- frames
    _UNARY_MSG = ("post", "stored", "cache", "pending", "heal")
    _BINARY_MSG = ("psnap", "hsnap")

    def same(self, *changed: str) -> list[z3.BoolRef]:
        s, s2, m, j, t = self.s, self.s2, self.m, self.j, self.t
        out = [z3.ForAll([m], s2[k](m) == s[k](m)) for k in self._UNARY_MSG if k not in changed]
        out += [z3.ForAll([m, j], s2[k](m, j) == s[k](m, j)) for k in self._BINARY_MSG if k not in changed]
        if "poll" not in changed:
            out.append(z3.ForAll([t], s2["poll"](t) == s["poll"](t)))
        if "snap" not in changed:
            out.append(z3.ForAll([t, j], s2["snap"](t, j) == s["snap"](t, j)))
        if self.sweeper:
            if "sweep" not in changed:
                out.append(s2["sweep"] == s["sweep"])
            out += [z3.ForAll([j], s2[k](j) == s[k](j)) for k in ("slist", "ssnap") if k not in changed]
        return out

    def upd_row(self, k: str, key: z3.ExprRef, val: Callable[[z3.ExprRef], z3.ExprRef]) -> z3.BoolRef:
        """``k(key, j) := val(j)`` for every ``j``; other rows unchanged."""
        m, j = self.m, self.j
        return z3.ForAll([m, j], self.s2[k](m, j) == z3.If(m == key, val(j), self.s[k](m, j)))

    def write(self, snapk: str, w: z3.ExprRef) -> z3.BoolRef:
        """The cache after writer ``w`` writes its snapshot ``snapk(w, ·)`` plus ``w``."""
        s, s2, j = self.s, self.s2, self.j
        eff = z3.Not(s[snapk](w, w))
        return z3.ForAll([j], s2["cache"](j) == z3.If(eff, z3.Or(s[snapk](w, j), j == w), s["cache"](j)))

    @property
    def variants(self) -> frozenset[str]:
        """The design this encoding is of."""
        return frozenset(
            {"dedupe"}
            | ({"keep_verifying"} if self.keep_verifying else set())
            | ({"sweeper"} if self.sweeper else set())
        )

    def actions(self) -> dict[str, tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]]:
        """The schemas by label (``PostKey(m1)``, ``SweepList``): (guard, the whole step
        relation, whether the step is an effective cache write)."""
        return {st.label: (st.guard, st.rel, st.effective) for st in self.steps().values()}

    def steps(self) -> dict[str, Step]:
        """The schemas, by the definition's action names (parameter ``m1`` or ``t1``)."""
        return name_steps(self.variants, self._steps(), {"m": self.m1, "heal": self.m1, "t": self.t1})

    def _steps(self) -> dict[str, tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]]:
        s, s2, m1, t1, m, j = self.s, self.s2, self.m1, self.t1, self.m, self.j
        T = z3.BoolVal(True)
        no = z3.BoolVal(False)
        return {
            "PostKey": (
                *self._step(
                    s["post"](m1) == self.UNSENT,
                    self.upd("post", m1, self.KEYW),
                    self.upd("stored", m1, T),
                    *self.same("post", "stored"),
                ),
                no,
            ),
            "PostRead": self.read_step("post", "psnap", self.KEYW, self.PREAD),
            "PostWrite": self.write_step("post", "psnap", self.PREAD, self.CW),
            "PostAck": (
                *self._step(
                    s["post"](m1) == self.CW,
                    self.upd("post", m1, self.ACKED),
                    self.upd("pending", m1, T),
                    *self.same("post", "pending"),
                ),
                no,
            ),
            "PollRead": (
                *self._step(
                    z3.Not(s["poll"](t1)),
                    z3.ForAll([self.t], s2["poll"](self.t) == z3.Or(s["poll"](self.t), self.t == t1)),
                    z3.ForAll(
                        [self.t, j],
                        s2["snap"](self.t, j) == z3.If(self.t == t1, s["cache"](j), s["snap"](self.t, j)),
                    ),
                    *self.same("poll", "snap"),
                ),
                no,
            ),
            "PollDone": (
                *self._step(
                    s["poll"](t1),
                    z3.ForAll([self.t], s2["poll"](self.t) == z3.And(s["poll"](self.t), self.t != t1)),
                    z3.ForAll(
                        [self.t, j], s2["snap"](self.t, j) == z3.And(s["snap"](self.t, j), self.t != t1)
                    ),
                    z3.ForAll(
                        [m],
                        s2["heal"](m)
                        == z3.If(
                            z3.And(
                                self.owner(m) == t1,
                                s["pending"](m),
                                z3.Not(s["snap"](t1, m)),
                                s["heal"](m) == self.IDLE,
                            ),
                            self.REQ,
                            s["heal"](m),
                        ),
                    ),
                    *(
                        []
                        if self.keep_verifying
                        else [
                            z3.ForAll(
                                [m],
                                s2["pending"](m)
                                == z3.And(
                                    s["pending"](m), z3.Not(z3.And(self.owner(m) == t1, s["snap"](t1, m)))
                                ),
                            )
                        ]
                    ),
                    *self.same("poll", "snap", "heal", *([] if self.keep_verifying else ["pending"])),
                ),
                no,
            ),
            "HealKey": (
                *self._step(
                    s["heal"](m1) == self.REQ,
                    self.upd("heal", m1, z3.If(s["stored"](m1), self.KEYR, self.IDLE)),
                    *self.same("heal"),
                ),
                no,
            ),
            "HealRead": self.read_step("heal", "hsnap", self.KEYR, self.HREAD),
            "HealWrite": self.write_step("heal", "hsnap", self.HREAD, self.IDLE),
            **(self._sweep_actions() if self.sweeper else {}),
        }

    def read_step(
        self, phase: str, snapk: str, at: z3.ExprRef, to: z3.ExprRef
    ) -> tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]:
        """The schema of ``m1``'s cache read (a post's or a heal's): ``phase[m1]`` from ``at``
        to ``to``, the snapshot row ``snapk(m1, ·)`` := the cache; never an effective write."""
        s, m1 = self.s, self.m1
        return (
            *self._step(
                s[phase](m1) == at,
                self.upd(phase, m1, to),
                self.upd_row(snapk, m1, lambda x: s["cache"](x)),
                *self.same(phase, snapk),
            ),
            z3.BoolVal(False),
        )

    def write_step(
        self, phase: str, snapk: str, at: z3.ExprRef, to: z3.ExprRef
    ) -> tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]:
        """The schema of ``m1``'s cache write: ``phase[m1]`` from ``at`` to ``to``, the cache
        := the snapshot plus ``m1`` (:meth:`write`), the snapshot row cleared; effective when
        the snapshot lacks ``m1``."""
        s, m1 = self.s, self.m1
        return (
            *self._step(
                s[phase](m1) == at,
                self.upd(phase, m1, to),
                self.write(snapk, m1),
                self.upd_row(snapk, m1, lambda x: z3.BoolVal(False)),
                *self.same(phase, "cache", snapk),
            ),
            z3.Not(s[snapk](m1, m1)),
        )

    def sweep_effective(self, st: dict) -> z3.BoolRef:
        """The sweeper's write will change the cache: it listed an id its snapshot lacks."""
        return z3.Exists([self.j], z3.And(st["slist"](self.j), z3.Not(st["ssnap"](self.j))))

    def _sweep_actions(self) -> dict[str, tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]]:
        s, s2, j = self.s, self.s2, self.j
        F = z3.BoolVal(False)
        eff = self.sweep_effective(s)
        return {
            "SweepList": (
                *self._step(
                    s["sweep"] == self.SIDLE,
                    s2["sweep"] == self.SLISTED,
                    z3.ForAll([j], s2["slist"](j) == s["stored"](j)),
                    *self.same("sweep", "slist"),
                ),
                F,
            ),
            "SweepRead": (
                *self._step(
                    s["sweep"] == self.SLISTED,
                    s2["sweep"] == self.SREAD,
                    z3.ForAll([j], s2["ssnap"](j) == s["cache"](j)),
                    *self.same("sweep", "ssnap"),
                ),
                F,
            ),
            "SweepWrite": (
                *self._step(
                    s["sweep"] == self.SREAD,
                    s2["sweep"] == self.SIDLE,
                    z3.ForAll(
                        [j], s2["cache"](j) == z3.If(eff, z3.Or(s["ssnap"](j), s["slist"](j)), s["cache"](j))
                    ),
                    z3.ForAll([j], z3.Not(s2["slist"](j))),
                    z3.ForAll([j], z3.Not(s2["ssnap"](j))),
                    *self.same("sweep", "cache", "slist", "ssnap"),
                ),
                eff,
            ),
        }

    def init(self) -> z3.BoolRef:
        s, m, j, t = self.s, self.m, self.j, self.t
        return z3.And(
            self.init_messages(),
            z3.ForAll([m, j], z3.And(z3.Not(s["psnap"](m, j)), z3.Not(s["hsnap"](m, j)))),
            z3.ForAll([t], z3.Not(s["poll"](t))),
            z3.ForAll([t, j], z3.Not(s["snap"](t, j))),
            *(
                [
                    s["sweep"] == self.SIDLE,
                    z3.ForAll([j], z3.And(z3.Not(s["slist"](j)), z3.Not(s["ssnap"](j)))),
                ]
                if self.sweeper
                else []
            ),
        )

    def invariant(self) -> dict[str, Callable[[dict], z3.BoolRef]]:
        """The all-tabs strengthening invariant, by the names of :mod:`kvheal.model.strengthen`."""
        m, j, t = self.m, self.j, self.t
        parts = {
            "StoredIsPosted": lambda st: z3.ForAll([m], st["stored"](m) == (st["post"](m) != self.UNSENT)),
            "SnapshotsCleared": lambda st: z3.And(
                z3.ForAll([m, j], z3.Implies(st["post"](m) != self.PREAD, z3.Not(st["psnap"](m, j)))),
                z3.ForAll([m, j], z3.Implies(st["heal"](m) != self.HREAD, z3.Not(st["hsnap"](m, j)))),
                z3.ForAll([t, j], z3.Implies(z3.Not(st["poll"](t)), z3.Not(st["snap"](t, j)))),
            ),
            "ValuesFromStore": lambda st: z3.And(
                z3.ForAll(
                    [m, j],
                    z3.And(
                        z3.Implies(st["cache"](j), st["stored"](j)),
                        z3.Implies(st["psnap"](m, j), st["stored"](j)),
                        z3.Implies(st["hsnap"](m, j), st["stored"](j)),
                    ),
                ),
                z3.ForAll([t, j], z3.Implies(st["snap"](t, j), st["stored"](j))),
            ),
            "PendingIsAcked": lambda st: z3.ForAll(
                [m], z3.Implies(st["pending"](m), st["post"](m) == self.ACKED)
            ),
            "AckedIsPending": lambda st: z3.ForAll(
                [m], z3.Implies(st["post"](m) == self.ACKED, st["pending"](m))
            ),
            "HealsAreAcked": lambda st: z3.ForAll(
                [m], z3.Implies(st["heal"](m) != self.IDLE, st["post"](m) == self.ACKED)
            ),
        }
        if not self.keep_verifying:
            del parts["AckedIsPending"]
        if self.sweeper:
            parts["SweepCleared"] = lambda st: z3.ForAll(
                [j],
                z3.And(
                    z3.Implies(st["sweep"] != self.SREAD, z3.Not(st["ssnap"](j))),
                    z3.Implies(st["sweep"] == self.SIDLE, z3.Not(st["slist"](j))),
                ),
            )
            parts["SweepFromStore"] = lambda st: z3.ForAll(
                [j],
                z3.And(
                    z3.Implies(st["ssnap"](j), st["stored"](j)), z3.Implies(st["slist"](j), st["stored"](j))
                ),
            )
        return parts

    # -- the per-message chain of a fixed acknowledged id m0 (see _keep_verifying)
    def dist(self, st: dict, m0: z3.ExprRef) -> z3.ArithRef:
        if self.sweeper:  # the sweeper's loop: Idle 3, Listed with m0 1 (without 5), Read 0 or 4
            ph = st["sweep"]
            return z3.If(
                ph == self.SIDLE,
                3,
                z3.If(
                    ph == self.SLISTED,
                    z3.If(st["slist"](m0), 1, 5),
                    z3.If(z3.And(st["slist"](m0), z3.Not(st["ssnap"](m0))), 0, 4),
                ),
            )
        o = self.owner(m0)
        h = st["heal"](m0)
        idle = z3.If(st["poll"](o), z3.If(st["snap"](o, m0), 5, 3), 4)
        return z3.If(
            h == self.IDLE,
            idle,
            z3.If(h == self.REQ, 2, z3.If(h == self.KEYR, 1, z3.If(st["hsnap"](m0, m0), 6, 0))),
        )

    def post_rank(self, st: dict, m0: z3.ExprRef) -> z3.ArithRef:
        p = st["post"](m0)
        return z3.If(
            p == self.UNSENT,
            4,
            z3.If(p == self.KEYW, 3, z3.If(p == self.PREAD, 2, z3.If(p == self.CW, 1, 0))),
        )


def _finite_writes(kv: _KeepVerifying, inv: z3.BoolRef, ask: Callable[..., bool], log: list[Query]) -> bool:
    """The one-step facts behind "finitely many effective writes", for every size (part W of
    :data:`KV_ARGUMENT`).

    Ghost state, after every post is acknowledged: ``nm`` bounds the size of the cache's
    missing set X, witnessed by ``idxC``, one-to-one from X into ``0..nm-1``; for each
    effective heal ``w`` (CacheRead, snapshot lacking ``w``), ``sz(w)`` bounds the missing set
    ``X_w`` it will write (ids neither in its snapshot nor ``w``), witnessed by ``idxW(w, ·)``.
    An effective read by ``m1`` sets ``sz(m1) := nm - 1`` and numbers ``X ∖ {m1}`` by closing
    the gap at ``idxC(m1)``; an effective write sets ``nm := sz(m1)``, ``idxC := idxW(m1, ·)``.
    The queries mix quantifiers with integer arithmetic (outside EPR); z3 answers them."""
    s, s2, m1, m, j = kv.s, kv.s2, kv.m1, kv.m, kv.j
    I, Msg = z3.IntSort(), kv.Msg
    w, w2 = z3.Consts("w w2", Msg)
    k = z3.Int("k")

    def ghost(tag: str) -> dict:
        return {
            "nm": z3.Int(f"nm{tag}"),
            "idxC": z3.Function(f"idxC{tag}", Msg, I),
            "sz": z3.Function(f"sz{tag}", Msg, I),
            "idxW": z3.Function(f"idxW{tag}", Msg, Msg, I),
            "szS": z3.Int(f"szS{tag}"),
            "idxS": z3.Function(f"idxS{tag}", Msg, I),
        }

    # The sweeper (if any) is one more writer: effective in Read when it listed an id its
    # snapshot lacks; it will leave missing X_S, the ids neither listed nor in its snapshot.
    def ES(st: dict) -> z3.BoolRef:
        return z3.And(st["sweep"] == kv.SREAD, kv.sweep_effective(st)) if kv.sweeper else z3.BoolVal(False)

    def inXS(st: dict, y: z3.ExprRef) -> z3.BoolRef:
        return z3.And(z3.Not(st["ssnap"](y)), z3.Not(st["slist"](y)))

    g, g2 = ghost(""), ghost("'")

    def E(st: dict, x: z3.ExprRef) -> z3.BoolRef:
        return z3.And(st["heal"](x) == kv.HREAD, z3.Not(st["hsnap"](x, x)))

    def inX(st: dict, x: z3.ExprRef) -> z3.BoolRef:
        return z3.Not(st["cache"](x))

    def inXw(st: dict, x: z3.ExprRef, y: z3.ExprRef) -> z3.BoolRef:
        return z3.And(z3.Not(st["hsnap"](x, y)), y != x)

    def G(st: dict, gh: dict) -> z3.BoolRef:
        j2 = z3.Const("j2", Msg)
        return z3.And(
            gh["nm"] >= 0,
            z3.ForAll([j], z3.Implies(inX(st, j), z3.And(gh["idxC"](j) >= 0, gh["idxC"](j) < gh["nm"]))),
            z3.ForAll(
                [j, j2], z3.Implies(z3.And(inX(st, j), inX(st, j2), gh["idxC"](j) == gh["idxC"](j2)), j == j2)
            ),
            z3.ForAll([w], z3.Implies(E(st, w), gh["sz"](w) >= 0)),
            z3.ForAll(
                [w, j],
                z3.Implies(
                    z3.And(E(st, w), inXw(st, w, j)),
                    z3.And(gh["idxW"](w, j) >= 0, gh["idxW"](w, j) < gh["sz"](w)),
                ),
            ),
            z3.ForAll(
                [w, j, j2],
                z3.Implies(
                    z3.And(E(st, w), inXw(st, w, j), inXw(st, w, j2), gh["idxW"](w, j) == gh["idxW"](w, j2)),
                    j == j2,
                ),
            ),
            *(
                [
                    z3.Implies(
                        ES(st),
                        z3.And(
                            gh["szS"] >= 0,
                            z3.ForAll(
                                [j],
                                z3.Implies(
                                    inXS(st, j), z3.And(gh["idxS"](j) >= 0, gh["idxS"](j) < gh["szS"])
                                ),
                            ),
                            z3.ForAll(
                                [j, j2],
                                z3.Implies(
                                    z3.And(inXS(st, j), inXS(st, j2), gh["idxS"](j) == gh["idxS"](j2)),
                                    j == j2,
                                ),
                            ),
                        ),
                    )
                ]
                if kv.sweeper
                else []
            ),
        )

    def Le(st: dict, gh: dict, lvl: z3.ArithRef) -> z3.BoolRef:
        return z3.And(
            gh["nm"] <= lvl,
            z3.ForAll([w], z3.Implies(E(st, w), gh["sz"](w) <= lvl)),
            z3.Implies(ES(st), gh["szS"] <= lvl),
        )

    same_s = [g2["szS"] == g["szS"], z3.ForAll([j], g2["idxS"](j) == g["idxS"](j))]
    same_g = [
        g2["nm"] == g["nm"],
        z3.ForAll([j], g2["idxC"](j) == g["idxC"](j)),
        z3.ForAll([w], g2["sz"](w) == g["sz"](w)),
        z3.ForAll([w, j], g2["idxW"](w, j) == g["idxW"](w, j)),
        *same_s,
    ]
    c = z3.Const("c", Msg)  # the sweeper's read: some listed id the cache lacks
    acts = kv.actions()
    eff_read = inX(s, m1)
    ghost_rel = {}
    for name, (_, rel, _) in acts.items():
        if name == "HealRead(m1)":
            gr = z3.And(
                g2["nm"] == g["nm"],
                z3.ForAll([j], g2["idxC"](j) == g["idxC"](j)),
                z3.ForAll([w], g2["sz"](w) == z3.If(z3.And(w == m1, eff_read), g["nm"] - 1, g["sz"](w))),
                z3.ForAll(
                    [w, j],
                    g2["idxW"](w, j)
                    == z3.If(
                        z3.And(w == m1, eff_read),
                        z3.If(g["idxC"](j) < g["idxC"](m1), g["idxC"](j), g["idxC"](j) - 1),
                        g["idxW"](w, j),
                    ),
                ),
                *same_s,
            )
        elif name == "SweepRead":
            # effective when it listed an id the cache lacks; the ghost numbers X_S by closing
            # the gap at one such id c (any will do: the queries hold for every choice)
            effr = z3.Exists([j], z3.And(s["slist"](j), inX(s, j)))
            gr = z3.And(
                *same_g[:4],
                z3.Implies(effr, z3.And(s["slist"](c), inX(s, c))),
                z3.If(
                    effr,
                    z3.And(
                        g2["szS"] == g["nm"] - 1,
                        z3.ForAll(
                            [j],
                            g2["idxS"](j)
                            == z3.If(g["idxC"](j) < g["idxC"](c), g["idxC"](j), g["idxC"](j) - 1),
                        ),
                    ),
                    z3.And(same_s),
                ),
            )
        elif name == "SweepWrite":
            effw = ES(s)
            gr = z3.And(
                g2["nm"] == z3.If(effw, g["szS"], g["nm"]),
                z3.ForAll([j], g2["idxC"](j) == z3.If(effw, g["idxS"](j), g["idxC"](j))),
                *same_g[2:],
            )
        elif name == "HealWrite(m1)":
            effw = E(s, m1)
            gr = z3.And(
                g2["nm"] == z3.If(effw, g["sz"](m1), g["nm"]),
                z3.ForAll([j], g2["idxC"](j) == z3.If(effw, g["idxW"](m1, j), g["idxC"](j))),
                z3.ForAll([w], g2["sz"](w) == g["sz"](w)),
                z3.ForAll([w, j], g2["idxW"](w, j) == g["idxW"](w, j)),
                *same_s,
            )
        else:
            gr = z3.And(same_g)
        ghost_rel[name] = z3.And(rel, gr)
    allacked = z3.ForAll([m], s["post"](m) == kv.ACKED)
    base = [inv, allacked, G(s, g)]
    ok = True
    for name, (_, rel, _) in acts.items():
        ok &= ask(
            log,
            f"acked-stays-{name}",
            f"does {name} keep every acknowledged message acknowledged?",
            f"Inv(s) ∧ post(m0) = Acked ∧ {name}(s,s') ∧ post'(m0) ≠ Acked",
            inv,
            rel,
            s["post"](w2) == kv.ACKED,
            s2["post"](w2) != kv.ACKED,
        )
    for name, rel in ghost_rel.items():
        ok &= ask(
            log,
            f"ghost-{name}",
            f"does {name} keep the ghost bounds G (all acknowledged)?",
            f"Inv(s) ∧ Acked(s) ∧ G(s) ∧ {name}⁺(s,s') ∧ ¬G(s')",
            *base,
            rel,
            z3.Not(G(s2, g2)),
        )
        ok &= ask(
            log,
            f"level-{name}",
            f"can {name} raise the level bound k?",
            f"Inv ∧ Acked ∧ G ∧ Le_k(s) ∧ {name}⁺(s,s') ∧ ¬Le_k(s')",
            *base,
            Le(s, g, k),
            rel,
            z3.Not(Le(s2, g2, k)),
        )
        ok &= ask(
            log,
            f"top-no-new-{name}",
            f"can {name} add a writer at the top level k?",
            f"Inv ∧ Acked ∧ G ∧ Le_k(s) ∧ {name}⁺(s,s') ∧ ∃w. E'(w) ∧ sz'(w) = k ∧ ¬(E(w) ∧ sz(w) = k)",
            *base,
            Le(s, g, k),
            rel,
            z3.Or(
                z3.Exists([w], z3.And(E(s2, w), g2["sz"](w) == k, z3.Not(z3.And(E(s, w), g["sz"](w) == k)))),
                z3.And(ES(s2), g2["szS"] == k, z3.Not(z3.And(ES(s), g["szS"] == k))),
            ),
        )
        if kv.sweeper and name != "SweepWrite":
            ok &= ask(
                log,
                f"sweeper-stays-{name}",
                f"does {name} leave an effective sweeper and its bound alone?",
                f"Inv ∧ Acked ∧ G ∧ E_S(s) ∧ {name}⁺(s,s') ∧ ¬(E_S(s') ∧ szS' = szS)",
                *base,
                ES(s),
                rel,
                z3.Not(z3.And(ES(s2), g2["szS"] == g["szS"])),
            )
        other = [m1 != w2] if name == "HealWrite(m1)" else []
        ok &= ask(
            log,
            f"writer-stays-{name}",
            f"does {name} leave another effective writer and its bound alone?",
            f"Inv ∧ Acked ∧ G ∧ E(w) ∧ {name}⁺(s,s'){' ∧ m1 ≠ w' if other else ''} ∧ ¬(E'(w) ∧ sz'(w) = sz(w))",
            *base,
            E(s, w2),
            rel,
            *other,
            z3.Not(z3.And(E(s2, w2), g2["sz"](w2) == g["sz"](w2))),
        )
    no_top = [z3.ForAll([w], z3.Implies(E(s, w), g["sz"](w) != k)), z3.Implies(ES(s), g["szS"] != k)]
    writes = {"HealWrite(m1)": E(s, m1), **({"SweepWrite": ES(s)} if kv.sweeper else {})}
    for name, eff in writes.items():
        ok &= ask(
            log,
            f"level-falls-{name}",
            f"once no writer is at the top level k, does an effective {name} bring every bound below k?",
            f"Inv ∧ Acked ∧ G ∧ Le_k(s) ∧ no writer at k ∧ {name}⁺ effective ∧ ¬Le_{{k-1}}(s')",
            *base,
            Le(s, g, k),
            *no_top,
            ghost_rel[name],
            eff,
            z3.Not(Le(s2, g2, k - 1)),
        )
    reads = {
        "HealRead(m1)": inX(s, m1),
        **({"SweepRead": z3.Exists([j], z3.And(s["slist"](j), inX(s, j)))} if kv.sweeper else {}),
    }
    for name, eff in reads.items():
        ok &= ask(
            log,
            f"level-zero-{name}",
            f"at level 0, can {name} read the cache effectively?",
            f"Inv ∧ Acked ∧ G ∧ Le_0(s) ∧ {name} ∧ effective read",
            *base,
            Le(s, g, z3.IntVal(0)),
            acts[name][1],
            eff,
        )
    return ok


def _keep_verifying(sweeper: bool = False) -> tuple[dict[str, PropertyProof], list[str]]:
    """All-tabs proofs for ``dedupe,keep_verifying`` (or, with ``sweeper``, ``dedupe,sweeper``):
    the invariant (EPR), then ``Converges`` by the per-message premises and the finite-writes
    premises; :data:`KV_ASSUMPTIONS` says what they assume and :data:`KV_ARGUMENT` how the
    queries combine."""
    kv = _KeepVerifying(keep_verifying=not sweeper, sweeper=sweeper)
    s, s2, m1, t1 = kv.s, kv.s2, kv.m1, kv.t1
    m0 = z3.Const("m0", kv.Msg)
    acts = kv.actions()
    parts = kv.invariant()
    inv = z3.And([f(s) for f in parts.values()])
    inv2 = z3.And([f(s2) for f in parts.values()])
    safety: list[Query] = []
    live: list[Query] = []

    ask = _ask_unsat

    ok = _inductive(safety, kv.init(), inv, inv2, {name: rel for name, (_, rel, _) in acts.items()})
    m = kv.m
    props = {
        "AckedIsStored": z3.ForAll([m], z3.Implies(s["post"](m) == kv.ACKED, s["stored"](m))),
        "CacheFromStore": z3.ForAll([m], z3.Implies(s["cache"](m), s["stored"](m))),
    }
    implied = {}
    for pname, phi in props.items():
        log = list(safety)
        implied[pname] = ok and ask(
            log, f"{pname}-implied", f"does Inv imply {pname}?", f"Inv(s) ∧ ¬{pname}(s)", inv, z3.Not(phi)
        )
        implied[pname + "-log"] = log

    # Liveness, per message. L1: every post reaches Acked.
    acked0, missing0 = s["post"](m0) == kv.ACKED, z3.Not(s["cache"](m0))
    lv = ok
    posts = {st.label for st in kv.steps().values() if st.actor == "request"}  # the POST's steps
    for name, (_, rel, _) in acts.items():
        other = [m1 != m0] if name in posts else []
        lv &= ask(
            live,
            f"post-frame-{name}",
            f"does {name} (of another message) leave post[m0] alone?",
            f"Inv(s) ∧ {name}(s,s'){' ∧ m1 ≠ m0' if other else ''} ∧ post'(m0) ≠ post(m0)",
            inv,
            rel,
            *other,
            s2["post"](m0) != s["post"](m0),
        )
    for name, (_, rel, _) in acts.items():
        if name not in posts:
            continue
        lv &= ask(
            live,
            f"post-advances-{name}",
            f"does {name}(m0) move post[m0] closer to Acked?",
            f"Inv(s) ∧ {name}(s,s')[m1 := m0] ∧ rank'(m0) ≥ rank(m0)",
            inv,
            z3.substitute(rel, (m1, m0)),
            kv.post_rank(s2, m0) >= kv.post_rank(s, m0),
        )
    phases = {
        "PostKey(m1)": kv.UNSENT,
        "PostRead(m1)": kv.KEYW,
        "PostWrite(m1)": kv.PREAD,
        "PostAck(m1)": kv.CW,
    }
    lv &= ask(
        live,
        "post-enabled",
        "is the step of post[m0]'s phase enabled until m0 is acknowledged?",
        "Inv(s) ∧ post(m0) ≠ Acked ∧ ∧_P ¬(post(m0) = phase_P ∧ guard_P(m0))",
        inv,
        z3.Not(acked0),
        *[
            z3.Not(z3.And(s["post"](m0) == ph, z3.substitute(acts[n][0], (m1, m0))))
            for n, ph in phases.items()
        ],
    )
    # L2: a step that is not an effective write leaves the cache as it is.
    j = kv.j
    for name, (_, rel, eff) in acts.items():
        lv &= ask(
            live,
            f"cache-frame-{name}",
            f"does {name}, unless an effective write, keep the cache?",
            f"Inv(s) ∧ {name}(s,s') ∧ ¬effective ∧ ∃j. cache'(j) ≠ cache(j)",
            inv,
            rel,
            z3.Not(eff),
            z3.Exists([j], s2["cache"](j) != s["cache"](j)),
        )
    # L3: the chain of an acknowledged id m0 missing from the cache.
    d, d2 = kv.dist(s, m0), kv.dist(s2, m0)
    for name, (_, rel, eff) in acts.items():
        lv &= ask(
            live,
            f"chain-no-increase-{name}",
            f"can {name}, not an effective write, move m0's heal chain back?",
            f"Inv(s) ∧ post(m0) = Acked ∧ m0 ∉ cache ∧ {name}(s,s') ∧ ¬effective ∧ dist'(m0) > dist(m0)",
            inv,
            acked0,
            missing0,
            rel,
            z3.Not(eff),
            d2 > d,
        )
    o = kv.owner(m0)
    if sweeper:  # the sweeper's loop is m0's chain
        designated = {
            "SweepList": (d == 3, m1, m1),
            "SweepRead": (z3.Or(d == 1, d == 5), m1, m1),
            "SweepWrite": (z3.Or(d == 0, d == 4), m1, m1),
        }
    else:
        designated = {
            "PollRead(t1)": (d == 4, t1, o),
            "PollDone(t1)": (z3.Or(d == 3, d == 5), t1, o),
            "HealKey(m1)": (d == 2, m1, m0),
            "HealRead(m1)": (d == 1, m1, m0),
            "HealWrite(m1)": (z3.Or(d == 0, d == 6), m1, m0),
        }
    lv &= ask(
        live,
        "chain-designated",
        "is a step designated for every value of m0's chain?",
        "Inv(s) ∧ post(m0) = Acked ∧ m0 ∉ cache ∧ ∧_h ¬D_h",
        inv,
        acked0,
        missing0,
        *[z3.Not(c) for c, _, _ in designated.values()],
    )
    for name, (cond, var, val) in designated.items():
        guard, rel, eff = (z3.substitute(x, (var, val)) for x in acts[name])
        lv &= ask(
            live,
            f"chain-enabled-{name}",
            f"is {name} enabled where designated for m0?",
            "Inv(s) ∧ post(m0) = Acked ∧ m0 ∉ cache ∧ D_h(s) ∧ ¬guard_h(s)",
            inv,
            acked0,
            missing0,
            cond,
            z3.Not(guard),
        )
        lv &= ask(
            live,
            f"chain-helps-{name}",
            f"does {name}, where designated, shorten m0's chain or write the cache effectively?",
            "Inv(s) ∧ post(m0) = Acked ∧ m0 ∉ cache ∧ D_h(s) ∧ h(s,s') ∧ ¬effective ∧ dist'(m0) ≥ dist(m0)",
            inv,
            acked0,
            missing0,
            cond,
            rel,
            z3.Not(eff),
            d2 >= d,
        )
    out: dict[str, PropertyProof] = {}
    for name in ("AckedIsStored", "CacheFromStore"):
        pf = PropertyProof(
            name,
            "invariant",
            PROVED if implied[name] else UNKNOWN,
            "parameterized inductive invariant (EPR)",
            queries=implied[name + "-log"],
            invariants=list(parts),
        )
        out[name] = pf
    out["NoDuplicates"] = PropertyProof(
        "NoDuplicates",
        "invariant",
        PROVED if ok else UNKNOWN,
        "parameterized inductive invariant (EPR)",
        queries=list(safety),
        invariants=list(parts),
        note="the cache is modelled as a set, which is exact here: with dedupe a writer adds its id only "
        "when its snapshot (a copy of the cache) lacks it, so no value repeats an id",
    )
    writes: list[Query] = []
    fw = ok and _finite_writes(kv, inv, ask, writes)
    conv = PropertyProof(
        "Converges",
        "eventually_always",
        PROVED if (lv and fw) else UNKNOWN,
        "parameterized per-message WF premises (EPR) + finite effective writes (ghost levels)",
        queries=list(safety) + live + writes,
        invariants=list(parts),
    )
    conv.note = (
        ("" if lv and fw else "a premise failed (see the queries); ")
        + KV_ARGUMENT
        + (SWEEPER_ARGUMENT if sweeper else "")
    )
    out["Converges"] = conv
    for pf in out.values():
        pf.seconds = sum(q.seconds for q in pf.queries)
    return out, list(parts)


#: What the all-tabs proofs of ``dedupe,keep_verifying`` assume.
KV_ASSUMPTIONS = (
    "Any number of tabs T ≥ 1 and of messages, each message with one owner tab and posted once, "
    "so posts are finite.",
    "The cache capacity is at least the number of messages (SPEC §2's default T·K). With dedupe "
    "no cache value repeats an id, so nothing is trimmed and the cache and every snapshot are "
    "sets: the all-tabs encoding models them as sets (argued here; the fixed-size proofs check "
    "it as ValuesNoDuplicates and ValuesFit).",
    "Weak fairness on every action instance (SPEC §7); the variant has no crashes and per-tab pending lists.",
    "The proof rules that combine the one-step queries (KV_ARGUMENT: well-founded ranking under "
    "weak fairness, induction on the level k, finiteness of the set of messages) are argued on "
    "paper, as is the existence of the ghost numberings when they start (finite sets can be "
    "numbered).",
)

#: What changes in :data:`KV_ARGUMENT` for ``dedupe,sweeper``.
SWEEPER_ARGUMENT = (
    " For dedupe,sweeper: the tabs drop an id once they see it (no AckedIsPending), so m0's chain "
    "in L3 is the sweeper's loop instead: Idle 3, Listed with m0 1 (m0 is acknowledged, so stored, "
    "so listed) or without 5, Read whose write adds m0 0 or else 4; its designated steps are "
    "SweepList, SweepRead and SweepWrite. In W the sweeper is one more writer (effective in Read "
    "when it listed an id its snapshot lacks; bound szS on the ids it will leave missing, set to "
    "nm − 1 at an effective read by closing the gap at a listed missing id): sweeper-stays, "
    "level-falls-SweepWrite and level-zero-SweepRead are its premises."
)

#: How the queries of :func:`_keep_verifying` prove ``Converges`` (for the report).
KV_ARGUMENT = (
    "(L1) For an arbitrary message m0, no step but m0's own post steps changes post[m0] "
    "(post-frame), the step of its phase is enabled until m0 is acknowledged (post-enabled) and "
    "moves it closer to Acked (post-advances): by weak fairness every message is eventually "
    "acknowledged, and stays so (acked-stays); each post writes the cache once. (L2) A step that is "
    "not an effective write (PostWrite/HealWrite whose snapshot lacks the writer's id) leaves the "
    "cache unchanged (cache-frame). (W) Finitely many effective writes: once every message is "
    "acknowledged, ghost bounds start: nm ≥ |X| for the cache's missing set X and, for each "
    "effective heal w, sz(w) ≥ |X_w| for the set it will leave missing, each witnessed by a "
    "one-to-one numbering below the bound (ghost-*: every step keeps them; an effective read by m "
    "sets sz(m) := nm − 1, an effective write nm := sz(w)). Le_k says every bound is ≤ k. No step "
    "breaks Le_k (level-*), none adds a writer at level exactly k (top-no-new-*), an effective "
    "writer keeps its bound and stays enabled until it writes (writer-stays-*), and once no writer "
    "is at level k the next effective write gives Le_{k-1} (level-falls). If a fair run made "
    "infinitely many effective writes: Le_K holds for some K; given Le_k, the writers at level k "
    "only leave, each by its own write, which weak fairness forces, so they are eventually gone and "
    "the next effective write gives Le_{k-1}; at Le_0 the level-0 writers are gone likewise and no "
    "effective writer can start (level-zero): no effective write is left, a contradiction. (L3) So "
    "after some point every message is acknowledged and the cache never changes. Fix an "
    "acknowledged m0 missing then: it stays missing; its heal-chain distance dist(m0) ∈ 0..6 never "
    "rises under a step that is not an effective write (chain-no-increase); each value of dist "
    "designates one step, its owner's PollRead or PollDone, HealKey, HealRead or HealWrite "
    "(chain-designated), which is enabled (chain-enabled) and lowers dist or is an effective write "
    "(chain-helps); the designation depends only on dist. So dist is eventually constant, its "
    "step enabled for ever, and weak fairness takes it: a contradiction. Every acknowledged message "
    "is therefore in the cache for good: Converges."
)


# ---------------------------------------------------------------------- as_built_fixed
#: The flags of the preset ``as_built_fixed`` (SPEC §6), the fix of the as-built app.
FIXED = frozenset({"tab_view", "reload", "put_fails", "post_fails", "full_poll", "atomic_cache", "dedupe"})
#: The actions its argument takes as never forced (the definition makes them unfair).
FIXED_UNFORCED = ("PostCacheFail", "PostFail", "HealCacheFail", "Reload")


class _Fixed(_Encoding):
    """``as_built_fixed`` (``tab_view,reload,put_fails,post_fails,full_poll,atomic_cache,dedupe``;
    cap ≥ messages, which ``tab_view`` requires) for any number of tabs and messages: the
    cache and every poll snapshot are sets (one atomic deduplicating update: an id is added
    only when absent, nothing is trimmed), ``shown(t, m)`` is tab t's page, ``reloaded(t)``
    whether it has reloaded, ``put_failed`` the one failed put, ``heals(m)`` the ghost count
    of heals sent (an enumeration 0..3: it stops at the bound 2 + 1), ``clock`` the time
    (0..HORIZON = 1, read by Tick alone: with full_poll and dedupe there is no timestamp and
    no cursor). ``stored`` is derived, as in the definition: the ids whose post is past Unsent.
    Schemas with parameter ``m1`` or ``t1``, named by the definition's actions."""

    variants = FIXED
    BOUND = 2  # definition.HEAL_BOUND without fire_and_forget

    def __init__(self) -> None:
        from .definition import HEAL_BOUND, HORIZON

        if HORIZON != 1 or HEAL_BOUND != self.BOUND:
            raise DefinitionError(
                f"the all-tabs encoding of as_built_fixed has a clock 0..1 and a heal bound 2; "
                f"the definition has HORIZON {HORIZON}, HEAL_BOUND {HEAL_BOUND}"
            )
        self.Tab, self.Msg = z3.DeclareSort("Tab"), z3.DeclareSort("Msg")
        self.Post, (self.UNSENT, self.KEYW, self.CW, self.ACKED, self.FAILED) = _enum(
            "PostF", ["Unsent", "KeyWritten", "CacheWritten", "Acked", "Failed"]
        )
        self.Heal, (self.IDLE, self.REQ, self.KEYR) = _enum("Heal", ["Idle", "Requested", "KeyRead"])
        self.Clock, self.CLOCKS = _enum("ClockF", ["Clock0", "Clock1"])
        self.Count, self.COUNTS = _enum("HealsF", ["Heals0", "Heals1", "Heals2", "Heals3"])
        self.owner = z3.Function("owner", self.Msg, self.Tab)
        self.m, self.j = z3.Consts("m j", self.Msg)
        self.t = z3.Const("t", self.Tab)
        self.m1, self.t1 = z3.Const("m1", self.Msg), z3.Const("t1", self.Tab)
        self.s, self.s2 = self.state(""), self.state("'")

    def state(self, tag: str) -> dict:
        B, Msg, Tab = z3.BoolSort(), self.Msg, self.Tab
        return {
            "post": z3.Function(f"post{tag}", Msg, self.Post),
            "cache": z3.Function(f"cache{tag}", Msg, B),
            "pending": z3.Function(f"pending{tag}", Msg, B),
            "poll": z3.Function(f"poll{tag}", Tab, B),
            "snap": z3.Function(f"snap{tag}", Tab, Msg, B),
            "heal": z3.Function(f"heal{tag}", Msg, self.Heal),
            "clock": z3.Const(f"clock{tag}", self.Clock),
            "shown": z3.Function(f"shown{tag}", Tab, Msg, B),
            "reloaded": z3.Function(f"reloaded{tag}", Tab, B),
            "put_failed": z3.Const(f"put_failed{tag}", B),
            "heals": z3.Function(f"heals{tag}", Msg, self.Count),
        }

    # -- helpers
    def stored(self, st: dict, x: z3.ExprRef) -> z3.BoolRef:
        """``stored`` is derived (SPEC §3): x's post is past Unsent."""
        return st["post"](x) != self.UNSENT

    def at_least(self, st: dict, x: z3.ExprRef, k: int) -> z3.BoolRef:
        """``heals(x) ≥ k``."""
        return (
            z3.Or([st["heals"](x) == c for c in self.COUNTS[k:]])
            if k < len(self.COUNTS)
            else z3.BoolVal(False)
        )

    def count_up(self, c: z3.ExprRef) -> z3.ExprRef:
        """``heals + 1``, stopping at bound + 1 (the definition's ``heals ≤ bound`` guard)."""
        out = c
        for lo, hi in reversed(list(zip(self.COUNTS, self.COUNTS[1:]))):
            out = z3.If(c == lo, hi, out)
        return out

    def sends(self, st: dict, t1: z3.ExprRef, x: z3.ExprRef) -> z3.BoolRef:
        """``PollDone(t1)`` sends a heal for x: x is t1's, pending, missing from the poll's
        value (found means in that value: no page-load snapshot) and its heal is idle."""
        return z3.And(
            self.owner(x) == t1, st["pending"](x), z3.Not(st["snap"](t1, x)), st["heal"](x) == self.IDLE
        )

    def same(self, *changed: str) -> list[z3.BoolRef]:
        """The frame: every variable but ``changed`` keeps its value."""
        out: list[z3.BoolRef] = []
        for k, f in self.s.items():
            if k in changed:
                continue
            if not isinstance(f, z3.FuncDeclRef):
                out.append(self.s2[k] == f)
                continue
            xs = [self.t if f.domain(i) == self.Tab else (self.m, self.j)[i] for i in range(f.arity())]
            out.append(z3.ForAll(xs, self.s2[k](*xs) == f(*xs)))
        return out

    def upd_tab(self, k: str, val: Callable[[z3.ExprRef], z3.BoolRef]) -> z3.BoolRef:
        """``k(t) := val(t)`` for every tab t."""
        return z3.ForAll([self.t], self.s2[k](self.t) == val(self.t))

    def upd_pairs(self, k: str, val: Callable[[z3.ExprRef, z3.ExprRef], z3.BoolRef]) -> z3.BoolRef:
        """``k(t, m) := val(t, m)`` for every tab t and message m."""
        t, m = self.t, self.m
        return z3.ForAll([t, m], self.s2[k](t, m) == val(t, m))

    def steps(self) -> dict[str, Step]:
        """The schemas, by the definition's action names (parameter ``m1`` or ``t1``)."""
        return name_steps(
            self.variants, self._steps(), {"m": self.m1, "heal": self.m1, "t": self.t1}, FIXED_UNFORCED
        )

    def actions(self) -> dict[str, tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]]:
        return {st.label: (st.guard, st.rel, st.effective) for st in self.steps().values()}

    def _steps(self) -> dict[str, tuple[z3.BoolRef, z3.BoolRef, z3.BoolRef]]:
        s, s2, m1, t1, m = self.s, self.s2, self.m1, self.t1, self.m
        T, F = z3.BoolVal(True), z3.BoolVal(False)
        upd, same, step, owner = self.upd, self.same, self._step, self.owner
        added = z3.Not(s["cache"](m1))  # dedupe: the atomic update adds m1 only when absent
        post, heal = s["post"](m1), s["heal"](m1)

        def cache_put(var: str, before: z3.ExprRef, after: z3.ExprRef, fails: bool):
            """The atomic cache update of `var`'s step (a post's or a heal's) for m1: from
            phase `before` to `after`, m1 added (an effective write when it was absent), or,
            with `fails`, the one failed put (nothing written)."""
            guard = s[var](m1) == before
            if fails:
                return (
                    *step(
                        z3.And(guard, z3.Not(s["put_failed"])),
                        upd(var, m1, after),
                        s2["put_failed"],
                        *same(var, "put_failed"),
                    ),
                    F,
                )
            return (*step(guard, upd(var, m1, after), upd("cache", m1, T), *same(var, "cache")), added)

        return {
            "PostKey": (
                *step(
                    post == self.UNSENT,
                    upd("post", m1, self.KEYW),
                    self.upd_pairs(
                        "shown", lambda t, x: z3.Or(s["shown"](t, x), z3.And(t == owner(m1), x == m1))
                    ),
                    *same("post", "shown"),
                ),
                F,
            ),
            "PostCache": cache_put("post", self.KEYW, self.CW, fails=False),
            "PostCacheFail": cache_put("post", self.KEYW, self.CW, fails=True),
            "PostFail": (
                *step(
                    z3.Or(post == self.KEYW, post == self.CW),
                    upd("post", m1, self.FAILED),
                    self.upd_pairs(
                        "shown",
                        lambda t, x: z3.And(s["shown"](t, x), z3.Not(z3.And(t == owner(m1), x == m1))),
                    ),
                    *same("post", "shown"),
                ),
                F,
            ),
            "PostAck": (
                *step(
                    post == self.CW,
                    upd("post", m1, self.ACKED),
                    upd("pending", m1, T),
                    *same("post", "pending"),
                ),
                F,
            ),
            "PollRead": (
                *step(
                    z3.Not(s["poll"](t1)),
                    self.upd_tab("poll", lambda t: z3.Or(s["poll"](t), t == t1)),
                    self.upd_pairs("snap", lambda t, x: z3.If(t == t1, s["cache"](x), s["snap"](t, x))),
                    *same("poll", "snap"),
                ),
                F,
            ),
            "PollDone": (
                *step(
                    s["poll"](t1),
                    self.upd_tab("poll", lambda t: z3.And(s["poll"](t), t != t1)),
                    self.upd_pairs("snap", lambda t, x: z3.And(s["snap"](t, x), t != t1)),
                    self.upd_pairs(
                        "shown", lambda t, x: z3.Or(s["shown"](t, x), z3.And(t == t1, s["snap"](t1, x)))
                    ),
                    z3.ForAll(
                        [m],
                        s2["pending"](m)
                        == z3.And(s["pending"](m), z3.Not(z3.And(owner(m) == t1, s["snap"](t1, m)))),
                    ),
                    z3.ForAll([m], s2["heal"](m) == z3.If(self.sends(s, t1, m), self.REQ, s["heal"](m))),
                    z3.ForAll(
                        [m],
                        s2["heals"](m)
                        == z3.If(
                            z3.And(self.sends(s, t1, m), z3.Not(self.at_least(s, m, self.BOUND + 1))),
                            self.count_up(s["heals"](m)),
                            s["heals"](m),
                        ),
                    ),
                    *same("poll", "snap", "shown", "pending", "heal", "heals"),
                ),
                F,
            ),
            "HealKey": (
                *step(
                    heal == self.REQ,
                    upd("heal", m1, z3.If(self.stored(s, m1), self.KEYR, self.IDLE)),
                    *same("heal"),
                ),
                F,
            ),
            "HealCache": cache_put("heal", self.KEYR, self.IDLE, fails=False),
            "HealCacheFail": cache_put("heal", self.KEYR, self.IDLE, fails=True),
            "Reload": (
                *step(
                    z3.Not(s["reloaded"](t1)),
                    self.upd_tab("poll", lambda t: z3.And(s["poll"](t), t != t1)),
                    self.upd_pairs("snap", lambda t, x: z3.And(s["snap"](t, x), t != t1)),
                    self.upd_pairs("shown", lambda t, x: z3.And(s["shown"](t, x), t != t1)),
                    self.upd_tab("reloaded", lambda t: z3.Or(s["reloaded"](t), t == t1)),
                    *same("poll", "snap", "shown", "reloaded"),
                ),
                F,
            ),
            "Tick": (
                *step(s["clock"] == self.CLOCKS[0], s2["clock"] == self.CLOCKS[1], *same("clock")),
                F,
            ),
        }

    def init(self) -> z3.BoolRef:
        s, m, t = self.s, self.m, self.t
        return z3.And(
            z3.ForAll(
                [m],
                z3.And(
                    s["post"](m) == self.UNSENT,
                    z3.Not(s["cache"](m)),
                    z3.Not(s["pending"](m)),
                    s["heal"](m) == self.IDLE,
                    s["heals"](m) == self.COUNTS[0],
                ),
            ),
            z3.ForAll([t], z3.And(z3.Not(s["poll"](t)), z3.Not(s["reloaded"](t)))),
            z3.ForAll([t, m], z3.And(z3.Not(s["snap"](t, m)), z3.Not(s["shown"](t, m)))),
            s["clock"] == self.CLOCKS[0],
            z3.Not(s["put_failed"]),
        )

    def invariant(self) -> dict[str, Callable[[dict], z3.BoolRef]]:
        """The all-tabs inductive invariant: the seed's and the fix's strengthenings of
        :mod:`kvheal.model.strengthen` (SPEC §6 "The strengthening for the fix"), stated for
        the sets, and HealsTerminate itself."""
        m, j, t, o = self.m, self.j, self.t, self.owner
        acked = lambda st, x: st["post"](x) == self.ACKED  # noqa: E731
        written = lambda st, x: z3.Or(st["post"](x) == self.CW, acked(st, x))  # noqa: E731
        return {
            "CacheFromStore": lambda st: z3.ForAll([m], z3.Implies(st["cache"](m), self.stored(st, m))),
            "SnapshotsCleared": lambda st: z3.ForAll(
                [t, j], z3.Implies(z3.Not(st["poll"](t)), z3.Not(st["snap"](t, j)))
            ),
            "PendingIsAcked": lambda st: z3.ForAll([m], z3.Implies(st["pending"](m), acked(st, m))),
            "HealsAreAcked": lambda st: z3.ForAll([m], z3.Implies(st["heal"](m) != self.IDLE, acked(st, m))),
            "UncachedWriteIsFailedPut": lambda st: z3.ForAll(
                [m], z3.Implies(z3.And(written(st, m), z3.Not(st["cache"](m))), st["put_failed"])
            ),
            "HealedIsCached": lambda st: z3.ForAll(
                [m],
                z3.Implies(
                    z3.If(st["heal"](m) == self.IDLE, self.at_least(st, m, 1), self.at_least(st, m, 2)),
                    st["cache"](m),
                ),
            ),
            "LastHealPollsSee": lambda st: z3.ForAll(
                [m],
                z3.Implies(z3.And(self.at_least(st, m, self.BOUND), st["poll"](o(m))), st["snap"](o(m), m)),
            ),
            "PollsReadTheCache": lambda st: z3.ForAll([t, j], z3.Implies(st["snap"](t, j), st["cache"](j))),
            "UncachedAckIsPending": lambda st: z3.ForAll(
                [m], z3.Implies(z3.And(acked(st, m), z3.Not(st["cache"](m))), st["pending"](m))
            ),
            "HealsTerminate": lambda st: z3.ForAll([m], z3.Not(self.at_least(st, m, self.BOUND + 1))),
        }

    def properties(self, st: dict) -> dict[str, z3.BoolRef]:
        """The §7 invariants of as_built_fixed, stated for the sets (NoDuplicates: the cache is
        a set, see :func:`_fixed`)."""
        m, t = self.m, self.t
        return {
            "AckedIsStored": z3.ForAll([m], z3.Implies(st["post"](m) == self.ACKED, self.stored(st, m))),
            "CacheFromStore": z3.ForAll([m], z3.Implies(st["cache"](m), self.stored(st, m))),
            "HealOnlyMissing": z3.ForAll(
                [t, m], z3.Not(z3.And(st["poll"](t), self.sends(st, t, m), st["snap"](t, m)))
            ),
            "HealsTerminate": z3.ForAll([m], z3.Not(self.at_least(st, m, self.BOUND + 1))),
        }

    def goals(self, st: dict) -> dict[str, z3.BoolRef]:
        """The §7 eventually-always goals of as_built_fixed, for the sets: with a cap of at
        least the number of messages the C newest acknowledged are all of them, every tab is
        alive and shows every channel. :func:`_fixed` proves each per message (per tab and
        message): the goal is the conjunction over the finitely many of a run."""
        m, t, acked = self.m, self.t, st["post"](self.m) == self.ACKED
        return {
            "Converges": z3.ForAll([m], z3.Implies(acked, st["cache"](m))),
            "PendingDrains": z3.ForAll([m], z3.Not(st["pending"](m))),
            "EveryoneSees": z3.ForAll([t, m], z3.Implies(acked, st["shown"](t, m))),
        }


def _rank_premises(
    log: list[Query],
    tag: str,
    enc: _Fixed,
    inv: z3.BoolRef,
    hyp: z3.BoolRef,
    goal2: z3.BoolRef,
    rank: Callable[[dict], z3.ArithRef],
    designated: dict[str, tuple[z3.BoolRef, z3.ExprRef, z3.ExprRef]],
    not_done: z3.BoolRef,
) -> bool:
    """The premises of one ranking argument under weak fairness, for every size: while
    ``hyp`` holds (over s) and the step does not reach ``goal2`` (over s'), no schema raises
    ``rank`` (``<tag>-no-increase-*``); in every such state with ``not_done`` some designated
    step's condition holds (``<tag>-designated``); each designated step (action label ->
    (condition, its parameter, the value it takes)) is weakly fair in the definition (else
    :class:`DefinitionError`), enabled
    where designated (``<tag>-enabled-*``) and lowers the rank or reaches the goal
    (``<tag>-helps-*``). Every query is recorded in ``log``."""
    s, s2 = enc.s, enc.s2
    steps = {st.label: st for st in enc.steps().values()}
    r, r2 = rank(s), rank(s2)
    ok = True
    for label, st in steps.items():
        ok &= _ask_unsat(
            log,
            f"{tag}-no-increase-{label}",
            f"can {label} raise the {tag} rank before its goal?",
            f"Inv(s) ∧ H(s) ∧ {label}(s,s') ∧ ¬G(s') ∧ rank(s') > rank(s)",
            inv,
            hyp,
            st.rel,
            z3.Not(goal2),
            r2 > r,
        )
    ok &= _ask_unsat(
        log,
        f"{tag}-designated",
        f"is a step designated for every value of the {tag} rank short of the goal?",
        "Inv(s) ∧ H(s) ∧ ¬done(s) ∧ ∧_h ¬D_h(s)",
        inv,
        hyp,
        not_done,
        *[z3.Not(c) for c, _, _ in designated.values()],
    )
    for label, (cond, var, val) in designated.items():
        st = steps[label]
        if not st.fair:  # weak fairness is what forces a designated step: the definition's word
            raise DefinitionError(f"the {tag} ranking designates {label}, which the definition makes unfair")
        guard, rel = (z3.substitute(x, (var, val)) for x in (st.guard, st.rel))
        ok &= _ask_unsat(
            log,
            f"{tag}-enabled-{label}",
            f"is {label} enabled where designated?",
            "Inv(s) ∧ H(s) ∧ D_h(s) ∧ ¬guard_h(s)",
            inv,
            hyp,
            cond,
            z3.Not(guard),
        )
        ok &= _ask_unsat(
            log,
            f"{tag}-helps-{label}",
            f"does {label}, where designated, lower the {tag} rank or reach its goal?",
            "Inv(s) ∧ H(s) ∧ D_h(s) ∧ h(s,s') ∧ ¬G(s') ∧ rank(s') ≥ rank(s)",
            inv,
            hyp,
            cond,
            rel,
            z3.Not(goal2),
            r2 >= r,
        )
    return ok


def _stays(
    log: list[Query], tag: str, what: str, enc: _Fixed, inv: z3.BoolRef, before: z3.BoolRef, after: z3.BoolRef
) -> bool:
    """``before`` (over s) implies ``after`` (over s') across every schema: ``<tag>-*``."""
    ok = True
    for st in enc.steps().values():
        ok &= _ask_unsat(
            log,
            f"{tag}-{st.label}",
            f"does {st.label} keep {what}?",
            f"Inv(s) ∧ {tag}(s) ∧ {st.label}(s,s') ∧ ¬{tag}(s')",
            inv,
            before,
            st.rel,
            z3.Not(after),
        )
    return ok


def _fixed() -> tuple[dict[str, PropertyProof], list[str]]:
    """All-tabs proofs for ``as_built_fixed``: the invariant (EPR) gives the five invariants of
    §7; Converges, PendingDrains and EveryoneSees follow from per-message (per tab and message)
    ranking premises (EPR with a ground integer rank); :data:`FIXED_ARGUMENT` says how."""
    enc = _Fixed()
    s, s2, m1, t1 = enc.s, enc.s2, enc.m1, enc.t1
    m0, tv = z3.Const("m0", enc.Msg), z3.Const("t0", enc.Tab)
    parts = enc.invariant()
    inv = z3.And([f(s) for f in parts.values()])
    inv2 = z3.And([f(s2) for f in parts.values()])
    safety: list[Query] = []
    ok = _inductive(safety, enc.init(), inv, inv2, {st.label: st.rel for st in enc.steps().values()})
    out: dict[str, PropertyProof] = {}
    for name, phi in enc.properties(s).items():
        log = list(safety)
        holds = ok and _ask_unsat(
            log, f"{name}-implied", f"does Inv imply {name}?", f"Inv(s) ∧ ¬{name}(s)", inv, z3.Not(phi)
        )
        out[name] = PropertyProof(
            name,
            "invariant",
            PROVED if holds else UNKNOWN,
            "parameterized inductive invariant (EPR)",
            queries=log,
            invariants=list(parts),
        )
    out["HealOnlyMissing"].note = (
        "found means in the value the poll read (no page-load snapshot), so PollDone sends a heal "
        "only for an id that value lacks: the implication holds of every state"
    )
    out["NoDuplicates"] = PropertyProof(
        "NoDuplicates",
        "invariant",
        PROVED if ok else UNKNOWN,
        "parameterized inductive invariant (EPR)",
        queries=list(safety),
        invariants=list(parts),
        note="the cache is modelled as a set, which is exact here: the one atomic update with dedupe "
        "adds an id only when the cache lacks it, and the cap is at least the number of messages "
        "(tab_view requires it), so nothing is trimmed and no id repeats",
    )
    # The facts that stay true once true.
    acked = lambda st: st["post"](m0) == enc.ACKED  # noqa: E731
    stable: list[Query] = []
    # every premise is asked (and recorded) even when an earlier one failed: the report shows all
    st_ok = ok
    st_ok &= _stays(stable, "acked-stays", "m0 acknowledged", enc, inv, acked(s), acked(s2))
    st_ok &= _stays(stable, "cached-stays", "m0 in the cache", enc, inv, s["cache"](m0), s2["cache"](m0))
    o = enc.owner(m0)
    # Converges: an acknowledged m0 missing from the cache (so after the one failed put, pending at
    # its owner, which has no poll holding it) is healed by its owner's next poll; the heal cannot
    # fail. Rank: the owner's reload still possible (5), then the chain's distance 1..4.
    live: list[Query] = []

    def heal_rank(st: dict) -> z3.ArithRef:
        h = st["heal"](m0)
        d = z3.If(h == enc.KEYR, 1, z3.If(h == enc.REQ, 2, z3.If(st["poll"](o), 3, 4)))
        return d + z3.If(st["reloaded"](o), 0, 5)

    d = heal_rank(s) - z3.If(s["reloaded"](o), 0, 5)
    conv_ok = st_ok & _rank_premises(
        live,
        "heal",
        enc,
        inv,
        z3.And(acked(s), z3.Not(s["cache"](m0))),
        s2["cache"](m0),
        heal_rank,
        {
            "PollRead(t1)": (d == 4, t1, o),
            "PollDone(t1)": (d == 3, t1, o),
            "HealKey(m1)": (d == 2, m1, m0),
            "HealCache(m1)": (d == 1, m1, m0),
        },
        z3.BoolVal(True),
    )
    conv = PropertyProof(
        "Converges",
        "eventually_always",
        PROVED if conv_ok else UNKNOWN,
        "parameterized inductive invariant + per-message ranking under weak fairness (EPR)",
        queries=list(safety) + stable + live,
        invariants=list(parts),
    )
    conv.note = ("" if conv_ok else "a premise failed (see the queries); ") + FIXED_ARGUMENT_CONVERGES
    out["Converges"] = conv
    # PendingDrains: a pending m0 that is cached leaves its owner's list at the owner's next poll
    # that reads it. Rank: the owner's reload still possible (4), then 1 (a poll holding m0),
    # 2 (no poll), 3 (a poll without m0).
    drain: list[Query] = []

    def drain_rank(st: dict) -> z3.ArithRef:
        p = st["poll"](o)
        d = z3.If(p, z3.If(st["snap"](o, m0), 1, 3), 2)
        return d + z3.If(st["reloaded"](o), 0, 4)

    pd = drain_rank(s) - z3.If(s["reloaded"](o), 0, 4)
    dr_ok = conv_ok & _stays(
        drain,
        "drained-stays",
        "an acknowledged m0 off its owner's list",
        enc,
        inv,
        z3.And(acked(s), z3.Not(s["pending"](m0))),
        z3.Not(s2["pending"](m0)),
    )
    dr_ok &= _rank_premises(
        drain,
        "drain",
        enc,
        inv,
        z3.And(s["pending"](m0), s["cache"](m0)),
        z3.Not(s2["pending"](m0)),
        drain_rank,
        {"PollRead(t1)": (pd == 2, t1, o), "PollDone(t1)": (z3.Or(pd == 1, pd == 3), t1, o)},
        z3.BoolVal(True),
    )
    pdp = PropertyProof(
        "PendingDrains",
        "eventually_always",
        PROVED if dr_ok else UNKNOWN,
        "parameterized: Converges' premises + the drain ranking under weak fairness (EPR)",
        queries=list(safety) + stable + live + drain,
        invariants=list(parts),
    )
    pdp.note = ("" if dr_ok else "a premise failed (see the queries); ") + FIXED_ARGUMENT_DRAINS
    out["PendingDrains"] = pdp
    # EveryoneSees: an acknowledged m0 in the cache is shown on tab t0 for good after t0's next
    # poll that reads it, once t0 has no reload left. Rank: t0's reload still possible (4), then
    # 0 (shown), 1 (a poll holding m0), 2 (no poll), 3 (a poll without m0).
    see: list[Query] = []

    def shown_rank(st: dict) -> z3.ArithRef:
        p = st["poll"](tv)
        d = z3.If(st["shown"](tv, m0), 0, z3.If(p, z3.If(st["snap"](tv, m0), 1, 3), 2))
        return d + z3.If(st["reloaded"](tv), 0, 4)

    sd = shown_rank(s) - z3.If(s["reloaded"](tv), 0, 4)
    sh_ok = conv_ok & _rank_premises(
        see,
        "shown",
        enc,
        inv,
        z3.And(acked(s), s["cache"](m0)),
        z3.BoolVal(False),
        shown_rank,
        {"PollRead(t1)": (sd == 2, t1, tv), "PollDone(t1)": (z3.Or(sd == 1, sd == 3), t1, tv)},
        z3.Not(s["shown"](tv, m0)),
    )
    evp = PropertyProof(
        "EveryoneSees",
        "eventually_always",
        PROVED if sh_ok else UNKNOWN,
        "parameterized: Converges' premises + the shown ranking under weak fairness (EPR)",
        queries=list(safety) + stable + live + see,
        invariants=list(parts),
    )
    evp.note = ("" if sh_ok else "a premise failed (see the queries); ") + FIXED_ARGUMENT_SEES
    out["EveryoneSees"] = evp
    order = ("AckedIsStored", "CacheFromStore", "NoDuplicates", "HealOnlyMissing", "HealsTerminate")
    out = {n: out[n] for n in (*order, "Converges", "PendingDrains", "EveryoneSees")}
    for pf in out.values():
        pf.seconds = sum(q.seconds for q in pf.queries)
    return out, list(parts)


#: What the all-tabs proofs of ``as_built_fixed`` assume.
FIXED_ASSUMPTIONS = (
    "Any number of tabs T ≥ 1 and of messages, each message with one owner tab and posted once "
    "(no repost), so there are finitely many in each run; no tab crashes (no tab_crash).",
    "The cache capacity is at least the number of messages (tab_view requires it). The one "
    "atomic update with dedupe adds an id only when the cache lacks it and nothing is trimmed, "
    "so the cache and every poll snapshot are sets: the all-tabs encoding models them as sets "
    "(argued here; the fixed-size proofs check NoDuplicates 1-inductively).",
    "The definition's constants: the clock runs 0..HORIZON = 1 and HealsTerminate's bound is "
    "HEAL_BOUND = 2 (the encoding refuses others); at most one failed cache put and one reload "
    "per tab, as the flags put_fails and reload say.",
    "Weak fairness on every action instance but the faults and reloads (PostCacheFail, PostFail, "
    "HealCacheFail, Reload: never forced), as the definition says (SPEC §7); the argument uses "
    "fairness only for PollRead, PollDone, HealKey and HealCache, and checks that the definition "
    "makes them fair.",
    "The proof rules that combine the one-step queries (FIXED_ARGUMENT_*: a rank in a finite "
    "range that no step raises and that each designated, weakly fair step lowers; finiteness of "
    "the tabs and messages of a run) are argued on paper.",
)

#: How the queries of :func:`_fixed` prove ``Converges`` (for the report).
FIXED_ARGUMENT_CONVERGES = (
    "(I) Inv (the seed's and the fix's strengthenings, SPEC §6, for the sets) is inductive for "
    "every size (init, step-*). (S) An acknowledged message stays acknowledged (acked-stays) and "
    "an id in the cache stays there (cached-stays): the cache only grows. (R) Fix an arbitrary "
    "message m0 acknowledged and missing from the cache. By Inv the one failed put has happened "
    "(UncachedWriteIsFailedPut), so no heal can fail, m0 is on its owner o's pending list "
    "(UncachedAckIsPending) and no poll holds it (PollsReadTheCache). Its rank is 5 while o can "
    "still reload, plus the heal chain's distance: heal KeyRead 1, Requested 2, else o's poll "
    "holding a value 3, idle 4. Until m0 is cached no step raises the rank (heal-no-increase: a "
    "Reload of o ends a poll in flight but spends o's one reload, the escape); each value "
    "designates one weakly fair step, o's PollRead or PollDone, HealKey(m0) or HealCache(m0) "
    "(heal-designated), enabled there (heal-enabled) that lowers the rank or caches m0 "
    "(heal-helps; o's PollDone sends the heal: m0 is pending, missing from the value and its "
    "heal idle). If m0 were never cached the rank, a natural number that never rises, would "
    "become constant, and with it the designated step, enabled for ever: weak fairness takes it, "
    "a contradiction. So every message acknowledged at some point is eventually in the cache for "
    "good (S), and a message never acknowledged never counts: with finitely many messages, "
    "eventually always every acknowledged message is cached (the cap is at least the number of "
    "messages, so the C newest are all of them): Converges."
)

#: How :func:`_fixed` proves ``PendingDrains`` on top of Converges' premises.
FIXED_ARGUMENT_DRAINS = (
    " PendingDrains: a pending id is acknowledged (PendingIsAcked), so by Converges it is "
    "eventually cached for good. Fix a pending m0 in the cache; its rank is 4 while its owner o "
    "can still reload, plus o's poll holding a value with m0 1, idle 2, holding one without m0 3; "
    "until m0 leaves the list no step raises it (drain-no-increase), o's PollRead or PollDone is "
    "designated (drain-designated), enabled (drain-enabled) and lowers it or drops m0 "
    "(drain-helps: a poll that reads the cache holds m0 and its PollDone drops it). An "
    "acknowledged id off the list stays off (drained-stays: only PostAck adds, before Acked). So "
    "every message leaves its list for good, and every list is eventually always empty."
)

#: How :func:`_fixed` proves ``EveryoneSees`` on top of Converges' premises.
FIXED_ARGUMENT_SEES = (
    " EveryoneSees: fix a tab t0 and an acknowledged m0 in the cache (eventually so for good, by "
    "Converges). Its rank is 4 while t0 can still reload, plus 0 if t0 shows m0, else t0's poll "
    "holding a value with m0 1, idle 2, holding one without m0 3. No step raises it "
    "(shown-no-increase: a failed POST hides only an unacknowledged message; a reload of t0 empties "
    "its page but spends its one reload); while m0 is not shown t0's PollRead or PollDone is "
    "designated (shown-designated), enabled (shown-enabled) and lowers it (shown-helps). The rank "
    "becomes constant, and then 0 short of the reload part: m0 is shown on t0 for good. With "
    "finitely many tabs and messages, every tab eventually always shows every acknowledged "
    "message (the C newest: all of them)."
)


def encoding(variants: Iterable[str] | str) -> _AtomicDedupe | _KeepVerifying | _Fixed:
    """The hand-written all-tabs encoding of a design of :data:`ALL_TABS_DESIGNS` (a set of
    flags or a comma-separated string, presets allowed); its ``steps()`` are named by the
    definition's actions. ``tests/model/test_param.py`` checks each against the explicit model
    at small sizes."""
    vs = parse_variants(variants)
    if vs == FIXED:
        return _Fixed()
    if vs == {"atomic_cache", "dedupe"}:
        return _AtomicDedupe()
    if vs == {"dedupe", "keep_verifying"}:
        return _KeepVerifying()
    if vs == {"dedupe", "sweeper"}:
        return _KeepVerifying(keep_verifying=False, sweeper=True)
    raise ConfigError(
        f"no all-tabs encoding of {','.join(sorted(vs)) or 'seed'}; there are {', '.join(ALL_TABS_DESIGNS)}"
    )


def prove_all_tabs(variants: Iterable[str], properties: set[str] | None = None) -> ParamResult:
    """Parameterized verdicts for a variant (see the module docstring)."""
    t0 = time.perf_counter()
    vs = parse_variants(variants)  # a preset (as_built_fixed) stands for its flags
    assumptions = ASSUMPTIONS
    if vs == {"atomic_cache", "dedupe"}:
        props, inv = _atomic_dedupe()
    elif vs == {"dedupe", "keep_verifying"}:
        props, inv = _keep_verifying()
        assumptions = KV_ASSUMPTIONS
    elif vs == {"dedupe", "sweeper"}:
        props, inv = _keep_verifying(sweeper=True)
        assumptions = KV_ASSUMPTIONS
    elif vs == FIXED:
        props, inv = _fixed()
        assumptions = FIXED_ASSUMPTIONS
    else:
        props, inv = {}, []
        for name in ("Converges",):
            pf = PropertyProof(name, "eventually_always", UNKNOWN, "none")
            pf.note = (
                "no parameterized argument for this variant: only atomic_cache,dedupe, "
                "dedupe,keep_verifying, dedupe,sweeper and as_built_fixed are done"
            )
            props[name] = pf
    if properties:
        unknown = properties - set(props)
        if unknown:
            raise ConfigError(f"no parameterized proof of {sorted(unknown)[0]} for this variant")
        props = {n: p for n, p in props.items() if n in properties}
    result = ParamResult(vs, props, time.perf_counter() - t0, inv)
    result.assumptions = assumptions
    return result

"""The definition (:mod:`kvheal.model.definition`) as a symbolic transition system for z3:
state variables, init, and a relation that is a disjunction of the action instances with a
selector.

Nothing here says what an action does: each action body of the definition is run with z3
values (:class:`_Z`), as the explicit kernel runs it with source code, so the two engines
read one text. ``tests/model/test_agreement.py`` still checks them against each other on
every reachable state at tabs 2, for every flag combination it has measured.

Encoding. A state is a dict ``name -> z3 term`` over a fixed list of variables:

* a phase variable is an Int, its phase's number in the definition (``post[m]``: 0 Unsent,
  1 KeyWritten, 2 CacheRead, 3 CacheWritten, 4 Acked), or a Bool when its type has two
  phases (``poll[t]``: Read; ``lists[t]``: Write); each payload field is its own variables,
  ``<var><field>[<index>][j]`` (``postsnap[m][j]``, ``sweeplist[j]``, ``listsset[t][m]``),
  zero whenever the phase does not hold it, so one SPEC state is exactly one assignment
  (SPEC §3; the invariant ``SnapshotsCleared`` of :mod:`kvheal.model.strengthen` states it);
* the cache and every cache snapshot: ``cache[j]``, how many times id ``j`` occurs (a value
  is sorted by timestamp = id, so counts determine it); ``add`` is "count + 1, then keep
  the C largest entries": ``kept[j] = min(c[j], max(0, C - sum(c[i] for i > j)))``;
* an id set: one Bool per element its variable can hold (``pending[t][m]`` for tab t's
  own ids, ``alive[t]``);
* a bounded integer (:class:`~kvheal.model.dsl.IntType`, ``clock``, ``cursor[t]``) is an Int
  holding the value itself, its range ``lo..hi`` stated by :meth:`SymbolicModel.dom`;
  ``+ k`` saturates at the bounds, as in the kernel;
* derived values (``stored[m]``) are terms over those, present in the dict for reading.

The relation ``trans(s, s2, sel)`` says: instance number ``sel`` is enabled in ``s`` and
``s2`` is its effect; every variable is one if-then-else chain over the selector values of
the instances that write it, so the frame is implicit and the term stays linear in size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import z3

from .config import Config
from .core import Action, view_of
from .definition import HEAL, KVHEAL, POST, SWEEP
from .dsl import CacheType, Definition, DefinitionError, Enum, IdsType, IntType, PhaseValue
from .reader import Ite, Payload, StateReader

State = dict[str, z3.ExprRef]

# Phase numbers, from the definition (the explicit kernel packs payloads beside the same order).
UNSENT, KEY_WRITTEN, POST_CACHE_READ, CACHE_WRITTEN, ACKED = (
    POST.code(p) for p in ("Unsent", "KeyWritten", "CacheRead", "CacheWritten", "Acked")
)
IDLE, REQUESTED, KEY_READ, HEAL_CACHE_READ = (HEAL.code(p.name) for p in HEAL.phases)
SWEEP_IDLE, SWEEP_LISTED, SWEEP_READ = (SWEEP.code(p.name) for p in SWEEP.phases)


@dataclass(frozen=True, slots=True)
class _Var:
    name: str
    kind: str  # "int" | "bool"
    hi: int = 1
    #: codes an Int never takes (phases the configuration does not use)
    holes: tuple[int, ...] = ()
    #: the smallest value of an Int (an IntType's ``lo``; 0 for phases and counts)
    lo: int = 0


def _sum(terms: Iterable[z3.ArithRef]) -> z3.ArithRef:
    terms = list(terms)
    return z3.Sum(terms) if terms else z3.IntVal(0)


def _suffix(idx: Any) -> str:
    if idx is None:
        return ""
    if isinstance(idx, tuple):
        return "[" + ",".join(map(str, idx)) + "]"
    return f"[{idx}]"


class _Z:
    """A z3 value of the definition's algebra: ``kind`` bool, ids, cache, phase or int."""

    __slots__ = ("sym", "kind", "t", "ref", "rng")

    def __init__(
        self, sym: SymbolicModel, kind: str, t: Any, ref: Any = None, rng: tuple[int, int] | None = None
    ) -> None:
        #: bool: a BoolRef; ids: {element: BoolRef}; cache: [count per id];
        #: phase: (phase term, {field: _Z}, layout); int: an ArithRef (``rng``: its bounds)
        self.sym, self.kind, self.t, self.ref, self.rng = sym, kind, t, ref, rng

    def __hash__(self) -> int:
        if self.ref is None:
            raise DefinitionError("only a state variable read from s can be written")
        return hash(self.ref)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Z) and self.ref is not None and self.ref == other.ref

    def _b(self, t: z3.BoolRef) -> _Z:
        return _Z(self.sym, "bool", t)

    def _ids(self, elems: dict[int, z3.BoolRef]) -> _Z:
        return _Z(self.sym, "ids", elems)

    # -- bool
    def __and__(self, other: _Z) -> _Z:
        return self._b(z3.And(self.t, other.t))

    def __or__(self, other: _Z) -> _Z:
        return self._b(z3.Or(self.t, other.t))

    def __invert__(self) -> _Z:
        return self._b(z3.Not(self.t))

    # -- ids and cache
    def has(self, i: int) -> _Z:
        if self.kind == "cache":
            return self._b(self.t[i] >= 1)
        return self._b(self.t.get(i, z3.BoolVal(False)))

    def _elems(self, other: _Z) -> list[int]:
        return sorted(set(self.t) | set(other.t))

    def with_(self, i: int) -> _Z:
        return self._ids({**self.t, i: z3.BoolVal(True)})

    def without(self, i: int) -> _Z:
        return self._ids({**self.t, i: z3.BoolVal(False)})

    def minus(self, other: _Z) -> _Z:
        f = z3.BoolVal(False)
        return self._ids({e: z3.And(v, z3.Not(other.t.get(e, f))) for e, v in self.t.items()})

    def union(self, other: _Z) -> _Z:
        f = z3.BoolVal(False)
        return self._ids({e: z3.Or(self.t.get(e, f), other.t.get(e, f)) for e in self._elems(other)})

    def is_empty(self) -> _Z:
        return self._b(z3.Not(z3.Or(list(self.t.values())))) if self.t else self._b(z3.BoolVal(True))

    def subset(self, other: _Z) -> _Z:
        f = z3.BoolVal(False)
        return self._b(z3.And([z3.Implies(v, other.t.get(e, f)) for e, v in self.t.items()]))

    # -- bounded integers
    def _cmp(self, op: Callable[[Any, Any], z3.BoolRef], other: Any) -> _Z:
        if self.kind != "int":
            raise DefinitionError(f"comparisons are of integers, not {self.kind} values")
        return self._b(op(self.t, other.t if isinstance(other, _Z) else z3.IntVal(other)))

    def __lt__(self, other: Any) -> _Z:
        return self._cmp(lambda a, b: a < b, other)

    def __le__(self, other: Any) -> _Z:
        return self._cmp(lambda a, b: a <= b, other)

    def __gt__(self, other: Any) -> _Z:
        return self._cmp(lambda a, b: a > b, other)

    def __ge__(self, other: Any) -> _Z:
        return self._cmp(lambda a, b: a >= b, other)

    def __add__(self, k: int) -> _Z:
        if self.kind != "int" or isinstance(k, bool) or not isinstance(k, int):
            raise DefinitionError("only an integer plus a constant is defined")
        if k == 0:
            return self
        lo, hi = self.rng
        raw = self.t + k
        term = z3.If(raw > hi, z3.IntVal(hi), raw) if k > 0 else z3.If(raw < lo, z3.IntVal(lo), raw)
        return _Z(self.sym, "int", term, rng=self.rng)

    def __sub__(self, k: int) -> _Z:
        if isinstance(k, bool) or not isinstance(k, int):
            raise DefinitionError("only an integer minus a constant is defined")
        return self + (-k)

    def eq(self, other: Any) -> _Z:
        if self.kind == "int":
            return self._cmp(lambda a, b: a == b, other)
        if self.kind == "cache":
            return self._b(z3.And([a == b for a, b in zip(self.t, other.t)]))
        f = z3.BoolVal(False)
        return self._b(z3.And([self.t.get(e, f) == other.t.get(e, f) for e in self._elems(other)]))

    def newest(self, count: int) -> _Z:
        out = {}
        for m, v in self.t.items():
            newer = _sum([z3.If(w, 1, 0) for e, w in self.t.items() if e > m])
            out[m] = z3.And(v, newer < count)
        return self._ids(out)

    def add(self, m: int, late: _Z | None = None) -> _Z:
        return _Z(self.sym, "cache", self.sym.add(self.t, m, None if late is None else late.t))

    def add_all(self, ids: _Z, late: _Z | None = None) -> _Z:
        f = z3.BoolVal(False)
        M = self.sym.M
        counts = [c + z3.If(ids.t.get(j, f), 1, 0) for j, c in enumerate(self.t[:M])] + list(self.t[M:])
        return _Z(self.sym, "cache", self.sym.trim(counts, None if late is None else late.t))

    def ids(self) -> _Z:
        return self._ids({j: c >= 1 for j, c in enumerate(self.t[: self.sym.M])})

    def no_dup(self) -> _Z:
        return self._b(z3.And([c <= 1 for c in self.t[: self.sym.M]]))

    # -- statuses: counts, then final copies per id (a prefix of the id's copies)
    def _split(self) -> tuple[list, list]:
        M = self.sym.M
        return list(self.t[:M]), list(self.t[M:])

    def patch_all(self, ids: _Z) -> _Z:
        c, a = self._split()
        f = z3.BoolVal(False)
        return _Z(self.sym, "cache", c + [z3.If(ids.t.get(j, f), c[j], a[j]) for j in range(len(c))])

    def patch_first(self, ids: _Z) -> _Z:
        c, a = self._split()
        f = z3.BoolVal(False)
        return _Z(
            self.sym,
            "cache",
            c + [z3.If(z3.And(ids.t.get(j, f), c[j] >= 1, a[j] == 0), 1, a[j]) for j in range(len(c))],
        )

    def open_first(self) -> _Z:
        c, a = self._split()
        return self._ids({j: z3.And(c[j] >= 1, a[j] == 0) for j in range(len(c))})

    def open_ids(self) -> _Z:
        c, a = self._split()
        return self._ids({j: a[j] < c[j] for j in range(len(c))})

    # -- phase
    def is_(self, phase: str) -> _Z:
        term, _, var = self.t
        code = var.type.code(phase)
        if phase in self.sym._unused[var.name]:
            return self._b(z3.BoolVal(False))
        if z3.is_bool(term):
            return self._b(term if code else z3.Not(term))
        return self._b(term == code)

    def of(self, phase: str) -> Any:
        _, fields, var = self.t
        names = [f for f, _ in var.type.phase(phase).payload]
        return Payload({f: fields[f] for f in names})


class _Ops:
    """The value algebra ``x`` for z3, and the reader's backend over one state dict."""

    def __init__(self, sym: SymbolicModel, s: State) -> None:
        self.sym, self.s, self.ops = sym, s, self

    def read(self, var, idx) -> _Z:
        return self.sym._read(self.s, var, idx)

    def const(self, var, value) -> _Z:
        t = var.type
        if isinstance(t, IdsType):
            return _Z(self.sym, "ids", {e: z3.BoolVal(e in value) for e in self.sym._domain(t)})
        if isinstance(t, Enum):
            return _Z(self.sym, "phase", (z3.IntVal(t.code(value)), {}, var))
        if isinstance(t, IntType):
            return _Z(self.sym, "int", z3.IntVal(value), rng=(t.lo, t.hi))
        raise DefinitionError(f"no absent value for {var.name}")

    def all(self, items) -> _Z:
        return _Z(self.sym, "bool", z3.And([v.t for v in items]))

    def any(self, items) -> _Z:
        return _Z(self.sym, "bool", z3.Or([v.t for v in items]))

    def ite(self, cond: _Z, a: Any, b: Any) -> Any:
        if isinstance(a, _Z) and isinstance(b, _Z) and a.kind == b.kind and a.kind != "phase":
            c = cond.t
            if a.kind == "bool":
                return _Z(self.sym, "bool", z3.If(c, a.t, b.t))
            if a.kind == "int":
                return _Z(self.sym, "int", z3.If(c, a.t, b.t), rng=a.rng)
            if a.kind == "cache":
                return _Z(self.sym, "cache", [z3.If(c, x, y) for x, y in zip(a.t, b.t)])
            f = z3.BoolVal(False)
            return _Z(self.sym, "ids", {e: z3.If(c, a.t.get(e, f), b.t.get(e, f)) for e in a._elems(b)})
        return Ite(cond, a, b)

    def let(self, v: _Z) -> _Z:
        return v

    def ids(self, of: str, elems: dict[int, _Z]) -> _Z:
        return _Z(self.sym, "ids", {i: b.t for i, b in elems.items()})


class SymbolicModel:
    """The z3 transition system of one :class:`Config` (every flag of the definition).

    >>> from kvheal.model import Config
    >>> sym = SymbolicModel(Config.make(tabs=2))
    >>> s0, s1 = sym.fresh("s0"), sym.fresh("s1")
    >>> solver = z3.Solver(); solver.add(sym.init(s0), sym.trans(s0, s1, z3.Int("a")))
    >>> solver.check() == z3.sat
    True
    """

    def __init__(self, config: Config, definition: Definition | None = None) -> None:
        self.config = cfg = config
        self.definition = d = definition or config.design or KVHEAL
        d.validate(cfg)
        self.T, self.M, self.C = cfg.tabs, cfg.messages, cfg.cap
        #: with statuses a cache value is M counts, then M counts of final copies (a prefix of
        #: each id's copies: ``CacheValues``' reading)
        self.S = d.cache_statuses(cfg)
        self.W = 2 * self.M if self.S else self.M
        self.dedupe = cfg.has("dedupe")
        self.keep_verifying = cfg.has("keep_verifying")
        self.atomic = cfg.has("atomic_cache")
        self.sweeper = cfg.has("sweeper")
        self.tab_crash = cfg.has("tab_crash")
        self.shared = cfg.has("shared_pending")
        T, M = self.T, self.M
        self.owner = [cfg.owner(m) for m in range(M)]
        self.own = [[m for m in range(M) if self.owner[m] == t] for t in range(T)]
        #: heal slots: message ids, or (tab, id) pairs with shared_pending
        self.heal_keys: list[Any] = d.heal_slots(cfg)
        self.dvars = d.variables_of(cfg)
        self._unused = {v.name: set(v.unused(cfg)) for v in self.dvars}
        self.vars = self._declare()
        self.var_names = [v.name for v in self.vars]
        self.instances: list[Action] = []
        self._defs = d.instances(cfg)
        self._unfair: set[int] = set()
        for n, (a, args) in enumerate(self._defs):
            pairs = tuple(sorted(args.items(), key=lambda kv: "tm".index(kv[0])))
            self.instances.append(Action(a.name, pairs, n))
            if not a.fair:
                self._unfair.add(n)
        self._guards: list[Callable[[State], z3.BoolRef]] = [
            (lambda s, n=n: self._body(n, s)[0]) for n in range(len(self._defs))
        ]
        self._effects: list[Callable[[State], dict[str, z3.ExprRef]]] = [
            (lambda s, n=n: self._body(n, s)[1]) for n in range(len(self._defs))
        ]
        self.index = {(i.name, i.pairs): n for n, i in enumerate(self.instances)}
        self._props = {p.name: p for p in d.properties_of(cfg)}

    # ------------------------------------------------------------------ variables
    @staticmethod
    def hk(h: Any) -> str:
        """The name suffix of heal slot ``h``."""
        return f"{h[0]},{h[1]}" if isinstance(h, tuple) else str(h)

    def heal_msg(self, h: Any) -> int:
        return h[1] if isinstance(h, tuple) else h

    def _domain(self, t: IdsType, idx: Any = None) -> list[int]:
        if t.universe is not None and idx is not None:
            return list(t.universe(self.config, idx))
        return list(range(self.T if t.of == "t" else self.M))

    def variable_names(self, var, idx) -> list[str]:
        """Every z3 variable name of the definition's variable ``var`` at index ``idx`` (its
        phase, payload fields, or elements): the group one explicit state slot maps to."""
        return _flat(self._names(var, idx))

    def _names(self, var, idx) -> dict[str, Any]:
        """The z3 variable names of ``var[idx]``: ``{"": phase/bool/...}`` plus, per payload
        field, the names of its elements; for ids and caches, one name per element."""
        base = var.name + _suffix(idx)
        t = var.type
        if isinstance(t, CacheType):
            return {"elems": self._cache_names(base)}
        if isinstance(t, IdsType):
            return {"elems": {e: f"{base}[{e}]" for e in self._domain(t, idx)}}
        out: dict[str, Any] = {"": base}
        if isinstance(t, Enum):
            used = [p for p in t.phases if p.name not in self._unused[var.name]]
            for f, ft in t.fields():
                if not any(f in dict(p.payload) for p in used):
                    continue
                fb = f"{var.name}{f}{_suffix(idx)}"
                if isinstance(ft, CacheType):
                    out[f] = self._cache_names(fb)
                else:
                    out[f] = {e: f"{fb}[{e}]" for e in self._domain(ft)}
        return out

    def _cache_names(self, base: str) -> list[str]:
        """A cache value's names: a count per id, then (statuses) the final copies per id."""
        fin = [f"{base}fin[{j}]" for j in range(self.M)] if self.S else []
        return [f"{base}[{j}]" for j in range(self.M)] + fin

    def _declare(self) -> list[_Var]:
        d, cfg, C = self.definition, self.config, self.C
        vs: list[_Var] = []
        for v in self.dvars:
            for idx in d.indices(cfg, v.scope):
                names = self._names(v, idx)
                t = v.type
                if isinstance(t, CacheType):
                    vs += [_Var(n, "int", C) for n in names["elems"]]
                elif isinstance(t, IdsType):
                    vs += [_Var(n, "bool") for n in names["elems"].values()]
                elif isinstance(t, IntType):
                    vs.append(_Var(names[""], "int", t.hi, lo=t.lo))
                elif isinstance(t, Enum):
                    codes = [t.code(p.name) for p in t.phases if p.name not in self._unused[v.name]]
                    if len(t.phases) == 2:
                        vs.append(_Var(names[""], "bool"))
                    else:
                        hi = max(codes)
                        vs.append(_Var(names[""], "int", hi, tuple(c for c in range(hi) if c not in codes)))
                    for f, ft in t.fields():
                        if f not in names:
                            continue
                        if isinstance(ft, CacheType):
                            vs += [_Var(n, "int", C) for n in names[f]]
                        else:
                            vs += [_Var(n, "bool") for n in names[f].values()]
                else:
                    vs.append(_Var(names[""], "bool"))
        return vs

    def _read(self, s: State, var, idx) -> _Z:
        names = self._names(var, idx)
        t, ref = var.type, (var.name, idx)
        if isinstance(t, CacheType):
            return _Z(self, "cache", [s[n] for n in names["elems"]], ref)
        if isinstance(t, IdsType):
            return _Z(self, "ids", {e: s[n] for e, n in names["elems"].items()}, ref)
        if isinstance(t, Enum):
            fields = {}
            for f, ft in t.fields():
                if f in names:
                    if isinstance(ft, CacheType):
                        fields[f] = _Z(self, "cache", [s[n] for n in names[f]])
                    else:
                        fields[f] = _Z(self, "ids", {e: s[n] for e, n in names[f].items()})
            return _Z(self, "phase", (s[names[""]], fields, var), ref)
        if isinstance(t, IntType):
            return _Z(self, "int", s[names[""]], ref, rng=(t.lo, t.hi))
        return _Z(self, "bool", s[names[""]], ref)

    def fresh(self, tag: str) -> State:
        """A new copy of the state variables, suffixed ``@tag`` (with the derived values as
        terms over them: ``stored[m]``)."""
        out: State = {}
        for v in self.vars:
            name = f"{v.name}@{tag}"
            out[v.name] = z3.Int(name) if v.kind == "int" else z3.Bool(name)
        self._add_derived(out)
        return out

    def _add_derived(self, s: State) -> None:
        reader = StateReader(self.definition, self.config, _Ops(self, s))
        for der in self.definition.derived:
            value = getattr(reader, der.name)
            for e, term in value.t.items():
                s[f"{der.name}[{e}]"] = term

    def dom(self, s: State) -> z3.BoolRef:
        """The variables' ranges (an Int phase or count lies in ``0..hi``, off unused codes)."""
        parts = []
        for v in self.vars:
            if v.kind == "int":
                parts.append(z3.And(s[v.name] >= v.lo, s[v.name] <= v.hi))
                parts += [s[v.name] != h for h in v.holes]
            if self.S and "fin[" in v.name:  # statuses: an id's final copies are among its copies
                base, j = v.name.rsplit("fin[", 1)
                parts.append(s[v.name] <= s[f"{base}[{j}"])
        return z3.And(parts)

    # ------------------------------------------------------------------ readable accessors
    def cache(self, s: State) -> list[z3.ArithRef]:
        return [s[f"cache[{j}]"] for j in range(self.M)]

    def snap(self, s: State, prefix: str) -> list[z3.ArithRef]:
        return [s[f"{prefix}[{j}]"] for j in range(self.M)]

    def alive(self, s: State, t: int) -> z3.BoolRef:
        return s[f"alive[{t}]"] if self.tab_crash else z3.BoolVal(True)

    def in_cache(self, s: State, j: int) -> z3.BoolRef:
        return s[f"cache[{j}]"] >= 1

    def acked(self, s: State, m: int) -> z3.BoolRef:
        return s[f"post[{m}]"] == ACKED

    # ------------------------------------------------------------------ cache values
    def trim(self, counts: list[z3.ArithRef], late: dict | None = None) -> list[z3.ArithRef]:
        """Keep the C largest entries of a multiset given as counts per id: by id, or with
        ``late`` (per id, whether it is stamped at the later time) by timestamp, then id. With
        statuses ``counts`` ends with the final copies per id, which come first among an id's
        copies, so the dropped copies are final ones first."""
        counts, fins = list(counts[: self.M]), list(counts[self.M :])
        out = []
        for j in range(self.M):
            if late is None:
                above = _sum(counts[j + 1 :])
            else:
                f = z3.BoolVal(False)
                lj = late.get(j, f)
                above = _sum(
                    [
                        z3.If(
                            z3.And(late.get(i, f), z3.Not(lj))
                            if i < j
                            else z3.Or(late.get(i, f), z3.Not(lj)),
                            c,
                            0,
                        )
                        for i, c in enumerate(counts)
                        if i != j
                    ]
                )
            room = z3.If(above >= self.C, 0, self.C - above)
            out.append(z3.If(counts[j] <= room, counts[j], room))
        for j, a in enumerate(fins):
            dropped = counts[j] - out[j]
            out.append(z3.If(a > dropped, a - dropped, 0))
        return out

    def add(self, snap: list[z3.ArithRef], m: int, late: dict | None = None) -> list[z3.ArithRef]:
        """SPEC §3 ``add(s, m)`` (ordered by timestamp then id with ``late``: see :meth:`trim`);
        the new copy's status is open."""
        return self.trim([c + 1 if j == m else c for j, c in enumerate(snap)], late)

    def is_fair(self, i: int) -> bool:
        """Weak fairness covers instance ``i`` (the definition marks every action but ``Crash``)."""
        return i not in self._unfair

    # ------------------------------------------------------------------ actions, from the definition
    def _body(self, n: int, s: State) -> tuple[z3.BoolRef, dict[str, z3.ExprRef]]:
        a, args = self._defs[n]
        ops = _Ops(self, s)
        guard, effects = self.definition.apply(
            a, self.config, StateReader(self.definition, self.config, ops), ops, args
        )
        out: dict[str, z3.ExprRef] = {}
        for target, value in effects.items():
            if not isinstance(target, _Z) or target.ref is None:
                raise DefinitionError(f"{a.name} writes something that is not a state variable")
            var = self.definition.variable(self.config, target.ref[0])
            out.update(self._assign(var, target.ref[1], value, s))
        return guard.t, out

    def _assign(self, var, idx, value: Any, s: State) -> dict[str, z3.ExprRef]:
        """The variable terms of ``var[idx] := value``."""
        names = self._names(var, idx)
        t = var.type
        if isinstance(value, Ite):
            a, b = self._assign(var, idx, value.a, s), self._assign(var, idx, value.b, s)
            return {n: z3.If(value.cond.t, a[n], b[n]) for n in a}
        if isinstance(t, CacheType):
            return dict(zip(names["elems"], value.t))
        if isinstance(t, IdsType):
            f = z3.BoolVal(False)
            return {n: value.t.get(e, f) for e, n in names["elems"].items()}
        if isinstance(t, Enum):
            two = len(t.phases) == 2
            if isinstance(value, PhaseValue):
                code = t.code(value.phase)
                out = {names[""]: z3.BoolVal(bool(code)) if two else z3.IntVal(code)}
                given = dict(value.fields)
                for f, ft in t.fields():
                    if f not in names:
                        continue
                    v = given.get(f)
                    if isinstance(ft, CacheType):
                        terms = v.t if v is not None else [z3.IntVal(0)] * self.W
                        out.update(zip(names[f], terms))
                    else:
                        fz = z3.BoolVal(False)
                        out.update(
                            {n: (v.t.get(e, fz) if v is not None else fz) for e, n in names[f].items()}
                        )
                return out
            if isinstance(value, _Z) and value.kind == "phase":  # a copy of another phase value
                term, fields, _ = value.t
                out = {names[""]: term}
                for f in names:
                    if f:
                        out.update(self._assign_field(names[f], fields[f]))
                return out
        if isinstance(t, IntType) and isinstance(value, int) and not isinstance(value, bool):
            return {names[""]: z3.IntVal(value)}
        if isinstance(value, bool):  # a constant written to a boolean variable
            return {names[""]: z3.BoolVal(value)}
        if isinstance(value, _Z):
            return {names[""]: value.t}
        raise DefinitionError(f"cannot write {value!r} to {var.name}")

    @staticmethod
    def _assign_field(names: Any, value: _Z) -> dict[str, z3.ExprRef]:
        if isinstance(names, list):
            return dict(zip(names, value.t))
        return {n: value.t[e] for e, n in names.items()}

    # ------------------------------------------------------------------ the system
    def init(self, s: State) -> z3.BoolRef:
        """The initial state (every variable at its zero, or its declared initial value)."""
        eqs = []
        for v in self.dvars:
            for idx in self.definition.indices(self.config, v.scope):
                value = v.init(self.config, idx) if v.init else None
                names = self._names(v, idx)
                for n in _flat(names):
                    if isinstance(v.type, IdsType) and value is not None:
                        e = next(e for e, nn in names["elems"].items() if nn == n)
                        eqs.append(s[n] == z3.BoolVal(e in value))
                    elif isinstance(v.type, IntType):
                        eqs.append(s[n] == (v.type.lo if value is None else value))
                    elif z3.is_bool(s[n]):
                        eqs.append(z3.Not(s[n]))
                    else:
                        eqs.append(s[n] == 0)
        return z3.And(eqs)

    def enabled(self, i: int, s: State) -> z3.BoolRef:
        """Instance ``i`` is enabled in ``s``."""
        return self._guards[i](s)

    def successor(self, i: int, s: State) -> State:
        """The state instance ``i`` leads to from ``s`` (as terms over ``s``)."""
        out = {n: s[n] for n in self.var_names}
        out.update(self._effects[i](s))
        self._add_derived(out)
        return out

    def deadlock(self, s: State) -> z3.BoolRef:
        """No action is enabled in ``s`` (SPEC §7: it stutters for ever)."""
        return z3.Not(z3.Or([self.enabled(i, s) for i in range(len(self.instances))]))

    def trans(self, s: State, s2: State, sel: z3.ArithRef, stutter: bool = False) -> z3.BoolRef:
        """``s2`` is the effect of the enabled instance number ``sel`` on ``s``. With
        ``stutter``, ``sel = -1`` is allowed in a deadlocked state and keeps it."""
        n = len(self.instances)
        parts = [sel < n, sel >= (-1 if stutter else 0)]
        writes: dict[str, list[tuple[int, z3.ExprRef]]] = {name: [] for name in self.var_names}
        for i in range(n):
            guard, effects = self._body(i, s)
            parts.append(z3.Implies(sel == i, guard))
            for name, term in effects.items():
                writes[name].append((i, term))
        if stutter:
            parts.append(z3.Implies(sel == -1, self.deadlock(s)))
        for name in self.var_names:
            term = s[name]
            for i, e in reversed(writes[name]):
                term = z3.If(sel == i, e, term)
            parts.append(s2[name] == term)
        return z3.And(parts)

    # ------------------------------------------------------------------ properties (SPEC §7)
    def prop(self, name: str) -> Callable[[State], z3.BoolRef]:
        """The state predicate of property ``name``, from the definition."""
        p = self._props[name]

        def holds(s: State) -> z3.BoolRef:
            ops = _Ops(self, s)
            return p.holds(self.config, StateReader(self.definition, self.config, ops), ops).t

        return holds

    def no_duplicates(self, s: State) -> z3.BoolRef:
        return self.prop("NoDuplicates")(s)

    def converges_goal(self, s: State) -> z3.BoolRef:
        """The C newest acknowledged messages are all in the cache."""
        return self.prop("Converges")(s)

    def invariants(self) -> dict[str, Callable[[State], z3.BoolRef]]:
        """The invariants of the definition, by name."""
        return {n: self.prop(n) for n, p in self._props.items() if p.kind == "invariant"}

    def goals(self) -> dict[str, Callable[[State], z3.BoolRef]]:
        """The eventually-always goals that apply, by name."""
        return {n: self.prop(n) for n, p in self._props.items() if p.kind == "eventually_always"}

    # ------------------------------------------------------------------ decoding
    def values(self, model: z3.ModelRef, s: State) -> dict[str, int | bool]:
        """The concrete value of every variable of ``s`` in a z3 model."""
        out: dict[str, int | bool] = {}
        for v in self.vars:
            val = model.eval(s[v.name], model_completion=True)
            out[v.name] = val.as_long() if v.kind == "int" else z3.is_true(val)
        return out

    def view(self, vals: dict[str, int | bool]) -> dict[str, Any]:
        """Concrete values in the view of :meth:`KVHealModel.view` (one format for every engine)."""
        d, cfg = self.definition, self.config
        values: dict[str, Any] = {}
        for v in self.dvars:
            for idx in d.indices(cfg, v.scope):
                value = self._view_value(v, idx, vals)
                if v.scope == "global":
                    values[v.name] = value
                elif v.scope == "heal":
                    values.setdefault(v.name, {})[idx] = value
                else:
                    values.setdefault(v.name, []).append(value)
        values = {k: tuple(x) if isinstance(x, list) else x for k, x in values.items()}
        consts = {n: (z3.BoolVal(x) if isinstance(x, bool) else z3.IntVal(x)) for n, x in vals.items()}
        self._add_derived(consts)
        derived = {}
        for der in d.derived:
            dom = range(self.T if der.type.of == "t" else self.M)
            derived[der.name] = tuple(
                e for e in dom if z3.is_true(z3.simplify(consts.get(f"{der.name}[{e}]", z3.BoolVal(False))))
            )
        return view_of(d, cfg, values, derived)

    def _view_value(self, var, idx, vals) -> Any:
        names = self._names(var, idx)
        t = var.type

        def tup(ns: list[str]) -> tuple:
            if not self.S:
                return tuple(j for j, n in enumerate(ns) for _ in range(int(vals[n])))
            out: list = []
            for j in range(self.M):  # the final copies first, as CacheValues.view shows them
                fin = int(vals[ns[self.M + j]])
                out += [f"{j}*"] * fin + [j] * (int(vals[ns[j]]) - fin)
            return tuple(out)

        def ids(ns: dict[int, str]) -> tuple[int, ...]:
            return tuple(e for e, n in ns.items() if vals[n])

        if isinstance(t, CacheType):
            return tup(names["elems"])
        if isinstance(t, IntType):
            return int(vals[names[""]])
        if isinstance(t, IdsType):
            if t.view == "bools":
                return tuple(bool(vals[n]) for n in names["elems"].values())
            return ids(names["elems"])
        if isinstance(t, Enum):
            code = int(vals[names[""]])
            phase = t.phases[code]
            payload = []
            for f, ft in phase.payload:
                payload.append(tup(names[f]) if isinstance(ft, CacheType) else ids(names[f]))
            return (phase.name, *payload)
        return bool(vals[names[""]])

    def decode(self, model: z3.ModelRef, s: State) -> dict[str, Any]:
        """The SPEC-level view of state ``s`` in a z3 model."""
        return self.view(self.values(model, s))

    def instance_at(self, model: z3.ModelRef, sel: z3.ArithRef) -> Action | None:
        """The instance a selector names in a model (None for a stutter)."""
        n = model.eval(sel, model_completion=True).as_long()
        return None if n < 0 else self.instances[n]

    def values_of(self, view: dict[str, Any]) -> dict[str, int | bool]:
        """Concrete variable values of a SPEC-level view (the inverse of :meth:`view`)."""
        d, cfg = self.definition, self.config
        out: dict[str, int | bool] = {}
        for v in self.dvars:
            whole = view[v.name]
            for pos, idx in enumerate(d.indices(cfg, v.scope)):
                if v.scope == "global":
                    value = whole
                elif v.scope == "heal":
                    value = whole[idx]
                else:
                    value = whole[pos]
                self._values_into(out, v, idx, value)
        return out

    def _values_into(self, out: dict, var, idx, value) -> None:
        names = self._names(var, idx)
        t = var.type

        def counts(ns: list[str], ids: tuple) -> None:
            items = [int(str(x).rstrip("*")) for x in ids]
            for j in range(self.M):
                out[ns[j]] = items.count(j)
                if self.S:
                    out[ns[self.M + j]] = sum(1 for x in ids if x == f"{j}*")

        def bools(ns: dict[int, str], ids: tuple[int, ...]) -> None:
            for e, n in ns.items():
                out[n] = e in ids

        if isinstance(t, CacheType):
            counts(names["elems"], value)
        elif isinstance(t, IntType):
            out[names[""]] = int(value)
        elif isinstance(t, IdsType):
            if t.view == "bools":
                for e, n in names["elems"].items():
                    out[n] = bool(value[e])
            else:
                bools(names["elems"], value)
        elif isinstance(t, Enum):
            code = t.code(value[0])
            out[names[""]] = bool(code) if len(t.phases) == 2 else code
            given = dict(zip([f for f, _ in t.phase(value[0]).payload], value[1:]))
            for f, ft in t.fields():
                if f not in names:
                    continue
                if isinstance(ft, CacheType):
                    counts(names[f], given.get(f, ()))
                else:
                    bools(names[f], given.get(f, ()))
        else:
            out[names[""]] = bool(value)

    def encode_view(self, s: State, view: dict[str, Any]) -> z3.BoolRef:
        """``s`` equals the SPEC-level ``view``."""
        eqs = []
        for name, val in self.values_of(view).items():
            eqs.append(s[name] == (z3.BoolVal(val) if isinstance(val, bool) else z3.IntVal(val)))
        return z3.And(eqs)


def _flat(names: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for v in names.values():
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out += v
        else:
            out += list(v.values())
    return out


# ---------------------------------------------------------------------- fast evaluation
_OPS = {
    z3.Z3_OP_ADD: lambda a: "(" + " + ".join(a) + ")",
    z3.Z3_OP_SUB: lambda a: "(" + " - ".join(a) + ")",
    z3.Z3_OP_UMINUS: lambda a: f"(-{a[0]})",
    z3.Z3_OP_MUL: lambda a: "(" + " * ".join(a) + ")",
    z3.Z3_OP_LE: lambda a: f"({a[0]} <= {a[1]})",
    z3.Z3_OP_GE: lambda a: f"({a[0]} >= {a[1]})",
    z3.Z3_OP_LT: lambda a: f"({a[0]} < {a[1]})",
    z3.Z3_OP_GT: lambda a: f"({a[0]} > {a[1]})",
    z3.Z3_OP_EQ: lambda a: f"({a[0]} == {a[1]})",
    z3.Z3_OP_DISTINCT: lambda a: f"(len({{{', '.join(a)}}}) == {len(a)})",
    z3.Z3_OP_AND: lambda a: "(" + " and ".join(a) + ")" if a else "True",
    z3.Z3_OP_OR: lambda a: "(" + " or ".join(a) + ")" if a else "False",
    z3.Z3_OP_NOT: lambda a: f"(not {a[0]})",
    z3.Z3_OP_IMPLIES: lambda a: f"((not {a[0]}) or {a[1]})",
    z3.Z3_OP_ITE: lambda a: f"({a[1]} if {a[0]} else {a[2]})",
}


def compile_terms(terms: dict[str, z3.ExprRef], state: State) -> Callable[[dict], dict]:
    """A Python function computing ``terms`` from concrete values of ``state``'s variables.

    Used to run the symbolic relation over every explicit transition quickly; the code it
    makes is the z3 term read literally (one temporary per shared subterm)."""
    names = {v.get_id(): k for k, v in state.items()}
    lines: list[str] = []
    memo: dict[int, str] = {}

    def go(e: z3.ExprRef) -> str:
        key = e.get_id()
        if key in memo:
            return memo[key]
        if key in names:
            out = f"v[{names[key]!r}]"
        elif z3.is_int_value(e):
            out = str(e.as_long())
        elif z3.is_true(e):
            out = "True"
        elif z3.is_false(e):
            out = "False"
        else:
            k = e.decl().kind()
            if k not in _OPS:
                raise ValueError(f"cannot compile {e.decl()}")
            out = _OPS[k]([go(c) for c in e.children()])
            tmp = f"_{len(lines)}"
            lines.append(f"    {tmp} = {out}")
            out = tmp
        memo[key] = out
        return out

    result = {name: go(t) for name, t in terms.items()}
    body = "\n".join(lines) or "    pass"
    src = (
        "def f(v):\n" + body + "\n    return {" + ", ".join(f"{k!r}: {r}" for k, r in result.items()) + "}\n"
    )
    env: dict[str, Any] = {}
    exec(compile(src, "<symbolic>", "exec"), env)  # noqa: S102 - code generated from our own terms
    return env["f"]


class Evaluator:
    """The symbolic relation, compiled: concrete successors of concrete states.

    ``successors(values)`` lists ``(instance, values')`` for every enabled instance, from the
    same guard and effect terms :meth:`SymbolicModel.trans` is built of."""

    def __init__(self, sym: SymbolicModel) -> None:
        self.sym = sym
        s = sym.fresh("eval")
        self._fns = []
        for i in range(len(sym.instances)):
            terms = {"__guard__": sym.enabled(i, s), **sym._effects[i](s)}
            self._fns.append(compile_terms(terms, {n: s[n] for n in sym.var_names}))

    def successors(self, vals: dict[str, int | bool]) -> list[tuple[Action, dict[str, int | bool]]]:
        out = []
        for inst, fn in zip(self.sym.instances, self._fns):
            got = fn(vals)
            if got.pop("__guard__"):
                nxt = dict(vals)
                nxt.update({k: (int(v) if not isinstance(v, bool) else v) for k, v in got.items()})
                out.append((inst, nxt))
        return out

    def values_of(self, view: dict[str, Any]) -> dict[str, int | bool]:
        """The variable values of a SPEC-level view (the inverse of :meth:`SymbolicModel.view`)."""
        return self.sym.values_of(view)

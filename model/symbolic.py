"""SPEC §3-5 as a symbolic transition system for z3: state variables, init, and a
transition relation that is a disjunction of the action instances with a selector.

Written from SPEC.md, separately from the explicit model (:mod:`kvheal.model.core`);
``tests/model/test_symbolic.py`` makes the two agree transition for transition.

Encoding. A state is a dict ``name -> z3 term`` over a fixed list of variables:

* ``post[m]`` Int phase (0 Unsent, 1 KeyWritten, 2 CacheRead, 3 CacheWritten, 4 Acked),
  ``stored[m]`` Bool, ``postsnap[m][j]`` the snapshot ``post[m]`` holds;
* ``cache[j]`` Int: how many times id ``j`` occurs in the cache. A cache value is a tuple
  sorted by timestamp = id, so the counts determine it; ``add`` is then "count + 1, and keep
  the C largest entries": ``kept[j] = min(c[j], max(0, C - sum(c[i] for i > j)))``;
* ``pending[t][m]`` Bool for the tab's own ids (or ``pending[m]`` and the list slots
  ``lists[t]``, ``listset[t][m]`` with shared_pending), ``poll[t]`` Bool (Read) with
  ``pollsnap[t][j]``, ``heal[h]`` Int (0 Idle, 1 Requested, 2 KeyRead, 3 CacheRead) with
  ``healsnap[h][j]`` per heal slot ``h`` (``m``, or ``(t, m)`` with shared_pending),
  ``alive[t]`` Bool, ``sweep`` Int (0 Idle, 1 Listed, 2 Read) with ``sweeplist[j]``,
  ``sweepsnap[j]``.

A snapshot variable is 0 (False) whenever its phase does not hold it, so one SPEC state
is exactly one assignment (SPEC §3: values no phase holds do not distinguish states); the
invariant ``SnapshotsCleared`` of :mod:`kvheal.model.strengthen` states it.

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
from .core import Action

State = dict[str, z3.ExprRef]

# Phase codes of the encoding (not the explicit model's codes).
UNSENT, KEY_WRITTEN, POST_CACHE_READ, CACHE_WRITTEN, ACKED = range(5)
IDLE, REQUESTED, KEY_READ, HEAL_CACHE_READ = range(4)
SWEEP_IDLE, SWEEP_LISTED, SWEEP_READ = range(3)

POST_NAMES = ("Unsent", "KeyWritten", "CacheRead", "CacheWritten", "Acked")
HEAL_NAMES = ("Idle", "Requested", "KeyRead", "CacheRead")


@dataclass(frozen=True, slots=True)
class _Var:
    name: str
    kind: str  # "int" | "bool"
    hi: int = 1


def _sum(terms: Iterable[z3.ArithRef]) -> z3.ArithRef:
    terms = list(terms)
    return z3.Sum(terms) if terms else z3.IntVal(0)


class SymbolicModel:
    """The z3 transition system of one :class:`Config` (every SPEC §5 flag).

    >>> from kvheal.model import Config
    >>> sym = SymbolicModel(Config.make(tabs=2))
    >>> s0, s1 = sym.fresh("s0"), sym.fresh("s1")
    >>> solver = z3.Solver(); solver.add(sym.init(s0), sym.trans(s0, s1, z3.Int("a")))
    >>> solver.check() == z3.sat
    True
    """

    def __init__(self, config: Config) -> None:
        self.config = cfg = config
        self.T, self.M, self.C = cfg.tabs, cfg.messages, cfg.cap
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
        self.heal_keys: list[Any] = (
            [(t, m) for t in range(T) for m in range(M)] if self.shared else list(range(M))
        )
        self.vars = self._declare()
        self.var_names = [v.name for v in self.vars]
        self.instances: list[Action] = []
        self._unfair: set[int] = set()
        self._guards: list[Callable[[State], z3.BoolRef]] = []
        self._effects: list[Callable[[State], dict[str, z3.ExprRef]]] = []
        self._build()
        self.index = {(i.name, i.pairs): n for n, i in enumerate(self.instances)}

    # ------------------------------------------------------------------ variables
    @staticmethod
    def hk(h: Any) -> str:
        """The name suffix of heal slot ``h``."""
        return f"{h[0]},{h[1]}" if isinstance(h, tuple) else str(h)

    def heal_msg(self, h: Any) -> int:
        return h[1] if isinstance(h, tuple) else h

    def _declare(self) -> list[_Var]:
        T, M, C = self.T, self.M, self.C
        vs: list[_Var] = []
        for j in range(M):
            vs.append(_Var(f"cache[{j}]", "int", C))
        for m in range(M):
            vs += [_Var(f"post[{m}]", "int", 4), _Var(f"stored[{m}]", "bool")]
            if not self.atomic:
                vs += [_Var(f"postsnap[{m}][{j}]", "int", C) for j in range(M)]
        if self.shared:
            vs += [_Var(f"pending[{m}]", "bool") for m in range(M)]
            for t in range(T):
                vs.append(_Var(f"lists[{t}]", "bool"))
                vs += [_Var(f"listset[{t}][{m}]", "bool") for m in range(M)]
        else:
            for t in range(T):
                vs += [_Var(f"pending[{t}][{m}]", "bool") for m in self.own[t]]
        for t in range(T):
            vs.append(_Var(f"poll[{t}]", "bool"))
            vs += [_Var(f"pollsnap[{t}][{j}]", "int", C) for j in range(M)]
        for h in self.heal_keys:
            k = self.hk(h)
            vs.append(_Var(f"heal[{k}]", "int", 2 if self.atomic else 3))
            if not self.atomic:
                vs += [_Var(f"healsnap[{k}][{j}]", "int", C) for j in range(M)]
        if self.tab_crash:
            vs += [_Var(f"alive[{t}]", "bool") for t in range(T)]
        if self.sweeper:
            vs.append(_Var("sweep", "int", 1 if self.atomic else 2))
            vs += [_Var(f"sweeplist[{j}]", "bool") for j in range(M)]
            if not self.atomic:
                vs += [_Var(f"sweepsnap[{j}]", "int", C) for j in range(M)]
        return vs

    def fresh(self, tag: str) -> State:
        """A new copy of the state variables, suffixed ``@tag``."""
        out: State = {}
        for v in self.vars:
            name = f"{v.name}@{tag}"
            out[v.name] = z3.Int(name) if v.kind == "int" else z3.Bool(name)
        return out

    def dom(self, s: State) -> z3.BoolRef:
        """The variables' ranges (an Int phase or count lies in ``0..hi``)."""
        parts = [z3.And(s[v.name] >= 0, s[v.name] <= v.hi) for v in self.vars if v.kind == "int"]
        if self.atomic:  # the fused PostCache skips the CacheRead phase
            parts += [s[f"post[{m}]"] != POST_CACHE_READ for m in range(self.M)]
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
    def trim(self, counts: list[z3.ArithRef]) -> list[z3.ArithRef]:
        """Keep the C largest entries of a multiset given as counts per id."""
        out = []
        for j in range(self.M):
            above = _sum(counts[j + 1 :])
            room = z3.If(above >= self.C, 0, self.C - above)
            out.append(z3.If(counts[j] <= room, counts[j], room))
        return out

    def add(self, snap: list[z3.ArithRef], m: int) -> list[z3.ArithRef]:
        """SPEC §3 ``add(s, m)``."""
        return self.trim([c + 1 if j == m else c for j, c in enumerate(snap)])

    def write_cache(self, s: State, snap: list[z3.ArithRef], m: int) -> dict[str, z3.ExprRef]:
        """The cache writes of PostWrite/HealWrite/…Cache: ``add(snap, m)``, or nothing when
        ``dedupe`` finds ``m`` already in ``snap``."""
        new = self.add(snap, m)
        if self.dedupe:
            new = [z3.If(snap[m] >= 1, c, n) for c, n in zip(self.cache(s), new)]
        return {f"cache[{j}]": new[j] for j in range(self.M)}

    def is_fair(self, i: int) -> bool:
        """Weak fairness covers instance ``i`` (every instance but ``Crash``, SPEC §7)."""
        return i not in self._unfair

    def clear(self, prefix: str) -> dict[str, z3.ExprRef]:
        return {f"{prefix}[{j}]": z3.IntVal(0) for j in range(self.M)}

    def copy_cache(self, s: State, prefix: str) -> dict[str, z3.ExprRef]:
        return {f"{prefix}[{j}]": s[f"cache[{j}]"] for j in range(self.M)}

    # ------------------------------------------------------------------ actions
    def _act(self, name: str, guard, effect, fair: bool = True, **args: int) -> None:
        pairs = tuple(sorted(args.items(), key=lambda kv: "tm".index(kv[0])))
        if not fair:
            self._unfair.add(len(self.instances))
        self.instances.append(Action(name, pairs, len(self.instances)))
        self._guards.append(guard)
        self._effects.append(effect)

    def _build(self) -> None:
        T, M = self.T, self.M
        atomic, dedupe = self.atomic, self.dedupe
        for m in range(M):
            o = self.owner[m]
            p = f"post[{m}]"
            self._act("PostKey", lambda s, p=p, o=o: z3.And(s[p] == UNSENT, self.alive(s, o)),
                      lambda s, p=p, m=m: {p: z3.IntVal(KEY_WRITTEN), f"stored[{m}]": z3.BoolVal(True)},
                      m=m)
            if atomic:
                self._act("PostCache", lambda s, p=p: s[p] == KEY_WRITTEN,
                          lambda s, p=p, m=m: {p: z3.IntVal(CACHE_WRITTEN),
                                               **self.write_cache(s, self.cache(s), m)}, m=m)
            else:
                ps = f"postsnap[{m}]"
                self._act("PostRead", lambda s, p=p: s[p] == KEY_WRITTEN,
                          lambda s, p=p, ps=ps: {p: z3.IntVal(POST_CACHE_READ),
                                                 **self.copy_cache(s, ps)}, m=m)
                self._act("PostWrite", lambda s, p=p: s[p] == POST_CACHE_READ,
                          lambda s, p=p, ps=ps, m=m: {p: z3.IntVal(CACHE_WRITTEN),
                                                      **self.write_cache(s, self.snap(s, ps), m),
                                                      **self.clear(ps)}, m=m)
            self._act("PostAck", lambda s, p=p, o=o: self._ack_guard(s, p, o),
                      lambda s, p=p, m=m, o=o: self._ack_effect(s, p, m, o), m=m)
        for t in range(T):
            self._act("PollRead", lambda s, t=t: z3.And(z3.Not(s[f"poll[{t}]"]), self.alive(s, t)),
                      lambda s, t=t: {f"poll[{t}]": z3.BoolVal(True),
                                      **self.copy_cache(s, f"pollsnap[{t}]")}, t=t)
            self._act("PollDone", lambda s, t=t: self._done_guard(s, t),
                      lambda s, t=t: self._done_effect(s, t), t=t)
            if self.shared:
                self._act("PendingWrite",
                          lambda s, t=t: z3.And(self.alive(s, t), s[f"lists[{t}]"]),
                          lambda s, t=t: {f"lists[{t}]": z3.BoolVal(False),
                                          **{f"pending[{m}]": s[f"listset[{t}][{m}]"] for m in range(M)},
                                          **{f"listset[{t}][{m}]": z3.BoolVal(False) for m in range(M)}},
                          t=t)
        for name in (["HealKey"] + (["HealCache"] if atomic else ["HealRead", "HealWrite"])):
            for h in self.heal_keys:
                m = self.heal_msg(h)
                args = {"t": h[0], "m": m} if isinstance(h, tuple) else {"m": m}
                hv, hs = f"heal[{self.hk(h)}]", f"healsnap[{self.hk(h)}]"
                if name == "HealKey":
                    self._act(name, lambda s, hv=hv: s[hv] == REQUESTED,
                              lambda s, hv=hv, m=m: {hv: z3.If(s[f"stored[{m}]"], KEY_READ, IDLE)}, **args)
                elif name == "HealCache":
                    self._act(name, lambda s, hv=hv: s[hv] == KEY_READ,
                              lambda s, hv=hv, m=m: {hv: z3.IntVal(IDLE),
                                                     **self.write_cache(s, self.cache(s), m)}, **args)
                elif name == "HealRead":
                    self._act(name, lambda s, hv=hv: s[hv] == KEY_READ,
                              lambda s, hv=hv, hs=hs: {hv: z3.IntVal(HEAL_CACHE_READ),
                                                       **self.copy_cache(s, hs)}, **args)
                else:
                    self._act(name, lambda s, hv=hv: s[hv] == HEAL_CACHE_READ,
                              lambda s, hv=hv, hs=hs, m=m: {hv: z3.IntVal(IDLE),
                                                            **self.write_cache(s, self.snap(s, hs), m),
                                                            **self.clear(hs)}, **args)
        if self.sweeper:
            self._act("SweepList", lambda s: s["sweep"] == SWEEP_IDLE,
                      lambda s: {"sweep": z3.IntVal(SWEEP_LISTED),
                                 **{f"sweeplist[{j}]": s[f"stored[{j}]"] for j in range(M)}})
            if atomic:
                self._act("SweepCache", lambda s: s["sweep"] == SWEEP_LISTED,
                          lambda s: {"sweep": z3.IntVal(SWEEP_IDLE), **self._sweep_write(s, self.cache(s)),
                                     **self._clear_list()})
            else:
                self._act("SweepRead", lambda s: s["sweep"] == SWEEP_LISTED,
                          lambda s: {"sweep": z3.IntVal(SWEEP_READ), **self.copy_cache(s, "sweepsnap")})
                self._act("SweepWrite", lambda s: s["sweep"] == SWEEP_READ,
                          lambda s: {"sweep": z3.IntVal(SWEEP_IDLE),
                                     **self._sweep_write(s, self.snap(s, "sweepsnap")),
                                     **self.clear("sweepsnap"), **self._clear_list()})
        if self.tab_crash:
            for t in range(T):
                self._act("Crash", lambda s, t=t: s[f"alive[{t}]"],
                          lambda s, t=t: self._crash_effect(s, t), fair=False, t=t)

    def _clear_list(self) -> dict[str, z3.ExprRef]:
        return {f"sweeplist[{j}]": z3.BoolVal(False) for j in range(self.M)}

    def _sweep_write(self, s: State, snap: list[z3.ArithRef]) -> dict[str, z3.ExprRef]:
        # SweepWrite: ids listed but missing from the snapshot are added, then trimmed;
        # with nothing missing the cache keeps its current value.
        missing = [z3.And(s[f"sweeplist[{j}]"], snap[j] == 0) for j in range(self.M)]
        new = self.trim([snap[j] + z3.If(missing[j], 1, 0) for j in range(self.M)])
        any_missing = z3.Or(missing)
        return {f"cache[{j}]": z3.If(any_missing, new[j], s[f"cache[{j}]"]) for j in range(self.M)}

    def _ack_guard(self, s: State, p: str, o: int) -> z3.BoolRef:
        if self.shared:
            return z3.And(s[p] == CACHE_WRITTEN, z3.Or(z3.Not(self.alive(s, o)), z3.Not(s[f"lists[{o}]"])))
        return s[p] == CACHE_WRITTEN

    def _ack_effect(self, s: State, p: str, m: int, o: int) -> dict[str, z3.ExprRef]:
        out: dict[str, z3.ExprRef] = {p: z3.IntVal(ACKED)}
        live = self.alive(s, o)
        if self.shared:
            # The owner reads the shared list and will write it back with m added.
            out[f"lists[{o}]"] = live
            for j in range(self.M):
                v = z3.BoolVal(True) if j == m else s[f"pending[{j}]"]
                out[f"listset[{o}][{j}]"] = z3.And(live, v)
        else:
            out[f"pending[{o}][{m}]"] = z3.Or(s[f"pending[{o}][{m}]"], live)
        return out

    def _done_guard(self, s: State, t: int) -> z3.BoolRef:
        g = [s[f"poll[{t}]"], self.alive(s, t)]
        if self.shared:
            g.append(z3.Not(s[f"lists[{t}]"]))
        return z3.And(g)

    def _done_effect(self, s: State, t: int) -> dict[str, z3.ExprRef]:
        snap = self.snap(s, f"pollsnap[{t}]")
        out: dict[str, z3.ExprRef] = {f"poll[{t}]": z3.BoolVal(False), **self.clear(f"pollsnap[{t}]")}
        if self.shared:
            out[f"lists[{t}]"] = z3.BoolVal(True)
            for m in range(self.M):
                pend, seen = s[f"pending[{m}]"], snap[m] >= 1
                keep = pend if self.keep_verifying else z3.And(pend, z3.Not(seen))
                out[f"listset[{t}][{m}]"] = keep
                hv = f"heal[{t},{m}]"
                out[hv] = z3.If(z3.And(pend, z3.Not(seen), s[hv] == IDLE), REQUESTED, s[hv])
        else:
            for m in self.own[t]:
                pv, hv = f"pending[{t}][{m}]", f"heal[{m}]"
                pend, seen = s[pv], snap[m] >= 1
                if not self.keep_verifying:
                    out[pv] = z3.And(pend, z3.Not(seen))
                out[hv] = z3.If(z3.And(pend, z3.Not(seen), s[hv] == IDLE), REQUESTED, s[hv])
        return out

    def _crash_effect(self, s: State, t: int) -> dict[str, z3.ExprRef]:
        out: dict[str, z3.ExprRef] = {f"alive[{t}]": z3.BoolVal(False), f"poll[{t}]": z3.BoolVal(False),
                                      **self.clear(f"pollsnap[{t}]")}
        if self.shared:
            out[f"lists[{t}]"] = z3.BoolVal(False)
            out.update({f"listset[{t}][{m}]": z3.BoolVal(False) for m in range(self.M)})
        return out

    # ------------------------------------------------------------------ the system
    def init(self, s: State) -> z3.BoolRef:
        """SPEC §3's initial state (every variable at its zero, tabs alive)."""
        eqs = []
        for v in self.vars:
            if v.name.startswith("alive["):
                eqs.append(s[v.name])
            elif v.kind == "int":
                eqs.append(s[v.name] == 0)
            else:
                eqs.append(z3.Not(s[v.name]))
        return z3.And(eqs)

    def enabled(self, i: int, s: State) -> z3.BoolRef:
        """Instance ``i`` is enabled in ``s``."""
        return self._guards[i](s)

    def successor(self, i: int, s: State) -> State:
        """The state instance ``i`` leads to from ``s`` (as terms over ``s``)."""
        out = dict(s)
        out.update(self._effects[i](s))
        return out

    def deadlock(self, s: State) -> z3.BoolRef:
        """No action is enabled in ``s`` (SPEC §7: it stutters for ever)."""
        return z3.Not(z3.Or([self.enabled(i, s) for i in range(len(self.instances))]))

    def trans(self, s: State, s2: State, sel: z3.ArithRef, stutter: bool = False) -> z3.BoolRef:
        """``s2`` is the effect of the enabled instance number ``sel`` on ``s``. With
        ``stutter``, ``sel = -1`` is allowed in a deadlocked state and keeps it."""
        n = len(self.instances)
        parts = [sel < n, sel >= (-1 if stutter else 0)]
        parts += [z3.Implies(sel == i, self.enabled(i, s)) for i in range(n)]
        if stutter:
            parts.append(z3.Implies(sel == -1, self.deadlock(s)))
        writes: dict[str, list[tuple[int, z3.ExprRef]]] = {name: [] for name in self.var_names}
        for i in range(n):
            for name, term in self._effects[i](s).items():
                writes[name].append((i, term))
        for name in self.var_names:
            term = s[name]
            for i, e in reversed(writes[name]):
                term = z3.If(sel == i, e, term)
            parts.append(s2[name] == term)
        return z3.And(parts)

    # ------------------------------------------------------------------ properties (SPEC §7)
    def acked_is_stored(self, s: State) -> z3.BoolRef:
        return z3.And([z3.Implies(self.acked(s, m), s[f"stored[{m}]"]) for m in range(self.M)])

    def cache_from_store(self, s: State) -> z3.BoolRef:
        return z3.And([z3.Implies(self.in_cache(s, j), s[f"stored[{j}]"]) for j in range(self.M)])

    def no_duplicates(self, s: State) -> z3.BoolRef:
        return z3.And([c <= 1 for c in self.cache(s)])

    def converges_goal(self, s: State) -> z3.BoolRef:
        """The C newest acknowledged messages are all in the cache."""
        M = self.M
        out = []
        for m in range(M):
            newer = _sum([z3.If(self.acked(s, j), 1, 0) for j in range(m + 1, M)])
            out.append(z3.Implies(z3.And(self.acked(s, m), newer < self.C), self.in_cache(s, m)))
        return z3.And(out)

    def pending_drains_goal(self, s: State) -> z3.BoolRef:
        """Every live tab's pending list is empty (shared: while a tab lives, the list is)."""
        if self.shared:
            some_alive = z3.Or([self.alive(s, t) for t in range(self.T)])
            return z3.Implies(some_alive, z3.Not(z3.Or([s[f"pending[{m}]"] for m in range(self.M)])))
        return z3.And([z3.Implies(self.alive(s, t), z3.Not(s[f"pending[{t}][{m}]"]))
                       for t in range(self.T) for m in self.own[t]])

    def invariants(self) -> dict[str, Callable[[State], z3.BoolRef]]:
        """The SPEC §7 invariants, by name."""
        return {"AckedIsStored": self.acked_is_stored, "CacheFromStore": self.cache_from_store,
                "NoDuplicates": self.no_duplicates}

    def goals(self) -> dict[str, Callable[[State], z3.BoolRef]]:
        """The SPEC §7 eventually-always goals that apply, by name."""
        out = {"Converges": self.converges_goal}
        if not self.keep_verifying:
            out["PendingDrains"] = self.pending_drains_goal
        return out

    # ------------------------------------------------------------------ decoding
    def values(self, model: z3.ModelRef, s: State) -> dict[str, int | bool]:
        """The concrete value of every variable of ``s`` in a z3 model."""
        out: dict[str, int | bool] = {}
        for v in self.vars:
            val = model.eval(s[v.name], model_completion=True)
            out[v.name] = val.as_long() if v.kind == "int" else z3.is_true(val)
        return out

    def view(self, vals: dict[str, int | bool]) -> dict[str, Any]:
        """Concrete values in the SPEC-level view of :meth:`KVHealModel.view`."""
        T, M = self.T, self.M

        def tup(prefix: str) -> tuple[int, ...]:
            return tuple(j for j in range(M) for _ in range(int(vals[f"{prefix}[{j}]"])))

        def post(m: int) -> tuple:
            p = int(vals[f"post[{m}]"])
            if p == POST_CACHE_READ:
                return ("CacheRead", () if self.atomic else tup(f"postsnap[{m}]"))
            return (POST_NAMES[p],)

        def heal(h: Any) -> tuple:
            p = int(vals[f"heal[{self.hk(h)}]"])
            return ("CacheRead", tup(f"healsnap[{self.hk(h)}]")) if p == HEAL_CACHE_READ else (HEAL_NAMES[p],)

        v: dict[str, Any] = {
            "stored": tuple(m for m in range(M) if vals[f"stored[{m}]"]),
            "cache": tup("cache"),
            "post": tuple(post(m) for m in range(M)),
        }
        if self.shared:
            v["pending"] = tuple(m for m in range(M) if vals[f"pending[{m}]"])
        else:
            v["pending"] = tuple(tuple(m for m in self.own[t] if vals[f"pending[{t}][{m}]"]) for t in range(T))
        v["poll"] = tuple(("Read", tup(f"pollsnap[{t}]")) if vals[f"poll[{t}]"] else ("Idle",) for t in range(T))
        v["heal"] = {h: heal(h) for h in self.heal_keys}
        v["alive"] = tuple(bool(vals[f"alive[{t}]"]) if self.tab_crash else True for t in range(T))
        if self.sweeper:
            p = int(vals["sweep"])
            listed = tuple(j for j in range(M) if vals[f"sweeplist[{j}]"])
            v["sweep"] = (("Idle",), ("Listed", listed), ("Read", listed, tup("sweepsnap") if not self.atomic else ()))[p]
        else:
            v["sweep"] = ("Idle",)
        if self.shared:
            v["lists"] = tuple(
                ("Write", tuple(m for m in range(M) if vals[f"listset[{t}][{m}]"])) if vals[f"lists[{t}]"] else ("Idle",)
                for t in range(T))
        return v

    def decode(self, model: z3.ModelRef, s: State) -> dict[str, Any]:
        """The SPEC-level view of state ``s`` in a z3 model."""
        return self.view(self.values(model, s))

    def instance_at(self, model: z3.ModelRef, sel: z3.ArithRef) -> Action | None:
        """The instance a selector names in a model (None for a stutter)."""
        n = model.eval(sel, model_completion=True).as_long()
        return None if n < 0 else self.instances[n]

    def values_of(self, view: dict[str, Any]) -> dict[str, int | bool]:
        """Concrete variable values of a SPEC-level view (the inverse of :meth:`view`)."""
        T, M = self.T, self.M
        out: dict[str, int | bool] = {}

        def counts(prefix: str, ids: tuple[int, ...]) -> None:
            for j in range(M):
                out[f"{prefix}[{j}]"] = ids.count(j)

        for m in range(M):
            out[f"stored[{m}]"] = m in view["stored"]
        counts("cache", tuple(view["cache"]))
        for m, ph in enumerate(view["post"]):
            out[f"post[{m}]"] = POST_NAMES.index(ph[0])
            if not self.atomic:
                counts(f"postsnap[{m}]", tuple(ph[1]) if ph[0] == "CacheRead" else ())
        if self.shared:
            for m in range(M):
                out[f"pending[{m}]"] = m in view["pending"]
            for t, ph in enumerate(view["lists"]):
                out[f"lists[{t}]"] = ph[0] == "Write"
                for m in range(M):
                    out[f"listset[{t}][{m}]"] = ph[0] == "Write" and m in ph[1]
        else:
            for t in range(T):
                for m in self.own[t]:
                    out[f"pending[{t}][{m}]"] = m in view["pending"][t]
        for t, ph in enumerate(view["poll"]):
            out[f"poll[{t}]"] = ph[0] == "Read"
            counts(f"pollsnap[{t}]", tuple(ph[1]) if ph[0] == "Read" else ())
        for h in self.heal_keys:
            ph = view["heal"][h]
            k = self.hk(h)
            out[f"heal[{k}]"] = HEAL_NAMES.index(ph[0])
            if not self.atomic:
                counts(f"healsnap[{k}]", tuple(ph[1]) if ph[0] == "CacheRead" else ())
        if self.tab_crash:
            for t in range(T):
                out[f"alive[{t}]"] = bool(view["alive"][t])
        if self.sweeper:
            ph = view["sweep"]
            out["sweep"] = ("Idle", "Listed", "Read").index(ph[0])
            for j in range(M):
                out[f"sweeplist[{j}]"] = ph[0] != "Idle" and j in ph[1]
            if not self.atomic:
                counts("sweepsnap", tuple(ph[2]) if ph[0] == "Read" else ())
        return out

    def encode_view(self, s: State, view: dict[str, Any]) -> z3.BoolRef:
        """``s`` equals the SPEC-level ``view``."""
        eqs = []
        for name, val in self.values_of(view).items():
            eqs.append(s[name] == (z3.BoolVal(val) if isinstance(val, bool) else z3.IntVal(val)))
        return z3.And(eqs)


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
    src = "def f(v):\n" + body + "\n    return {" + ", ".join(f"{k!r}: {r}" for k, r in result.items()) + "}\n"
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
            self._fns.append(compile_terms(terms, s))

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

"""The z3 encoding agrees with the explicit model: every transition, and exact successor sets."""
from __future__ import annotations

import itertools

import pytest
import z3

from kvheal.model import VARIANTS, Config, KVHealModel
from kvheal.model.symbolic import Evaluator, SymbolicModel

ALL = [",".join(c) for r in range(len(VARIANTS) + 1) for c in itertools.combinations(VARIANTS, r)]
#: Past this many states a variant is checked on the first states of a BFS, not all of them.
FULL_LIMIT = 15_000
SAMPLE = 600


def _key(view: dict) -> str:
    return repr(sorted(view.items(), key=lambda kv: kv[0]))


def _bfs(model: KVHealModel, limit: int | None):
    (s0,) = model.init_states()
    seen, queue = {s0}, [s0]
    for s in queue:
        if limit is not None and len(queue) >= limit:
            break
        for _, t in model.successors(s):
            if t not in seen:
                seen.add(t)
                queue.append(t)
    return queue


@pytest.mark.parametrize("variant", ALL)
def test_every_explicit_transition_satisfies_the_relation(variant: str) -> None:
    cfg = Config.make(tabs=2, variants=variant)
    model, sym = KVHealModel(cfg), SymbolicModel(cfg)
    ev = Evaluator(sym)
    big = any(f in variant for f in ("sweeper", "shared_pending", "tab_crash"))
    states = _bfs(model, SAMPLE if big else None)
    if not big:
        assert len(states) <= FULL_LIMIT
    for s in states:
        want = {(model.instances[lab].name, model.instances[lab].pairs, _key(model.view(t)))
                for lab, t in model.successors(s)}
        got = {(i.name, i.pairs, _key(sym.view(v))) for i, v in ev.successors(sym.values_of(model.view(s)))}
        assert got == want, model.view(s)


@pytest.mark.parametrize("variant", ["", "dedupe,keep_verifying", "atomic_cache,sweeper", "shared_pending,tab_crash"])
def test_z3_successors_are_exactly_the_explicit_ones(variant: str) -> None:
    cfg = Config.make(tabs=2, variants=variant)
    model, sym = KVHealModel(cfg), SymbolicModel(cfg)
    states = _bfs(model, 400)[::40]
    s, s2, sel = sym.fresh("s"), sym.fresh("t"), z3.Int("sel")
    for st in states:
        solver = z3.Solver()
        solver.add(sym.encode_view(s, model.view(st)), sym.trans(s, s2, sel))
        got = set()
        while solver.check() == z3.sat:
            m = solver.model()
            inst = sym.instance_at(m, sel)
            got.add((inst.name, inst.pairs, _key(sym.decode(m, s2))))
            solver.add(sel != m.eval(sel))
        want = {(model.instances[lab].name, model.instances[lab].pairs, _key(model.view(t)))
                for lab, t in model.successors(st)}
        assert got == want


def test_init_is_the_spec_initial_state() -> None:
    cfg = Config.make(tabs=3, variants="sweeper,tab_crash")
    model, sym = KVHealModel(cfg), SymbolicModel(cfg)
    s = sym.fresh("s")
    solver = z3.Solver()
    solver.add(sym.init(s))
    assert solver.check() == z3.sat
    assert _key(sym.decode(solver.model(), s)) == _key(model.view(model.init_states()[0]))

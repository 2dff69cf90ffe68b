"""The z3 encoding agrees with the explicit model: z3 itself enumerates the successors of
sampled states (the exhaustive comparison, every reachable state of every design at tabs 2
through the compiled terms, is ``test_agreement.py``), and the initial state."""

from __future__ import annotations

import random

import pytest
import z3

from kvheal.model import Config, KVHealModel
from kvheal.model.symbolic import SymbolicModel

#: Sampled states per design: every state of a few seeded random walks of up to this many
#: steps from the initial state (deep states too, not only the first BFS layers).
WALKS, WALK_LENGTH = 2, 30


def _key(view: dict) -> str:
    return repr(sorted(view.items(), key=lambda kv: kv[0]))


def _walks(model: KVHealModel, seed: int) -> list:
    rng = random.Random(seed)
    (s0,) = model.init_states()
    out = {s0: None}
    for _ in range(WALKS):
        s = s0
        for _ in range(WALK_LENGTH):
            succ = model.successors(s)
            if not succ:
                break
            alive = [x for x in succ if model.instances[x[0]].name != "Crash"]
            s = rng.choice(alive if alive and rng.random() > 0.05 else succ)[1]  # crashes end walks: rare
            out[s] = None
    return list(out)


#: design -> (states sampled, transitions compared); the walks follow the kernel's successor
#: order, so a change of that order moves these numbers.
Z3_SAMPLES = {
    "": (49, 172),
    "dedupe,keep_verifying": (39, 129),
    "atomic_cache,sweeper": (44, 164),
    "shared_pending,tab_crash": (54, 289),
    "keep_verifying,sweeper": (54, 245),
    "dedupe,atomic_cache,sweeper,tab_crash,shared_pending": (48, 264),
}


@pytest.mark.parametrize("variant", list(Z3_SAMPLES), ids=lambda v: v or "seed")
def test_z3_successors_are_exactly_the_explicit_ones(variant: str) -> None:
    """For each sampled state, z3 (a solver over ``trans``, not the compiled terms) lists every
    (instance, next state) the relation allows; they are exactly the explicit successors."""
    cfg = Config.make(tabs=2, variants=variant)
    model, sym = KVHealModel(cfg), SymbolicModel(cfg)
    states = _walks(model, seed=len(variant))
    s, s2, sel = sym.fresh("s"), sym.fresh("t"), z3.Int("sel")
    solver = z3.Solver()
    solver.add(sym.trans(s, s2, sel))
    compared = 0
    for st in states:
        solver.push()
        solver.add(sym.encode_view(s, model.view(st)))
        got = []
        while solver.check() == z3.sat:  # every (instance, next assignment) the relation allows
            m = solver.model()
            inst = sym.instance_at(m, sel)
            got.append((inst.name, inst.pairs, _key(sym.decode(m, s2))))
            solver.add(
                z3.Or(
                    sel != m.eval(sel),
                    z3.Or([s2[n] != m.eval(s2[n], model_completion=True) for n in sym.var_names]),
                )
            )
        solver.pop()
        want = {
            (model.instances[lab].name, model.instances[lab].pairs, _key(model.view(t)))
            for lab, t in model.successors(st)
        }
        assert len(got) == len(set(got)) == len(want) and set(got) == want, model.view(st)
        compared += len(want)
    assert (len(states), compared) == Z3_SAMPLES[variant]


def test_init_is_the_spec_initial_state() -> None:
    cfg = Config.make(tabs=3, variants="sweeper,tab_crash")
    model, sym = KVHealModel(cfg), SymbolicModel(cfg)
    s = sym.fresh("s")
    solver = z3.Solver()
    solver.add(sym.init(s))
    assert solver.check() == z3.sat
    assert _key(sym.decode(solver.model(), s)) == _key(model.view(model.init_states()[0]))

"""SPEC §6 ``statuses``: a status per message in its key and in each cache copy, the bot's
completion, and the pending scan that patches copies (as built with ``bot_scan``: the first
copy of each id, in the array it read and puts back; fixed: every copy, atomically, only when
a copy is behind its key). Small configurations: one tab with a cache of two (room for a
duplicate), two tabs for the fixed design."""

from __future__ import annotations

import pytest
import z3

from kvheal.flags import MODELLED_ONLY, ConfigError
from kvheal.model import Config, KVHealModel, check
from kvheal.model.kernel import CacheValues
from kvheal.model.symbolic import SymbolicModel
from kvheal.model.trace import flatten, replay_trace

from .conftest import checked
from .test_agreement import CompiledAgreement

# (tabs, per_tab, cap, variants) -> (states, transitions, {violated property: trace length})
PINNED = {
    # the fixed scan patches every copy, but reads the key of an id only while its first copy
    # is open: a duplicate added after the completion (open, behind a final first copy) stays
    (1, 1, 2, "statuses"): (93, 176, {"NoDuplicates": 9, "StatusesConverge": 14}),
    (1, 1, 2, "dedupe,statuses"): (61, 130, {}),
    # as built: the scan writes on every pass (ScanWritesNothing at its first read) and patches
    # the first copy only
    (1, 1, 2, "statuses,bot_scan"): (
        1496,
        4126,
        {
            "NoDuplicates": 9,
            "ScanWritesNothing": 1,
            "Converges": 13,
            "PendingDrains": 12,
            "StatusesConverge": 23,
        },
    ),
    (1, 1, 2, "dedupe,statuses,bot_scan"): (
        610,
        1782,
        {"ScanWritesNothing": 1, "Converges": 13, "PendingDrains": 12, "StatusesConverge": 20},
    ),
    (1, 1, 2, "statuses,sweeper"): (1629, 4896, {"NoDuplicates": 6, "StatusesConverge": 15}),
    (2, 1, None, "dedupe,atomic_cache,statuses"): (5925, 23812, {}),
    (1, 1, None, "as_built_fixed,statuses"): (678, 1973, {}),
    (1, 1, None, "as_built,statuses,bot_scan"): (
        44628,
        158366,
        {
            "HealOnlyMissing": 8,
            "HealsTerminate": 17,
            "ScanWritesNothing": 1,
            "Converges": 12,
            "PendingDrains": 26,
            "StatusesConverge": 26,
            "EveryoneSees": 12,
        },
    ),
}


@pytest.mark.parametrize("tabs,per_tab,cap,variants", list(PINNED), ids=lambda v: str(v))
def test_pinned_counts_and_verdicts(tabs, per_tab, cap, variants, check_counterexample):
    model, result = checked(tabs, per_tab, cap, variants)
    states, transitions, violated = PINNED[(tabs, per_tab, cap, variants)]
    assert (result.states, result.transitions) == (states, transitions)
    assert {n: len(p.trace) for n, p in result.properties.items() if p.status == "violated"} == violated
    for name in violated:
        check_counterexample(model, name, result.properties[name].trace)


def test_the_real_system_has_the_flag_and_bad_combinations_fail_fast():
    assert "statuses" not in MODELLED_ONLY  # tests/conformance/test_statuses_replay.py
    with pytest.raises(ConfigError) as err:
        KVHealModel(Config.make(tabs=1, cap=2, variants="statuses,bot_scan,atomic_cache"))
    assert str(err.value) == (
        "statuses with bot_scan needs the scan's put (no atomic_cache): the as-built scan's "
        "compare-and-swap of the patched array is not modelled"
    )
    from click.testing import CliRunner

    from kvheal.cli import main

    res = CliRunner().invoke(main, ["check", "--tabs", "1", "--variant", "statuses,bot_scan,atomic_cache"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1


def test_copies_carry_statuses_in_the_kernels_values():
    """An item is 2*m (final) or 2*m + 1 (open); finals come first within an id."""
    cv = CacheValues(1, 2, dedupe=False, statuses=True)
    assert cv.values == [(), (1,), (1, 1), (0,), (0, 0), (0, 1)]
    assert [cv.view(c) for c in range(len(cv.values))] == [(), (0,), (0, 0), ("0*",), ("0*", "0*"), ("0*", 0)]
    n, two = len(cv.values), cv.code[(1, 1)]
    assert len(cv) == 3 * n  # the add block, then the patch blocks ALL and FIRST
    assert cv.view(cv.union(two + n * cv.ALL, 1)) == ("0*", "0*")
    assert cv.view(cv.union(two + n * cv.FIRST, 1)) == ("0*", 0)
    assert cv.view(cv.add[cv.code[(0, 1)]][0]) == (0, 0)  # (0*, 0, 0): the trim drops the first copy
    assert [cv.ids[c + n * cv.ALL] for c in range(n)] == [0, 1, 1, 0, 0, 0]  # first copy open
    assert [cv.ids[c + n * cv.FIRST] for c in range(n)] == [0, 1, 1, 0, 0, 1]  # some copy open


def test_a_duplicate_keeps_an_open_copy_under_the_as_built_scan():
    """Both copies open and the key final: the as-built scan patches the first only and the
    other stays open (StatusesConverge's lasso loops there); the fixed scan patches both."""
    pre = [("PostKey", {"m": 0}), ("PostRead", {"m": 0}), ("PollRead", {"t": 0}), ("PostWrite", {"m": 0})]
    pre += [("PostAck", {"m": 0}), ("PollDone", {"t": 0}), ("HealKey", {"m": 0}), ("HealRead", {"m": 0})]
    pre += [("Complete", {"m": 0}), ("HealWrite", {"m": 0})]  # the heal read [0] before the patch

    built = KVHealModel(Config.make(tabs=1, cap=2, variants="statuses,bot_scan"))
    scan = [("ScanRead", {}), ("ScanKeys", {}), ("ScanWrite", {})]
    states = replay_trace(built, [{"action": a, "args": g} for a, g in pre + scan])
    views = [flatten(built.view(s)) for s in states]
    assert (views[-4]["cache"], views[-4]["done"]) == ("[0,0]", "[0]")
    assert views[-1]["cache"] == "[0*,0]"
    prop = {p.name: p for p in built.properties()}["StatusesConverge"]
    assert not prop.holds(states[-1])
    # the first copy is final: no key to read, the scan has read them all at its read
    read = built.step(states[-1], built.action("ScanRead"))
    assert flatten(built.view(read))["scan"] == "Keyed([0*,0], [])"
    after = built.step(read, built.action("ScanWrite"))
    assert flatten(built.view(after))["cache"] == "[0*,0]"

    fixed = KVHealModel(Config.make(tabs=1, cap=2, variants="statuses"))
    states = replay_trace(fixed, [{"action": a, "args": g} for a, g in pre + [("ScanPatch", {})]])
    assert flatten(fixed.view(states[-2]))["cache"] == "[0,0]"
    assert flatten(fixed.view(states[-1]))["cache"] == "[0*,0*]"
    assert [a.name for a in fixed.actions(states[-1]) if a.name == "ScanPatch"] == []  # nothing to change


def test_a_completion_between_the_scans_key_reads_and_its_put_is_lost():
    """The as-built scan reads status:<id> (ScanKeys) before its put (ScanWrite): a completion
    in between is patched into the cache, then overwritten by the put of the array read before
    it, with the key remembered open. The next scan repairs it."""
    model = KVHealModel(Config.make(tabs=1, cap=2, variants="statuses,bot_scan"))
    steps = [("PostKey", {"m": 0}), ("PostRead", {"m": 0}), ("PostWrite", {"m": 0})]
    steps += [("ScanRead", {}), ("ScanKeys", {}), ("Complete", {"m": 0}), ("ScanWrite", {})]
    steps += [("ScanRead", {}), ("ScanKeys", {}), ("ScanWrite", {})]
    states = replay_trace(model, [{"action": a, "args": g} for a, g in steps])
    views = [flatten(model.view(s)) for s in states]
    assert [(v["cache"], v["done"], v["scan"]) for v in views[4:]] == [
        ("[0]", "[]", "Read([0])"),
        ("[0]", "[]", "Keyed([0], [])"),  # the key read open
        ("[0*]", "[0]", "Keyed([0], [])"),  # the completion patches the copy
        ("[0]", "[0]", "Idle"),  # the put of the array read before it: the patch is lost
        ("[0]", "[0]", "Read([0])"),
        ("[0]", "[0]", "Keyed([0], [0])"),
        ("[0*]", "[0]", "Idle"),  # the next scan patches it
    ]
    prop = {p.name: p for p in model.properties()}["StatusesConverge"]
    assert [prop.holds(s) for s in states[6:]] == [True, False, False, False, True]


@pytest.mark.parametrize(
    "tabs,cap,variants",
    [(1, 2, "statuses,bot_scan"), (1, 2, "statuses,sweeper"), (2, None, "dedupe,atomic_cache,statuses")],
)
def test_z3_agrees_on_every_reachable_state(tabs, cap, variants):
    rep = CompiledAgreement(Config.make(tabs=tabs, cap=cap, variants=variants)).run()
    assert rep.states == PINNED[(tabs, 1, cap, variants)][0]


def test_z3_properties_agree_with_the_kernel():
    """The z3 predicates of ScanWritesNothing and StatusesConverge equal the kernel's on every
    reachable state of statuses,bot_scan at one tab (views with final copies encoded back)."""
    cfg = Config.make(tabs=1, cap=2, variants="statuses,bot_scan")
    model, sym = KVHealModel(cfg), SymbolicModel(cfg)
    s = sym.fresh("s")
    solver = z3.Solver()
    seen, todo = {model.init_states()[0]}, [model.init_states()[0]]
    while todo:
        st = todo.pop()
        for _, nxt in model.successors(st):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert len(seen) == 1496
    props = [p for p in model.properties() if p.name in ("ScanWritesNothing", "StatusesConverge")]
    assert len(props) == 2
    for st in seen:
        solver.push()
        solver.add(sym.encode_view(s, model.view(st)))
        for p in props:
            want = z3.unsat if p.holds(st) else z3.sat
            assert solver.check(z3.Not(sym.prop(p.name)(s))) == want, p.name
        solver.pop()


def test_bmc_finds_the_scans_write_of_nothing_at_the_bfs_length():
    from kvheal.model.prove import bmc

    cfg = Config.make(tabs=1, cap=2, variants="statuses,bot_scan")
    sym = SymbolicModel(cfg)
    names = ("ScanWritesNothing", "NoDuplicates")
    got = bmc(sym, {n: sym.prop(n) for n in names}, 9)
    assert {n: got[n][0] for n in names} == {"ScanWritesNothing": 1, "NoDuplicates": 9}
    result = check(KVHealModel(cfg), only=set(names))
    assert {n: len(result.properties[n].trace) for n in names} == {"ScanWritesNothing": 1, "NoDuplicates": 9}


def test_a_counterexample_with_final_copies_draws():
    """The sequence diagram shows a final copy as ``0*`` in its message's colour."""
    from kvheal.model import render

    model, result = checked(1, 1, 2, "statuses,bot_scan")
    trace = result.properties["StatusesConverge"].trace
    svg = render.sequence_svg(trace, render.trace_views(model, trace), title="StatusesConverge")
    assert "0*" in svg and svg.startswith("<svg")


def test_z3_domain_bounds_the_final_copies_by_the_copies():
    """dom: an id's final copies are at most its copies (what induction may assume)."""
    sym = SymbolicModel(Config.make(tabs=1, cap=2, variants="statuses"))
    s = sym.fresh("s")
    solver = z3.Solver()
    solver.add(sym.dom(s), s["cachefin[0]"] > s["cache[0]"])
    assert solver.check() == z3.unsat
    solver = z3.Solver()
    solver.add(sym.dom(s), s["cachefin[0]"] == s["cache[0]"], s["cache[0]"] == 2)
    assert solver.check() == z3.sat

"""The compiled search (model/fast.py) against the interpreted one: the same states in the
same order, the same graph, the same verdicts and traces, for every design."""

from __future__ import annotations

import numpy as np
import pytest

from kvheal.model import Config, check, engine, fast
from kvheal.model.core import KVHealModel

# each configuration costs numba a compile (1-3 s on a fresh machine): four by default
slow = pytest.mark.slow
CONFIGS = [
    (2, ""),
    pytest.param(2, "dedupe", marks=slow),
    (2, "sweeper"),
    pytest.param(2, "atomic_cache,dedupe", marks=slow),
    pytest.param(2, "keep_verifying", marks=slow),
    pytest.param(2, "heal_atomic", marks=slow),
    (2, "as_built_fixed"),
    pytest.param(1, "as_built", marks=slow),
    (3, "atomic_cache,dedupe"),
]


@pytest.mark.parametrize("tabs,variant", CONFIGS)
def test_compiled_search_numbers_states_as_the_python_search_does(tabs, variant):
    model = KVHealModel(Config.make(tabs=tabs, variants=variant))
    props = model.properties()
    g1, f1, c1, _, r1, d1 = engine.explore(model, props)
    g2, f2, c2, _, r2, d2 = fast.explore(model, props)
    assert (c1, r1, d1, g1.n) == (c2, r2, d2, g2.n)
    pk = model.compiled().packing
    assert np.array_equal(np.array([pk.pack(s) for s in g1.index]), g2.states)
    assert np.array_equal(np.frombuffer(g1.parent, np.int32), g2.parent)
    assert np.array_equal(np.frombuffer(g1.rowptr, np.int64), g2.rowptr)
    assert np.array_equal(np.frombuffer(g1.dst, np.int32), g2.dst)
    assert np.array_equal(np.frombuffer(g1.label, np.int32), g2.label)
    assert np.array_equal(np.frombuffer(f1, np.uint64), f2)
    # tree-edge labels are recomputed, not stored
    for num in (g1.n - 1, g1.n // 2):
        assert engine.path_labels(g2, num) == engine.path_labels(g1, num)


@pytest.mark.parametrize(
    "tabs,variant",
    [(2, ""), (2, "sweeper"), (2, "as_built_fixed"), pytest.param(3, "dedupe", marks=pytest.mark.slow)],
)
def test_compiled_check_gives_the_python_check_json(tabs, variant):
    model = KVHealModel(Config.make(tabs=tabs, variants=variant))
    a = check(model, engine="compiled", with_coverage=True).as_json()
    b = check(model, engine="python", with_coverage=True).as_json()
    assert (a.pop("engine"), b.pop("engine")) == ("compiled", "python")
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_safety_only_checks_keep_no_graph_but_count_transitions():
    model = KVHealModel(Config.make(tabs=3, variants="dedupe"))
    r = check(model, engine="compiled", only={"NoDuplicates"})
    assert (r.states, r.transitions, r.depth) == (2_194_874, 11_514_840, 44)
    assert r.properties["NoDuplicates"].status == "holds"


def test_the_state_bound_stops_both_searches_alike():
    model = KVHealModel(Config.make(tabs=2))
    a = check(model, engine="compiled", max_states=1000).as_json()
    b = check(model, engine="python", max_states=1000).as_json()
    for x in (a, b):
        x.pop("seconds"), x.pop("engine")
    assert a == b and a["states"] == 1000 and a["complete"] is False


@pytest.mark.parametrize("tabs,variant", [(2, ""), (2, "sweeper"), (3, "atomic_cache,dedupe")])
def test_compiled_fairness_bookkeeping_matches_numpy(tabs, variant):
    model = KVHealModel(Config.make(tabs=tabs, variants=variant))
    g, *_ = fast.explore(model, model.properties())
    live = engine.LivenessAnalysis(model, g)
    ref = engine._fair_numpy(live.rowptr, live.dst, live.lab, live.comp, len(live.fair), live.fair_label)
    assert np.array_equal(live.fair, ref) and ref.any() and not ref.all()


def test_packing_round_trips_and_words():
    model = KVHealModel(Config.make(tabs=3, variants="sweeper,shared_pending,dedupe"))
    pk = model.compiled().packing
    assert (pk.words, pk.total_bits) == (2, 85)
    s = model.init_states()[0]
    for _lab, t in model.successors(s):
        assert pk.unpack(pk.pack(t)) == t


def test_engine_names_are_checked():
    with pytest.raises(ValueError, match="unknown engine 'fast'"):
        engine.pick_engine(KVHealModel(Config.make(tabs=1)), "fast")


def test_states_of_several_words_search_alike(monkeypatch):
    """Words of 16 bits force the seed design at tabs 2 (29 bits) into two words."""
    monkeypatch.setattr(fast, "WORD_BITS", 16)
    model = KVHealModel(Config.make(tabs=2, variants="sweeper"))
    assert model.compiled().packing.words == 3
    a = check(model, engine="compiled").as_json()
    b = check(KVHealModel(Config.make(tabs=2, variants="sweeper")), engine="python").as_json()
    for x in (a, b):
        x.pop("seconds"), x.pop("engine")
    assert a == b and a["states"] == 307_038


def test_auto_compiles_only_past_the_interpreted_bound(monkeypatch):
    monkeypatch.setattr(engine, "AUTO_INTERPRETED_STATES", 5_000)
    small = check(KVHealModel(Config.make(tabs=2, variants="dedupe")))  # 3,329 states
    big = check(KVHealModel(Config.make(tabs=2)))  # 7,070 states
    assert (small.engine, small.states) == ("python", 3_329)
    assert (big.engine, big.states, big.complete) == ("compiled", 7_070, True)
    bounded = check(KVHealModel(Config.make(tabs=2)), max_states=4_000)
    assert (bounded.engine, bounded.states, bounded.complete) == ("python", 4_000, False)
    past = check(KVHealModel(Config.make(tabs=2)), max_states=6_000)
    assert (past.engine, past.states, past.complete) == ("compiled", 6_000, False)


@pytest.mark.parametrize(
    "tabs,variant", [(2, ""), (2, "sweeper"), (2, "as_built_fixed"), (3, "atomic_cache,dedupe")]
)
def test_two_workers_find_what_one_finds(tabs, variant, monkeypatch):
    """Blocks of 512 rows: many blocks per level, tables that grow mid-level."""
    monkeypatch.setattr(fast, "BLOCK_ROWS", 512)
    model = KVHealModel(Config.make(tabs=tabs, variants=variant))
    one = check(model, engine="compiled", with_coverage=True)
    two = check(model, engine="compiled", workers=2, with_coverage=True)
    assert (two.states, two.transitions, two.depth, two.complete) == (
        one.states,
        one.transitions,
        one.depth,
        one.complete,
    )
    assert two.coverage == one.coverage
    for name, p in one.properties.items():
        q = two.properties[name]
        assert q.status == p.status
        if p.kind == "invariant":
            assert len(q.trace.steps) == len(p.trace.steps)
        else:  # the stem is as short; the loop may differ
            stem = lambda t: sum(1 for s in t.steps if not s.loop)  # noqa: E731
            assert stem(q.trace) == stem(p.trace)
    # every counterexample of the two-worker run replays on the model
    for q in two.properties.values():
        s = model.init_states()[0]
        for step in q.trace.steps:
            if step.action != "Stutter":
                s = model.step(s, model.action(step.action, dict(step.args)))


def test_two_workers_on_states_of_several_words(monkeypatch):
    monkeypatch.setattr(fast, "WORD_BITS", 16)
    monkeypatch.setattr(fast, "BLOCK_ROWS", 1000)
    model = KVHealModel(Config.make(tabs=2, variants="dedupe"))
    assert model.compiled().packing.words > 1
    r = check(model, engine="compiled", workers=2)
    assert (r.states, r.transitions, r.depth) == (3_329, 11_786, 23)


@pytest.mark.parametrize("workers", [1, 2])
def test_parents_are_found_again_without_the_graph(workers, monkeypatch):
    """No parent links are stored: a safety-only search (no graph) finds each parent by
    expanding the level before again, a full one in the graph; both are the interpreted
    search's parents, and the traces are its traces."""
    monkeypatch.setattr(fast, "BLOCK_ROWS", 512)
    model = KVHealModel(Config.make(tabs=2))
    props = model.properties()
    g1, *_ = engine.explore(model, props)
    if workers == 1:
        bare, *_ = fast.explore(model, props, graph=False)
        full, *_ = fast.explore(model, props)
    else:
        bare, *_ = fast.explore_parallel(model, props, 2, graph=False)
        full, *_ = fast.explore_parallel(model, props, 2)
    assert len(bare.rowptr) == 1 and len(full.rowptr) == full.n + 1
    assert np.array_equal(bare.parent, full.parent)
    assert list(bare.levels) == list(full.levels) and bare.levels[-1] == 7_070 and len(bare.levels) == 35
    if workers == 1:  # the same numbering as the interpreted search
        assert np.array_equal(np.frombuffer(g1.parent, np.int32), bare.parent)
        for num in (7_069, 3_000, 5):
            assert bare.path_labels(num) == engine.path_labels(g1, num)
    r = check(model, engine="compiled", workers=workers, only={"NoDuplicates", "AckedIsStored"})
    assert len(r.properties["NoDuplicates"].trace.steps) == 9


def test_the_visited_set_takes_at_most_16_bytes_a_state():
    """One-word states: 8 bytes each, and a table between half and 3/4 full (4 bytes a
    slot); no parent links."""
    model = KVHealModel(Config.make(tabs=2, variants="sweeper"))
    for workers in (1, 2):
        r = check(model, engine="compiled", workers=workers)
        assert r.states == 307_038
        assert 8 + 4 * 4 / 3 - 0.1 <= r.figures["visited_bytes_per_state"] <= 16


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("only", [None, {"NoDuplicates", "AckedIsStored"}])
def test_hash_compaction_finds_what_exact_identity_finds(workers, only):
    """--fingerprint: no state's words kept, the graph or a 2-byte parent offset per state
    for the way back, traces replayed by hash. On the seed design at tabs 2 (no collision)
    the counts, depths, verdicts and traces are the exact search's."""
    model = KVHealModel(Config.make(tabs=2))
    exact = check(model, engine="compiled", workers=workers, only=only)
    fpr = check(model, workers=workers, only=only, fingerprint=True)
    assert (fpr.states, fpr.transitions, fpr.depth, fpr.complete) == (7_070, 23_756, 33, True)
    assert (exact.states, exact.transitions, exact.depth) == (7_070, 23_756, 33)
    for name, p in exact.properties.items():
        q = fpr.properties[name]
        assert q.status == p.status
        if p.trace is not None:
            assert len(q.trace.steps) == len(p.trace.steps)
            if workers == 1:  # one numbering: the very same trace
                assert q.trace == p.trace
    assert len(fpr.properties["NoDuplicates"].trace.steps) == 9
    odds = fpr.figures
    assert odds["fingerprint_collision_calculated"] == 7_070 * (23_756 - 7_070) / 2.0**64
    assert 0 < odds["fingerprint_collision_observed"] < 1e-6


def test_hash_compaction_merges_states_with_one_hash():
    """Two different successors with the same hash are one state to --fingerprint (what
    the collision odds are about); exact identity keeps both."""
    from kvheal.model import fastpar as fp

    hs = np.array([7 << 40, 7 << 40, 9 << 40], np.uint64)
    table = np.full(16, -1, np.int32)
    fps = np.zeros(1, np.uint64)
    res = np.empty(3, np.int64)
    new_fp, new_idx, new_slot = np.empty(3, np.uint64), np.empty(3, np.int64), np.empty(3, np.int64)
    one = np.array([0], np.int64)
    own = np.array([[0, 1, 2]], np.int32)  # partition 0 owns every successor
    c, t, _ = fp.insert_part_fp(
        0, fps, table, hs, own, one * 0, one + 3, res, new_fp, new_idx, new_slot, 0, 0, 0, 12, True
    )
    assert (c, t) == (2, 1) and list(res) == [-2, -2, -3] and list(new_idx[:2]) == [0, 2]
    words = np.array([[1], [2], [3]], np.int64)
    table = np.full(16, -1, np.int32)
    new = np.empty((3, 1), np.int64)
    c, t, _ = fp.insert_part(
        0, words[:0], table, words, hs, own, one * 0, one + 3, res, new, new_slot, 0, 0, 0, 12, True
    )
    assert (c, t) == (3, 1)


def test_hash_compaction_pays_for_states_of_several_words(monkeypatch):
    """Words of 16 bits: the sweeper design at tabs 2 takes 3 words a state (24 bytes
    exactly); hashed, 8 bytes and a 2-byte parent offset."""
    monkeypatch.setattr(fast, "WORD_BITS", 16)
    model = KVHealModel(Config.make(tabs=2, variants="sweeper"))
    assert model.compiled().packing.words == 3
    only = {"NoDuplicates"}
    exact = check(model, engine="compiled", workers=2, only=only)
    fpr = check(model, workers=2, only=only, fingerprint=True)
    assert (fpr.states, fpr.transitions) == (exact.states, exact.transitions) == (307_038, 1_378_217)
    assert exact.figures["visited_bytes_per_state"] >= 24 + 4 * 4 / 3 - 0.1
    assert fpr.figures["visited_bytes_per_state"] <= 10 + 8


def test_fingerprint_on_the_command_line():
    import json
    import subprocess
    import sys

    def kvheal(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kvheal", *args], capture_output=True, text=True)

    run = kvheal("check", "--tabs", "2", "--fingerprint", "--json", "-q")
    assert run.returncode == 1
    out = json.loads(run.stdout)
    assert out["states"] == 7_070 and set(out["fingerprint"]) == {"calculated", "observed"}
    bad = kvheal("check", "--tabs", "2", "--fingerprint", "--max-states", "10")
    assert bad.returncode == 2 and "drop --max-states" in bad.stderr and "Traceback" not in bad.stderr


def test_tables_go_untagged_past_the_tagged_bound(monkeypatch):
    """Table entries carry 4 bits of hash while state numbers fit 27 bits; past that the
    tables are rebuilt untagged mid-search (here past 2,000 states) with the same result."""
    from kvheal.model import fastpar

    monkeypatch.setattr(fast, "BLOCK_ROWS", 256)
    model = KVHealModel(Config.make(tabs=2, variants="sweeper"))
    tagged = check(model, engine="compiled", workers=2)
    monkeypatch.setattr(fastpar, "TAGGED_STATES", 2_000)
    untagged = check(model, engine="compiled", workers=2)
    hashed = check(model, workers=2, fingerprint=True)
    for r in (untagged, hashed):
        assert (r.states, r.transitions, r.depth) == (tagged.states, tagged.transitions, tagged.depth)
        assert {k: (p.status, len(p.trace or ())) for k, p in r.properties.items()} == {
            k: (p.status, len(p.trace or ())) for k, p in tagged.properties.items()
        }

"""The compiled liveness search (model/fastlive.py) against the references: scipy's strongly
connected components and the engine's numpy fairness bookkeeping (``_fair_numpy``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from kvheal.model import Config, KVHealModel, engine
from kvheal.model.fastlive import bytes_per_state, fair_strong_components


def csr(n: int, edges: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rowptr, dst, lab) of ``n`` states and ``(src, dst, label)`` edges."""
    edges = sorted(edges)
    rowptr = np.zeros(n + 1, np.int64)
    for s, _, _ in edges:
        rowptr[s + 1] += 1
    rowptr = np.cumsum(rowptr)
    dst = np.array([d for _, d, _ in edges], np.int32)
    lab = np.array([lb for _, _, lb in edges], np.int16)
    return rowptr, dst, lab


def check_against_references(rowptr, dst, lab, fair_label) -> tuple[np.ndarray, int, np.ndarray]:
    """Run the compiled search and assert it agrees with the references."""
    n = len(rowptr) - 1
    comp, n_comp, fair = fair_strong_components(rowptr, dst, lab, fair_label)
    assert comp.dtype == np.int32 and comp.shape == (n,) and fair.shape == (n_comp,)
    # the same partition as scipy's
    matrix = csr_matrix((np.ones(len(dst), np.int8), dst, rowptr), shape=(n, n))
    n_ref, ref = connected_components(matrix, directed=True, connection="strong")
    assert n_comp == (n_ref if n else 0)
    if n:
        assert sorted(comp) == list(np.repeat(np.arange(n_comp), np.bincount(comp)))
        pairs = np.unique(comp.astype(np.int64) * n + ref)
        assert len(pairs) == n_comp  # one scipy component per compiled one, and back
    # numbered as Tarjan completes them, sinks first: no edge leads to a later component
    src = np.repeat(np.arange(n), np.diff(rowptr))
    assert np.all(comp[src] >= comp[dst])
    # the same fair components as the numpy bookkeeping
    assert np.array_equal(fair, engine._fair_numpy(rowptr, dst, lab, comp, n_comp, fair_label))
    return comp, n_comp, fair


def random_graph(rng: np.random.Generator, n: int, n_labels: int, degree: float):
    """A graph with at most one edge per (state, label), as an action instance is a function
    of the state; some states have no edge, some a self-loop, cycles are short and long.
    Label 0 is enabled almost everywhere and jumps onwards: it often leaves a component
    where it is enabled throughout (so the component is unfair when label 0 is fair)."""
    edges = []
    for s in range(n):
        k = min(n_labels, rng.poisson(degree))
        labels = set(rng.choice(n_labels, size=k, replace=False).tolist())
        if rng.random() < 0.9:
            labels.add(0)
        for lb in sorted(labels):
            if lb == 0:
                d = int(rng.integers(s, n))  # onwards
            elif rng.random() < 0.8:
                d = min(n - 1, max(0, s + int(rng.integers(-3, 4))))
            else:
                d = int(rng.integers(n))
            edges.append((s, d, lb))
    return csr(n, edges)


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_match_scipy_and_numpy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    n_labels = int(rng.choice([1, 3, 8, 70, 130]))  # one, two and three 64-bit words
    rowptr, dst, lab = random_graph(rng, n, n_labels, float(rng.choice([0.7, 1.5, 3.0])))
    fair_label = rng.random(n_labels) < 0.7
    check_against_references(rowptr, dst, lab, fair_label)


def test_many_random_graphs_meet_every_case():
    # enough graphs that each case is met many times: counted, so a change shows
    rng = np.random.default_rng(9)
    stutter = fair_cycle = unfair_cycle = 0
    for _ in range(300):
        n = int(rng.integers(1, 40))
        rowptr, dst, lab = random_graph(rng, n, 3, 2.0)
        fair_label = rng.random(3) < 0.6
        comp, n_comp, fair = check_against_references(rowptr, dst, lab, fair_label)
        dead = np.zeros(n_comp, bool)
        dead[comp[np.diff(rowptr) == 0]] = True
        stutter += int((fair & dead).sum())
        fair_cycle += int((fair & ~dead).sum())
        unfair_cycle += int(((np.bincount(comp, minlength=n_comp) > 1) & ~fair).sum())
    assert (stutter, fair_cycle, unfair_cycle) == (86, 933, 64)


def test_small_cases():
    none = np.zeros(0, bool)
    # no states
    comp, n_comp, fair = fair_strong_components(
        np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int16), none
    )
    assert (len(comp), n_comp, len(fair)) == (0, 0, 0)
    # a state with no action stutters for ever: fair; one that moves on to it is not
    comp, n_comp, fair = check_against_references(*csr(2, [(0, 1, 0)]), np.array([True]))
    assert (list(comp), list(fair)) == ([1, 0], [True, False])
    # a self-loop is a cycle; a fair action enabled on it and never taken makes it unfair
    assert list(check_against_references(*csr(1, [(0, 0, 0)]), np.array([True]))[2]) == [True]
    graph = csr(2, [(0, 0, 0), (0, 1, 1)])  # components: {1} (a stutter), then {0}
    assert list(check_against_references(*graph, np.array([True, True]))[2]) == [True, False]
    assert list(check_against_references(*graph, np.array([False, True]))[2]) == [True, False]
    assert list(check_against_references(*graph, np.array([True, False]))[2]) == [True, True]
    # a 3-cycle 0 -> 1 -> 2 -> 0 labelled 0, 1, 2; label 3 leaves from 1 to the sink 3
    cycle = [(0, 1, 0), (1, 2, 1), (2, 0, 2)]
    comp, _, fair = check_against_references(*csr(4, [*cycle, (1, 3, 3)]), np.ones(4, bool))
    assert (list(comp), list(fair)) == ([1, 1, 1, 0], [True, True])  # 3 not enabled at 0 and 2
    leave = [(0, 3, 3), (1, 3, 3), (2, 3, 3)]
    comp, _, fair = check_against_references(*csr(4, [*cycle, *leave]), np.ones(4, bool))
    assert list(fair) == [True, False]  # 3 enabled throughout the cycle and never taken
    comp, _, fair = check_against_references(*csr(4, [*cycle, *leave]), np.array([True, True, True, False]))
    assert list(fair) == [True, True]  # ... unless it is not fair


def test_a_long_chain_does_not_overflow_the_search():
    n = 200_000  # a DFS as deep as the graph: the frames are arrays, not the call stack
    edges = [(s, s + 1, 0) for s in range(n - 1)] + [(n - 1, 0, 1)]
    comp, n_comp, fair = check_against_references(*csr(n, edges), np.array([True, True]))
    assert (n_comp, list(fair)) == (1, [True])
    comp, n_comp, fair = check_against_references(*csr(n, edges[:-1]), np.array([True, True]))
    assert n_comp == n and comp[0] == n - 1 and comp[-1] == 0 and int(fair.sum()) == 1  # the sink


@pytest.mark.parametrize(
    "variant,n_comp,n_fair,fair_states",
    [("", 4373, 8, 90), ("keep_verifying", 1126, 4, 165), ("as_built_fixed", 125786, 144, 576)],
)
def test_real_graphs_match_scipy_and_numpy(variant, n_comp, n_fair, fair_states):
    model = KVHealModel(Config.make(tabs=2, variants=variant))
    g, *_ = engine.explore(model, model.properties())
    rowptr, dst = engine._np(g.rowptr, np.int64), engine._np(g.dst, np.int32)
    lab = engine._np(g.label, np.int32)
    src = np.repeat(np.arange(g.n, dtype=np.int64), np.diff(rowptr))
    assert len(np.unique(src * len(model.instances) + lab)) == len(lab)  # one edge per (state, label)
    fair_label = np.array([model.is_fair(i) for i in range(len(model.instances))])
    comp, got_comp, fair = check_against_references(rowptr, dst, lab.astype(np.int16), fair_label)
    assert (got_comp, int(fair.sum()), int(fair[comp].sum())) == (n_comp, n_fair, fair_states)
    live = engine.LivenessAnalysis(model, g)  # int32 labels: the same
    assert np.array_equal(live.comp, comp) and np.array_equal(live.fair, fair)
    # a lasso's component as scipy would slice it from the whole graph's matrix
    size = np.bincount(comp)
    for c in [int(np.argmax(size)), *np.flatnonzero(size > 1)[:30], *np.flatnonzero(size == 1)[:5]]:
        members = np.flatnonzero(comp == c)
        got, ref = live.component_matrix(members), live.matrix[members][:, members]
        assert np.array_equal(got.indptr, ref.indptr) and np.array_equal(got.indices, ref.indices)


def test_bytes_per_state():
    assert [bytes_per_state(k) for k in (1, 27, 64, 65, 130)] == [47, 47, 47, 71, 95]
    # what the memory budget is asked for before the liveness analysis starts
    assert [engine.compiled_liveness_bytes_per_state(k) for k in (27, 65)] == [59, 83]

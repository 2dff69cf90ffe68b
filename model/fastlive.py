"""The liveness analysis's per-component bookkeeping, compiled by numba (linear time).

:class:`kvheal.model.engine.LivenessAnalysis` decides which strongly connected components
are fair; with numpy that takes sorts over every edge (``np.unique``: most of a check's time
at millions of states). Here the states are bucketed by component (a counting sort) and
each component's edges are scanned once with a small per-label counter. The meaning is
the engine's docstring's: a component is fair iff it has a cycle (an internal edge, or one
state with no enabled action) and every fair action instance enabled in all its states is
taken on an edge inside it.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def fair_components(rowptr, dst, lab, comp, n_comp, fair_label):  # pragma: no cover - compiled
    n = comp.shape[0]
    n_labels = fair_label.shape[0]
    start = np.zeros(n_comp + 1, np.int64)
    for v in range(n):
        start[comp[v] + 1] += 1
    for c in range(n_comp):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    members = np.empty(n, np.int32)
    for v in range(n):
        c = comp[v]
        members[fill[c]] = v
        fill[c] += 1
    fair = np.zeros(n_comp, np.bool_)
    enabled = np.zeros(n_labels, np.int64)
    taken = np.zeros(n_labels, np.bool_)
    for c in range(n_comp):
        size = start[c + 1] - start[c]
        cyclic = False
        for i in range(start[c], start[c + 1]):
            v = members[i]
            if rowptr[v + 1] == rowptr[v]:
                cyclic = True
            for e in range(rowptr[v], rowptr[v + 1]):
                lb = lab[e]
                enabled[lb] += 1
                if comp[dst[e]] == c:
                    cyclic = True
                    taken[lb] = True
        ok = cyclic
        for lb in range(n_labels):
            if ok and fair_label[lb] and enabled[lb] == size and not taken[lb]:
                ok = False
            enabled[lb] = 0
            taken[lb] = False
        fair[c] = ok
    return fair


@njit(cache=True, nogil=True)
def strong_components(rowptr, dst):  # pragma: no cover - compiled
    """Tarjan's algorithm, iterative: per state its component's number (components numbered
    in the order Tarjan completes them, sinks first) and the number of components."""
    n = rowptr.shape[0] - 1
    # 29 bytes per state (state numbers fit int32: the search numbers states in int32)
    index = np.full(n, -1, np.int32)
    low = np.zeros(n, np.int32)
    comp = np.full(n, -1, np.int32)
    on_stack = np.zeros(n, np.bool_)
    stack = np.empty(n, np.int32)
    call_v = np.empty(n, np.int32)
    call_e = np.empty(n, np.int64)
    sp = 0
    counter = 0
    n_comp = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        depth = 0
        call_v[0] = root
        call_e[0] = rowptr[root]
        index[root] = counter
        low[root] = counter
        counter += 1
        stack[sp] = root
        sp += 1
        on_stack[root] = True
        while depth >= 0:
            v = call_v[depth]
            e = call_e[depth]
            if e < rowptr[v + 1]:
                call_e[depth] = e + 1
                w = dst[e]
                if index[w] < 0:
                    index[w] = counter
                    low[w] = counter
                    counter += 1
                    stack[sp] = w
                    sp += 1
                    on_stack[w] = True
                    depth += 1
                    call_v[depth] = w
                    call_e[depth] = rowptr[w]
                elif on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
                continue
            if low[v] == index[v]:
                while True:
                    sp -= 1
                    w = stack[sp]
                    on_stack[w] = False
                    comp[w] = n_comp
                    if w == v:
                        break
                n_comp += 1
            depth -= 1
            if depth >= 0:
                u = call_v[depth]
                if low[v] < low[u]:
                    low[u] = low[v]
    return comp, n_comp

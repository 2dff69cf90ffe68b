"""A generic explicit-state checker: breadth-first search, invariants, and liveness under
weak fairness.

Any model with ``init_states()``, ``successors(state) -> [(label, next)]``, ``instances``
(label -> action), ``is_fair(label)`` and ``properties()`` can be checked; kvheal's model is
one instance. Properties are ``invariant`` (every reachable state) or ``eventually_always``
(``<>[] goal``).

How it works, and why:

* BFS numbers states in discovery order, so a smaller number is never deeper: the first
  state found violating an invariant ends a shortest counterexample, and the smallest bad
  state of a fair component gives the shortest stem we can offer for a lasso.
* Only ``state -> number`` and, per number, the parent's number and the label of the step
  are kept; a trace is rebuilt by replaying labels from the initial state (so states need
  not be stored twice). Edges are stored compactly (CSR: ``int32`` targets, ``int32``
  labels) because liveness needs the whole graph.
* ``<>[] goal`` fails iff some reachable fair cycle passes through a state where ``goal``
  is false. Under weak fairness a strongly connected component contains a fair cycle iff it
  is *fair*: it has a cycle (an internal edge, or a single state with no enabled action,
  which stutters) and every fair action instance enabled in all its states is taken on an
  edge inside it (the cycle through all its states and edges is then fair; otherwise no
  cycle in it is). The components and which are fair come from one compiled depth-first
  search (:mod:`kvheal.model.fastlive`, linear time); without numba, from
  ``scipy.sparse.csgraph`` (C code, linear time) and bookkeeping vectorised with numpy.
* A lasso's cycle starts at the bad state and makes detours, each a shortest path inside
  the component, until every fair action instance enabled throughout the cycle is either
  taken on it or disabled at one of its states; then it returns to the start.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .results import HOLDS, UNKNOWN, VIOLATED, Step, Trace, Verdict  # noqa: F401  (HOLDS...: the old names)


@dataclass
class PropertyResult:
    """The verdict on one property, with its counterexample trace when violated."""

    name: str
    kind: str
    status: Verdict
    trace: Trace = field(default_factory=Trace)

    def __post_init__(self) -> None:
        self.status = Verdict(self.status)
        self.trace = Trace.of(self.trace)

    def as_json(self) -> dict[str, Any]:
        """SPEC §9's ``{"status", "trace"}`` of one property."""
        return {"status": str(self.status), "trace": self.trace.as_json()}


@dataclass
class CheckResult:
    """What a check found: statistics and a verdict per property."""

    states: int
    transitions: int
    seconds: float
    explore_seconds: float
    complete: bool
    properties: dict[str, PropertyResult]
    peak_queue: int = 0
    #: why the search stopped early ("" when it did not): the state bound, the memory budget
    stop_reason: str = ""
    #: the BFS depth reached (the longest shortest path from the initial state)
    depth: int = 0
    #: transitions per action and never-enabled instances (``check(..., coverage=True)``)
    coverage: dict[str, Any] | None = None
    #: which search ran: "compiled" or "python" (and "simulate" for random walks)
    engine: str = "python"
    #: the compiled search's memory figures (bytes per state of its visited set and graph)
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no property is violated."""
        return all(p.status != VIOLATED for p in self.properties.values())

    def as_json(self) -> dict[str, Any]:
        """SPEC §9's JSON object (the CLI adds ``config``)."""
        return {
            "states": self.states,
            "transitions": self.transitions,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
            "depth": self.depth,
            "engine": self.engine,
            **({"stopped": self.stop_reason} if self.stop_reason else {}),
            **({"coverage": self.coverage} if self.coverage is not None else {}),
            "properties": {n: p.as_json() for n, p in self.properties.items()},
        }


@dataclass
class Progress:
    """A progress report during exploration (the engine never prints; callers do)."""

    states: int
    transitions: int
    queue: int
    seconds: float


class StateGraph:
    """The explored graph: states numbered in BFS order, parents, and CSR edges."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}
        self.parent = array("i")
        self.parent_label = array("i")
        self.rowptr = array("q", [0])
        self.dst = array("i")
        self.label = array("i")

    @property
    def n(self) -> int:
        return len(self.rowptr) - 1

    @property
    def found(self) -> int:
        """States found, expanded or not (a stopped search's queue)."""
        return len(self.parent)

    @property
    def transitions(self) -> int:
        return len(self.dst)


def _failing_fn(model: Any, props: list[Any]) -> Callable[[Any], int]:
    """A function from a state to the bitmask of ``props`` that are false in it.

    Uses the model's own ``failing`` (bits in the order of ``model.properties()``) when it
    has one, remapped to ``props``' order; otherwise evaluates each property.
    """
    fast = getattr(model, "failing", None)
    if fast is not None:
        order = [p.name for p in model.properties()]
        remap = [(1 << order.index(p.name)) for p in props]
        if remap == [1 << i for i in range(len(props))] and len(order) == len(props):
            return fast

        def pick(state: Any) -> int:
            bits = fast(state)
            return sum(1 << i for i, b in enumerate(remap) if bits & b)

        return pick
    checks = [p.holds for p in props]

    def slow(state: Any) -> int:
        return sum(1 << i for i, holds in enumerate(checks) if not holds(state))

    return slow


def explore(
    model: Any,
    props: list[Any],
    max_states: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    progress_every: float = 1.0,
    budget: Any = None,
) -> tuple[StateGraph, array, bool, int, str, int]:
    """Breadth-first search from the initial states.

    Returns the graph, per state the bitmask of ``props`` false in it, whether the search
    completed, the peak queue length, why it stopped early ("" if it did not) and the depth
    reached. ``budget`` (an object with ``room()`` bytes and ``describe()``) is asked every
    16,384 expansions; past it, or on a MemoryError, the search stops as with ``max_states``.
    """
    g = StateGraph()
    index = g.index
    parent, parent_label = g.parent, g.parent_label
    rowptr, dst, label = g.rowptr, g.dst, g.label
    failing = _failing_fn(model, props)
    fails = array("Q")
    successors = model.successors
    states: list[Any] = []  # the BFS queue: states[i] is state number i until expanded

    for s in model.init_states():
        if s not in index:
            index[s] = len(states)
            states.append(s)
            parent.append(-1)
            parent_label.append(-1)
            fails.append(failing(s))
    head = 0
    peak_queue = 0
    complete = True
    reason = ""
    depth, level_end = 0, len(states)
    start = last = time.perf_counter()
    get = index.get
    try:
        while head < len(states):
            if head == level_end:
                depth, level_end = depth + 1, len(states)
            s = states[head]
            states[head] = None  # the queue keeps only unexpanded states alive
            for lab, t in successors(s):
                num = get(t)
                if num is None:
                    num = len(states)
                    if max_states is not None and num >= max_states:
                        complete = False
                        reason = f"the state bound (--max-states {max_states:,}) was reached"
                        break
                    index[t] = num
                    states.append(t)
                    parent.append(head)
                    parent_label.append(lab)
                    fails.append(failing(t))
                dst.append(num)
                label.append(lab)
            if not complete:
                break
            rowptr.append(len(dst))
            head += 1
            if (head & 0x3FFF) == 0:
                if budget is not None and budget.room() < 0:
                    complete = False
                    reason = f"the memory budget ({budget.describe()}) was reached"
                    break
                if progress is not None:
                    now = time.perf_counter()
                    if now - last >= progress_every:
                        last = now
                        peak_queue = max(peak_queue, len(states) - head)
                        progress(Progress(len(states), len(dst), len(states) - head, now - start))
    except MemoryError:
        complete = False
        reason = "the process ran out of memory"
    if not complete:
        # Free the queue, and keep only what is whole: rows of fully expanded states, and
        # states whose parent link and property bits were both recorded.
        states.clear()
        del dst[rowptr[-1] :], label[rowptr[-1] :]
        whole = min(len(parent), len(parent_label), len(fails))
        del parent[whole:], parent_label[whole:], fails[whole:]
    peak_queue = max(peak_queue, len(states) - head)
    return g, fails, complete, peak_queue, reason, depth


def replay(model: Any, labels: list[int]) -> list[Any]:
    """The states visited by taking ``labels`` from the (first) initial state."""
    s = model.init_states()[0]
    out = [s]
    for lab in labels:
        for l2, t in model.successors(s):
            if l2 == lab:
                s = t
                break
        else:
            raise ValueError(f"label {lab} not enabled while replaying")
        out.append(s)
    return out


def _np(a: Any, dtype: Any) -> np.ndarray:
    """``a`` (an ``array.array`` or a numpy array) as a numpy array of ``dtype``, without a
    copy where the types agree."""
    if isinstance(a, np.ndarray):
        return a.astype(dtype, copy=False)
    return np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype)


def path_labels(g: Any, num: int) -> list[int]:
    """The labels of the BFS-tree path from an initial state to state ``num``."""
    if hasattr(g, "path_labels"):
        return g.path_labels(num)
    labels = []
    while g.parent[num] >= 0:
        labels.append(g.parent_label[num])
        num = g.parent[num]
    labels.reverse()
    return labels


def _steps(model: Any, labels: list[int], loop_from: int | None = None) -> list[Step]:
    steps = []
    for i, lab in enumerate(labels):
        inst = model.instances[lab]
        steps.append(Step(inst.name, inst.pairs, loop_from is not None and i >= loop_from))
    return steps


def _live_compiled(rowptr, dst, lab, fair_label) -> tuple[np.ndarray, int, np.ndarray] | None:
    """Each state's strongly connected component, their number and which are fair, by
    :mod:`kvheal.model.fastlive` (None without numba)."""
    try:
        from .fastlive import fair_strong_components
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    comp, n_comp, fair = fair_strong_components(rowptr, dst, lab, fair_label)
    return comp, int(n_comp), fair


def _fair_numpy(rowptr, dst, lab, comp, n_comp, fair_label) -> np.ndarray:
    """Which components are fair, with numpy sorts (the reference for the compiled version)."""
    n = len(comp)
    comp = comp.astype(np.int64, copy=False)
    src = np.repeat(np.arange(n, dtype=np.int64), np.diff(rowptr))
    c_src = comp[src]
    internal = c_src == comp[dst]
    out_degree = np.diff(rowptr)
    size = np.bincount(comp, minlength=n_comp)
    n_labels = len(fair_label)

    # A component has a cycle if an edge stays inside it, or it is one state with no
    # enabled action (that state stutters for ever).
    cyclic = np.zeros(n_comp, dtype=bool)
    cyclic[c_src[internal]] = True
    dead = out_degree == 0
    cyclic[comp[dead]] = True

    # Fair action instances enabled in every state of the component...
    key = c_src * n_labels + lab
    keys, counts = np.unique(key[fair_label[lab]], return_counts=True)
    everywhere = keys[counts == size[keys // n_labels]]
    # ...must each be taken on an edge inside it.
    taken = np.unique(key[internal])
    missed = everywhere[~np.isin(everywhere, taken)]
    fair = cyclic.copy()
    fair[missed // n_labels] = False
    return fair


class LivenessAnalysis:
    """Strongly connected components of a complete graph and which of them are fair."""

    def __init__(self, model: Any, g: StateGraph) -> None:
        n = g.n
        self.g = g
        rowptr = _np(g.rowptr, np.int64)
        dst = _np(g.dst, np.int32)
        lab = g.label if isinstance(g.label, np.ndarray) else _np(g.label, np.int32)
        self.rowptr, self.dst, self.lab = rowptr, dst, lab
        self.n = n
        self._matrix = None
        n_labels = len(model.instances)
        fair_label = np.array([model.is_fair(i) for i in range(n_labels)], dtype=bool)
        found = _live_compiled(rowptr, dst, lab, fair_label)
        if found is None:
            from scipy.sparse.csgraph import connected_components

            _, comp = connected_components(self.matrix, directed=True, connection="strong")
            n_comp = int(comp.max()) + 1 if n else 0
            fair = _fair_numpy(rowptr, dst, lab, comp, n_comp, fair_label)
        else:
            comp, n_comp, fair = found
        self.comp = comp
        self.fair = fair
        self._fair_states: np.ndarray | None = None
        self.n_labels = n_labels
        self.fair_label = fair_label

    @property
    def matrix(self) -> Any:
        """The graph as a scipy CSR matrix (built when a lasso needs it)."""
        if self._matrix is None:
            from scipy.sparse import csr_matrix

            n = self.n
            data = np.ones(len(self.dst), dtype=np.int8)
            self._matrix = csr_matrix((data, self.dst, self.rowptr), shape=(n, n))
        return self._matrix

    def component_matrix(self, members: np.ndarray) -> Any:
        """``self.matrix[members][:, members]`` for the sorted states ``members``: the edges
        between them, in the same order, as a scipy CSR matrix; without building the whole
        graph's matrix (a byte per edge and a pass over all of them, for a few states)."""
        from scipy.sparse import csr_matrix

        starts = self.rowptr[members]
        counts = self.rowptr[members + 1] - starts
        edges = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        targets = self.dst[edges]
        pos = np.searchsorted(members, targets)
        inside = members[np.minimum(pos, len(members) - 1)] == targets
        k = len(members)
        indptr = np.zeros(k + 1, np.int64)
        indptr[1:] = np.cumsum(np.bincount(np.repeat(np.arange(k), counts)[inside], minlength=k))
        indices = pos[inside]
        return csr_matrix((np.ones(len(indices), np.int8), indices, indptr), shape=(k, k))

    def first_bad_state(self, flags: np.ndarray) -> int | None:
        """The smallest-numbered state where ``flags`` (the goal is false) is set inside a
        fair component."""
        if self._fair_states is None:  # the same for every goal, and usually few
            self._fair_states = np.flatnonzero(self.fair[self.comp])
        hits = self._fair_states[flags[self._fair_states]]
        return int(hits[0]) if len(hits) else None

    def lasso_cycle(self, model: Any, start: int) -> list[int] | None:
        """Labels of a fair cycle from ``start`` back to it, inside its component.

        ``None`` when ``start`` has no enabled action (the lasso's loop is a stutter).
        """
        from scipy.sparse.csgraph import breadth_first_order

        rowptr, dst, lab = self.rowptr, self.dst, self.lab
        if rowptr[start + 1] == rowptr[start]:
            return None
        members = np.flatnonzero(self.comp == self.comp[start])
        local = {int(v): i for i, v in enumerate(members)}
        sub = self.component_matrix(members)

        def enabled(v: int) -> set[int]:
            return {int(x) for x in lab[rowptr[v] : rowptr[v + 1]]}

        def edges(v: int) -> list[tuple[int, int]]:
            return [
                (int(l), int(d))
                for l, d in zip(lab[rowptr[v] : rowptr[v + 1]], dst[rowptr[v] : rowptr[v + 1]])
                if int(d) in local
            ]

        def path_to(src: int, goal: Callable[[int], bool]) -> list[tuple[int, int]] | None:
            """A shortest path inside the component from ``src`` to a state meeting ``goal``
            (as (label, state) steps); [] when ``src`` meets it."""
            if goal(src):
                return []
            order, pred = breadth_first_order(sub, local[src], directed=True, return_predecessors=True)
            for v_local in order[1:]:
                v = int(members[v_local])
                if goal(v):
                    hops = []
                    cur = int(v_local)
                    while cur != local[src]:
                        prev = int(pred[cur])
                        hops.append((int(members[prev]), int(members[cur])))
                        cur = prev
                    hops.reverse()
                    return [(min(l for l, d in edges(a) if d == b), b) for a, b in hops]
            return None

        cycle: list[tuple[int, int]] = []  # (label, state reached)
        visited = [start]
        taken: set[int] = set()
        cur = start
        while True:
            # A fair action instance enabled at every state of the cycle so far must be
            # taken on it, or the cycle must pass a state where it is disabled.
            common = set.intersection(*(enabled(v) for v in visited))
            need = sorted(l for l in common if self.fair_label[l] and l not in taken)
            if not need:
                break
            want = need[0]
            hops = path_to(cur, lambda v, want=want: any(l == want for l, _ in edges(v)))
            if hops is not None:
                at = hops[-1][1] if hops else cur
                hops.append((want, next(d for l, d in edges(at) if l == want)))
            else:
                hops = path_to(cur, lambda v, want=want: want not in enabled(v))
                assert hops is not None, "a fair component lets every such action be taken or disabled"
            for l, v in hops:
                cycle.append((l, v))
                visited.append(v)
                taken.add(l)
                cur = v
        if not cycle:
            # Nothing was required: leave start by any edge that stays in the component.
            cycle.append(edges(start)[0])
            cur = cycle[0][1]
        if cur != start:
            # Returning adds states, which can only shrink what is enabled throughout.
            back = path_to(cur, lambda v: v == start)
            assert back is not None, "start and cur share a strongly connected component"
            cycle.extend(back)
        return [l for l, _ in cycle]


#: Bytes per state and per transition the liveness analysis needs on top of the explored
#: graph (CSR copies for scipy, component labels, per-component bookkeeping), measured on
#: the sweeper design at tabs 2 with room to spare.
LIVENESS_BYTES_PER_STATE = 96
LIVENESS_BYTES_PER_EDGE = 24
#: The same with numba (kvheal.model.fastlive): its search's arrays (47 bytes per state with
#: up to 64 action instances, ``fastlive.bytes_per_state``), then the goal flags and the
#: fair flag of each state's component (12), and no copy of the edges (a lasso's matrix
#: covers only its component).
COMPILED_LIVENESS_BYTES_PER_STATE = 59
COMPILED_LIVENESS_BYTES_PER_EDGE = 0


def compiled_liveness_bytes_per_state(n_labels: int) -> int:
    """:data:`COMPILED_LIVENESS_BYTES_PER_STATE` for a model of ``n_labels`` action
    instances (each further 64 add a word to the search's bit sets)."""
    from .fastlive import bytes_per_state

    return COMPILED_LIVENESS_BYTES_PER_STATE + bytes_per_state(n_labels) - bytes_per_state(1)


def check(
    model: Any,
    max_states: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    only: set[str] | None = None,
    budget: Any = None,
    with_coverage: bool = False,
    engine: str = "auto",
    workers: int = 1,
    fingerprint: bool = False,
) -> CheckResult:
    """Explore every reachable state of ``model`` and decide each of its properties.

    ``max_states`` bounds the search: past it, properties not yet violated are ``unknown``.
    ``only`` restricts the verdicts to the named properties. ``budget`` (``room()`` in
    bytes, ``describe()``) bounds memory the same way, and the liveness analysis is skipped
    (its goals ``unknown``) when the budget has no room for it; a MemoryError never escapes.
    ``engine`` is ``"compiled"`` (:mod:`kvheal.model.fast`), ``"python"`` (this module's
    search) or ``"auto"``: compiled for a model that has it, when numba can run it.
    ``workers`` > 1 runs the compiled search on that many threads (the same counts, depths
    and verdicts; the interpreted search ignores it). ``fingerprint`` runs the compiled
    search with hash compaction (states told apart by a 64-bit hash; the figures give the
    odds that a collision hid a state); it takes no ``max_states``.
    """
    t0 = time.perf_counter()
    props = [p for p in model.properties() if only is None or p.name in only]
    invariants = [p for p in props if p.kind == "invariant"]
    goals = [p for p in props if p.kind == "eventually_always"]
    props = invariants + goals
    search = pick_engine(model, "compiled" if fingerprint else engine, 2 if fingerprint else workers)
    kwargs = {"graph": bool(goals)} if search is not explore else {}
    if (workers > 1 or fingerprint) and search is not explore:
        from . import fast

        kwargs["workers"] = max(workers, 1)
        search = fast.explore_parallel if search is fast.explore else search
        if fingerprint:
            if max_states is not None:
                raise ValueError(
                    "--fingerprint takes no --max-states (hash compaction searches the whole space)"
                )
            kwargs["fingerprint"] = True
    g, fails, complete, peak_queue, reason, depth = search(
        model, props, max_states=max_states, progress=progress, budget=budget, **kwargs
    )
    explore_seconds = time.perf_counter() - t0
    # one bit a property, in the smallest unsigned type that holds them (fast.mask_dtype);
    # None when the search could not evaluate them (out of memory): every verdict unknown
    masks = fails if isinstance(fails, np.ndarray) or fails is None else _np(fails, np.uint64)
    bit_of = (lambda b: masks.dtype.type(1 << b)) if masks is not None else None
    results: dict[str, PropertyResult] = {}
    for bit, p in enumerate(invariants):
        hits = np.flatnonzero(masks & bit_of(bit)) if masks is not None else ()
        if len(hits):
            num = int(hits[0])
            results[p.name] = PropertyResult(
                p.name, p.kind, VIOLATED, Trace(tuple(_steps(model, path_labels(g, num))))
            )
        else:
            results[p.name] = PropertyResult(p.name, p.kind, HOLDS if complete else UNKNOWN)
    if goals and complete and budget is not None:
        compiled = hasattr(g, "ck")  # numba runs: the compiled bookkeeping too
        n_labels = len(model.instances)
        per_state = compiled_liveness_bytes_per_state(n_labels) if compiled else LIVENESS_BYTES_PER_STATE
        per_edge = COMPILED_LIVENESS_BYTES_PER_EDGE if compiled else LIVENESS_BYTES_PER_EDGE
        need = g.n * per_state + len(g.dst) * per_edge
        if budget.room() < need:
            complete = False
            reason = (
                f"the liveness analysis needs about {need / (1 << 20):,.0f} MiB more than the "
                f"memory budget ({budget.describe()}) leaves"
            )
    if goals and complete:
        try:
            bits = {p.name: i for i, p in enumerate(goals, start=len(invariants))}
            results.update(goal_verdicts(model, g, goals, lambda p: (masks & bit_of(bits[p.name])) != 0))
        except MemoryError:
            complete, reason = False, "the process ran out of memory in the liveness analysis"
            results = {n: r for n, r in results.items() if r.kind == "invariant"}
    for p in goals:
        results.setdefault(p.name, PropertyResult(p.name, p.kind, UNKNOWN))
    ordered = {p.name: results[p.name] for p in props}
    return CheckResult(
        states=g.n if not reason else g.found,
        transitions=g.transitions,
        seconds=time.perf_counter() - t0,
        explore_seconds=explore_seconds,
        complete=complete,
        properties=ordered,
        peak_queue=peak_queue,
        stop_reason=reason,
        depth=depth,
        coverage=coverage(model, g) if with_coverage else None,
        engine="compiled" if hasattr(g, "ck") else "python",
        figures=getattr(g, "figures", {}),
    )


def goal_verdicts(
    model: Any, g: Any, goals: list[Any], false_in: Callable[[Any], np.ndarray]
) -> dict[str, PropertyResult]:
    """The verdict on each eventually-always goal of a complete graph ``g``: ``false_in(p)``
    flags the states where ``p``'s goal is false; a violation's trace is a lasso through the
    smallest-numbered such state in a fair component."""
    live = LivenessAnalysis(model, g)
    out = {}
    for p in goals:
        num = live.first_bad_state(false_in(p))
        if num is None:
            out[p.name] = PropertyResult(p.name, p.kind, HOLDS)
            continue
        steps = _steps(model, path_labels(g, num))
        cycle = live.lasso_cycle(model, num)
        if cycle is None:
            steps.append(Step("Stutter", (), True))
        else:
            steps += _steps(model, cycle, loop_from=0)
        out[p.name] = PropertyResult(p.name, p.kind, VIOLATED, Trace(tuple(steps)))
    return out


ENGINES = ("auto", "compiled", "python")

#: ``engine="auto"`` searches this many states interpreted before it compiles: compiling a
#: configuration's kernel takes numba 2-4 s the first time, the interpreted search does this
#: many states in about a second, and most checks (every test, every design at tabs 2) end
#: before it.
AUTO_INTERPRETED_STATES = 200_000


def pick_engine(model: Any, engine: str = "auto", workers: int = 1) -> Callable[..., Any]:
    """The ``explore`` function for ``engine`` (see :func:`check`); ``"compiled"`` raises
    :class:`~kvheal.model.fast.CompiledUnavailable` with the reason where it cannot run."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "python" or not hasattr(model, "compiled"):
        if engine == "compiled":
            from .fast import CompiledUnavailable

            raise CompiledUnavailable("this model has no compiled kernel")
        return explore
    if engine == "auto":
        return _explore_auto
    from . import fast

    model.compiled().ready(parallel=workers > 1)
    return fast.explore


def _explore_auto(model: Any, props: list[Any], max_states: int | None = None, **kw: Any) -> Any:
    """The interpreted search up to :data:`AUTO_INTERPRETED_STATES` states; past it, the
    compiled search from the start (where it can run; else the interpreted one goes on)."""
    from . import fast

    graph = kw.pop("graph", True)
    workers = kw.pop("workers", 1)
    small = max_states is not None and max_states <= AUTO_INTERPRETED_STATES
    bound = max_states if small else AUTO_INTERPRETED_STATES
    out = explore(model, props, max_states=bound, **kw)
    g, _, complete, _, reason, _ = out
    if complete or small or not reason.startswith("the state bound"):
        return out
    del g, out
    try:
        model.compiled().ready(parallel=workers > 1 and max_states is None)
    except fast.CompiledUnavailable:
        return explore(model, props, max_states=max_states, **kw)
    if workers > 1:
        return fast.explore_parallel(model, props, workers, max_states=max_states, graph=graph, **kw)
    return fast.explore(model, props, max_states=max_states, graph=graph, **kw)


def coverage(model: Any, g: Any) -> dict[str, Any]:
    """How many transitions each action produced, and which action instances were never
    enabled in the explored states (as TLC's ``-coverage``): a guard that is never true, or an
    instance the configuration makes unreachable, shows up here."""
    n = len(model.instances)
    counts = getattr(g, "label_counts", None)
    if counts is None:
        counts = np.bincount(_np(g.label, np.int32), minlength=n)
    per_action: dict[str, int] = {}
    for inst in model.instances:
        per_action[inst.name] = per_action.get(inst.name, 0) + int(counts[inst.label])
    never = [str(inst) for inst in model.instances if counts[inst.label] == 0]
    return {"actions": per_action, "never_enabled": never}


def simulate(model: Any, runs: int, depth: int, seed: int = 0, only: set[str] | None = None) -> CheckResult:
    """Seeded random walks: ``runs`` walks of at most ``depth`` steps from the initial state,
    each step a successor drawn uniformly (``random.Random(seed)``, so a seed replays the same
    walks). An invariant false in a visited state is ``violated``, its trace the walk up to
    that state with every cycle cut out (a walk that returns to a state continues from its
    first visit); every other verdict is ``unknown``: a walk proves nothing, and eventually-
    always goals are not decided. For spaces too large to enumerate."""
    import random

    t0 = time.perf_counter()
    rng = random.Random(seed)
    props = [p for p in model.properties() if only is None or p.name in only]
    invariants = [p for p in props if p.kind == "invariant"]
    failing = _failing_fn(model, invariants)
    found: dict[str, Trace] = {}
    seen: set[Any] = set()
    steps_taken = 0
    init = model.init_states()
    for _ in range(runs):
        s = init[rng.randrange(len(init))]
        path_states, path_labels_ = [s], []
        where = {s: 0}
        seen.add(s)
        for _ in range(depth + 1):
            bad = failing(s)
            for bit, p in enumerate(invariants):
                if bad >> bit & 1 and p.name not in found:
                    found[p.name] = Trace(tuple(_steps(model, list(path_labels_))))
            if len(found) == len(invariants) or len(path_labels_) >= depth:
                break
            succ = model.successors(s)
            if not succ:
                break
            lab, s = succ[rng.randrange(len(succ))]
            steps_taken += 1
            seen.add(s)
            if s in where:  # a cycle: the shortest way here is the first visit
                cut = where[s]
                for t in path_states[cut + 1 :]:
                    where.pop(t, None)
                del path_states[cut + 1 :], path_labels_[cut:]
            else:
                where[s] = len(path_states)
                path_states.append(s)
                path_labels_.append(lab)
        if len(found) == len(invariants):
            break
    results = {}
    for p in props:
        if p.name in found:
            results[p.name] = PropertyResult(p.name, p.kind, VIOLATED, found[p.name])
        else:
            results[p.name] = PropertyResult(p.name, p.kind, UNKNOWN)
    secs = time.perf_counter() - t0
    return CheckResult(
        states=len(seen),
        transitions=steps_taken,
        seconds=secs,
        explore_seconds=secs,
        complete=False,
        properties=results,
        engine="simulate",
        stop_reason=f"simulation: {runs:,} random walks of at most {depth} steps (seed {seed})",
    )

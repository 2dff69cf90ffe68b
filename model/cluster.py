"""The explicit-state search on a Ray cluster: states hash-partitioned to workers.

``kvheal check ... --cluster ADDRESS`` (``pip install 'kvheal[cluster]'``). Each worker is a
Ray actor that owns the states whose hash falls to it: their packed words, in the order it
learnt them, and an open-addressing table over them. The search is level-synchronous BFS:

* **expand**: every worker expands its part of the current level with the compiled kernel
  (:mod:`kvheal.model.fast`'s ``expand_many``) and looks each successor up in its own table,
  which also remembers every state it has already *sent* to another owner. A successor it
  owns and does not know is added to its next level at once; one another worker owns and it
  never sent is sent, once: an ``int64`` array of packed words per owner, handed from worker
  to worker by Ray's object store (the driver passes references only). So each state crosses
  the network at most once per worker that is not its owner: for 2 workers at most one
  packed state (8 bytes for one word) per state explored.
* **receive**: each owner adds the words it receives and does not know to its next level;
  when the graph is kept (eventually-always goals) it answers each sender with its local
  number of each word (``int32``), so every worker records its own edges as (label, owner,
  number) and no edge crosses the network during the search.
* The driver numbers states by (level, worker, order within the worker): a state's number
  grows with its depth, so the smallest-numbered state violating an invariant is at the
  least depth, as in the single-process search. At the end:

  - *without a graph* (invariants only) each worker reports its smallest failing number per
    invariant; a counterexample is rebuilt backwards across partitions: the workers expand
    their part of the level before the state and report a parent, one level per round.
  - *with a graph* the workers send their rows (``int32`` targets, ``int16`` labels) and the
    property bits of their states to the driver (counted apart from the search's traffic),
    which renumbers the gathered graph by a breadth-first pass in the kernel's successor
    order: that is exactly the single-process numbering, so the liveness analysis and every
    trace are those of ``kvheal check`` without ``--cluster``.

A worker that dies (its process killed, its node lost) fails the run: every verdict is
``unknown`` and the reason says which worker, never a verdict from part of the space.

Ray over Dask: a level costs two rounds of actor calls; Ray's actor calls take about 4 ms a
round on this machine with arrays passed from worker to worker, Dask's about 23 ms through the
client (or 64 ms as tasks pinned to workers, worker to worker), and a dead Ray actor raises
``ActorDiedError`` at once where a Dask nanny restarts the worker with its state gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from .engine import (
    HOLDS,
    LIVENESS_BYTES_PER_EDGE,
    LIVENESS_BYTES_PER_STATE,
    UNKNOWN,
    VIOLATED,
    CheckResult,
    Progress,
    PropertyResult,
    _steps,
    coverage,
    goal_verdicts,
)
from .results import Trace

INSTALL_HINT = "the cluster engine needs Ray: pip install 'kvheal[cluster]' (or pip install ray)"
#: rows expanded per call into compiled code (bounds the successor buffer)
EXPAND_ROWS = 1 << 15
EMPTY = np.int64(-(1 << 62))


class ClusterUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


class RunFailed(RuntimeError):
    """The run cannot finish (its message says why): it has no verdict."""


class WorkerDied(RunFailed):
    """A worker of the run died."""

    def __init__(self, why: str) -> None:
        super().__init__(f"a cluster worker died ({why}); no verdict from part of the space")


#: seconds the workers have to start (each needs a free CPU) before the run gives up
START_TIMEOUT = float(os.environ.get("KVHEAL_CLUSTER_START_TIMEOUT", "300"))


def available() -> bool:
    try:
        import ray  # noqa: F401
    except Exception:
        return False
    return True


# ---------------------------------------------------------------------------- the tables
@njit(cache=True, nogil=True, inline="always")
def _find(table, mask, h, words, i):
    """The slot of ``words[i]`` in ``table``, or the empty slot where it would go. A slot is a
    row: the state's ``W`` words, then its entry: ``e >= 0`` local state ``e``, ``e < 0``
    sent state ``-e-1``, ``EMPTY`` none (one cache line per probe, no second read)."""
    W = words.shape[1]
    while True:
        if table[h, W] == EMPTY:
            return h
        same = True
        for j in range(W):
            if table[h, j] != words[i, j]:
                same = False
                break
        if same:
            return h
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def _route(succ, hashes, owners, me, table, states, n, rwords, rowner, rn, ref):
    """Look every successor up: a known one gets its entry, a new one owned here becomes local
    state ``n``, a new one owned elsewhere becomes sent state ``rn`` (to be sent once)."""
    mask = table.shape[0] - 1
    W = succ.shape[1]
    for i in range(succ.shape[0]):
        h = np.int64(hashes[i] & np.uint64(mask))
        h = _find(table, mask, h, succ, i)
        e = table[h, W]
        if e == EMPTY:
            if owners[i] == me:
                for j in range(W):
                    states[n, j] = succ[i, j]
                e = n
                n += 1
            else:
                for j in range(W):
                    rwords[rn, j] = succ[i, j]
                rowner[rn] = owners[i]
                e = -(rn + 1)
                rn += 1
            for j in range(W):
                table[h, j] = succ[i, j]
            table[h, W] = e
        ref[i] = e
    return n, rn


@njit(cache=True, nogil=True)
def _admit(words, hashes, table, states, n, ids):
    """Add the received ``words`` (all owned here) that are new; ``ids`` gets each one's
    local number."""
    mask = table.shape[0] - 1
    W = words.shape[1]
    for i in range(words.shape[0]):
        h = np.int64(hashes[i] & np.uint64(mask))
        h = _find(table, mask, h, words, i)
        e = table[h, W]
        if e == EMPTY:
            for j in range(W):
                states[n, j] = words[i, j]
                table[h, j] = words[i, j]
            e = n
            table[h, W] = n
            n += 1
        ids[i] = e
    return n


@njit(cache=True, nogil=True)
def _rehash(cap, states, hl, rwords, hr):
    W = states.shape[1]
    table = np.empty((cap, W + 1), np.int64)
    table[:, W] = EMPTY
    mask = cap - 1
    for r in range(hl.shape[0]):
        h = np.int64(hl[r] & np.uint64(mask))
        while table[h, W] != EMPTY:
            h = (h + 1) & mask
        for j in range(W):
            table[h, j] = states[r, j]
        table[h, W] = r
    for r in range(hr.shape[0]):
        h = np.int64(hr[r] & np.uint64(mask))
        while table[h, W] != EMPTY:
            h = (h + 1) & mask
        for j in range(W):
            table[h, j] = rwords[r, j]
        table[h, W] = -(r + 1)
    return table


@njit(cache=True, nogil=True)
def _bfs_order(rowptr, dst, lab, roots):
    """The single-process numbering of a gathered graph: FIFO from ``roots`` in order, each
    row's targets in stored (kernel) order. Returns (order, new number of each old one,
    parent and parent label in the new numbering)."""
    n = rowptr.shape[0] - 1
    new = np.full(n, -1, np.int64)
    order = np.empty(n, np.int64)
    parent = np.full(n, -1, np.int32)
    plab = np.full(n, -1, np.int32)
    m = 0
    for r in roots:
        if new[r] < 0:
            new[r] = m
            order[m] = r
            m += 1
    head = 0
    while head < m:
        o = order[head]
        for e in range(rowptr[o], rowptr[o + 1]):
            t = dst[e]
            if new[t] < 0:
                new[t] = m
                order[m] = t
                parent[m] = head
                plab[m] = lab[e]
                m += 1
        head += 1
    return order[:m], new, parent[:m], plab[:m]


@njit(cache=True, nogil=True)
def _permute(rowptr, dst, lab, order, new):
    n = order.shape[0]
    rp = np.zeros(n + 1, np.int64)
    for i in range(n):
        o = order[i]
        rp[i + 1] = rp[i] + rowptr[o + 1] - rowptr[o]
    d = np.empty(rp[n], np.int32)
    lb = np.empty(rp[n], np.int32)
    for i in range(n):
        o = order[i]
        k = rp[i]
        for e in range(rowptr[o], rowptr[o + 1]):
            d[k] = new[dst[e]]
            lb[k] = lab[e]
            k += 1
    return rp, d, lb


def _gid(local, starts, bases):
    """Global numbers of a worker's local numbers, from its level starts and level bases."""
    lvl = np.searchsorted(starts, local, side="right") - 1
    return bases[lvl] + (local - starts[lvl])


@njit(cache=True, nogil=True, inline="always")
def _gid1(x, starts, bases):
    # the last level whose start is <= x (a worker's empty levels share their start)
    lo, hi = 0, starts.shape[0] - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= x:
            lo = mid
        else:
            hi = mid - 1
    return bases[lo] + x - starts[lo]


@njit(cache=True, nogil=True)
def _resolve(refs, rowner, rid, me, all_starts, all_bases):
    """Each edge's target as a global number: a local state by this worker's levels, a sent
    one by its owner's number for it and the owner's levels."""
    out = np.empty(refs.shape[0], np.int32)
    for i in range(refs.shape[0]):
        e = refs[i]
        if e >= 0:
            out[i] = _gid1(e, all_starts[me], all_bases[me])
        else:
            k = -e - 1
            o = rowner[k]
            out[i] = _gid1(rid[k], all_starts[o], all_bases[o])
    return out


# ---------------------------------------------------------------------------- a worker
class Partition:
    """One worker's part of the search (a Ray actor in a run; a plain object in tests)."""

    def __init__(self, cfg: Any, me: int, parts: int, graph: bool) -> None:
        from .core import KVHealModel

        self.model = KVHealModel(cfg)
        self.ck = self.model.compiled()
        self.me, self.parts, self.graph = me, parts, graph
        W = self.W = self.ck.packing.words
        self.states = np.empty((1 << 14, W), np.int64)
        self.n = 0
        self.rwords = np.empty((1 << 14, W), np.int64)
        self.rowner = np.empty(1 << 14, np.int16)
        self.rid = np.full(1 << 14, -1, np.int64)
        self.rn = 0
        self.table = _rehash(
            1 << 16, self.states[:0], np.zeros(0, np.uint64), self.rwords[:0], np.zeros(0, np.uint64)
        )
        self.starts = [0]  # local number where each level starts
        self.pending: list[np.ndarray] = []  # per owner, sent states awaiting their numbers
        self.counts = np.zeros(len(self.model.instances), np.int64)
        self.transitions = 0
        self.sent_bytes = 0
        self.rows: list[np.ndarray] = []  # per expanded block: successors per state
        self.refs: list[np.ndarray] = []  # per expanded block: entry of each successor
        self.labs: list[np.ndarray] = []
        self.fault_level = -1
        self.busy = 0.0

    def pid(self) -> int:
        return os.getpid()

    def set_fault(self, level: int) -> None:
        """Die (the process exits) when asked to expand ``level``: for tests of a lost worker."""
        self.fault_level = level

    def _owners(self, hashes: np.ndarray) -> np.ndarray:
        return ((hashes >> np.uint64(40)) % np.uint64(self.parts)).astype(np.int16)

    def _room(self, extra: int) -> None:
        need_n = self.n + extra
        if need_n > len(self.states):
            self.states = _grown(self.states, max(2 * len(self.states), need_n))
        need_r = self.rn + extra
        if need_r > len(self.rwords):
            size = max(2 * len(self.rwords), need_r)
            self.rwords = _grown(self.rwords, size)
            self.rowner = _grown(self.rowner, size)
            rid = np.full(size, -1, np.int64)
            rid[: self.rn] = self.rid[: self.rn]
            self.rid = rid
        if 4 * (self.n + self.rn + extra) > 3 * len(self.table):
            cap = len(self.table)
            while 4 * (self.n + self.rn + extra) > 3 * cap:
                cap *= 2
            h = self.ck.mod.hash_rows
            self.table = None
            st, rw = self.states[: self.n], self.rwords[: self.rn]
            self.table = _rehash(cap, st, h(st), rw, h(rw))

    def seed(self, init: np.ndarray) -> int:
        """Take the initial states this worker owns (level 0)."""
        hashes = self.ck.mod.hash_rows(init)
        sel = self._owners(hashes) == self.me
        self._room(int(sel.sum()))
        ids = np.empty(int(sel.sum()), np.int64)
        self.n = _admit(init[sel], hashes[sel], self.table, self.states, self.n, ids)
        self.starts.append(self.n)
        return self.n

    def expand(self, level: int, *acks: np.ndarray) -> tuple:
        """Expand this worker's part of ``level``; returns the words to send to each worker
        (empty for itself) and (transitions, bytes sent)."""
        if level == self.fault_level:
            os._exit(17)
        t0 = time.perf_counter()
        self._ack(acks)
        lo, hi = self.starts[level], self.starts[level + 1]
        rn0 = self.rn
        transitions0 = self.transitions
        mod, targs = self.ck.mod, self.ck.targs
        for a in range(lo, hi, EXPAND_ROWS):
            b = min(hi, a + EXPAND_ROWS)
            succ, src, lab = mod.expand_many(self.states, a, b, *targs)
            self._room(len(succ))
            hashes = mod.hash_rows(succ)
            ref = np.empty(len(succ), np.int64)
            self.n, self.rn = _route(
                succ, hashes, self._owners(hashes), self.me, self.table, self.states, self.n,
                self.rwords, self.rowner, self.rn, ref,
            )  # fmt: skip
            self.transitions += len(succ)
            self.counts += np.bincount(lab, minlength=len(self.counts))
            if self.graph:
                self.rows.append(np.bincount(src - a, minlength=b - a).astype(np.int32))
                self.refs.append(ref)
                self.labs.append(lab.astype(np.int16))
        owner = self.rowner[rn0 : self.rn]
        out, self.pending = [], []
        for o in range(self.parts):
            idx = np.flatnonzero(owner == o) + rn0
            self.pending.append(idx)
            words = self.rwords[idx] if o != self.me else np.empty((0, self.W), np.int64)
            self.sent_bytes += words.nbytes
            out.append(words)
        self.busy += time.perf_counter() - t0
        return (*out, (self.transitions - transitions0, self.sent_bytes))

    def _ack(self, acks: tuple) -> None:
        for o, ids in enumerate(acks):
            if len(ids):
                self.rid[self.pending[o]] = ids
        self.pending = []

    def receive(self, level: int, *incoming: np.ndarray) -> tuple:
        """Add the new states sent to this worker; its level ``level + 1`` is then complete.
        Returns, per sender, the local numbers of its words (when the graph is kept) and
        (states here, bytes sent)."""
        t0 = time.perf_counter()
        replies = []
        for s, words in enumerate(incoming):
            self._room(len(words))
            ids = np.empty(len(words), np.int64)
            if len(words):
                hashes = self.ck.mod.hash_rows(words)
                self.n = _admit(words, hashes, self.table, self.states, self.n, ids)
            reply = ids.astype(np.int32) if self.graph and s != self.me else np.empty(0, np.int32)
            self.sent_bytes += reply.nbytes
            replies.append(reply)
        self.starts.append(self.n)
        self.busy += time.perf_counter() - t0
        return (*replies, (self.n, self.sent_bytes))

    def finish(self, starts: np.ndarray, bases: np.ndarray, *acks: np.ndarray) -> None:
        """The last replies, and every worker's level starts and bases (``[worker, level]``)."""
        self._ack(acks)
        self.all_starts, self.all_bases = starts, bases

    def gids(self) -> np.ndarray:
        return _gid(np.arange(self.n), self.all_starts[self.me], self.all_bases[self.me])

    def failing_minima(self, bits: int) -> list[int]:
        """Per property bit (kernel order) the smallest global number of a state here where it
        fails (-1: none)."""
        fails = self.ck.mod.failing_rows(self.states, 0, self.n, *self.ck.targs).view(np.uint64)
        gids = self.gids()
        out = []
        for b in range(bits):
            hit = gids[(fails >> np.uint64(b)) & np.uint64(1) == 1]
            out.append(int(hit.min()) if len(hit) else -1)
        return out

    def graph_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per local state: successors (``int32``) and property bits; per edge in local order:
        the target's global number (``int32``) and label (``int16``)."""
        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, np.int32)
        refs = np.concatenate(self.refs) if self.refs else np.zeros(0, np.int64)
        labs = np.concatenate(self.labs) if self.labs else np.zeros(0, np.int16)
        dst = _resolve(refs, self.rowner, self.rid, self.me, self.all_starts, self.all_bases)
        fails = self.ck.mod.failing_rows(self.states, 0, self.n, *self.ck.targs).view(np.uint64)
        self.rows = self.refs = self.labs = []
        return rows, dst, labs, fails

    def parent_of(self, level: int, target: np.ndarray) -> tuple[int, int, np.ndarray] | None:
        """A state here at ``level`` with ``target`` among its successors: the smallest global
        number, the label of that step, its words."""
        lo, hi = self.starts[level], self.starts[level + 1]
        mod, targs = self.ck.mod, self.ck.targs
        best = None
        for a in range(lo, hi, EXPAND_ROWS):
            b = min(hi, a + EXPAND_ROWS)
            succ, src, lab = mod.expand_many(self.states, a, b, *targs)
            hit = np.flatnonzero((succ == target).all(axis=1))
            if len(hit):
                i = hit[np.lexsort((lab[hit], src[hit]))[0]]
                row = int(src[i])
                best = (
                    int(_gid(np.array([row]), self.all_starts[self.me], self.all_bases[self.me])[0]),
                    int(lab[i]),
                    self.states[row].copy(),
                )
                break
        return best

    def row(self, local: int) -> np.ndarray:
        return self.states[local].copy()

    def lookup(self, words: np.ndarray) -> int:
        """The local number of ``words`` (-1: not a state of this worker)."""
        w = words.reshape(1, -1)
        h = self.ck.mod.hash_rows(w)
        mask = len(self.table) - 1
        slot = _find(self.table, mask, np.int64(h[0] & np.uint64(mask)), w, 0)
        e = int(self.table[slot, self.W])
        return e if e >= 0 else -1

    def stats(self) -> tuple[np.ndarray, int, int, float]:
        return self.counts, self.transitions, self.sent_bytes, self.busy


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    out = np.empty((size, *a.shape[1:]), a.dtype)
    out[: len(a)] = a
    return out


# ---------------------------------------------------------------------------- the cluster
class Cluster:
    """A connection to a Ray cluster: ``local:N`` starts one of N worker processes on this
    machine (on the loopback address); anything else is Ray's address (``auto``,
    ``HOST:6379``, ``ray://HOST:10001``); ``inproc:N`` runs N partitions in this process
    without Ray (tests). ``workers`` is the number of partitions (the cluster's CPUs, one
    actor each)."""

    def __init__(self, address: str) -> None:
        if address.startswith("inproc:"):
            self.ray, self.address, self.started = _InProcess(), address, False
            self.workers = _local_workers(address)
            return
        try:
            import ray
        except ImportError as exc:
            raise ClusterUnavailable(INSTALL_HINT) from exc
        self.ray = ray
        self.address = address
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports home
        # a dead worker fails the run with one line, not a traceback per lost task
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
        self.started = False
        try:
            if ray.is_initialized():
                pass
            elif address.startswith("local:"):
                n = _local_workers(address)
                _loopback(ray)
                ray.init(
                    num_cpus=n,
                    object_store_memory=512 << 20,
                    **quiet,
                )
                self.started = True
            else:
                ray.init(address=address, **quiet)
                self.started = True
        except ClusterUnavailable:
            raise
        except Exception as exc:
            raise ClusterUnavailable(f"cannot start or reach the Ray cluster at {address!r}: {exc}") from exc
        if address.startswith("local:"):
            self.workers = _local_workers(address)
        else:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _InProcess:
    """Ray's calls made directly in this process, one :class:`Partition` object per worker:
    ``inproc:N``, for tests of the partitioned search without Ray (no process, no fault)."""

    class exceptions:  # noqa: N801  (as ray.exceptions)
        class RayActorError(Exception):
            pass

        class GetTimeoutError(Exception):
            pass

    def remote(self, **_: Any) -> Callable[[type], Any]:
        return _InProcessClass

    def get(self, x: Any, **_: Any) -> Any:
        return x

    def kill(self, _: Any) -> None:
        pass


class _InProcessClass:
    def __init__(self, cls: type) -> None:
        self.cls = cls

    def remote(self, *args: Any) -> Any:
        return _InProcessHandle(self.cls(*args))


class _InProcessHandle:
    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __getattr__(self, name: str) -> Any:
        return _InProcessMethod(getattr(self.obj, name))


class _InProcessMethod:
    def __init__(self, f: Callable[..., Any]) -> None:
        self.f = f

    def remote(self, *args: Any) -> Any:
        return self.f(*args)

    def options(self, **_: Any) -> _InProcessMethod:
        return self


def _loopback(ray: Any) -> None:
    """Keep a local cluster on 127.0.0.1: Ray otherwise finds the machine's own network
    address and its processes talk over it. Ray's switch for this is the one it uses on
    laptops (no multi-node clusters), read from its constants by this process and from the
    environment by the processes it starts."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _local_workers(address: str) -> int:
    try:
        n = int(address.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < 1:
        raise ClusterUnavailable(f"--cluster {address}: local:N needs a number of workers N >= 1")
    return n


@dataclass
class ClusterStats:
    """What a run moved: bytes sent between workers during the search (packed words and,
    with a graph, the replies' numbers), and bytes gathered to the driver at the end."""

    workers: int
    levels: int = 0
    search_bytes: int = 0
    gather_bytes: int = 0
    level_sizes: list[int] = field(default_factory=list)
    #: seconds: starting the workers (processes, compiled kernel), the search, the gather
    start_seconds: float = 0.0
    search_seconds: float = 0.0
    gather_seconds: float = 0.0
    #: per worker, seconds spent expanding and receiving (the rest of the search is waiting)
    busy_seconds: list[float] = field(default_factory=list)


class _Run:
    """The driver's side of one distributed search."""

    def __init__(self, cluster: Cluster, model: Any, graph: bool, fault: tuple[int, int] | None = None):
        ray = self.ray = cluster.ray
        self.model, self.graph = model, graph
        self.N = N = cluster.workers
        actor = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(Partition)
        self.parts = [actor.remote(model.config, w, N, graph) for w in range(N)]
        if fault is not None:
            ray.get(self.parts[fault[0]].set_fault.remote(fault[1]))
        self.stats = ClusterStats(N)

    def get(self, refs: Any) -> Any:
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayActorError as exc:
            raise WorkerDied(str(exc).splitlines()[0]) from exc

    def pids(self) -> list[int]:
        """The workers' process ids, once every one has started and loaded its kernel."""
        try:
            return self.ray.get([p.pid.remote() for p in self.parts], timeout=START_TIMEOUT)
        except self.ray.exceptions.RayActorError as exc:
            raise WorkerDied(str(exc).splitlines()[0]) from exc
        except self.ray.exceptions.GetTimeoutError as exc:
            raise RunFailed(
                f"a cluster of {self.N} workers did not start within {START_TIMEOUT:.0f} s (each "
                f"takes one free CPU of the cluster; KVHEAL_CLUSTER_START_TIMEOUT sets the wait)"
            ) from exc

    def search(self, max_states: int | None, progress: Callable[[Progress], None] | None) -> tuple[bool, str]:
        """Level by level until no worker has new states (or the bound is passed)."""
        ck = self.model.compiled()
        init = ck.states_array(list(dict.fromkeys(self.model.init_states())))
        self.init = init
        N, parts = self.N, self.parts
        sizes = np.array(self.get([p.seed.remote(init) for p in parts]), np.int64)
        self.starts = [[0, int(s)] for s in sizes]
        total, transitions = int(sizes.sum()), 0
        self.stats.level_sizes = [total]
        acks: list[list[Any]] = [[] for _ in range(N)]
        t0 = time.perf_counter()
        level = 0
        complete, reason = True, ""
        while True:
            outs = [p.expand.options(num_returns=N + 1).remote(level, *acks[w]) for w, p in enumerate(parts)]
            recv = [
                p.receive.options(num_returns=N + 1).remote(level, *[outs[s][d] for s in range(N)])
                for d, p in enumerate(parts)
            ]
            ex = self.get([o[N] for o in outs])
            rc = self.get([r[N] for r in recv])
            acks = [[recv[d][s] for d in range(N)] for s in range(N)]
            transitions += sum(t for t, _ in ex)
            new = 0
            for w, (n_here, _) in enumerate(rc):
                new += n_here - self.starts[w][-1]
                self.starts[w].append(n_here)
            self.stats.search_bytes = sum(b for _, b in rc)
            total += new
            if progress is not None:
                progress(Progress(total, transitions, new, time.perf_counter() - t0))
            if new == 0:
                break
            self.stats.level_sizes.append(new)
            level += 1
            if max_states is not None and total >= max_states:
                complete = False
                reason = f"the state bound (--max-states {max_states:,}) was reached"
                break
        self.levels = level + 1 if complete else level  # levels holding states
        self.depth = level
        self.stats.levels = len(self.stats.level_sizes)
        # global numbers: by level, then worker, then order within the worker
        L = len(self.stats.level_sizes)
        starts = np.array([s[: L + 1] for s in self.starts], np.int64)  # [worker, level]
        per = np.diff(starts, axis=1)  # [worker, level] states
        flat = per.T.reshape(-1)  # level-major
        base = np.concatenate([[0], np.cumsum(flat)[:-1]]).reshape(L, N).T
        self.all_starts, self.all_bases, self.per = starts, base, per
        self.n = int(per.sum())
        self.get([p.finish.remote(starts, base, *acks[w]) for w, p in enumerate(parts)])
        stats = self.get([p.stats.remote() for p in parts])
        self.label_counts = sum(c for c, _, _, _ in stats)
        self.transitions = sum(t for _, t, _, _ in stats)
        self.stats.search_bytes = sum(b for _, _, b, _ in stats)
        self.stats.busy_seconds = [round(b, 3) for _, _, _, b in stats]
        self.stats.search_seconds = time.perf_counter() - t0
        return complete, reason

    def level_of(self, gid: int) -> int:
        firsts = self.all_bases[0]
        return int(np.searchsorted(firsts, gid, side="right") - 1)

    def path_labels(self, gid: int) -> list[int]:
        """The labels of a shortest path to ``gid``, rebuilt backwards across partitions."""
        level = self.level_of(gid)
        words = self._words(gid)
        labels = []
        while level > 0:
            found = [f for f in self.get([p.parent_of.remote(level - 1, words) for p in self.parts]) if f]
            _, lab, words = min(found, key=lambda f: (f[0], f[1]))
            labels.append(lab)
            level -= 1
        labels.reverse()
        return labels

    def _words(self, gid: int) -> np.ndarray:
        level = self.level_of(gid)
        for w in range(self.N):
            lo = self.all_bases[w, level]
            if lo <= gid < lo + self.per[w, level]:
                local = self.all_starts[w, level] + gid - lo
                return self.get(self.parts[w].row.remote(int(local)))
        raise ValueError(gid)

    def gather(self) -> tuple[Any, np.ndarray]:
        """The whole graph in the single-process numbering, and each state's property bits."""
        t0 = time.perf_counter()
        got = self.get([p.graph_rows.remote() for p in self.parts])
        self.stats.gather_bytes = sum(sum(a.nbytes for a in g) for g in got)
        N, L = self.N, self.per.shape[1]
        counts, dsts, labs, fails = [], [], [], []
        edge_at = [np.concatenate([[0], np.cumsum(g[0], dtype=np.int64)]) for g in got]
        for lvl in range(L):
            for w in range(N):
                lo, hi = self.all_starts[w, lvl], self.all_starts[w, lvl + 1]
                rows, dst, lab, fl = got[w]
                counts.append(rows[lo:hi])
                dsts.append(dst[edge_at[w][lo] : edge_at[w][hi]])
                labs.append(lab[edge_at[w][lo] : edge_at[w][hi]])
                fails.append(fl[lo:hi])
        rowptr = np.concatenate([[0], np.cumsum(np.concatenate(counts), dtype=np.int64)])
        dst = np.concatenate(dsts).astype(np.int64)
        lab = np.concatenate(labs).astype(np.int32)
        fl = np.concatenate(fails)
        roots = np.array([self._init_gid(i) for i in range(len(self.init))], np.int64)
        order, new, parent, plab = _bfs_order(rowptr, dst, lab, roots)
        rp, d, lb = _permute(rowptr, dst, lab, order, new)
        g = _Graph(rp, d, lb, parent, plab, self.label_counts)
        self.stats.gather_seconds = time.perf_counter() - t0
        return g, fl[order]

    def _init_gid(self, i: int) -> int:
        for w in range(self.N):
            found = self.get(self.parts[w].lookup.remote(self.init[i]))
            if found >= 0:
                return int(_gid(np.array([found]), self.all_starts[w], self.all_bases[w])[0])
        raise ValueError("an initial state was lost")

    def close(self) -> None:
        for p in self.parts:
            try:
                self.ray.kill(p)
            except Exception:
                pass


class _Graph:
    """A gathered graph in the single-process numbering (engine.StateGraph's shape)."""

    def __init__(self, rowptr, dst, label, parent, parent_label, label_counts) -> None:
        self.rowptr, self.dst, self.label = rowptr, dst, label
        self.parent, self.parent_label = parent, parent_label
        self.label_counts = label_counts

    @property
    def n(self) -> int:
        return len(self.rowptr) - 1

    @property
    def transitions(self) -> int:
        return len(self.dst)

    def path_labels(self, num: int) -> list[int]:
        labels = []
        while self.parent[num] >= 0:
            labels.append(int(self.parent_label[num]))
            num = int(self.parent[num])
        labels.reverse()
        return labels


# ---------------------------------------------------------------------------- check
def check(
    model: Any,
    cluster: Cluster | str,
    max_states: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    only: set[str] | None = None,
    budget: Any = None,
    with_coverage: bool = False,
    on_start: Callable[[list[int]], None] | None = None,
    fault: tuple[int, int] | None = None,
) -> CheckResult:
    """:func:`kvheal.model.engine.check` on a cluster: the same counts, depth and verdicts,
    and the same traces where the graph is gathered (trace lengths always). ``on_start``
    gets the workers' process ids; ``fault`` = (worker, level) makes that worker exit there
    (tests of a lost worker). The result's ``cluster`` attribute is the run's
    :class:`ClusterStats`."""
    return run(model, cluster, max_states, progress, only, budget, with_coverage, on_start, fault)[0]


def run(
    model: Any,
    cluster: Cluster | str,
    max_states: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    only: set[str] | None = None,
    budget: Any = None,
    with_coverage: bool = False,
    on_start: Callable[[list[int]], None] | None = None,
    fault: tuple[int, int] | None = None,
) -> tuple[CheckResult, ClusterStats]:
    if fault is None and os.environ.get("KVHEAL_CLUSTER_FAULT"):
        # "WORKER:LEVEL": that worker's process exits when it reaches that level (tests)
        w, lvl = os.environ["KVHEAL_CLUSTER_FAULT"].split(":")
        fault = (int(w), int(lvl))
    own = isinstance(cluster, str)
    with _stdout_to_stderr(own):
        cl = Cluster(cluster) if own else cluster
        try:
            return _check(model, cl, max_states, progress, only, budget, with_coverage, on_start, fault)
        finally:
            if own:
                cl.close()


@contextlib.contextmanager
def _stdout_to_stderr(on: bool) -> Iterator[None]:
    """Ray's processes write notices (a worker died, ...) to the driver's standard output, from
    C++ too: while a cluster this run started is up, file descriptor 1 goes to 2, so that
    ``--json`` prints one JSON object and nothing else."""
    if not on:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _check(model, cl, max_states, progress, only, budget, with_coverage, on_start, fault):
    t0 = time.perf_counter()
    props = [p for p in model.properties() if only is None or p.name in only]
    invariants = [p for p in props if p.kind == "invariant"]
    goals = [p for p in props if p.kind == "eventually_always"]
    props = invariants + goals
    model.compiled()  # compile (or load numba's cache) once here, before the workers do
    r = _Run(cl, model, graph=bool(goals), fault=fault)
    results: dict[str, PropertyResult] = {}
    try:
        pids = r.pids()  # every worker up, its compiled kernel loaded
        r.stats.start_seconds = time.perf_counter() - t0
        if on_start is not None:
            on_start(pids)
        complete, reason = r.search(max_states, progress)
        searched = complete  # every state found: invariants are decided even if liveness is not
        explore_seconds = time.perf_counter() - t0
        order = [p.name for p in model.properties()]
        g = None
        if goals and complete:
            need = r.n * LIVENESS_BYTES_PER_STATE + r.transitions * (LIVENESS_BYTES_PER_EDGE + 6)
            if budget is not None and budget.room() < need:
                complete = False
                reason = (
                    f"the liveness analysis needs about {need / (1 << 20):,.0f} MiB more than the "
                    f"memory budget ({budget.describe()}) leaves"
                )
            else:
                g, raw = r.gather()
        if g is not None:
            for p in invariants:
                hits = np.flatnonzero(raw & np.uint64(1 << order.index(p.name)))
                if len(hits):
                    trace = Trace(tuple(_steps(model, g.path_labels(int(hits[0])))))
                    results[p.name] = PropertyResult(p.name, p.kind, VIOLATED, trace)
                else:
                    results[p.name] = PropertyResult(p.name, p.kind, HOLDS)
            results.update(
                goal_verdicts(model, g, goals, lambda p: (raw & np.uint64(1 << order.index(p.name))) != 0)
            )
        else:
            minima = [
                min((m for m in ms if m >= 0), default=-1)
                for ms in zip(*r.get([p.failing_minima.remote(len(order)) for p in r.parts]))
            ]
            for p in invariants:
                gid = minima[order.index(p.name)]
                if gid >= 0:
                    trace = Trace(tuple(_steps(model, r.path_labels(gid))))
                    results[p.name] = PropertyResult(p.name, p.kind, VIOLATED, trace)
                else:
                    results[p.name] = PropertyResult(p.name, p.kind, HOLDS if searched else UNKNOWN)
        for p in goals:
            results.setdefault(p.name, PropertyResult(p.name, p.kind, UNKNOWN))
        result = CheckResult(
            states=r.n,
            transitions=r.transitions,
            seconds=time.perf_counter() - t0,
            explore_seconds=explore_seconds,
            complete=complete,
            properties={p.name: results[p.name] for p in props},
            peak_queue=max(r.stats.level_sizes),
            stop_reason=reason,
            depth=r.depth,
            coverage=coverage(model, r) if with_coverage else None,
            engine="cluster",
        )
    except RunFailed as exc:
        result = CheckResult(
            states=0,
            transitions=0,
            seconds=time.perf_counter() - t0,
            explore_seconds=time.perf_counter() - t0,
            complete=False,
            properties={p.name: PropertyResult(p.name, p.kind, UNKNOWN) for p in props},
            stop_reason=str(exc),
            engine="cluster",
        )
    finally:
        r.close()
    return result, r.stats

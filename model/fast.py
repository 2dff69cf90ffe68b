"""The compiled explicit-state checker: the kernel's code over packed states, run by numba.

:class:`~kvheal.model.kernel.Kernel` compiles the one definition to Python expressions over
slot values; this module emits the same expressions (in the kernel's ``NUMBA`` dialect, where
``ADD``, ``UNION`` and ``NEWEST`` are 2-D tables) into a module of ``numba.njit`` functions:

* **packed states**: each slot takes ``ceil(log2(size))`` bits of one of ``W`` 63-bit words
  (``int64``, never negative), so a state is one word for every configuration up to tabs 4
  (``atomic_cache,dedupe``) and two for the largest ones; ``expand`` unpacks a state into
  locals, runs every guard and writes each successor's words with masks and shifts;
* **the visited set**: open addressing over an ``int32`` table of state numbers (linear
  probing, between half and 3/4 full: it grows by half; the hash a multiply-xorshift of
  the words); the states themselves live once, in BFS order, in an ``int64`` array that is also the queue.
  No parent links: only where each depth starts. A trace finds each state's parent again,
  the lowest-numbered state of the depth before with an edge to it (see
  :class:`CompiledGraph`). Exact state identity: no hash compaction. So the visited set
  costs 8 bytes per word of state plus 5.3-8 for the table;
* **the graph** for liveness, only when an eventually-always goal is checked: CSR rows
  (``int64``), targets (``int32``) and labels (``int16``), as the Python engine keeps;
* the search runs in chunks of expansions so the caller gets progress, the memory budget is
  asked, and arrays grow (doubling) between chunks, in Python.

States are numbered in the order the Python engine numbers them (same initial states, same
successor order, FIFO), so counts, depths, verdicts and counterexamples are identical; the
tests compare them. The generated module is written to a cache folder
(``$KVHEAL_CACHE`` or ``~/.cache/kvheal``) named by the hash of its source, so numba's own
cache makes the second run of a configuration start at once.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import mmap
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .dsl import CacheType, Enum, IdsType, IntType
from .kernel import NUMBA, newest

#: Expansions per call into compiled code: between two calls the caller reports progress,
#: asks the memory budget and grows arrays.
CHUNK = 1 << 18
WORD_BITS = 63


class CompiledUnavailable(RuntimeError):
    """The compiled kernel cannot run here (numba missing) or cannot express this model."""


def available() -> bool:
    """Whether numba imports."""
    try:
        import numba  # noqa: F401
    except Exception:  # pragma: no cover - numba is a dependency
        return False
    return True


# ---------------------------------------------------------------------------- packing
class Packing:
    """Where each slot of the kernel's state lives in the packed words."""

    def __init__(self, kernel: Any) -> None:
        cfg = kernel.config
        self.sizes: list[int] = []
        for v, _ in kernel.slot_var:
            t = v.type
            if isinstance(t, Enum):
                size = kernel.enums[v.name].limit
            elif isinstance(t, CacheType):
                size = len(kernel.cv)
            elif isinstance(t, IdsType):
                size = 1 << (cfg.tabs if t.of == "t" else cfg.messages)
            elif isinstance(t, IntType):
                size = t.hi - t.lo + 1
            else:
                size = 2
            self.sizes.append(size)
        self.bits = [max(1, (s - 1).bit_length()) for s in self.sizes]
        self.word: list[int] = []
        self.shift: list[int] = []
        used = [0]
        for b in self.bits:
            if b > WORD_BITS:
                raise CompiledUnavailable(f"a slot needs {b} bits, more than a word")
            if used[-1] + b > WORD_BITS:
                used.append(0)
            self.word.append(len(used) - 1)
            self.shift.append(used[-1])
            used[-1] += b
        self.words = len(used)
        self.total_bits = sum(self.bits)

    def pack(self, s: tuple[int, ...]) -> tuple[int, ...]:
        out = [0] * self.words
        for x, w, sh in zip(s, self.word, self.shift):
            out[w] |= x << sh
        return tuple(out)

    def unpack(self, words: Any) -> tuple[int, ...]:
        return tuple(
            int(words[w]) >> sh & ((1 << b) - 1) for w, sh, b in zip(self.word, self.shift, self.bits)
        )


# ---------------------------------------------------------------------------- code
def _tables(kernel: Any) -> dict[str, np.ndarray]:
    cfg, cv = kernel.config, kernel.cv
    m = cfg.messages
    add = np.array(cv.add, dtype=np.int64).reshape(len(cv), m)
    ids = np.array(cv.ids, dtype=np.int64)
    dup = np.array(cv.dup, dtype=np.bool_)
    union = np.array([[cv.union(c, mask) for mask in range(1 << m)] for c in range(len(cv))], dtype=np.int64)
    rows = 1 << max(m, cfg.tabs)
    cols = max(m, cfg.tabs, cfg.cap) + 1
    table = np.array([[newest(mask, c) for c in range(cols)] for mask in range(rows)], dtype=np.int64)
    return {"ADD": add, "IDS": ids, "DUP": dup, "UNION": union, "NEWEST": table}


TABLES = ("ADD", "IDS", "DUP", "UNION", "NEWEST")


def generate(kernel: Any, pk: Packing) -> str:
    """The source of the compiled module for ``kernel``'s configuration."""
    code = kernel.blocks(NUMBA)
    unknown = set(code.env) - {"NEWEST"}
    if unknown:
        raise CompiledUnavailable(f"the compiled kernel has no {', '.join(sorted(unknown))}")
    W = pk.words
    ws = [f"w{i}" for i in range(W)]
    wargs = ", ".join(ws)
    targs = ", ".join(TABLES)
    unpack = [
        f"    v{i} = ({pk_w}) >> {sh} & {(1 << b) - 1}" if sh else f"    v{i} = {pk_w} & {(1 << b) - 1}"
        for i, (pk_w, sh, b) in enumerate(zip((ws[w] for w in pk.word), pk.shift, pk.bits))
    ]
    # The bodies are pasted as text into each function that needs them (numba's own
    # inline='always' deep-copies the IR per caller: seconds per copy at tabs 3).
    body = list(unpack) + ["    k = 0"]
    for a in code.actions:
        body.append(f"    # {a.name}")
        body.append(f"    if {a.guard}:")
        body += [f"        {name} = {expr}" for name, expr in a.lets]
        # a slot written with its own value is left alone; constants are folded into one
        # literal (less code for numba to type: its compile time is most of a cold run)
        writes = {i: c for i, c in a.writes.items() if c != f"v{i}"}
        for w in range(W):
            slots = [i for i in writes if pk.word[i] == w]
            if not slots:
                body.append(f"        out[k, {w}] = {ws[w]}")
                continue
            clear = sum(((1 << pk.bits[i]) - 1) << pk.shift[i] for i in slots)
            const = sum(int(writes[i]) << pk.shift[i] for i in slots if writes[i].isdigit())
            parts = [f"({ws[w]} & {~clear})"] + ([str(const)] if const else [])
            for i in slots:
                if not writes[i].isdigit():
                    value = f"I64({writes[i]})"
                    parts.append(f"({value} << {pk.shift[i]})" if pk.shift[i] else value)
            body.append(f"        out[k, {w}] = " + " | ".join(parts))
        body.append(f"        lab[k] = {a.label}")
        body.append("        k += 1")
    fail = list(unpack) + ["    bad = 0"]
    for i, (lets, holds) in enumerate(code.props):
        fail += [f"    {name} = {expr}" for name, expr in lets]
        fail += [f"    if not ({holds}):", f"        bad |= {1 << i}"]
    L = [
        "# generated by kvheal.model.fast from the one definition: do not edit",
        "import numpy as np",
        "from numba import njit",
        "",
        "# the same hash for every configuration: compiled once, in numba's cache of fastpar",
        f"from {__package__}.fastpar import hash_rows, rehash, slot_of  # noqa: F401",
        "",
        "I64 = np.int64",
        "",
        "@njit(cache=True, nogil=True)",
        f"def expand({wargs}, {targs}, out, lab):",
        *body,
        "    return k",
        "",
        "@njit(cache=True, nogil=True)",
        f"def failing({wargs}, {targs}):",
        *fail,
        "    return bad",
        "",
    ]
    loads = [f"    w{i} = states[row, {i}]" for i in range(W)]
    paste = {
        "@EXPAND@": loads + body,
        "@EXPAND_MORE@": loads + unpack + body[len(unpack) + 1 :],
        "@FAILING@": loads + fail,
    }
    L.append(_RUNTIME.replace("@W@", str(W)).replace("@NI@", str(len(kernel.instances))))
    L.append(_runtime_words(W))
    out = []
    for line in "\n".join(L).split("\n"):
        key = line.strip()
        if key in paste:
            pad = line[: len(line) - len(line.lstrip())]
            out += [pad + x[4:] for x in paste[key]]
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _runtime_words(W: int) -> str:
    """The W-specific pieces of the search: hashing, comparing, expanding, failing."""
    ws = [f"x{i}" for i in range(W)]
    h = ["    h = np.uint64(0x9E3779B97F4A7C15)"]
    for x in ws:
        h += [f"    h = (h ^ np.uint64({x})) * np.uint64(0xBF58476D1CE4E5B9)", "    h ^= h >> np.uint64(31)"]
    h += ["    h *= np.uint64(0x94D049BB133111EB)", "    h ^= h >> np.uint64(29)", "    return h"]
    loads = lambda arr, row: ", ".join(f"{arr}[{row}, {i}]" for i in range(W))  # noqa: E731
    eq = " and ".join(f"states[num, {i}] == out[i, {i}]" for i in range(W))
    return "\n".join(
        [
            "@njit(cache=True, nogil=True, inline='always')",
            f"def hash_words({', '.join(ws)}):",
            *h,
            "",
            "@njit(cache=True, nogil=True, inline='always')",
            "def expand_row(states, row, ADD, IDS, DUP, UNION, NEWEST, out, lab):",
            f"    return expand({loads('states', 'row')}, ADD, IDS, DUP, UNION, NEWEST, out, lab)",
            "",
            "@njit(cache=True, nogil=True, inline='always')",
            "def hash_row(a, row):",
            f"    return hash_words({loads('a', 'row')})",
            "",
            "@njit(cache=True, nogil=True, inline='always')",
            "def same(states, num, out, i):",
            f"    return {eq}",
            "",
            "@njit(cache=True, nogil=True)",
            "def expand_block(states, lo, hi, ADD, IDS, DUP, UNION, NEWEST, out, lab, src, hs, rowcnt, at):",
            "    # rows lo..hi expanded into out/lab from index at on; per successor its source",
            "    # row and hash, per row its successor count; returns the index after the last",
            "    k = at",
            "    for row in range(lo, hi):",
            "        k0 = k",
            "        @EXPAND_MORE@",
            "        rowcnt[row - lo] = k - k0",
            "        for i in range(k0, k):",
            "            src[i] = row",
            "            hs[i] = hash_row(out, i)",
            "    return k",
            "",
            "@njit(cache=True, nogil=True)",
            "def failing_rows(states, lo, hi, ADD, IDS, DUP, UNION, NEWEST):",
            "    res = np.empty(hi - lo, np.int64)",
            "    for row in range(lo, hi):",
            "        @FAILING@",
            "        res[row - lo] = bad",
            "    return res",
            "",
        ]
    )


# The search itself, the same for every configuration but for W (words per state) and NI
# (action instances, the most successors a state can have).
_RUNTIME = """
W = @W@
NI = @NI@

# levels[d]: the number of the first state at depth d (states are numbered level by level)
# ctl: 0 head, 1 states, 2 transitions, 3 depth, 4 level end, 5 state bound, 6 status
#      (0 done, 1 chunk used up, 2 arrays full: grow, 3 state bound reached)
@njit(cache=True, nogil=True)
def run(ctl, states, levels, table, rowptr, dst, elab, counts, graph, chunk,
        ADD, IDS, DUP, UNION, NEWEST):
    head = ctl[0]
    n = ctl[1]
    e = ctl[2]
    depth = ctl[3]
    level_end = ctl[4]
    bound = ctl[5]
    tcap = table.shape[0]
    ncap = states.shape[0]
    ecap = dst.shape[0]
    out = np.empty((NI, W), np.int64)
    lab = np.empty(NI, np.int32)
    status = 0
    done = 0
    while head < n:
        if done >= chunk:
            status = 1
            break
        if n + NI > ncap or 4 * (n + NI) > 3 * tcap or (graph and e + NI > ecap):
            status = 2
            break
        if head == level_end:
            if depth + 2 >= levels.shape[0]:
                status = 2
                break
            depth += 1
            levels[depth] = head
            level_end = n
        row = head
        @EXPAND@
        e0 = e
        for i in range(k):
            h = slot_of(hash_row(out, i), tcap)
            while True:
                num = table[h]
                if num < 0:
                    if n >= bound:
                        status = 3
                        break
                    num = n
                    table[h] = n
                    for j in range(W):
                        states[n, j] = out[i, j]
                    n += 1
                    break
                if same(states, num, out, i):
                    break
                h += 1
                if h == tcap:
                    h = 0
            if status == 3:
                break
            if graph:
                dst[e] = num
                elab[e] = lab[i]
            e += 1
            counts[lab[i]] += 1
        if status == 3:
            if graph:
                e = e0
            else:
                e = e0
            break
        if graph:
            rowptr[head + 1] = e
        head += 1
        done += 1
    ctl[0] = head
    ctl[1] = n
    ctl[2] = e
    ctl[3] = depth
    ctl[4] = level_end
    ctl[6] = status


@njit(cache=True, nogil=True)
def expand_many(states, lo, hi, ADD, IDS, DUP, UNION, NEWEST):
    # every successor of rows lo..hi: (words, source row, label), in row then kernel order
    cnt = (hi - lo) * NI
    out = np.empty((cnt, W), np.int64)
    src = np.empty(cnt, np.int64)
    labs = np.empty(cnt, np.int32)
    buf = np.empty((NI, W), np.int64)
    lab = np.empty(NI, np.int32)
    k = 0
    for r in range(lo, hi):
        m = expand_row(states, r, ADD, IDS, DUP, UNION, NEWEST, buf, lab)
        for i in range(m):
            for j in range(W):
                out[k, j] = buf[i, j]
            src[k] = r
            labs[k] = lab[i]
            k += 1
    return out[:k], src[:k], labs[:k]


@njit(cache=True, nogil=True)
def successors_of(states, row, ADD, IDS, DUP, UNION, NEWEST):
    out = np.empty((NI, W), np.int64)
    lab = np.empty(NI, np.int32)
    k = expand_row(states, row, ADD, IDS, DUP, UNION, NEWEST, out, lab)
    return out[:k].copy(), lab[:k].copy()
"""


def _cache_dir() -> Path:
    base = os.environ.get("KVHEAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kvheal")
    return Path(base) / "kernels"


def _reap(pid: int | None, timeout: float = 120.0) -> None:
    """Wait for a compiling child; one that outlives ``timeout`` is killed (the parent then
    compiles the function itself, as it does when the child failed)."""
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return
        time.sleep(0.005)


class CompiledKernel:
    """A configuration's compiled module and tables."""

    def __init__(self, kernel: Any) -> None:
        if not available():
            raise CompiledUnavailable("numba is not installed")
        self.kernel = kernel
        self.packing = pk = Packing(kernel)
        self.source = generate(kernel, pk)
        self.tables = _tables(kernel)
        self.targs = tuple(self.tables[t] for t in TABLES)
        digest = hashlib.sha256(self.source.encode()).hexdigest()[:20]
        folder = _cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"k_{digest}.py"
            if not path.exists():
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(self.source)
                os.replace(tmp, path)
        except OSError as exc:
            raise CompiledUnavailable(f"cannot write the compiled kernel to {folder}: {exc}") from exc
        name = f"kvheal_kernel_{digest}"
        mod = sys.modules.get(name)
        if mod is None:
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
            sys.modules[name] = mod
        self.mod = mod
        self._ready: set[bool] = set()

    def ready(self, parallel: bool) -> CompiledKernel:
        """Compile (or load from numba's cache) the functions of the one-worker search, or of
        the several-worker one, before it starts; numba's errors become CompiledUnavailable."""
        if parallel in self._ready:
            return self
        try:
            self._compile(parallel)
        except Exception as exc:  # numba's typing errors: a construct it cannot compile
            raise CompiledUnavailable(f"numba cannot compile this model: {str(exc).splitlines()[0]}") from exc
        self._ready.add(parallel)
        return self

    def _compile(self, parallel: bool) -> None:
        states = self.states_array([self.kernel.init_state])
        # The property rows compile in a forked child while this process compiles the search
        # (numba compiles on one core; a cold compile is most of a small check's time). The
        # child leaves its result in numba's cache, which the call below then loads.
        child = self._fork(lambda: self.mod.failing_rows(states, 0, 1, *self.targs), "failing_rows")
        try:
            self._compile_search(parallel, states)
        finally:
            _reap(child)
        self.mod.failing_rows(states, 0, 1, *self.targs)

    def _fork(self, compile_one: Callable[[], Any], name: str) -> int | None:
        """Run ``compile_one`` in a forked child (its pid), or None where that cannot help or
        is unsafe: no fork, other threads running (a lock held by one would stay held in the
        child), or the function already in numba's cache."""
        if not hasattr(os, "fork") or threading.active_count() > 1 or os.environ.get("KVHEAL_NO_FORK"):
            return None
        mod_file = Path(self.mod.__file__)
        if any((mod_file.parent / "__pycache__").glob(f"{mod_file.stem}.{name}-*.nbi")):
            return None
        try:
            pid = os.fork()
        except OSError:
            return None
        if pid == 0:  # pragma: no cover - the child: compile, leave it in the cache, exit
            code = 1
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
                compile_one()
                code = 0
            finally:
                os._exit(code)
        return pid

    def _compile_search(self, parallel: bool, states: np.ndarray) -> None:
        ni, W = len(self.kernel.instances), self.packing.words
        if parallel:
            from . import fastpar as fp

            hs = self.mod.hash_rows(states)
            self.mod.expand_block(
                states, 0, 0, *self.targs, np.empty((ni, W), np.int64), np.empty(ni, np.int32),
                np.empty(ni, np.int64), np.empty(ni, np.uint64), np.empty(1, np.int64), 0,
            )  # fmt: skip
            one = np.ones(1, np.int64)
            table = np.full(4, -1, np.int32)
            fp.fill_part(table, hs, 0, 1, True)
            fp.fill_part_rows(table, states, 1, 0, 1, True)
            own = np.zeros((1, 1), np.int32)
            fp.block_counts(hs, np.zeros(1, np.int32), 0, 0, 1, 1, own)
            res = np.zeros(1, np.int64)
            new = np.empty((1, W), np.int64)
            fp.insert_part(
                0, states, table, states, hs, own, one * 0, one * 0, res, new, one, 0, 0, 0, 1, True
            )
            fp.fill_pending(table, hs, 0, one, True)
            fp.settle_part(0, 0, table, states, new, one, True)
            fp.edges_of(0, 0, res, hs, one, 1, np.zeros(1, np.int32), np.zeros(1, np.int32),
                        np.zeros(1, np.int16), 0)  # fmt: skip
            return
        table = self.mod.rehash(states, 1, 4)
        ctl = np.array([0, 1, 0, 0, 1, 1, 0], np.int64)
        for graph in (False, True):
            self.mod.run(
                ctl,
                states,
                np.zeros(4, np.int64),
                table,
                np.zeros(2, np.int64),
                np.zeros(1, np.int32),
                np.zeros(1, np.int16),
                np.zeros(len(self.kernel.instances), np.int64),
                graph,
                0,
                *self.targs,
            )

    def states_array(self, states: list[tuple[int, ...]]) -> np.ndarray:
        return np.array([self.packing.pack(s) for s in states], dtype=np.int64).reshape(
            len(states), self.packing.words
        )

    def successors(self, words: np.ndarray) -> list[tuple[int, tuple[int, ...]]]:
        """The successors of a packed state, by the interpreted kernel (compiling the
        compiled one's entry points costs seconds; a trace needs a few dozen steps)."""
        pk = self.packing
        return [(lab, pk.pack(t)) for lab, t in self.kernel.successors(pk.unpack(words))]


class CompiledGraph:
    """The explored graph in the Python engine's shape (``n``, ``parent``, ``rowptr``,
    ``dst``, ``label``), states packed.

    No parent links are stored while searching: the BFS parent of a state at depth d is the
    lowest-numbered state of depth d - 1 with an edge to it (the first to reach it, in both
    the one-worker order and the partitioned one), found when a trace asks for it: in the
    graph's edges of that level when the graph is kept, else by expanding that level again
    (compiled, in blocks, stopping at the first match). ``levels[d]`` is the first state
    of depth d, ``levels[-1]`` the number of states. Tree-edge labels are found again the
    same way."""

    def __init__(
        self, ck: CompiledKernel, states, levels, rowptr, dst, label, counts, transitions: int
    ) -> None:
        self.ck, self.transitions = ck, transitions
        self.states, self.levels = states, levels
        self.rowptr, self.dst, self.label = rowptr, dst, label
        self.label_counts = counts
        self._parent: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.states)

    @property
    def found(self) -> int:
        """States found (a stopped search's last ones not expanded): all of them."""
        return len(self.states)

    def depths(self) -> np.ndarray:
        """Every state's depth (int32), from where each depth starts."""
        return np.repeat(np.arange(len(self.levels) - 1, dtype=np.int32), np.diff(self.levels))

    def depth_of(self, num: int) -> int:
        return int(np.searchsorted(self.levels, num, side="right")) - 1

    def _has_graph(self) -> bool:
        return len(self.rowptr) > 1

    def parent_step(self, num: int) -> tuple[int, int]:
        """(parent, label of the tree edge) of state ``num`` (``(-1, -1)`` for an initial
        state)."""
        d = self.depth_of(num)
        if d <= 0:
            return -1, -1
        lo, hi = int(self.levels[d - 1]), int(self.levels[d])
        if self._has_graph() and hi < len(self.rowptr):
            e0, e1 = int(self.rowptr[lo]), int(self.rowptr[hi])
            hits = np.flatnonzero(self.dst[e0:e1] == num)
            if len(hits):
                e = e0 + int(hits[0])
                return int(np.searchsorted(self.rowptr, e, side="right")) - 1, int(self.label[e])
        return self._expand_for(lo, hi, num)

    def _expanded(self, lo: int, hi: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The successors of rows ``lo..hi``, expanded again by the compiled kernel in blocks
        of 16,384 rows: per block (words, source rows, labels), in row then kernel order
        (views of buffers the next block reuses)."""
        ck = self.ck
        ni, W = len(ck.kernel.instances), ck.packing.words
        step = 1 << 14
        out = np.empty((step * ni, W), np.int64)
        lab = np.empty(step * ni, np.int32)
        src = np.empty(step * ni, np.int64)
        hs = np.empty(step * ni, np.uint64)
        rowcnt = np.empty(step, np.int64)
        ck.ready(parallel=True)
        for a in range(lo, hi, step):
            k = ck.mod.expand_block(
                self.states, a, min(hi, a + step), *ck.targs, out, lab, src, hs, rowcnt, 0
            )
            yield out[:k], src[:k], lab[:k]

    def _expand_for(self, lo: int, hi: int, num: int) -> tuple[int, int]:
        """The first row of ``lo..hi`` with state ``num`` among its successors, by expanding
        the rows again."""
        target = self.states[num]
        for out, src, lab in self._expanded(lo, hi):
            match = np.flatnonzero((out == target).all(axis=1))
            if len(match):
                i = int(match[0])
                return int(src[i]), int(lab[i])
        raise AssertionError(f"state {num} has no predecessor at the level before its own")

    @property
    def parent(self) -> np.ndarray:
        """Every state's BFS parent (int32), computed on first use: among the edges (in
        source order) from depth d - 1 into each state of depth d, the first."""
        if self._parent is None:
            n = self.n
            depth = self.depths()
            if self._has_graph() and len(self.rowptr) == n + 1:
                src = np.repeat(np.arange(n, dtype=np.int32), np.diff(self.rowptr))
                dst = self.dst
            else:
                src, dst = self._all_edges()
            keep = depth[src] == depth[dst] - 1
            targets, first = np.unique(dst[keep], return_index=True)
            par = np.full(n, -1, np.int32)
            par[targets] = src[keep][first]
            self._parent = par
        return self._parent

    def _all_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(sources, targets) of every edge, found by expanding every state again."""
        order = np.argsort(_row_keys(self.states), kind="stable")
        keys = _row_keys(self.states)[order]
        srcs, dsts = [], []
        for out, src, _ in self._expanded(0, self.n):
            succ = _row_keys(out)
            at = np.minimum(np.searchsorted(keys, succ), len(keys) - 1)
            found = keys[at] == succ
            srcs.append(src[found].astype(np.int32))
            dsts.append(order[at[found]].astype(np.int32))
        return np.concatenate(srcs), np.concatenate(dsts)

    def path(self, num: int) -> list[tuple[int, int]]:
        """The BFS-tree path to state ``num``: (state, label of the edge into it) from an
        initial state (label -1) on."""
        steps = []
        while num >= 0:
            p, into = self.parent_step(num)
            steps.append((num, into))
            num = p
        steps.reverse()
        return steps

    def path_labels(self, num: int) -> list[int]:
        return [lab for _, lab in self.path(num)[1:]]


def _row_keys(words: np.ndarray) -> np.ndarray:
    """One sortable key per row of packed words (the row itself when it is one word)."""
    if words.shape[1] == 1:
        return words[:, 0]
    return np.ascontiguousarray(words).view(np.dtype((np.void, 8 * words.shape[1]))).ravel()


def explore(
    model: Any,
    props: list[Any],
    max_states: int | None = None,
    progress: Callable[[Any], None] | None = None,
    progress_every: float = 1.0,
    budget: Any = None,
    graph: bool = True,
) -> tuple[CompiledGraph, np.ndarray, bool, int, str, int]:
    """:func:`kvheal.model.engine.explore` on the compiled kernel: the same results."""

    ck = model.compiled().ready(parallel=False)
    mod = ck.mod
    W = ck.packing.words
    ni = len(model.instances)
    init = []
    seen = set()
    for s in model.init_states():
        if s not in seen:
            seen.add(s)
            init.append(s)
    n0 = len(init)
    cap_n = 1 << 16
    states = np.empty((cap_n, W), np.int64)
    states[:n0] = ck.states_array(init)
    levels = np.zeros(1 << 10, np.int64)  # levels[d]: the first state at depth d
    table = mod.rehash(states, n0, _table_len(n0))
    rowptr = _empty(cap_n + 1 if graph else 1, np.int64, huge=False)
    dst = _empty(1 << 18 if graph else 0, np.int32, huge=False)
    elab = _empty(1 << 18 if graph else 0, np.int16, huge=False)
    counts = np.zeros(ni, np.int64)
    bound = max_states if max_states is not None else (1 << 31) - 1
    ctl = np.array([0, n0, 0, 0, n0, min(bound, (1 << 31) - 1), 0], np.int64)
    complete, reason = True, ""
    pacer = _Pacer(progress, progress_every, budget)
    peak_queue = 0
    try:
        while True:
            mod.run(ctl, states, levels, table, rowptr, dst, elab, counts, graph, CHUNK, *ck.targs)
            head, n, e, status = int(ctl[0]), int(ctl[1]), int(ctl[2]), int(ctl[6])
            peak_queue = max(peak_queue, n - head)
            if status == 0:
                break
            if status == 3:
                complete = False
                reason = f"the state bound (--max-states {max_states:,}) was reached"
                break
            if status == 2:
                if int(ctl[3]) + 2 >= len(levels):
                    levels = _grow(levels, 2 * len(levels))
                grow = _growth(states, table, dst, n, e, ni, graph)
                if budget is not None:
                    # numpy's fresh arrays are not resident until written: count what the
                    # arrays already hold but have not filled, and what growing allocates.
                    unfilled = (len(states) - n) * states.itemsize * W + (len(dst) - e) * 6
                    need = sum(_nbytes(k, size, W) for k, size in grow.items())
                    if budget.room() - unfilled < need:
                        complete = False
                        reason = f"the memory budget ({budget.describe()}) was reached"
                        break
                if "states" in grow:
                    size = grow["states"]
                    states = _grow(states, size)
                    if graph:
                        rowptr = _grow(rowptr, size + 1, huge=False)
                if "table" in grow:
                    table = None  # free it before the new one is built
                    table = mod.rehash(states, n, grow["table"])
                if "dst" in grow:
                    dst, elab = _grow(dst, grow["dst"], False), _grow(elab, grow["dst"], False)
            reason = pacer.tick(n, e, n - head)
            if reason:
                complete = False
                break
    except MemoryError:
        complete = False
        reason = "the process ran out of memory"
    head, n, e, depth = int(ctl[0]), int(ctl[1]), int(ctl[2]), int(ctl[3])
    visited = states.itemsize * W * n + table.nbytes  # states, table (no parent links)
    table = None
    states = states[:n]
    if graph:
        rowptr = rowptr[: head + 1]
        e = int(rowptr[-1]) if not complete else e
        dst, elab = dst[:e], elab[:e]
    else:
        rowptr = np.zeros(1, np.int64)
    g = CompiledGraph(ck, states, _levels(levels[: depth + 1], int(ctl[4]), n), rowptr, dst, elab, counts, e)
    g.figures = _figures(visited, g)
    try:
        fails = _fails(model, ck, props, states)
    except MemoryError:
        fails, complete, reason = None, False, OUT_OF_MEMORY_AFTER
    return g, fails, complete, peak_queue, reason, depth


#: Why a search that ended could not say which properties its states violate.
OUT_OF_MEMORY_AFTER = "the process ran out of memory evaluating the properties on the states found"


def _levels(starts: np.ndarray, level_end: int, n: int) -> np.ndarray:
    """Level boundaries: the first state of each depth expanded, the first of the next
    depth (states found but not expanded) when there are any, then ``n``."""
    tail = [level_end, n] if level_end < n else [n]
    return np.append(starts, np.array(tail, np.int64))


class _Pacer:
    """Between two chunks of a search: asks the memory budget, reports progress."""

    def __init__(self, progress: Callable[[Any], None] | None, every: float, budget: Any) -> None:
        self.progress, self.every, self.budget = progress, every, budget
        self.start = self.last = time.perf_counter()

    def tick(self, states: int, transitions: int, queue: int) -> str:
        """Why the search must stop ("" to go on), after reporting progress if it is time."""
        if self.budget is not None and self.budget.room() < 0:
            return f"the memory budget ({self.budget.describe()}) was reached"
        if self.progress is not None:
            now = time.perf_counter()
            if now - self.last >= self.every:
                from .engine import Progress

                self.last = now
                self.progress(Progress(states, transitions, queue, now - self.start))
        return ""


def _figures(visited: int, g: CompiledGraph) -> dict[str, float]:
    """Bytes per state of the visited set (states, table) and of the graph kept for
    liveness (rows, targets, labels)."""
    n = max(g.n, 1)
    graph = g.rowptr.nbytes + g.dst.nbytes + g.label.nbytes if len(g.rowptr) > 1 else 0
    return {"visited_bytes_per_state": round(visited / n, 1), "graph_bytes_per_state": round(graph / n, 1)}


def _table_len(n: int) -> int:
    """Slots for ``n`` states: the table is then half full (it grows when 3/4 full, by half,
    so it always holds between 4/3 and 2 slots a state: 5.3-8 bytes)."""
    return max(1 << 10, 2 * n)


def _growth(states, table, dst, n: int, e: int, ni: int, graph: bool) -> dict[str, int]:
    """The arrays the search must grow before it can expand one more state, and their new
    lengths (doubling)."""
    out = {}
    if n + ni > len(states):
        out["states"] = max(_more(len(states)), n + ni)
    if 4 * (n + ni) > 3 * len(table):
        out["table"] = _table_len(n + ni)
    if graph and e + ni > len(dst):
        out["dst"] = max(_more(len(dst)), e + ni)
    return out


def _more(size: int) -> int:
    """The next capacity: four times as much (fewer copies: growing the seed design's
    arrays at tabs 3 by doubling copied gigabytes, a fifth of its search; pages not yet
    written cost no memory), but twice past 16 million under an address-space limit
    (``ulimit -v``), where what is allocated counts, written or not."""
    return size * (4 if size < 1 << 24 or not _address_limited() else 2)


def _address_limited() -> bool:
    import resource

    return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY


def _nbytes(kind: str, size: int, words: int) -> int:
    """Bytes the grown array(s) of ``kind`` take: states with rows, the table, edge targets
    with labels."""
    return size * {"states": 8 * words + 8, "table": 4, "dst": 6}[kind]


def _grow(a: np.ndarray, size: int, huge: bool = True) -> np.ndarray:
    """``a`` in a longer array; the new part is left unwritten (numpy's pages stay untouched
    until the search fills them, so resident memory grows only as it does). ``huge``: see
    :func:`_empty`."""
    out = _empty((size, *a.shape[1:]), a.dtype, huge)
    out[: len(a)] = a
    return out


def _empty(shape: tuple[int, ...] | int, dtype: Any, huge: bool = True) -> np.ndarray:
    """An array not written yet: numpy's (which asks the kernel for 2 MiB pages past 4 MiB)
    or, not ``huge``, one in an anonymous mapping of 4 KiB pages (zeros). The graph's
    arrays are written once, in order, and read in order: huge pages do not spare them TLB
    misses, and this machine (a VM whose free memory goes back to the host) faults a fresh
    huge page in far more slowly than 512 small ones: at tabs 4 ``atomic_cache,dedupe``
    the edges (330 MB) took 0.61-0.79 s of CPU to write in huge pages, 0.41-0.42 s in
    small ones."""
    if huge:
        return np.empty(shape, dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return _Mapped(int(np.prod(shape)), dtype).array().reshape(shape)


def _map(nbytes: int) -> mmap.mmap:
    """A private anonymous mapping of ``nbytes`` (MemoryError when there is no room)."""
    try:
        return mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE)
    except OSError as exc:  # out of address space: what numpy raises
        if exc.errno == errno.ENOMEM:
            raise MemoryError(f"cannot map {nbytes:,} bytes") from exc
        raise


class _Mapped:
    """A 1-D array in a private anonymous mapping of 4 KiB pages (see :func:`_empty`) that
    grows in place: the kernel moves its pages (mremap), nothing is copied and no fresh
    page is written for what it holds, and under an address-space limit it needs the new
    length only, not the old one beside it. Growing the graph's arrays by copying took
    most of the 6.9 s the seed design at tabs 3 spent growing arrays (2.1 GB of edges
    copied)."""

    def __init__(self, size: int, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.size = size
        self.buf = _map(size * self.dtype.itemsize)

    def array(self) -> np.ndarray:
        """The array (a view: drop every one before :meth:`grow`)."""
        return np.frombuffer(self.buf, self.dtype, self.size)

    def grow(self, size: int) -> None:
        """``size`` elements, the first ones kept; the rest unwritten (zeros)."""
        nbytes = max(size * self.dtype.itemsize, 1)
        try:
            self.buf.resize(nbytes)
        except BufferError:  # a view of the array is still held: copy instead
            buf = _map(nbytes)
            np.frombuffer(buf, self.dtype, self.size)[:] = self.array()
            self.buf = buf
        except OSError as exc:
            if exc.errno == errno.ENOMEM:
                raise MemoryError(f"cannot map {nbytes:,} bytes") from exc
            raise
        self.size = size


def mask_dtype(nprops: int) -> np.dtype:
    """The smallest unsigned integer type with a bit for each of ``nprops`` properties."""
    for t in (np.uint8, np.uint16, np.uint32):
        if nprops <= 8 * np.dtype(t).itemsize:
            return np.dtype(t)
    return np.dtype(np.uint64)


def _fails(
    model: Any, ck: CompiledKernel, props: list[Any], states: np.ndarray, workers: int = 1
) -> np.ndarray:
    """Per state the bitmask of ``props`` false in it (bits in ``props``' order), in the
    smallest unsigned type that holds them (one byte a state for up to 8 properties); in
    chunks of a million states, on ``workers`` threads."""
    order = [p.name for p in model.properties()]
    remap = [order.index(p.name) for p in props]
    out = np.zeros(len(states), mask_dtype(len(props)))
    step = 1 << 20

    def chunk(lo: int) -> None:
        hi = min(lo + step, len(states))
        raw = ck.mod.failing_rows(states, lo, hi, *ck.targs).view(np.uint64)
        if remap == list(range(len(order))):
            out[lo:hi] = raw
            return
        for i, j in enumerate(remap):
            out[lo:hi] |= (((raw >> np.uint64(j)) & np.uint64(1)) << np.uint64(i)).astype(out.dtype)

    starts = range(0, len(states), step)
    if workers > 1 and len(starts) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="kvheal-props") as pool:
            list(pool.map(chunk, starts))
    else:
        for lo in starts:
            chunk(lo)
    return out


#: Rows of the frontier expanded per block by all workers together.
BLOCK_ROWS = 1 << 16


def explore_parallel(
    model: Any,
    props: list[Any],
    workers: int,
    max_states: int | None = None,
    progress: Callable[[Any], None] | None = None,
    progress_every: float = 1.0,
    budget: Any = None,
    graph: bool = True,
    fingerprint: bool = False,
) -> tuple[CompiledGraph, np.ndarray, bool, int, str, int]:
    """:func:`explore` on ``workers`` threads (:mod:`kvheal.model.fastpar`): the same states,
    transitions, depths and verdicts; within a level, states are numbered partition by
    partition. A state bound needs one worker's order: with ``max_states`` this is
    :func:`explore`. ``fingerprint`` tells states apart by their 64-bit hash alone (hash
    compaction, any number of workers): see :class:`_FingerprintStore`."""
    from concurrent.futures import ThreadPoolExecutor

    from . import fastpar as fp

    if fingerprint and max_states is not None:
        raise ValueError("hash compaction (fingerprint) takes no state bound")
    if not fingerprint and (max_states is not None or workers <= 1):
        return explore(model, props, max_states, progress, progress_every, budget, graph)
    ck = model.compiled().ready(parallel=True)
    mod, targs = ck.mod, ck.targs
    W, ni, P = ck.packing.words, len(model.instances), workers
    init = list(dict.fromkeys(model.init_states()))
    n = n0 = len(init)
    store = (_FingerprintStore if fingerprint else _ExactStore)(ck, init, graph, props, model)
    store.workers = P
    levels = [0]  # the first state of each depth
    hs0 = mod.hash_rows(ck.states_array(init))
    tables = [np.full(_table_len(n0), -1, np.int32) for _ in range(P)]
    sizes = np.zeros(P, np.int64)
    for p in range(P):
        store.fill(tables[p], n0, p, P)
        sizes[p] = sum(1 for h in hs0 if int(fp.owner_of(h, P)) == p)
    # the graph's arrays grow in place (_Mapped): no view of them outlives a block
    rowptr_m = _Mapped(store.capacity() + 1 if graph else 1, np.int64)
    dst_m, elab_m = _Mapped(1 << 18 if graph else 0, np.int32), _Mapped(1 << 18 if graph else 0, np.int16)
    rowptr, dst, elab = rowptr_m.array(), dst_m.array(), elab_m.array()
    counts = np.zeros(ni, np.int64)
    cap = BLOCK_ROWS * ni
    out = np.empty((cap, W), np.int64)
    lab = np.empty(cap, np.int32)
    src = np.empty(cap, np.int64)
    hs = np.empty(cap, np.uint64)
    res = np.empty(cap, np.int64)
    own = np.empty((P, cap), np.int32)  # per partition, the indices of its successors
    rowcnt = np.empty(BLOCK_ROWS, np.int64)
    head, e, depth, level_end = 0, 0, 0, n0
    complete, reason, peak_queue = True, "", 0
    pacer = _Pacer(progress, progress_every, budget)
    pool = ThreadPoolExecutor(P, thread_name_prefix="kvheal-search")
    try:
        while head < n:
            if head == level_end:
                depth, level_end = depth + 1, n
                levels.append(head)
                store.new_level(head, n)
            hi = min(level_end, head + BLOCK_ROWS)
            if store.tagged and n + (hi - head) * ni >= fp.TAGGED_STATES:
                # numbers past 27 bits: every table again, untagged
                store.tagged = False
                for p in range(P):
                    tables[p] = None
                    tables[p] = np.full(_table_len(int(sizes[p])), -1, np.int32)
                    store.fill(tables[p], n, p, P)
            if budget is not None:
                need = _block_need(store, tables, (hi - head) * ni, n, e, len(dst), W, graph)
                if budget.room() < need:
                    complete = False
                    reason = f"the memory budget ({budget.describe()}) was reached"
                    break
            cuts = np.linspace(head, hi, P + 1).astype(np.int64)
            starts = (cuts[:-1] - head) * ni
            qb = store.rows()[1]
            ends = _all(
                pool,
                mod.expand_block,
                [
                    (
                        store.rows()[0],
                        cuts[t] - qb,
                        cuts[t + 1] - qb,
                        *targs,
                        out,
                        lab,
                        src,
                        hs,
                        rowcnt[cuts[t] - head :],
                        starts[t],
                    )
                    for t in range(P)
                ],
            )
            took = np.array(ends, np.int64) - starts
            tallies = _all(
                pool,
                fp.block_counts,
                [(hs, lab, starts[t], starts[t] + took[t], P, ni, own) for t in range(P)],
            )
            # mine[p][t]: how many of thread t's successors partition p owns
            mine = np.array([o for o, _ in tallies], np.int64).T.copy()
            owned = mine.sum(axis=1)
            counts += sum(c for _, c in tallies)
            pend = [store.pending(p, int(owned[p])) for p in range(P)]
            # each partition inserts its successors; one whose table would pass 3/4 full
            # stops, its table grows (the block's pending states entered again), it resumes
            found = [0] * P
            where = [(0, int(starts[0]))] * P  # (thread, position in own[p])
            todo = list(range(P))
            while todo:
                got = _all(
                    pool,
                    store.insert,
                    [
                        (
                            p,
                            tables[p],
                            out,
                            hs,
                            own,
                            starts,
                            mine[p],
                            res,
                            pend[p],
                            where[p][0],
                            where[p][1],
                            found[p],
                            3 * len(tables[p]) // 4 - int(sizes[p]),
                        )
                        for p in todo
                    ],
                )
                short = []
                for p, (c, t, i) in zip(todo, got):
                    found[p], where[p] = int(c), (int(t), int(i))
                    if t < P:
                        short.append(p)
                if short:
                    for p in short:
                        tables[p] = None
                    calls = [
                        (
                            store,
                            _table_len(int(sizes[p]) + found[p] + 1),
                            n,
                            p,
                            P,
                            store.pending_hashes(pend[p], found[p]),
                            pend[p][-1],
                        )
                        for p in short
                    ]
                    for p, table in zip(short, _all(pool, _refill, calls)):
                        tables[p] = table
                todo = short
            added = int(sum(found))
            bases = n + np.concatenate([[0], np.cumsum(found)[:-1]]).astype(np.int64)
            if store.make_room(n + added) and graph:
                rowptr = None
                rowptr_m.grow(store.capacity() + 1)
                rowptr = rowptr_m.array()
            _all(
                pool,
                store.settle,
                [(bases[p], found[p], tables[p], pend[p], out, src, head) for p in range(P)],
            )
            del pend
            store.block_done(n, n + added, head)
            sizes += np.array(found, np.int64)
            n += added
            block_edges = int(took.sum())
            if graph:
                if e + block_edges > len(dst):
                    size = max(_more(len(dst)), e + block_edges)
                    dst = elab = None
                    dst_m.grow(size)
                    elab_m.grow(size)
                    dst, elab = dst_m.array(), elab_m.array()
                at = e + np.concatenate([[0], np.cumsum(took)[:-1]]).astype(np.int64)
                _all(
                    pool,
                    fp.edges_of,
                    [
                        (
                            starts[t],
                            starts[t] + took[t],
                            res,
                            hs,
                            bases,
                            P,
                            dst,
                            lab,
                            elab,
                            at[t],
                        )
                        for t in range(P)
                    ],
                )
                rowptr[head + 1 : hi + 1] = e + np.cumsum(rowcnt[: hi - head])
            e += block_edges
            head = hi
            peak_queue = max(peak_queue, n - head)
            reason = pacer.tick(n, e, n - head)
            if reason:
                complete = False
                break
    except MemoryError:
        complete, reason = False, "the process ran out of memory"
    finally:
        pool.shutdown()
    visited = store.nbytes(n) + sum(t.nbytes for t in tables)
    tables = None
    if graph:
        rowptr = rowptr[: head + 1]
        e = int(rowptr[-1])
        dst, elab = dst[:e], elab[:e]
    else:
        rowptr = np.zeros(1, np.int64)
    lv = _levels(np.array(levels, np.int64), level_end, n)
    try:
        g, fails = store.finish(n, lv, rowptr, dst, elab, counts, e)
    except MemoryError:
        g, fails = store.graph_only(n, lv, rowptr, dst, elab, counts, e), None
        complete, reason = False, OUT_OF_MEMORY_AFTER
    g.figures = _figures(visited, g)
    if fingerprint:
        g.figures.update(store.collision_odds(n, e))
    return g, fails, complete, peak_queue, reason, depth


class _ExactStore:
    """The visited states of :func:`explore_parallel`, exactly: every state's words, in BFS
    order (also the queue)."""

    def __init__(
        self, ck: CompiledKernel, init: list[Any], graph: bool, props: list[Any], model: Any
    ) -> None:
        from . import fastpar

        self.ck, self.fp, self.model, self.props = ck, fastpar, model, props
        self.W = ck.packing.words
        self.workers = 1  # threads for the property bits at the end
        self._pend: dict[int, tuple[np.ndarray, ...]] = {}
        self.tagged = True  # table entries carry 4 bits of hash (fastpar.NUM_BITS)
        self.states = np.empty((1 << 16, self.W), np.int64)
        self.states[: len(init)] = ck.states_array(init)

    def capacity(self) -> int:
        return len(self.states)

    def fill(self, table: np.ndarray, n: int, p: int, parts: int) -> None:
        """Enter the first ``n`` states owned by partition ``p`` into ``table``."""
        self.fp.fill_part_rows(table, self.states, n, p, parts, self.tagged)

    def bytes_per_state(self) -> int:
        return 8 * self.W

    def new_level(self, head: int, n: int) -> None:
        pass

    def rows(self) -> tuple[np.ndarray, int]:
        return self.states, 0

    def pending(self, p: int, owned: int) -> tuple[np.ndarray, ...]:
        """Room for partition ``p``'s new states of a block (at most ``owned``): buffers
        kept from block to block (fresh pages cost a fault each on first write)."""
        bufs = self._pend.get(p)
        if bufs is None or len(bufs[0]) < owned:
            bufs = self._pend[p] = self._pending_buffers(max(owned, 1 << 16))
        return tuple(b[:owned] for b in bufs)

    def _pending_buffers(self, size: int) -> tuple[np.ndarray, ...]:
        return np.empty((size, self.W), np.int64), np.empty(size, np.int64)

    def pending_hashes(self, pend: tuple[np.ndarray, ...], c: int) -> np.ndarray:
        return self.ck.mod.hash_rows(pend[0][:c])

    def insert(self, p, table, out, hs, own, starts, counts, res, pend, t0, i0, c, limit):  # noqa: ANN001
        new, new_slot = pend
        return self.fp.insert_part(
            p,
            self.states,
            table,
            out,
            hs,
            own,
            starts,
            counts,
            res,
            new,
            new_slot,
            t0,
            i0,
            c,
            limit,
            self.tagged,
        )

    def make_room(self, n: int) -> bool:
        if n <= len(self.states):
            return False
        self.states = _grow(self.states, max(_more(len(self.states)), n))
        return True

    def settle(self, base, c, table, pend, out, src, head) -> None:  # noqa: ANN001
        self.fp.settle_part(base, c, table, self.states, pend[0], pend[1], self.tagged)

    def block_done(self, lo: int, hi: int, head: int) -> None:
        pass

    def nbytes(self, n: int) -> int:
        return self.states.itemsize * self.W * n  # no parent links

    def graph_only(self, n, levels, rowptr, dst, elab, counts, e) -> Any:  # noqa: ANN001
        states = self.states[:n]
        self.states = None
        return CompiledGraph(self.ck, states, levels, rowptr, dst, elab, counts, e)

    def finish(self, n, levels, rowptr, dst, elab, counts, e) -> tuple[Any, np.ndarray]:  # noqa: ANN001
        g = self.graph_only(n, levels, rowptr, dst, elab, counts, e)
        return g, _fails(self.model, self.ck, self.props, g.states, self.workers)


class _FingerprintStore(_ExactStore):
    """Hash compaction (``check --fingerprint``): per state only its 64-bit hash (8 bytes
    whatever the width of the state), the words kept just for the levels not yet expanded
    (the queue); properties evaluated as states are found; without the graph, each
    state's parent as a 2-byte offset into its block. Two states with one hash are taken
    for one, so a state may be missed: :meth:`collision_odds` says how likely that was.
    A trace is found again by replaying from an initial state, at each step the successor
    with the next state's hash."""

    def __init__(
        self, ck: CompiledKernel, init: list[Any], graph: bool, props: list[Any], model: Any
    ) -> None:
        super().__init__(ck, init, graph, props, model)
        n0 = len(init)
        self.init = self.states[:n0].copy()
        self.queue, self.qbase = self.states, 0
        self.fps = np.empty(1 << 16, np.uint64)
        self.fps[:n0] = ck.mod.hash_rows(self.init)
        self.graph = graph
        self.par = np.empty(0 if graph else 1 << 16, np.uint16)
        self.blocks: list[tuple[int, int]] = []  # (first new state, first row) per block
        self.fails = np.empty(1 << 16, mask_dtype(len(props)))
        self.fails[:n0] = _fails(model, ck, props, self.init)

    def capacity(self) -> int:
        return len(self.fps)

    def fill(self, table: np.ndarray, n: int, p: int, parts: int) -> None:
        self.fp.fill_part(table, self.fps[:n], p, parts, self.tagged)

    def bytes_per_state(self) -> int:
        return 8 + self.fails.itemsize + (0 if self.graph else 2)

    def new_level(self, head: int, n: int) -> None:
        # the rows before head are expanded: the queue keeps the level about to be expanded
        rows = self.queue[head - self.qbase : n - self.qbase]
        self.queue = np.empty((max(2 * len(rows), 1 << 16), self.W), np.int64)
        self.queue[: len(rows)] = rows
        self.qbase = head

    def rows(self) -> tuple[np.ndarray, int]:
        return self.queue, self.qbase

    def _pending_buffers(self, size: int) -> tuple[np.ndarray, ...]:
        return np.empty(size, np.uint64), np.empty(size, np.int64), np.empty(size, np.int64)

    def pending_hashes(self, pend: tuple[np.ndarray, ...], c: int) -> np.ndarray:
        return pend[0][:c]

    def insert(self, p, table, out, hs, own, starts, counts, res, pend, t0, i0, c, limit):  # noqa: ANN001
        new_fp, new_idx, new_slot = pend
        return self.fp.insert_part_fp(
            p,
            self.fps,
            table,
            hs,
            own,
            starts,
            counts,
            res,
            new_fp,
            new_idx,
            new_slot,
            t0,
            i0,
            c,
            limit,
            self.tagged,
        )

    def make_room(self, n: int) -> bool:
        if n - self.qbase > len(self.queue):
            self.queue = _grow(self.queue, max(2 * len(self.queue), n - self.qbase))
        if n <= len(self.fps):
            return False
        size = max(_more(len(self.fps)), n)
        self.fps, self.fails = _grow(self.fps, size), _grow(self.fails, size)
        if not self.graph:
            self.par = _grow(self.par, size)
        return True

    def settle(self, base, c, table, pend, out, src, head) -> None:  # noqa: ANN001
        new_fp, new_idx, new_slot = pend
        self.fp.settle_part_fp(
            base,
            c,
            table,
            self.fps,
            self.queue,
            self.qbase,
            out,
            src,
            new_fp,
            new_idx,
            new_slot,
            self.par,
            head,
            self.tagged,
        )

    def block_done(self, lo: int, hi: int, head: int) -> None:
        if hi > lo:
            self.fails[lo:hi] = _fails(
                self.model, self.ck, self.props, self.queue[lo - self.qbase : hi - self.qbase]
            )
            if not self.graph:
                self.blocks.append((lo, head))

    def nbytes(self, n: int) -> int:
        return (8 + (0 if self.graph else 2)) * n  # hashes, parent offsets (the queue apart)

    def graph_only(self, n, levels, rowptr, dst, elab, counts, e) -> Any:  # noqa: ANN001
        self.queue = None
        g = FingerprintGraph(self.ck, self.fps[:n], self.init, levels, rowptr, dst, elab, counts, e)
        g.par, g.blocks = self.par[:n], np.array(self.blocks or [(n, 0)], np.int64).reshape(-1, 2)
        return g

    def finish(self, n, levels, rowptr, dst, elab, counts, e) -> tuple[Any, np.ndarray]:  # noqa: ANN001
        return self.graph_only(n, levels, rowptr, dst, elab, counts, e), self.fails[:n]

    def collision_odds(self, n: int, transitions: int) -> dict[str, float]:
        """TLC's two estimates of the probability that two states shared a hash: from the
        counts, n * (transitions - n) / 2**64, and from the hashes themselves, 1 / (the
        least gap between two sorted hashes)."""
        calculated = n * max(transitions - n, 0) / 2.0**64
        fps = np.sort(self.fps[:n])
        gap = int(np.diff(fps).min()) if n > 1 else 0
        return {
            "fingerprint_collision_calculated": calculated,
            "fingerprint_collision_observed": 1.0 / gap if gap else 1.0,
        }


class FingerprintGraph(CompiledGraph):
    """A :class:`CompiledGraph` of hashes: no state's words are kept (``fps[i]`` is state
    i's hash). A parent comes from the graph as there, or else from the 2-byte offset kept
    per state; a trace's states and labels come from replaying it from its initial state,
    at each step the successor whose hash is the next state's."""

    def __init__(self, ck, fps, init, levels, rowptr, dst, label, counts, transitions) -> None:  # noqa: ANN001
        super().__init__(ck, fps.reshape(-1, 1), levels, rowptr, dst, label, counts, transitions)
        self.fps, self.init = fps, init

    def _expand_for(self, lo: int, hi: int, num: int) -> tuple[int, int]:
        j = int(np.searchsorted(self.blocks[:, 0], num, side="right")) - 1
        return int(self.blocks[j, 1]) + int(self.par[num]), -1

    @property
    def parent(self) -> np.ndarray:
        if self._parent is None:
            self._parent = np.array([self.parent_step(i)[0] for i in range(self.n)], np.int32)
        return self._parent

    def path_labels(self, num: int) -> list[int]:
        nums = [m for m, _ in self.path(num)]
        ck = self.ck
        words = self.init[nums[0]]
        labels = []
        for nxt in nums[1:]:
            succ = ck.successors(words)
            hashes = ck.mod.hash_rows(np.array([t for _, t in succ], np.int64).reshape(len(succ), -1))
            k = int(np.flatnonzero(hashes == self.fps[nxt])[0])
            labels.append(succ[k][0])
            words = np.array(succ[k][1], np.int64)
        return labels


def _refill(store, size, n, p, parts, pending, new_slot) -> np.ndarray:  # noqa: ANN001
    """Partition ``p``'s table grown to ``size`` slots: its numbered states (the first
    ``n``), then the block's pending ones (their slots into ``new_slot``)."""
    from . import fastpar as fp

    table = np.full(size, -1, np.int32)
    store.fill(table, n, p, parts)
    fp.fill_pending(table, pending, len(pending), new_slot, store.tagged)
    return table


def _block_need(store, tables, bound, n, e, ecap, W, graph) -> int:  # noqa: ANN001
    """Bytes one more block may allocate: its pending states (at most ``bound``), every
    table grown by half, the stored states (and rows) and the edges grown once each."""
    need = bound * (8 * W + 24) + sum(len(t) for t in tables) * 6
    # a grown array takes its new length in address space, but in resident memory only
    # the copy of what it holds (the rest is not written yet)
    grown = _more if _address_limited() else (lambda size: size)
    if n + bound > store.capacity():
        need += grown(store.capacity()) * (store.bytes_per_state() + (8 if graph else 0))
    if graph and e + bound > ecap:
        need += grown(ecap) * 6
    return need


def _all(pool: Any, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
    """``fn(*args)`` for each of ``calls`` on the pool's threads; their results in order."""
    return list(pool.map(lambda args: fn(*args), calls))

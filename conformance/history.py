"""Checking a recorded history of HTTP requests to a poll-and-heal worker (black box).

Pure: no I/O, no printing. `check_history(ops)` returns a `HistoryCheck` value with one
three-valued verdict per property (``holds`` / ``violated`` / ``unknown``) and, for each
property that does not hold, the smallest anomaly found as an `Anomaly` (the few operations
that show it, with a sentence). `step_table` and `sequence_svg` render an anomaly as a
Markdown step table and as a hand-written SVG sequence diagram (a lane per client, one for the
cache); both return strings.

A history is a list of `Op`: one HTTP request each, with its invocation and completion times
(monotonic seconds; `complete` is None when no answer came) and what it meant, already
decoded from the worker's dialect by the driver (`kvheal.conformance.audit`):

* ``post`` of message ``id``: ``ok`` True when acknowledged (2xx), False when refused (4xx:
  nothing was written, e.g. a 409 on a repost with different content, a 429), None when the
  outcome is unknown (5xx, timeout). ``may_skip_write``: acknowledged although the worker says
  it did not update the cache (``cached: false``).
* ``heal`` of ``id``: ``ok`` True when answered success, False when refused or answered "not
  found" (no write), None when unknown.
* ``read`` of the cache: ``ids`` are the message ids it returned, oldest first, restricted to
  the audit's own ids (the driver drops everything else); ``partial`` when the answer says more
  exists (``hasMore``), so absence in it proves nothing. Reads with ``ok`` not True are ignored.

The properties (each only ever talks about the audit's ids; eviction is assumed not to touch
them: the driver keeps its messages well under the cache's capacity):

Durability
    Every acknowledged post's id is in the *final read*: the complete (not partial) read that
    completed last. Violated if one is missing; unknown if the history has no such read
    invoked after every acknowledgement completed.
Duplicates
    No read returns an id twice. Unknown if the history has no successful read.
HealEffective
    A heal H of x answered success is *ineffective* iff some successful, non-partial read R
    invoked after H completed lacks x, and no other cache-writing operation W (a post or heal
    of any id that may have written: not refused) overlaps H in real time (W.invoke <
    H.complete and W.complete > H.invoke, an unanswered W counting as never complete). Why
    this is the precise test: if H wrote (or, with dedupe, saw) x at an instant p in its
    interval, the first later write whose value lacks x must have read its snapshot before p
    (a read-modify-write of a snapshot holding x keeps x) and written after p, so it overlaps H.
    Without such a W, no last-write-wins interleaving explains R. Violated if an ineffective
    heal exists; with ``reconciler=True`` (a background writer such as a sweeper, whose writes
    the history does not show, might have dropped x) it is unknown instead; holds otherwise,
    also when no heal answered success (vacuously).
Consistency
    Every read is explainable: there is an order of the operations' effects, consistent with
    real time (an operation that completed before another was invoked comes first), on a
    last-write-wins register holding the cache as a multiset of ids, in which each read
    returns the register's value (a partial read: a sub-multiset of it). Each post or heal of x
    is a read-modify-write: it captures the register's value s at one instant of its interval
    and later, still inside its interval, writes s plus x (or, if x is in s, may write nothing:
    the dedupe check). An acknowledged post and a heal answered success must write unless x was
    in s; refused ones never write; unknown ones and ``cached: false`` ones may or may not
    write, at any instant after their invocation. This explains the lost updates of a racy
    read-modify-write (two posts capture the same s; the later write drops the other's id) and
    the duplicates of a worker without dedupe, but not an id that appears before its post was
    invoked or without any post ("phantom"), nor an acknowledged write that vanishes with no
    concurrent writer. The search is porcupine's (a depth-first search over partial
    linearizations, memoized on the set of linearized steps and the register state, the
    history cut at quiescent instants into segments searched in turn), bounded by
    ``max_steps`` and ``max_seconds``: when the budget runs out the verdict is unknown. With
    ``reconciler=True`` the register also has writers the history does not show, so the test
    shrinks to: every id read was posted (or healed) by a request invoked before the read
    completed.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = [
    "Op",
    "Anomaly",
    "PropertyResult",
    "HistoryCheck",
    "check_history",
    "PROPERTIES",
    "HOLDS",
    "VIOLATED",
    "UNKNOWN",
    "step_table",
    "sequence_svg",
    "op_from_dict",
]

HOLDS, VIOLATED, UNKNOWN = "holds", "violated", "unknown"
PROPERTIES = ("Durability", "Duplicates", "HealEffective", "Consistency")
_INF = math.inf


@dataclass(frozen=True, slots=True)
class Op:
    """One request of the history, decoded (see the module docstring)."""

    index: int
    client: str
    kind: str  # "post" | "heal" | "read"
    invoke: float
    complete: float | None
    id: str | None = None
    ids: tuple[str, ...] | None = None
    ok: bool | None = True
    may_skip_write: bool = False
    partial: bool = False
    note: str = ""

    @property
    def end(self) -> float:
        """Completion time for real-time order; infinite when no answer came."""
        return _INF if self.complete is None else self.complete

    @property
    def writes(self) -> str:
        """How this op may change the cache: "must", "maybe" or "no"."""
        if self.kind == "read" or self.ok is False:
            return "no"
        if self.ok is None or self.may_skip_write:
            return "maybe"
        return "must"

    def label(self, focus: str | None = None) -> str:
        """A short description: `post a -> ok`, `read -> [a, b]`; a read of more than six ids is
        summarised by its count and what it holds of `focus`."""
        if self.kind == "read":
            if self.ok is not True:
                what = "failed"
            elif len(self.ids or ()) <= 6 or focus is None:
                what = "[" + ", ".join(self.ids or ()) + "]"
            else:
                n = (self.ids or ()).count(focus)
                what = f"{len(self.ids)} ids, " + (
                    f"{focus} x{n}" if n > 1 else "with " + focus if n else "without " + focus
                )
            what += " (partial)" if self.partial and self.ok is True else ""
            return f"read -> {what}" + (f" ({self.note})" if self.note and self.ok is not True else "")
        outcome = {True: "ok", False: "refused", None: "unknown"}[self.ok]
        extra = f" ({self.note})" if self.note else ""
        return f"{self.kind} {self.id} -> {outcome}{extra}"


def op_from_dict(data: dict) -> Op:
    """An `Op` from the `checked` object of a history line (`Op` fields by name)."""
    fields = dict(data)
    if fields.get("ids") is not None:
        fields["ids"] = tuple(fields["ids"])
    return Op(**{k: v for k, v in fields.items() if k in Op.__slots__})


@dataclass(frozen=True)
class Anomaly:
    """The smallest evidence found against a property: a sentence and the operations involved
    (in invocation order); `marks` says per op index what it shows."""

    property: str
    summary: str
    ops: tuple[Op, ...]
    marks: dict[int, str] = field(default_factory=dict)
    #: the message id the anomaly is about (long reads are summarised by what they hold of it)
    focus: str | None = None


@dataclass(frozen=True)
class PropertyResult:
    """One property's verdict, why, and the anomaly when violated (or, for unknown, the suspect)."""

    status: str
    reason: str
    anomaly: Anomaly | None = None


@dataclass(frozen=True)
class HistoryCheck:
    """Every property's result plus counts about the history (ops, acks, lost-after-ack, ...)."""

    properties: dict[str, PropertyResult]
    stats: dict[str, float | int]

    @property
    def status(self) -> str:
        """violated if any is, else unknown if any is, else holds."""
        statuses = {r.status for r in self.properties.values()}
        return VIOLATED if VIOLATED in statuses else UNKNOWN if UNKNOWN in statuses else HOLDS

    @property
    def exit_code(self) -> int:
        """0 nothing found, 1 an anomaly, 3 something unknown."""
        return {HOLDS: 0, VIOLATED: 1, UNKNOWN: 3}[self.status]


# -- the simple properties -------------------------------------------------------------------------
def _ok_reads(ops: Sequence[Op]) -> list[Op]:
    return [op for op in ops if op.kind == "read" and op.ok is True and op.ids is not None]


def _writers(ops: Sequence[Op]) -> list[Op]:
    return [op for op in ops if op.kind in ("post", "heal") and op.writes != "no" and op.id is not None]


def _overlaps(a: Op, b: Op) -> bool:
    return a.invoke < b.end and b.invoke < a.end


def _involving(ops: Iterable[Op], message_id: str) -> list[Op]:
    return [
        op for op in ops if op.id == message_id or (op.kind == "read" and op.ids and message_id in op.ids)
    ]


def _check_durability(ops: Sequence[Op]) -> PropertyResult:
    acked = [op for op in ops if op.kind == "post" and op.ok is True]
    if not acked:
        return PropertyResult(UNKNOWN, "no post was acknowledged")
    last_ack = max(op.end for op in acked)
    finals = [op for op in _ok_reads(ops) if not op.partial and op.invoke > last_ack]
    if not finals:
        return PropertyResult(UNKNOWN, "no complete read after the last acknowledgement")
    final = max(finals, key=lambda op: (op.end, op.index))
    present = set(final.ids or ())
    missing = sorted({op.id for op in acked} - present)
    if not missing:
        return PropertyResult(HOLDS, f"all {len({op.id for op in acked})} acknowledged ids in the final read")
    best = min(
        (_durability_anomaly(ops, m, final) for m in missing), key=lambda a: (len(a.ops), a.ops[0].index)
    )
    return PropertyResult(
        VIOLATED,
        f"{len(missing)} acknowledged id(s) missing from the final read: "
        + ", ".join(missing[:10])
        + (" ..." if len(missing) > 10 else ""),
        best,
    )


def _durability_anomaly(ops: Sequence[Op], m: str, final: Op) -> Anomaly:
    posts = [op for op in ops if op.kind == "post" and op.id == m and op.ok is not False]
    ack = next((op for op in posts if op.ok is True), posts[0])
    seen = [op for op in _ok_reads(ops) if m in (op.ids or ()) and op.invoke > ack.invoke]
    chosen: list[Op] = [ack]
    marks = {ack.index: "acknowledged"}
    if seen:
        # the poster's own last read that saw it (after it a tab of the original app stops healing it)
        last = max(seen, key=lambda op: (op.client == ack.client, op.end, op.index))
        chosen.append(last)
        marks[last.index] = f"last read that saw {m}"
        droppers = [w for w in _writers(ops) if w.id != m and w.invoke < last.end and w.end > last.invoke]
        for w in droppers[:3]:
            chosen.append(w)
            marks[w.index] = "in flight across that read: may write a snapshot without " + m
        after = last
    else:
        droppers = [w for w in _writers(ops) if w.id != m and _overlaps(w, ack)]
        for w in droppers[:3]:
            chosen.append(w)
            marks[w.index] = "concurrent with the post: may overwrite it"
        after = ack
    heals = [op for op in ops if op.kind == "heal" and op.id == m and op.invoke > after.invoke]
    for h in heals[-2:]:
        chosen.append(h)
        marks[h.index] = "heal of " + m
    chosen.append(final)
    marks[final.index] = f"final read: {m} missing"
    tail = "; no heal of it afterwards" if not heals else "; heals of it did not bring it back"
    summary = (
        f"{m} was acknowledged"
        + (f", then seen by a read of {last.client}" if seen else "")
        + f", and is missing from the final read{tail}"
    )
    return Anomaly("Durability", summary, _sorted_unique(chosen), marks, m)


def _sorted_unique(ops: Iterable[Op]) -> tuple[Op, ...]:
    return tuple(sorted({op.index: op for op in ops}.values(), key=lambda op: (op.invoke, op.index)))


def _check_duplicates(ops: Sequence[Op]) -> PropertyResult:
    reads = _ok_reads(ops)
    if not reads:
        return PropertyResult(UNKNOWN, "no successful read")
    bad = [(op, [i for i, n in Counter(op.ids).items() if n > 1]) for op in reads]
    bad = [(op, dup) for op, dup in bad if dup]
    if not bad:
        return PropertyResult(HOLDS, f"no id twice in {len(reads)} reads")
    read, dups = min(bad, key=lambda item: (item[0].end, item[0].index))
    m = sorted(dups)[0]
    involved = [op for op in ops if op.id == m and op.kind in ("post", "heal") and op.invoke < read.end]
    marks = {op.index: f"may add {m}" for op in involved}
    marks[read.index] = f"{m} twice"
    summary = (
        f"a read returned {m} {Counter(read.ids)[m]} times; {len(bad)} read(s) had duplicates "
        f"({len(involved)} post/heal requests for {m} before it)"
    )
    return PropertyResult(
        VIOLATED, summary, Anomaly("Duplicates", summary, _sorted_unique(involved + [read]), marks, m)
    )


def _check_heals(ops: Sequence[Op], reconciler: bool) -> PropertyResult:
    heals = [op for op in ops if op.kind == "heal" and op.ok is True and op.complete is not None]
    if not heals:
        return PropertyResult(HOLDS, "no heal answered success: nothing to check")
    reads = sorted((op for op in _ok_reads(ops) if not op.partial), key=lambda op: op.invoke)
    writers = _writers(ops)
    found: list[tuple[Op, Op]] = []
    for h in heals:
        if any(w.index != h.index and _overlaps(w, h) for w in writers):
            continue
        for r in reads:
            if r.invoke > h.complete and h.id not in (r.ids or ()):
                found.append((h, r))
                break
    if not found:
        return PropertyResult(
            HOLDS, f"{len(heals)} heal(s) answered success, none followed by an unexplained absence"
        )
    h, r = min(found, key=lambda hr: (hr[1].end - hr[0].invoke, hr[0].index))
    posts = [op for op in ops if op.kind == "post" and op.id == h.id and op.invoke < h.invoke][-1:]
    marks = {h.index: "answered success", r.index: f"{h.id} missing; no write overlapped the heal"}
    summary = (
        f"heal of {h.id} answered success, yet a later read lacks it and no other write overlapped "
        f"the heal ({len(found)} such heal(s))"
    )
    anomaly = Anomaly("HealEffective", summary, _sorted_unique(posts + [h, r]), marks, h.id)
    if reconciler:
        return PropertyResult(UNKNOWN, summary + "; a background writer might explain it", anomaly)
    return PropertyResult(VIOLATED, summary, anomaly)


# -- consistency: a porcupine-style search ------------------------------------------------------------
def _add(value: tuple[str, ...], m: str) -> tuple[str, ...]:
    return tuple(sorted(value + (m,)))


def _sub_multiset(small: tuple[str, ...], big: tuple[str, ...]) -> bool:
    cs, cb = Counter(small), Counter(big)
    return all(cb[k] >= n for k, n in cs.items())


class _Segment:
    """Operations between two quiescent instants; per op: kind flags and the ops it must follow."""

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops
        self.full = (1 << len(ops)) - 1
        self.is_read = [op.kind == "read" for op in ops]
        self.must = [op.writes == "must" for op in ops]
        self.want = [tuple(sorted(op.ids or ())) for op in ops]
        # ops that completed before op i was invoked: all their steps come first
        self.need = [sum(1 << j for j, other in enumerate(ops) if other.end < op.invoke) for op in ops]
        self.order = sorted(range(len(ops)), key=lambda i: (ops[i].invoke, ops[i].end))
        self.by_end = sorted(range(len(ops)), key=lambda i: (ops[i].end, ops[i].invoke))


def _segments(ops: list[Op]) -> list[_Segment]:
    segments, current, horizon = [], [], -_INF
    for op in sorted(ops, key=lambda op: (op.invoke, op.index)):
        if current and op.invoke > horizon:
            segments.append(_Segment(current))
            current = []
        current.append(op)
        horizon = max(horizon, op.end)
    if current:
        segments.append(_Segment(current))
    return segments


@dataclass
class _Deepest:
    segment: int = -1
    resolved: int = -1
    value: tuple[str, ...] = ()
    done: int = 0


def _producible(
    target: tuple[str, ...],
    value: tuple[str, ...],
    writers: list[tuple[str, tuple | None]],
    budget: list[int] | None = None,
) -> bool:
    """Whether writes of `writers` ((id, snapshot, or None when not captured yet)) could make the
    register hold `target`, starting from `value`: a necessary condition. Every value the
    register may still take is a *base* (the current value, or an opened writer's snapshot plus
    its id) plus a chain of writes of not-yet-opened writers, each adding its id once."""
    want = Counter(target)
    spare = Counter(m for m, snap in writers if snap is None)
    # a base must hold at least this many of each id (the rest can come from the spare writers)
    floor = [(m, n - spare[m]) for m, n in want.items() if n > spare[m]]
    size = len(target)
    for base in [value] + [_add(snap, m) for m, snap in writers if snap is not None]:
        if len(base) > size:
            continue
        have = Counter(base)
        if all(have[m] >= n for m, n in floor) and all(want[m] >= n for m, n in have.items()):
            return True
    return False


def _reads_feasible(
    seg: _Segment,
    opened: int,
    done: int,
    value: tuple[str, ...],
    snaps: tuple,
    ahead: list | None = None,
    absorbed: int = 0,
) -> bool:
    """False when a pending (not partial) read of the segment, or the first read of the next
    segment (`ahead`: its value and the ids of the writers that may precede it), can no longer be
    matched: no write that may still come before its completion can produce the value it returned."""
    snapmap = dict(snaps)
    if ahead:
        mine = [
            (seg.ops[i].id, snapmap.get(i))
            for i in range(len(seg.ops))
            if not seg.is_read[i] and not (done | absorbed) >> i & 1
        ]
        for target, later in ahead:
            if not _producible(target, value, mine + later):
                return False
    checked = 0
    for q in seg.by_end:
        if not seg.is_read[q] or done >> q & 1 or seg.ops[q].partial:
            continue
        end = seg.ops[q].end
        writers = [
            (seg.ops[i].id, snapmap.get(i))
            for i in range(len(seg.ops))
            if not seg.is_read[i] and not (done | absorbed) >> i & 1 and seg.ops[i].invoke < end
        ]
        if not _producible(seg.want[q], value, writers):
            return False
        checked += 1
        if checked == 8:
            break
    return True


def _search(segments: list[_Segment], max_steps: int, max_seconds: float, rng: random.Random | None = None):
    """(status, steps, deepest); status HOLDS, VIOLATED or UNKNOWN.

    A state is (segment, opened, done, absorbed, committed, value, snaps). `opened` ops have
    captured their snapshot (kept in `snaps`); `done` ops are resolved. A must-write op whose
    write nobody sees (a lost update) is *absorbed*: its write is placed immediately before the
    next write of any op, so its snapshot does not matter, which spares the search the snapshots
    of every lost write of a burst of racing posts. Absorbed ops count as unresolved for
    real-time order until that next write resolves them. If an op is lost in some explanation,
    it is lost at the first write after it became enabled in another (moving an unseen write
    earlier breaks nothing, and resolves the op sooner), so ops enabled when a write happens and
    not absorbed become `committed`: visible writers. States whose pending reads can no longer be
    produced (`_reads_feasible`) are cut. Moves are tried towards the values the pending reads
    want: ops whose id no pending read has are absorbed first, the others opened first.
    """
    deadline = time.monotonic() + max_seconds
    seen: set = set()
    steps = 0
    deepest = _Deepest()
    # the value the first read after each segment wants: where a segment without reads should head
    # the first (not partial) read after each segment: its value and the ids of the writers that
    # may precede it (segments without reads in between pass it on, adding their writers)
    lookahead: list[list] = [[] for _ in segments]
    for k in range(len(segments) - 2, -1, -1):
        later = segments[k + 1]
        firsts = [i for i in later.by_end if later.is_read[i] and not later.ops[i].partial][:1]
        if firsts:
            lookahead[k] = [
                (
                    later.want[q],
                    [
                        (later.ops[i].id, None)
                        for i in range(len(later.ops))
                        if not later.is_read[i] and later.ops[i].invoke < later.ops[q].end
                    ],
                )
                for q in firsts
            ]
        else:
            passed = [(later.ops[i].id, None) for i in range(len(later.ops)) if not later.is_read[i]]
            lookahead[k] = [(target, writers + passed) for target, writers in lookahead[k + 1]]
    stack = [(0, 0, 0, 0, 0, (), ())]
    while stack:
        state = stack.pop()
        if state[0] == len(segments):
            return HOLDS, steps, deepest
        if state in seen:
            continue
        seen.add(state)
        seg_i, opened, done, absorbed, committed, value, snaps = state
        steps += 1
        if steps > max_steps or (steps & 1023 == 0 and time.monotonic() > deadline):
            return UNKNOWN, steps, deepest
        seg = segments[seg_i]
        # reads that match take effect at once (safe: a read changes nothing and unblocks others)
        progress = True
        while progress:
            progress = False
            for i in seg.order:
                if (
                    seg.is_read[i]
                    and not done >> i & 1
                    and seg.need[i] & ~done == 0
                    and (_sub_multiset(seg.want[i], value) if seg.ops[i].partial else seg.want[i] == value)
                ):
                    done |= 1 << i
                    progress = True
        if done == seg.full:
            stack.append((seg_i + 1, 0, 0, 0, 0, value, ()))
            continue
        resolved = bin(done).count("1")
        if seg_i > deepest.segment or (seg_i == deepest.segment and resolved > deepest.resolved):
            deepest.segment, deepest.resolved, deepest.value, deepest.done = seg_i, resolved, value, done
        if not _reads_feasible(seg, opened, done, value, snaps, lookahead[seg_i], absorbed):
            continue
        ahead = lookahead[seg_i][0][0] if lookahead[seg_i] else ()
        wanted_ids = set(ahead).union(
            *(seg.want[i] for i in range(len(seg.ops)) if seg.is_read[i] and not done >> i & 1)
        )
        enabled = [
            i for i in seg.order if not done >> i & 1 and not seg.is_read[i] and not seg.need[i] & ~done
        ]
        # ops enabled now and neither opened nor absorbed: after a write they can no longer be lost
        fresh = sum(1 << i for i in enabled if seg.must[i] and not (opened | absorbed | committed) >> i & 1)
        q = next((i for i in seg.by_end if seg.is_read[i] and not done >> i & 1), None)
        target = seg.want[q] if q is not None else ahead
        tset = set(target)
        before_q = seg.need[q] if q is not None else -1
        snapmap = dict(snaps)
        moves = []  # (priority, state): lower first
        for i in enabled:
            if absorbed >> i & 1:
                continue
            op = seg.ops[i]
            bit = 1 << i
            if opened >> i & 1:
                snap = snapmap[i]
                rest = tuple(p for p in snaps if p[0] != i)
                written = _add(snap, op.id)
                toward = Counter(written) <= Counter(target)
                # the write resolves every absorbed op (their writes are placed just before it)
                moves.append(
                    (
                        1 if toward else 4,
                        (seg_i, opened & ~bit, done | bit | absorbed, 0, committed | fresh, written, rest),
                    )
                )
                if op.id in snap or not seg.must[i]:
                    moves.append((3, (seg_i, opened & ~bit, done | bit, absorbed, committed, value, rest)))
                continue
            # open (capture the value now) or lose (absorb; for a maybe-write op: skip)
            if op.id not in wanted_ids:  # no pending read has it: most likely a lost update
                keep, lose = 6, 0
            elif before_q & bit:  # must precede the next read: head for its value
                keep, lose = (2, 5) if op.id in tset else (4, 5)
            elif op.id in tset:
                keep, lose = 3, 6
            else:
                keep, lose = 5, 6
            moves.append(
                (
                    keep,
                    (
                        seg_i,
                        opened | bit,
                        done,
                        absorbed,
                        committed | bit,
                        value,
                        tuple(sorted(snaps + ((i, value),))),
                    ),
                )
            )
            if not seg.must[i]:
                moves.append((lose, (seg_i, opened, done | bit, absorbed, committed, value, snaps)))
            elif not committed & bit:
                moves.append((lose, (seg_i, opened, done, absorbed | bit, committed, value, snaps)))
        if rng is not None:  # a restart: the same moves, in a perturbed order
            moves = [(p + rng.uniform(0, 3), m) for p, m in moves]
        moves.sort(key=lambda pm: pm[0])
        stack.extend(move for _, move in reversed(moves))  # the best move is tried first
    return VIOLATED, steps, deepest


def _restarts(segments: list[_Segment], max_steps: int, max_seconds: float):
    """`_search` with restarts: a depth-first search that took a wrong turn early can spend its
    whole budget below it, so the budget is split between the plain heuristic order and orders
    perturbed by seeded random noise (reproducible), with growing budgets. Any attempt that ends
    without exhausting its budget is conclusive (the search is complete whatever the order)."""
    deadline = time.monotonic() + max_seconds
    total, deepest, attempt = 0, None, 0
    budget = max(1, max_steps // 16)
    while True:
        left = max_steps - total
        seconds = deadline - time.monotonic()
        rng = None if attempt == 0 else random.Random(attempt)
        status, steps, found = _search(segments, min(budget, left), max(0.0, seconds), rng)
        total += steps
        if deepest is None or (found.segment, found.resolved) > (deepest.segment, deepest.resolved):
            deepest = found
        if status != UNKNOWN or total >= max_steps or time.monotonic() >= deadline:
            return status, total, deepest if status != VIOLATED else found
        attempt += 1
        budget = budget * 3 // 2 + 1


def _check_consistency(
    ops: Sequence[Op], reconciler: bool, max_steps: int, max_seconds: float
) -> tuple[PropertyResult, int]:
    reads = _ok_reads(ops)
    if not reads:
        return PropertyResult(UNKNOWN, "no successful read"), 0
    writers = _writers(ops)
    first_writer: dict[str, float] = {}
    for w in writers:
        first_writer[w.id] = min(first_writer.get(w.id, _INF), w.invoke)
    for r in sorted(reads, key=lambda op: (op.end, op.index)):
        for m in r.ids or ():
            if first_writer.get(m, _INF) >= r.end:
                late = [w for w in writers if w.id == m]
                what = (
                    "no request that may have written it was sent"
                    if not late
                    else "its first post or heal was invoked only after the read completed"
                )
                summary = f"a read returned {m}, but {what}"
                marks = {r.index: f"returned {m}"} | {w.index: "invoked later" for w in late}
                return PropertyResult(
                    VIOLATED,
                    summary,
                    Anomaly("Consistency", summary, _sorted_unique([r] + late[:2]), marks, m),
                ), 0
    if reconciler:
        return PropertyResult(HOLDS, "every id read was posted before (reconciler: no order searched)"), 0
    segments = _segments(reads + writers)
    status, steps, deepest = _restarts(segments, max_steps, max_seconds)
    if status == HOLDS:
        return PropertyResult(
            HOLDS,
            f"{len(reads)} reads explained by an order of {len(writers)} writes "
            f"({steps} search steps, {len(segments)} segments)",
        ), steps
    if status == UNKNOWN:
        return PropertyResult(
            UNKNOWN,
            f"search budget exhausted after {steps} steps (segment {deepest.segment + 1} of {len(segments)})",
        ), steps
    everything = sorted(reads + writers, key=lambda op: (op.invoke, op.index))
    return PropertyResult(
        VIOLATED, *_consistency_anomaly(segments[deepest.segment], deepest, everything)
    ), steps


def _consistency_anomaly(seg: _Segment, deepest: _Deepest, everything: list[Op]) -> tuple[str, Anomaly]:
    pending = [i for i in seg.order if seg.is_read[i] and not deepest.done >> i & 1]
    culprit = min(pending, key=lambda i: (seg.ops[i].end, seg.ops[i].index)) if pending else seg.order[-1]
    read = seg.ops[culprit]
    got = Counter(read.ids or ())
    had = Counter(deepest.value)
    # ids read but not explained, or explained but not read, and writes that had to precede the
    # read but could not be placed
    stuck = {
        seg.ops[i].id
        for i in range(len(seg.ops))
        if not seg.is_read[i] and seg.need[culprit] >> i & 1 and not deepest.done >> i & 1
    }
    diff = sorted(set((got - had) + (had - got)) | stuck) or sorted(got)
    chosen = [read]
    for m in diff:  # the last writes of each such id before the read, and the last read that saw it
        chosen += [op for op in everything if op.kind != "read" and op.id == m and op.invoke < read.end][-2:]
        chosen += [
            op for op in everything if op.kind == "read" and op.end <= read.invoke and m in (op.ids or ())
        ][-1:]
    marks = {read.index: "no order of the writes explains this"}
    for op in chosen:
        if op.index != read.index and op.kind != "read":
            marks[op.index] = (
                "must take effect before the read" if op.end < read.invoke else "concurrent with the read"
            )
    explained = ", ".join(sorted(deepest.value)) or "nothing"
    summary = (
        f"a read returned [{', '.join(read.ids or ())}], which no order of the cache writes consistent "
        f"with real time explains (the closest order had [{explained}] at that point; differing: "
        f"{', '.join(diff)})"
    )
    return summary, Anomaly("Consistency", summary, _sorted_unique(chosen), marks, diff[0] if diff else None)


def _stats(ops: Sequence[Op]) -> dict[str, float | int]:
    acked = [op for op in ops if op.kind == "post" and op.ok is True]
    reads = _ok_reads(ops)
    lost_after_ack = set()
    for post in acked:
        for r in reads:
            if not r.partial and r.invoke > post.end and post.id not in (r.ids or ()):
                lost_after_ack.add(post.id)
                break
    times = [t for op in ops for t in (op.invoke, op.complete) if t is not None]
    return {
        "requests": len(ops),
        "posts": sum(op.kind == "post" for op in ops),
        "acknowledged": len({op.id for op in acked}),
        "reads": sum(op.kind == "read" for op in ops),
        "heals": sum(op.kind == "heal" for op in ops),
        "unanswered": sum(op.complete is None for op in ops),
        "refused": sum(op.ok is False for op in ops),
        "missing_after_ack": len(lost_after_ack),
        "seconds": round(max(times) - min(times), 3) if times else 0.0,
    }


def check_history(
    ops: Sequence[Op], *, reconciler: bool = False, max_steps: int = 500_000, max_seconds: float = 30.0
) -> HistoryCheck:
    """Every property's verdict on a history (see the module docstring for the definitions).

    `max_steps`/`max_seconds` bound the consistency search (unknown when exhausted);
    `reconciler` says the worker has writers the history does not show (a sweeper).
    """
    ops = list(ops)
    started = time.monotonic()
    consistency, steps = _check_consistency(ops, reconciler, max_steps, max_seconds)
    stats = _stats(ops) | {"search_steps": steps, "check_seconds": round(time.monotonic() - started, 3)}
    return HistoryCheck(
        {
            "Durability": _check_durability(ops),
            "Duplicates": _check_duplicates(ops),
            "HealEffective": _check_heals(ops, reconciler),
            "Consistency": consistency,
        },
        stats,
    )


# -- rendering -------------------------------------------------------------------------------------
def _ms(t: float | None, origin: float) -> str:
    return "-" if t is None else f"{(t - origin) * 1000:.1f}"


def step_table(anomaly: Anomaly, origin: float | None = None) -> str:
    """The anomaly as a Markdown step table: step, client, request, invoked/completed (ms), what it shows."""
    origin = min(op.invoke for op in anomaly.ops) if origin is None else origin
    lines = [
        f"**{anomaly.property}**: {anomaly.summary}",
        "",
        "| step | # | client | request and answer | invoked ms | completed ms | shows |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, op in enumerate(anomaly.ops, 1):
        label = op.label(anomaly.focus).replace("|", "\\|")
        lines.append(
            f"| {n} | {op.index} | {op.client} | {label} | {_ms(op.invoke, origin)} | "
            f"{_ms(op.complete, origin)} | {anomaly.marks.get(op.index, '')} |"
        )
    return "\n".join(lines) + "\n"


def sequence_svg(anomaly: Anomaly) -> str:
    """The anomaly as an SVG sequence diagram: a lane per client and one for the cache; each
    request an arrow from its client to the cache at its invocation and back at its completion
    (ordered by time; an unanswered request has no return arrow)."""
    clients = list(dict.fromkeys(op.client for op in anomaly.ops))
    lanes = clients + ["cache"]
    events = []
    for op in anomaly.ops:
        events.append((op.invoke, 0, op))
        if op.complete is not None:
            events.append((op.complete, 1, op))
    events.sort(key=lambda e: (e[0], e[1], e[2].index))
    lane_w, top, row = 190, 70, 34
    width = lane_w * len(lanes) + 260
    height = top + row * (len(events) + 1) + 20
    x = {name: 100 + lane_w * i for i, name in enumerate(lanes)}
    origin = events[0][0] if events else 0.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="12">',
        '<defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
        f'<text x="10" y="20" font-weight="bold">{escape(anomaly.property)}</text>',
        f'<text x="10" y="38">{escape(anomaly.summary[:160])}</text>',
    ]
    for name in lanes:
        out.append(
            f'<text x="{x[name]}" y="{top - 10}" text-anchor="middle" font-weight="bold">{escape(name)}</text>'
        )
        out.append(
            f'<line x1="{x[name]}" y1="{top}" x2="{x[name]}" y2="{height - 10}" stroke="#999" '
            'stroke-dasharray="4,3"/>'
        )
    step = {op.index: n for n, op in enumerate(anomaly.ops, 1)}
    for k, (t, is_return, op) in enumerate(events):
        y = top + row * (k + 1)
        a, b = (x[op.client], x["cache"]) if not is_return else (x["cache"], x[op.client])
        mark = anomaly.marks.get(op.index, "")
        color = "#c00" if is_return and mark else "#000"
        out.append(
            f'<line x1="{a}" y1="{y}" x2="{b}" y2="{y}" stroke="{color}" marker-end="url(#a)"'
            + (' stroke-dasharray="6,3"' if is_return else "")
            + "/>"
        )
        text = (
            f"{step[op.index]}. {op.kind} {op.id or ''}".rstrip()
            if not is_return
            else f"{step[op.index]}. " + op.label(anomaly.focus).split(" -> ", 1)[-1]
        )
        out.append(f'<text x="{min(a, b) + 6}" y="{y - 5}">{escape(text[:60])}</text>')
        out.append(f'<text x="10" y="{y + 4}" fill="#666">{(t - origin) * 1000:.1f} ms</text>')
        if is_return and mark:
            out.append(f'<text x="{x["cache"] + 12}" y="{y + 4}" fill="#c00">{escape(mark[:70])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"

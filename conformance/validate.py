"""Trace validation: is a log of KV operations from a free run (several worker processes, real
SQLite or Redis, many tabs, no gates) a behaviour of the model?

The log is `LoggedKV`'s JSON lines: one record per KV call with its request id (`rid`), endpoint
(`post`, `heal`, `read`, `sweep`), message id (`mid`), what it read or wrote (the cache as a list
of ids), and the wall-clock interval `t0..t1` of the call. Each call took effect at one instant
inside its interval, so the order of the lines is not the order of the effects: the validator
searches for an order that respects real time (a call that ended before another began comes
first) in which every call is a legal step of SPEC §4 from the state the previous ones reached
(a linearization, as porcupine does for registers). Steps that leave no KV trace (PostAck,
PollDone, the pending lists) are not in the log; what they imply is checked instead: a heal of
m comes from a tab that has seen a cache without m, after m's post finished its cache step, and
without shared_pending only from m's owner.

Per call (m is the request's message, `cache` the state's cache, `add` SPEC §3's):

    post  get comment:m        the ownership check (a stutter: a repost is refused or a retry)
          put comment:m        PostKey(m): m not yet posted (with repost, PostAgain(m) when it
                               was: a new request sends a failed POST again)
          get recent:comments  PostRead(m): reads `cache`
          put recent:comments  PostWrite(m): writes add(s, m) for the s it read (with dedupe,
                               never when m was in s)
          get_versioned / cas  PostCache(m) (atomic_cache): the read sees `cache` and its
                               version; the swap succeeds iff the version is unchanged and then
                               writes add(cache, m); a failed swap is a stutter
          update               PostCache(m) (atomic_cache, the store's own read-modify-write):
                               reads `cache`, writes add(cache, m) (nothing if that changes nothing)
    heal  get comment:m        HealKey(m); then as a post's cache update (HealRead/HealWrite/HealCache)
    read  get recent:comments  PollRead: reads `cache`
    sweep list comment:        SweepList: exactly the stored ids; then its cache read, body reads
                               (stutters) and a write of the snapshot plus the missing ids

A record ``{"op": "clear"}`` (written by `kvheal stress --record` between runs) starts a fresh
store; each run is validated on its own.

Results are three-valued, like porcupine's: ``ok``, ``illegal`` (with the first call no order
can explain, the reason and the state there) and ``unknown`` (the search budget ran out).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvheal.impl.messages import CACHE_KEY, COMMENT_PREFIX
from kvheal.model.config import Config
from kvheal.model.definition import KVHEAL
from kvheal.model.results import Verdict

__all__ = [
    "OK",
    "ILLEGAL",
    "UNKNOWN",
    "Validation",
    "validate_records",
    "validate_log",
    "load_log",
    "infer_ids",
]

OK, ILLEGAL, UNKNOWN = "ok", "illegal", "unknown"

_STRESS_ID = re.compile(r"^r(\d+)-t(\d+)-m(\d+)$")
_TAB_RID = re.compile(r"^t(\d+)-")


@dataclass
class Validation:
    """The verdict on one log (every run in it)."""

    status: str
    operations: int
    runs: int = 1
    #: for ``illegal``: the log line (1-based), the record, why no order explains it, the state
    line: int | None = None
    record: dict | None = None
    reason: str = ""
    state: dict = field(default_factory=dict)
    #: which invariants (SPEC §7) the states reached violate, e.g. NoDuplicates: legal in the
    #: seed design, a finding about the design rather than about conformance
    invariant_violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def verdict(self) -> Verdict:
        """The shared verdict on "the log is a behaviour of the model": ok holds, an illegal
        operation violates it, a search that ran out of budget leaves it unknown."""
        return {OK: Verdict.HOLDS, ILLEGAL: Verdict.VIOLATED}.get(self.status, Verdict.UNKNOWN)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "verdict": str(self.verdict),
            "operations": self.operations,
            "runs": self.runs,
            "line": self.line,
            "record": self.record,
            "reason": self.reason or None,
            "state": self.state or None,
            "invariant_violations": self.invariant_violations,
        }


def load_log(path: str) -> list[dict]:
    """The records of a JSONL operation log; ValueError naming the first bad line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise ValueError(f"{path}:{n}: not a JSON line") from None
            if not isinstance(record, dict) or "op" not in record:
                raise ValueError(f"{path}:{n}: not an operation record")
            record["_line"] = n
            out.append(record)
    return out


def infer_ids(records: Iterable[Mapping]) -> list[str]:
    """The message ids of one run in timestamp order, from its `put comment:` records: ids of
    the form ``r<run>-t<tab>-m<m>`` (kvheal stress) by m, ids ``<ms>-<rest>`` by their time."""
    ids = sorted(
        {
            r["key"][len(COMMENT_PREFIX) :]
            for r in records
            if r.get("op") == "put" and str(r.get("key", "")).startswith(COMMENT_PREFIX)
        }
    )
    if all(_STRESS_ID.match(i) for i in ids):
        return sorted(ids, key=lambda i: int(_STRESS_ID.match(i).group(3)))
    if all(re.match(r"^\d+", i) for i in ids):
        return sorted(ids, key=lambda i: (int(re.match(r"^\d+", i).group(0)), i))
    raise ValueError("cannot tell the messages' timestamp order from their ids; pass the ids in order")


class _Illegal(Exception):
    pass


@dataclass(frozen=True)
class _State:
    cache: tuple
    version: int
    stored: frozenset
    phases: tuple  # sorted (rid, phase) pairs
    reads: frozenset  # (tab, frozenset of ids seen missing) is too big: (tab, m) pairs seen missing
    cache_done: frozenset  # messages whose post finished its cache step


class _Checker:
    def __init__(self, ids: Sequence[str], tabs: int, cap: int, variants: frozenset[str]) -> None:
        self.index = {real: m for m, real in enumerate(ids)}
        self.ids = list(ids)
        self.tabs = tabs
        self.cap = cap
        self.dedupe = "dedupe" in variants
        # Which cache updates are one atomic step (a versioned read and a swap) and which a
        # read then a put: the model's definition says, per actor, which KV calls are steps.
        calls = KVHEAL.kv_calls(Config.make(tabs=tabs, variants=variants))
        self.atomic_for = {
            "post": "cas cache" in calls.get("request", ()),
            "heal": "cas cache" in calls.get("heal", ()),
            "sweep": "cas cache" in calls.get("sweeper", ()),
        }
        self.shared = "shared_pending" in variants
        self.repost = "repost" in variants

    def m(self, real: Any) -> int:
        if real not in self.index:
            raise _Illegal(f"id {real!r} is not a message of this run")
        return self.index[real]

    def value(self, summary: Any) -> tuple:
        if summary is None:
            return ()
        if not isinstance(summary, list):
            raise _Illegal(f"the cache value {summary!r} is not a list of ids")
        return tuple(self.m(i) for i in summary)

    def add(self, s: tuple, ms: Iterable[int]) -> tuple:
        return tuple(sorted(s + tuple(ms)))[-self.cap :]

    def step(self, st: _State, r: Mapping) -> _State:
        """The state after record `r`, or _Illegal with the reason."""
        op, key, rid, endpoint = (
            r.get("op"),
            r.get("key", r.get("prefix", "")),
            r.get("rid"),
            r.get("endpoint"),
        )
        if "error" in r:
            return st  # a failed call changed nothing we can see (the backend refused it)
        phases = dict(st.phases)
        phase = phases.get(rid)
        cache, version, stored = st.cache, st.version, set(st.stored)
        reads, done = set(st.reads), set(st.cache_done)
        mid = r.get("mid")

        def read_cache() -> tuple:
            got = self.value(r.get("value"))
            if got != cache:
                raise _Illegal(f"read {list(got)} but the cache is {list(cache)}")
            return got

        def cache_step(m: int, owner_kind: str) -> None:
            nonlocal cache, version, phase
            atomic = self.atomic_for[owner_kind]
            if op == "get" and key == CACHE_KEY and not atomic:
                if phase != ("key",):
                    raise _Illegal(f"{owner_kind} {m} reads the cache out of turn ({phase})")
                s = read_cache()
                phase = ("read", s)
                if self.dedupe and m in s:
                    phase = ("done",)
                    if owner_kind == "post":
                        done.add(m)
            elif op == "put" and key == CACHE_KEY and not atomic:
                if not phase or phase[0] != "read":
                    raise _Illegal(f"{owner_kind} {m} writes the cache without reading it first")
                want = self.add(phase[1], [m])
                got = self.value(r.get("value"))
                if got != want:
                    raise _Illegal(
                        f"{owner_kind} {m} wrote {list(got)}; add({list(phase[1])}, {m}) is {list(want)}"
                    )
                cache, version, phase = got, version + 1, ("done",)
                if owner_kind == "post":
                    done.add(m)
            elif op == "get_versioned" and key == CACHE_KEY and atomic:
                if not phase or phase[0] not in ("key", "vread"):
                    raise _Illegal(f"{owner_kind} {m} reads the cache out of turn ({phase})")
                s = read_cache()
                if r.get("version") is not None and r["version"] != version:
                    raise _Illegal(f"read version {r['version']} but the cache is at version {version}")
                phase = ("vread", s, version)
                if self.dedupe and m in s:
                    phase = ("done",)
                    if owner_kind == "post":
                        done.add(m)
            elif op == "cas" and key == CACHE_KEY and atomic:
                if not phase or phase[0] != "vread":
                    raise _Illegal(f"{owner_kind} {m} swaps without a versioned read")
                expected_ok = phase[2] == version
                if r.get("expected") is not None and r["expected"] != phase[2]:
                    raise _Illegal(f"swap expects version {r['expected']}, its read saw {phase[2]}")
                if bool(r.get("ok")) != expected_ok:
                    raise _Illegal(
                        f"the swap {'succeeded' if r.get('ok') else 'failed'} but the version "
                        f"{'moved' if not expected_ok else 'did not move'} since its read"
                    )
                if expected_ok:
                    want = self.add(phase[1], [m])
                    got = self.value(r.get("value"))
                    if got != want:
                        raise _Illegal(f"{owner_kind} {m} swapped in {list(got)}; add is {list(want)}")
                    cache, version, phase = got, version + 1, ("done",)
                    if owner_kind == "post":
                        done.add(m)
                else:
                    phase = ("key",)
            elif op == "update" and key == CACHE_KEY and atomic:
                # the store's own atomic read-modify-write (KV.update): the whole PostCache step
                if phase != ("key",):
                    raise _Illegal(f"{owner_kind} {m} updates the cache out of turn ({phase})")
                s = self.value(r.get("read"))
                if s != cache:
                    raise _Illegal(
                        f"{owner_kind} {m}'s atomic update read {list(s)} but the cache is {list(cache)}"
                    )
                want = self.add(s, [m])
                if r.get("ok"):
                    got = self.value(r.get("value"))
                    if (self.dedupe and m in s) or got != want:
                        raise _Illegal(
                            f"{owner_kind} {m} updated the cache to {list(got)}; add is {list(want)}"
                        )
                    cache, version = got, version + 1
                elif not ((self.dedupe and m in s) or want == s):
                    raise _Illegal(
                        f"{owner_kind} {m}'s atomic update wrote nothing, but add changes the cache"
                    )
                phase = ("done",)
                if owner_kind == "post":
                    done.add(m)
            else:
                raise _Illegal(f"{owner_kind} {m} makes a call the design has no step for")

        if endpoint == "post":
            m = self.m(mid)
            if op == "get" and key == COMMENT_PREFIX + str(mid) and phase is None:
                # the worker's ownership check before PostKey (a repost of a stored id is
                # refused or answered as a retry): a read, a step that changes nothing
                if (r.get("value") is not None) != (m in stored):
                    raise _Illegal(
                        f"post read comment:{mid} as {r.get('value')!r}, stored is {sorted(stored)}"
                    )
            elif op == "put" and key == COMMENT_PREFIX + str(mid):
                if phase is not None or (m in stored and not self.repost):
                    raise _Illegal(f"message {m} is posted twice")
                stored.add(m)
                phase = ("key",)
            else:
                if phase is None:
                    raise _Illegal(f"post {m} touches the cache before writing its key")
                cache_step(m, "post")
        elif endpoint == "heal":
            m = self.m(mid)
            if op == "get" and key == COMMENT_PREFIX + str(mid) and phase is None:
                if m not in done:
                    raise _Illegal(f"heal of {m} before its post finished the cache step (not acknowledged)")
                tab = _tab(rid)
                if tab is not None:
                    if not self.shared and tab != m % self.tabs:
                        raise _Illegal(f"tab {tab} heals message {m}, which is tab {m % self.tabs}'s")
                    if (tab, m) not in reads:
                        raise _Illegal(f"tab {tab} heals {m} without a poll that missed it")
                got = r.get("value")
                if (got is not None) != (m in stored):
                    raise _Illegal(f"heal read comment:{mid} as {got!r}, stored is {sorted(stored)}")
                phase = ("key",) if got is not None else ("done",)
            else:
                if phase is None:
                    raise _Illegal(f"heal of {m} touches the cache before reading the message")
                cache_step(m, "heal")
        elif endpoint == "read":
            if op != "get" or key != CACHE_KEY:
                raise _Illegal("a poll makes a call other than reading the cache")
            s = read_cache()
            tab = _tab(rid)
            if tab is not None:
                reads |= {(tab, m) for m in range(len(self.ids)) if m not in s}
        elif endpoint == "sweep":
            if op == "list":
                if phase is not None:
                    raise _Illegal("the sweeper lists twice in one pass")
                keys = r.get("keys") or []
                listed = frozenset(self.m(k[len(COMMENT_PREFIX) :]) for k in keys)
                if listed != frozenset(stored):
                    raise _Illegal(f"the sweeper listed {sorted(listed)}, stored is {sorted(stored)}")
                phase = ("listed", listed)
            elif op == "get" and str(key).startswith(COMMENT_PREFIX):
                got = r.get("value")
                if (got is not None) != (self.m(key[len(COMMENT_PREFIX) :]) in stored):
                    raise _Illegal(f"the sweeper read {key} as {got!r}, stored is {sorted(stored)}")
            elif not phase:
                raise _Illegal("the sweeper touches the cache before listing")
            elif op == "get" and key == CACHE_KEY and not self.atomic_for["sweep"]:
                phase = ("read", phase[1], read_cache())
            elif op == "put" and key == CACHE_KEY and not self.atomic_for["sweep"] and phase[0] == "read":
                listed, s = phase[1], phase[2]
                want = self.add(s, sorted(listed - set(s)))
                got = self.value(r.get("value"))
                if got != want:
                    raise _Illegal(
                        f"the sweeper wrote {list(got)}; {list(s)} plus the missing ids is {list(want)}"
                    )
                cache, version, phase = got, version + 1, None
            elif op == "get_versioned" and key == CACHE_KEY and self.atomic_for["sweep"]:
                s = read_cache()
                phase = ("vread", phase[1], s, version)
            elif op == "cas" and key == CACHE_KEY and self.atomic_for["sweep"] and phase[0] == "vread":
                listed, s, v = phase[1], phase[2], phase[3]
                if bool(r.get("ok")) != (v == version):
                    raise _Illegal("the sweeper's swap outcome does not match the version")
                if r.get("ok"):
                    want = self.add(s, sorted(listed - set(s)))
                    got = self.value(r.get("value"))
                    if got != want:
                        raise _Illegal(f"the sweeper swapped in {list(got)}; want {list(want)}")
                    cache, version, phase = got, version + 1, None
                else:
                    phase = ("listed", listed)
            else:
                raise _Illegal(f"the sweeper makes a call the design has no step for ({op} {key})")
        elif endpoint in _STATUS_WRITERS:
            cache, version, phase = _status_writer_step(
                self, r, op, key, endpoint, phase, cache, version, read_cache, stored
            )
        else:
            raise _Illegal(f"a call outside any request ({endpoint!r})")
        if phase is None:
            phases.pop(rid, None)
        else:
            phases[rid] = phase
        return _State(
            cache,
            version,
            frozenset(stored),
            tuple(sorted(phases.items(), key=lambda kv: str(kv[0]))),
            frozenset(reads),
            frozenset(done),
        )


#: SPEC §8's status writers and the bot's queue: their calls change statuses, never which ids
#: the cache holds, except the as-built scan's put of the array it read (``bot_scan``)
_STATUS_WRITERS = frozenset({"status", "scan", "claim", "complete"})


def _status_writer_step(checker, r, op, key, endpoint, phase, cache, version, read_cache, stored=()):
    """A call of a status writer (PATCH status, the pending scan, a claim, a completion): the
    cache state after it, or _Illegal. Status keys are the writers' own (a claim's get and put
    or compare-and-swap, the scan's reads); PATCH's read of ``comment:<id>`` (the bot's
    completion with ``statuses``) is a stutter checked against the stored ids; a cache read is checked against the cache; a write
    of the cache (a plain put: the as-built scan's; a swap or an atomic update: a status patch)
    must hold exactly the ids its read saw, so a lost id is caught where it is lost."""
    from kvheal.impl.queue_api import STATUS_PREFIX

    if str(key).startswith(STATUS_PREFIX) or op == "list":
        return cache, version, phase
    if op == "get" and str(key).startswith(COMMENT_PREFIX):
        # PATCH status (the bot's completion, statuses' Complete) reads the message first: a
        # stutter, as the sweeper's reads of message keys
        got, m = r.get("value"), checker.m(key[len(COMMENT_PREFIX) :])
        if (got is not None) != (m in stored):
            raise _Illegal(f"the {endpoint} request read {key} as {got!r}, stored is {sorted(stored)}")
        return cache, version, phase
    if key != CACHE_KEY:
        raise _Illegal(f"the {endpoint} request touches {key}, which no status writer does")
    if op == "get":
        return cache, version, ("sread", read_cache())
    if op == "put":
        if not phase or phase[0] != "sread":
            raise _Illegal(f"the {endpoint} request writes the cache without reading it first")
        got = checker.value(r.get("value"))
        if got != phase[1]:
            raise _Illegal(f"the {endpoint} request wrote {list(got)}, having read {list(phase[1])}")
        return got, version + 1, None
    if op == "get_versioned":
        return cache, version, ("svread", read_cache(), version)
    if op == "cas":
        if not phase or phase[0] != "svread":
            raise _Illegal(f"the {endpoint} request swaps without a versioned read")
        if bool(r.get("ok")) != (phase[2] == version):
            raise _Illegal(f"the {endpoint} request's swap outcome does not match the version")
        if not r.get("ok"):
            return cache, version, None
        got = checker.value(r.get("value"))
        if got != phase[1]:
            raise _Illegal(f"the {endpoint} request swapped in {list(got)}, having read {list(phase[1])}")
        return got, version + 1, None
    if op == "update":
        s = checker.value(r.get("read"))
        if s != cache:
            raise _Illegal(
                f"the {endpoint} request's atomic update read {list(s)} but the cache is {list(cache)}"
            )
        if r.get("ok"):
            got = checker.value(r.get("value"))
            if got != s:
                raise _Illegal(
                    f"the {endpoint} request's atomic update changed the ids: {list(s)} to {list(got)}"
                )
            return got, version + 1, None
        return cache, version, None
    raise _Illegal(f"the {endpoint} request makes a call no status writer makes ({op} {key})")


def _tab(rid: Any) -> int | None:
    match = _TAB_RID.match(str(rid or ""))
    return int(match.group(1)) if match else None


def _describe(checker: _Checker, st: _State) -> dict:
    return {
        "cache": list(st.cache),
        "stored": sorted(st.stored),
        "version": st.version,
        "in_flight": {str(k): str(v) for k, v in st.phases},
    }


def _validate_run(
    records: list[dict], ids: Sequence[str], tabs: int, cap: int, variants: frozenset[str], budget: int
) -> tuple[str, dict | None, str, dict, list[str]]:
    checker = _Checker(ids, tabs, cap, variants)
    ops = [r for r in records if r.get("op") in ("get", "put", "list", "get_versioned", "cas", "update")]
    n = len(ops)
    t0 = [int(r.get("t0", i)) for i, r in enumerate(ops)]
    t1 = [int(r.get("t1", i)) for i, r in enumerate(ops)]
    order = sorted(range(n), key=lambda i: (t1[i], t0[i]))
    start = _State((), 0, frozenset(), (), frozenset(), frozenset())
    failed: set[tuple[int, _State]] = set()
    best: dict[str, Any] = {"depth": -1}
    dup_seen: list[str] = []
    steps = 0

    def note_failure(depth: int, i: int, reason: str, st: _State) -> None:
        key = (depth, ops[i].get("_line", i))
        if depth > best["depth"] or (depth == best["depth"] and key[1] < best["line"]):
            best.update(depth=depth, line=key[1], index=i, reason=reason, state=st)

    # Iterative DFS over (placed set, state); `placed` is a bitmask of op indices.
    stack = [(0, start, 0)]
    while stack:
        placed, st, depth = stack.pop()
        if depth == n:
            return OK, None, "", {}, dup_seen
        if (placed, st) in failed:
            continue
        failed.add((placed, st))
        steps += 1
        if steps > budget:
            return UNKNOWN, None, f"search budget of {budget} states exhausted", {}, dup_seen
        horizon = min(t1[i] for i in order if not placed >> i & 1)
        children = []
        for i in order:
            if placed >> i & 1:
                continue
            if t0[i] > horizon:
                continue  # began after some unplaced call had ended: that call comes first
            try:
                nxt = checker.step(st, ops[i])
            except _Illegal as exc:
                note_failure(depth, i, str(exc), st)
                continue
            if len(set(nxt.cache)) != len(nxt.cache) and "NoDuplicates" not in dup_seen:
                dup_seen.append("NoDuplicates")
            children.append((placed | 1 << i, nxt, depth + 1))
        stack.extend(reversed(children))
    rec = ops[best["index"]] if best["depth"] >= 0 else None
    return ILLEGAL, rec, best.get("reason", ""), _describe(checker, best["state"]) if rec else {}, dup_seen


def _segments(records: Sequence[Mapping]) -> list[list[dict]]:
    """The records of each fresh store, split at the ``clear`` records.

    Processes append to the log when their calls end, so a line can land on the wrong side of
    a clear written by another process (a sweeper's read of the emptied store, logged before
    the harness wrote the clear). When every clear and every record carries its interval
    (`t0`, `t1`), records go by time: before a clear when they ended before it began, after
    it when they began after it ended; a call overlapping the clear goes after it when it read
    nothing (a get of a missing key, an empty listing), otherwise before. Without times, by
    line."""
    clears = [r for r in records if r.get("op") == "clear"]
    timed = all("t0" in r and "t1" in r for r in records)
    if not clears or not timed:
        runs: list[list[dict]] = [[]]
        for r in records:
            if r.get("op") == "clear":
                runs.append([])
            else:
                runs[-1].append(dict(r))
        return runs
    bounds = sorted((int(c["t0"]), int(c["t1"])) for c in clears)
    runs = [[] for _ in range(len(bounds) + 1)]
    for r in records:
        if r.get("op") == "clear":
            continue
        t0, t1 = int(r["t0"]), int(r["t1"])
        k = 0
        for c0, c1 in bounds:
            if t1 <= c0:
                break
            if t0 >= c1 or _read_nothing(r):
                k += 1
            else:
                break
        runs[k].append(dict(r))
    return runs


def _read_nothing(record: Mapping) -> bool:
    if record.get("op") == "list":
        return not record.get("keys")
    return record.get("op") in ("get", "get_versioned") and record.get("value") in (None, [], {})


def validate_records(
    records: Sequence[Mapping],
    *,
    tabs: int,
    cap: int | None = None,
    variants: Iterable[str] = (),
    ids: Sequence[str] | None = None,
    budget: int = 200_000,
) -> Validation:
    """Validate operation records (a whole log: runs separated by ``{"op": "clear"}``).

    `ids` are the messages in timestamp order (inferred per run when None); `cap` defaults to
    the number of messages."""
    variants = frozenset(variants)
    runs = [run for run in _segments(records) if run]
    total = sum(len(run) for run in runs)
    result = Validation(OK, total, len(runs))
    for run in runs:
        run_ids = list(ids) if ids is not None else infer_ids(run)
        status, rec, reason, state, invariants = _validate_run(
            run, run_ids, tabs, cap or len(run_ids) or 1, variants, budget
        )
        for name in invariants:
            if name not in result.invariant_violations:
                result.invariant_violations.append(name)
        if status != OK:
            result.status, result.reason, result.state = status, reason, state
            if rec is not None:
                result.line = rec.get("_line")
                result.record = {k: v for k, v in rec.items() if k != "_line"}
            return result
    return result


def validate_log(path: str, **kwargs: Any) -> Validation:
    """`validate_records` on the JSONL log at `path`."""
    return validate_records(load_log(path), **kwargs)

"""The abstraction function: a snapshot of the real system → a model state of SPEC §3.

`SystemSnapshot` is what can be observed of the running system between two steps: the KV's
contents, each actor's calls so far (with the values it read or wrote), whether the worker has
answered it, the parked store writes, the clients' pending stores, heal marks and liveness.
`abstract(snapshot)` maps it to the dict `KVHealModel.view(state)` returns, field for field, so
the two compare with `==` and print side by side.

Real ids map to model messages by `snapshot.ids` (message m is `ids[m]`, posted by tab m mod T,
timestamps in id order); an id the test never posted maps to the string ``"?<id>"``, which no
model state contains, so it shows up as a difference instead of being dropped.

How each field is read (the worker's KV calls are those of `kvheal.impl.worker`'s docstring):

* ``stored``: the ids with a ``comment:<id>`` key; ``cache``: the ids of ``recent:comments`` in
  stored order (repeats kept; an unsorted cache differs from every model value).
* ``post[m]``: Unsent until its ``put comment:<id>``; then CacheWritten once its cache put (or a
  successful compare-and-swap) ran or the worker answered; CacheRead(s) while it holds a cache
  read s (not with atomic_cache: there the read and the swap are one model step, and a read
  before the swap changes nothing); else KeyWritten. Acked once the tab has handled the answer:
  the post's task is over, or (shared_pending) the tab has read the pending list for it.
* ``poll[t]``: Read(s) from the poll's cache read until the tab has finished with it (the task
  is over, or with shared_pending the tab has read the list).
* ``heal``: per message (per (tab, message) with shared_pending): Requested from the moment
  the tab marks the id `healing` until the heal's ``get comment:<id>``; then KeyRead, CacheRead(s)
  (not with atomic_cache), and Idle when the worker answers. With ``fire_and_forget``
  ``heal2`` is the newer of two heals of the slot in flight (``heal`` the older). More heals of
  one slot in flight at once than that are the phase ``("Overlap", n)``, which the model never has.
* ``lists[t]`` (shared_pending): Write(P) while tab t has a store write of P parked.
* ``sweep``: Listed(k) after the sweeper's list, Read(k, s) after its cache read (not with
  atomic_cache), Idle when the pass is over.
* ``scan`` (``bot_scan``): Read(s) from the bot's pending scan's cache get until its put of the
  array it read; with ``statuses`` Keyed(s, f) once it has read the status key of every id whose
  first copy in s is not final (at once when there is none), f the ids it read final; ``done`` (``statuses``): the messages whose ``status:<id>`` is final (complete
  or failed), and in every cache value a copy whose entry's status is final shows as ``"m*"``,
  the final copies of an id first (the model's canonical order, which the real writers keep); ``claim``/``claim2``, ``claimed``, ``replies`` (``bot_claims``): see `_claims`
  (the real claim gets and puts ``status:<id>``, the model's key of the claim).

The as-built fields (SPEC §6, with ``tab_view``), in units of the lag (``LAG_MS``) from the
injected clock's start (``BASE_TIMESTAMP``):

* ``clock``: the injected clock's ticks; ``ts[m]``: the tick of the timestamp in
  ``comment:<id>`` (0 before it is stored); ``cursor[t]``: the tick from which tab t's poll
  shows messages (the real cursor is the last millisecond it does not show: tick
  ``(cursor - base) // lag + 1``).
* ``shown[t]``: the client's shown set, less its own posts whose key is not written yet (the
  page shows a post when it is sent, the model at ``PostKey``; nothing observes the gap).
* ``frozen[t]``: the client's page-load snapshot, its own ids; ``reloaded``: whether the tab
  has reloaded; ``put_failed``: whether the write-limit emulation refused a put; ``prev``:
  the value the stale-read emulation serves (the cache before its last write, until a tick).
* ``post[m]`` is Failed once the owner saw its POST fail (an error answer, or a lost answer).
* ``heals[h]``: the heal requests tab t sent for m (counted at the gates), stopping at the
  bound plus one, as the model's ghost.
* The cache and every cache value a phase holds are sorted by message: with the tab view
  both caches order their entries by (timestamp, id) and drop the oldest timestamp when full,
  but the model shows a cache value as its ids in ascending order, so they are compared so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kvheal.impl.messages import CACHE_KEY, COMMENT_PREFIX
from kvheal.impl.queue_api import FINAL, STATUS_PREFIX, decode_status
from kvheal.model.config import Config
from kvheal.model.definition import HORIZON, KVHEAL, heal_bound
from kvheal.model.trace import flatten

from .gates import ActorRecord, Call

__all__ = ["SystemSnapshot", "abstract", "flatten", "first_difference"]


@dataclass(frozen=True)
class SystemSnapshot:
    """The observable state of the system under test between two steps."""

    tabs: int
    #: real id of message m, for m in 0..M-1
    ids: tuple[str, ...]
    variants: frozenset[str]
    #: the KV's keys and raw values
    kv: dict[str, str]
    #: every actor record the gates know, oldest first
    actors: tuple[ActorRecord, ...]
    #: parked store writes: (tab, ids being written)
    parked_writes: tuple[tuple[int, tuple[str, ...]], ...]
    #: the pending store of each tab (one entry when shared_pending), as ids
    stores: tuple[tuple[str, ...], ...]
    #: ids each tab has marked `healing` (a heal requested and not yet answered)
    healing: tuple[frozenset[str], ...]
    alive: tuple[bool, ...]
    # -- the as-built tab (SPEC §6) ----------------------------------------------------------
    #: the injected clock (ms)
    clock_ms: int = 0
    #: each tab's cursor (ms; None without one), shown set, page-load snapshot, reloads
    cursors: tuple[int | None, ...] = ()
    shown: tuple[frozenset[str], ...] = ()
    page_snapshots: tuple[frozenset[str], ...] = ()
    reloads: tuple[int, ...] = ()
    #: ids whose POST each tab saw fail
    failed_posts: tuple[frozenset[str], ...] = ()
    #: puts the write-limit emulation refused
    puts_refused: int = 0
    #: the cache value a stale read is served now (stale_reads' emulation)
    stale_prev: str | None = None
    #: the ids on the bot's list of replies to verify (bot_replies)
    verify: tuple[str, ...] = ()


def _cache_ids(raw: str | None) -> list[str]:
    if raw is None:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return ["?<unparsable cache>"]
    if not isinstance(value, list):
        return ["?<cache not a list>"]
    return [e.get("id") if isinstance(e, dict) else "?<entry>" for e in value]


def _cache_finals(raw: str | None) -> list[bool]:
    """Per entry of the cache's JSON (as `_cache_ids`), whether its status is final."""
    try:
        value = json.loads(raw) if raw is not None else []
    except ValueError:
        return [False]
    if not isinstance(value, list):
        return [False]
    return [isinstance(e, dict) and e.get("status") in FINAL for e in value]


def _open_first(raw: str | None) -> list[str]:
    """The ids whose first entry in the cache's JSON is not final: the as-built scan reads
    their status keys (SPEC §6 ``statuses``)."""
    seen: dict[str, bool] = {}
    for m, final in zip(_cache_ids(raw), _cache_finals(raw), strict=False):
        seen.setdefault(m, final)
    return [m for m, final in seen.items() if not final]


@lru_cache(maxsize=64)
def _cache_reads_are_steps(tabs: int, variants: frozenset[str]) -> dict[str, bool]:
    calls = KVHEAL.kv_calls(Config.make(tabs=tabs, variants=variants))
    return {actor: "get cache" in kinds for actor, kinds in calls.items()}


def _read_list(record: ActorRecord) -> bool:
    return any(c.op == "read" for c in record.store_calls())


def abstract(snap: SystemSnapshot) -> dict[str, Any]:
    """The model view (`KVHealModel.view`'s shape) of a snapshot of the real system."""
    index = {real: m for m, real in enumerate(snap.ids)}
    T, M = snap.tabs, len(snap.ids)
    # A cache read is a step of its own only for actors whose design reads then puts; where
    # the update is atomic, the read and the swap are one step. The definition says which.
    reads_are_steps = _cache_reads_are_steps(T, snap.variants)
    shared = "shared_pending" in snap.variants

    def mid(real: str) -> Any:
        return index.get(real, f"?{real}")

    def ids(reals) -> tuple:
        return tuple(mid(r) for r in reals)

    def sorted_ids(reals) -> tuple:
        return tuple(sorted(ids(reals), key=lambda x: (isinstance(x, str), x)))

    view_on = "tab_view" in snap.variants
    statuses = "statuses" in snap.variants

    def cache_of(raw: str | None) -> tuple:
        if statuses:
            return _marked(raw)
        if view_on:  # the model shows a cache as its ids in order (see the module docstring)
            return sorted_ids(_cache_ids(raw))
        return ids(_cache_ids(raw))

    def _marked(raw: str | None) -> tuple:
        # statuses: a final copy is "m*" (the model's view of it); within an id the final
        # copies come first (the model's canonical order: the real writers patch the first copy
        # or every copy and put a new copy after its id's others, so this only names it)
        entries = [(mid(r), f) for r, f in zip(_cache_ids(raw), _cache_finals(raw), strict=False)]
        if view_on:
            entries.sort(key=lambda e: (isinstance(e[0], str), e[0], not e[1]))
        else:  # stored order; equal ids next to each other: finals first
            out: list = []
            for e in entries:
                run = len(out)
                while run > 0 and out[run - 1][0] == e[0]:
                    run -= 1
                out.append(e)
                out[run:] = sorted(out[run:], key=lambda x: not x[1])
            entries = out
        return tuple(f"{m}*" if f and isinstance(m, int) else m for m, f in entries)

    stored = sorted_ids(k[len(COMMENT_PREFIX) :] for k in snap.kv if k.startswith(COMMENT_PREFIX))
    view: dict[str, Any] = {"stored": stored, "cache": cache_of(snap.kv.get(CACHE_KEY))}

    current: dict[tuple, ActorRecord] = {}
    heals: dict[Any, list[ActorRecord]] = {}
    for record in snap.actors:
        if record.key[0] == "heal":
            if not record.done:
                slot = (record.key[1], record.key[2]) if shared else record.key[2]
                heals.setdefault(slot, []).append(record)
        else:
            current[record.key] = record

    def cache_phase(kv: list[Call], after: int, actor: str) -> tuple | None:
        """CacheWritten / CacheRead(s) from the cache calls after index `after`, else None."""
        atomic = not reads_are_steps.get(actor, False)
        phase = None
        for call in kv[after:]:
            if call.key != CACHE_KEY:
                continue
            if call.op == "put" or (call.op == "cas" and call.ok):
                return ("CacheWritten",)
            if call.op == "get" and not atomic:
                phase = ("CacheRead", cache_of(call.value))
        return phase

    # bot_replies: the last message is the bot's reply; its POST failed when the bot's task ended
    # without the 200 (an error answer raised, or the answer lost: the task cancelled)
    reply = M - 1 if "bot_replies" in snap.variants else None
    posts = []
    for m in range(M):
        record = current.get(("post", m))
        kv = record.kv_calls() if record else []
        key_at = next(
            (i for i, c in enumerate(kv) if c.op == "put" and c.key == COMMENT_PREFIX + snap.ids[m]), None
        )
        if record is None or key_at is None:
            posts.append(("Unsent",))
        elif snap.failed_posts and snap.ids[m] in snap.failed_posts[m % T]:
            posts.append(("Failed",))
        elif m == reply and record.done and not _succeeded(record):
            posts.append(("Failed",))
        elif record.responded and (record.done or (shared and _read_list(record))):
            posts.append(("Acked",))
        elif record.responded:
            posts.append(("CacheWritten",))
        else:
            posts.append(cache_phase(kv, key_at + 1, "request") or ("KeyWritten",))
    view["post"] = tuple(posts)

    if shared:
        view["pending"] = sorted_ids(snap.stores[0])
    else:
        view["pending"] = tuple(sorted_ids(snap.stores[t]) for t in range(T))

    polls = []
    for t in range(T):
        record = current.get(("poll", t))
        phase: tuple = ("Idle",)
        if record is not None and not record.done and not (shared and _read_list(record)):
            reads = [c for c in record.kv_calls() if c.op == "get" and c.key == CACHE_KEY]
            if reads:
                phase = ("Read", cache_of(reads[-1].value))
        polls.append(phase)
    view["poll"] = tuple(polls)

    def request_phase(record: ActorRecord, message: int) -> tuple:
        kv = record.kv_calls()
        key_at = next((i for i, c in enumerate(kv) if c.key == COMMENT_PREFIX + snap.ids[message]), None)
        if key_at is None:
            return ("Requested",)
        if kv[key_at].value is None:
            return ("Idle",)  # 404: the answer is on its way
        phase = cache_phase(kv, key_at + 1, "heal")
        if phase == ("CacheWritten",):
            return ("Idle",)
        return phase or ("KeyRead",)

    # With fire_and_forget a slot holds two heals (heal: the older in flight, heal2: the newer)
    slots_of = 2 if "fire_and_forget" in snap.variants else 1

    def heal_phases(slot: Any, message: int, marked: bool) -> list[tuple]:
        live = [p for p in (request_phase(r, message) for r in heals.get(slot, [])) if p != ("Idle",)]
        if not live and marked:
            live = [("Requested",)]
        if len(live) > slots_of:
            return [("Overlap", len(live))] * slots_of
        return live + [("Idle",)] * (slots_of - len(live))

    if shared:
        phases = {
            (t, m): heal_phases((t, m), m, snap.ids[m] in snap.healing[t]) for t in range(T) for m in range(M)
        }
    else:
        phases = {m: heal_phases(m, m, any(snap.ids[m] in h for h in snap.healing)) for m in range(M)}
    view["heal"] = {h: p[0] for h, p in phases.items()}
    if slots_of == 2:
        view["heal2"] = {h: p[1] for h, p in phases.items()}
    view["alive"] = tuple(snap.alive)

    sweep: tuple = ("Idle",)
    record = current.get(("sweep",))
    if record is not None and not record.done:
        kv = record.kv_calls()
        listed = next((i for i, c in enumerate(kv) if c.op == "list"), None)
        if listed is not None:
            k = sorted_ids(key[len(COMMENT_PREFIX) :] for key in kv[listed].value)
            sweep = ("Listed", k)
            if reads_are_steps.get("sweeper", False):
                for call in kv[listed + 1 :]:
                    if call.op == "get" and call.key == CACHE_KEY:
                        sweep = ("Read", k, cache_of(call.value))
    view["sweep"] = sweep

    if shared:
        lists = []
        for t in range(T):
            writes = [w for tab, w in snap.parked_writes if tab == t]
            lists.append(("Write", sorted_ids(writes[0])) if writes else ("Idle",))
        view["lists"] = tuple(lists)
    if "bot_scan" in snap.variants and "atomic_cache" not in snap.variants:
        scan: tuple = ("Idle",)
        record = current.get(("scan",))
        if record is not None and not record.done:
            reading, read = False, None  # whether it holds a cache read (the key may be absent)
            keys: dict[str, bool] = {}  # statuses: the status keys read since, final or not
            for call in record.kv_calls():
                if call.key == CACHE_KEY and call.op == "get":
                    reading, read, keys = True, call.value, {}
                    scan = ("Read", cache_of(call.value))
                elif call.key == CACHE_KEY and call.op == "put":
                    reading, scan = False, ("Idle",)  # written back: its answer is on its way
                elif statuses and reading and str(call.key).startswith(STATUS_PREFIX):
                    keys[call.key[len(STATUS_PREFIX) :]] = (decode_status(call.value) or {}).get(
                        "status"
                    ) in FINAL
            if statuses and reading and len(keys) == len(_open_first(read)):
                # every key of a first copy read open is read (none to read: at once): Keyed,
                # with the ids whose key it read final (the model's ScanKeys)
                scan = ("Keyed", cache_of(read), sorted_ids(m for m, final in keys.items() if final))
        view["scan"] = scan
    if "bot_claims" in snap.variants:
        _claims(snap, view, current, sorted_ids)
    if statuses:  # the messages whose status key is final
        view["done"] = sorted_ids(
            key[len(STATUS_PREFIX) :]
            for key, raw in snap.kv.items()
            if key.startswith(STATUS_PREFIX) and (decode_status(raw) or {}).get("status") in FINAL
        )
    if reply is not None:
        view["verify"] = sorted_ids(snap.verify)
    if view_on:
        _as_built(snap, view, index, sorted_ids)
    if "put_fails" in snap.variants:
        view["put_failed"] = snap.puts_refused > 0
    if "stale_reads" in snap.variants:
        view["prev"] = cache_of(snap.stale_prev)
    return view


def _succeeded(record: ActorRecord) -> bool:
    """Whether an actor's task ended with a result (not cancelled, no exception)."""
    task = record.task
    return task is not None and task.done() and not task.cancelled() and task.exception() is None


def _claims(snap: SystemSnapshot, view: dict[str, Any], current: dict, sorted_ids) -> None:
    """The bot's claims (``bot_claims``): ``claim[m]`` (``claim2``: the overlapping poll) is
    Idle until the claim starts, Free while its put of the status key is parked after it read
    pending (get then put; with ``claim_cas`` the claim is one step: Idle until it is over),
    Done once its task is over; ``claimed``: the messages whose status key is past pending;
    ``replies[m]``: the claims of m that succeeded (each poll replies once it has one)."""
    M, cas = len(snap.ids), "claim_cas" in snap.variants
    replies = [0] * M
    for k, name in ((0, "claim"), (1, "claim2")):
        phases = []
        for m in range(M):
            record = current.get(("claim", k, m))
            if record is None:
                phases.append(("Idle",))
            elif record.done:
                phases.append(("Done",))
                task = record.task
                if task is not None and not task.cancelled() and task.exception() is None and task.result():
                    replies[m] += 1
            elif not cas and any(c.op == "get" for c in record.kv_calls()):
                phases.append(("Free",))
            else:
                phases.append(("Idle",))
        view[name] = tuple(phases)
    claimed = []
    for key, raw in snap.kv.items():
        if key.startswith(STATUS_PREFIX):
            status = decode_status(raw)
            if status is not None and status.get("status") != "pending":
                claimed.append(key[len(STATUS_PREFIX) :])
    view["claimed"] = sorted_ids(claimed)
    view["replies"] = tuple(replies)


def _tick(ms: int) -> int:
    from .system import BASE_TIMESTAMP, LAG_MS

    return (ms - BASE_TIMESTAMP) // LAG_MS


def _as_built(snap: SystemSnapshot, view: dict[str, Any], index: dict[str, int], sorted_ids) -> None:
    """The SPEC §6 fields of the view (see the module docstring)."""
    T, M, variants = snap.tabs, len(snap.ids), snap.variants
    tab_messages = M - 1 if "bot_replies" in variants else M
    config = Config.make(tabs=T, per_tab=max(tab_messages // T, 1), variants=variants)
    view["clock"] = min(_tick(snap.clock_ms), HORIZON)
    if "full_poll" not in variants:
        ts = []
        for m in range(M):
            body = snap.kv.get(COMMENT_PREFIX + snap.ids[m])
            try:
                stamp = json.loads(body)["timestamp"] if body is not None else None
            except (ValueError, KeyError, TypeError):
                stamp = None
            ts.append(0 if stamp is None else max(_tick(stamp), 0))
        view["ts"] = tuple(ts)
        view["cursor"] = tuple(0 if c is None else min(max(_tick(c) + 1, 0), HORIZON) for c in snap.cursors)
    unsent = {snap.ids[m] for m in range(M) if view["post"][m] == ("Unsent",)}
    view["shown"] = tuple(sorted_ids(snap.shown[t] - unsent) for t in range(T))
    shared = "shared_pending" in variants
    if "found_in_response" in variants and "reload" in variants:
        view["frozen"] = tuple(
            sorted_ids(i for i in snap.page_snapshots[t] if i in index and (shared or index[i] % T == t))
            for t in range(T)
        )
    if "reload" in variants:
        view["reloaded"] = tuple(n > 0 for n in snap.reloads)
    bound = heal_bound(config)
    sent: dict[Any, int] = {}
    for record in snap.actors:
        if record.key[0] == "heal" and record.key[2] is not None and record.key[1] != "bot":
            t, m = record.key[1], record.key[2]  # the bot's heals are no tab's (bot_replies)
            slot = (t, m) if shared else m
            sent[slot] = sent.get(slot, 0) + 1
    slots = [(t, m) for t in range(T) for m in range(M)] if shared else range(M)
    view["heals"] = {h: min(sent.get(h, 0), bound + 1) for h in slots}


# -- printing: `flatten` is the model's own (kvheal.model.trace), so both sides print alike --


def first_difference(model_view: dict[str, Any], impl_view: dict[str, Any]) -> str | None:
    """The first field (in layout order) where the two views differ, or None."""
    a, b = flatten(model_view), flatten(impl_view)
    for key in list(a) + [k for k in b if k not in a]:
        if a.get(key) != b.get(key):
            return key
    return None

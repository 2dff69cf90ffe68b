"""The worker: SPEC §8's HTTP API as a Starlette app over an injected KV, in every design.

KV calls per request, in order (each one step of SPEC §4; nothing else touches the KV):

    POST /api/comments           get comment:<id>  (ownership: 409 if another
                                 message has the id; the same message again
                                 answers its original ack, nothing written)  stutter
                                 put comment:<id>                          PostKey
                                 cache update (below)                      PostRead/PostWrite | PostCache
                                 200 {comment, healToken, cached}          PostAck (when the client records it)
    POST /api/admin/add-to-cache heal token checked first (403, no KV call)
                                 get comment:<id>  (404 if absent)          HealKey
                                 cache update (below)                      HealRead/HealWrite | HealCache
    GET  /api/comments           get recent:comments                       PollRead

    cache update, seed/dedupe:   get recent:comments                       *Read
                                 put recent:comments  (no put if `dedupe`
                                 and the id is in what was read)           *Write
    cache update, atomic_cache:  update recent:comments (the store's own atomic
                                 read-modify-write, with `store_update`), or:
                                 repeat: get_versioned recent:comments;
                                 (stop if `dedupe` and the id is there);
                                 cas  -> done if it succeeded, else a short
                                 random backoff (no KV call) and again     the successful cas (or, with dedupe,
                                                                           the read that found the id) is
                                                                           PostCache/HealCache; the other calls
                                                                           change nothing: stutter steps

A failed cache update after the key was written is logged and the POST still answers 200 with
`cached: false`, as the original did: the message is stored and the heal repairs the cache.
The sweeper (SPEC §5 `sweeper`) is in `Sweeper`; see its docstring for its calls.

Heal authorization: the POST's answer carries `healToken`: 16 hex digits of the stored body's
digest, then an HMAC of the id and that digest under the worker's secret (`WorkerConfig.secret`,
`kvheal serve --secret-file`: the same key in every process and across restarts). A token whose
HMAC does not fit the id is refused (403) before any KV call; one minted for another body of the
id (403) after the read. Unknown ids get 404. A heal answers what it did (`result`: added, already
present, outside the cache's window) and writes nothing when nothing would change: with `dedupe`
a cached id, and (`skip_noop_cache_write`) a message older than a full cache's oldest entry;
SPEC's seed design still adds a duplicate, and the lockstep tests turn the skip off (the model
writes its snapshot back).

Timestamps: the client's, as in the original (the model orders the cache by them), but refused
with 400 when more than `max_future_ms` (60 s) ahead of the server's clock; a far-future message
would push every honest one out of the cache. Past timestamps are accepted: an old message only
loses its own place. A post without a timestamp gets the server's clock.

HTTP hygiene, all before any KV call: per-client token buckets for posts and heals (429 with
Retry-After), a JSON content type (415), a size limit (413), a time limit for the body (408, the
connection closed), a nesting limit, valid Unicode, ids by `fullmatch`. CORS and allowed hosts
come from the config (`cors_origins`, `allowed_hosts`; none by default). `/openapi.json`
describes every endpoint (`kvheal.impl.openapi`).

With `atomic_cache` and `cache_lock`, one process's cache updates go through one flusher task
(group commit): the messages that queued while the previous update ran are added, in order, by
one atomic update, so swaps race only between processes and a burst costs a few updates, not one
per post. The update is the store's own when it has one (with `store_update`): on Redis SPEC §3's
`add` as a server-side script (`KV.cache_add_all`: one round trip per batch, no lock a paused
process could hold; an operation log gets `KV.update`, whose reads and writes trace validation
checks), on SQLite a write transaction (`KV.update`); else the versioned read and
compare-and-swap loop, which never gives up (`max_cas_attempts` None). Over an operation log
every update is one message's (trace validation attributes each); the lockstep tests turn the
lock and the store update off (the model lets any update go first, with SPEC §8's calls).

To plant a fault for tests, subclass `Worker` (or `Sweeper`) and override one small method
(`post`, `update_cache`, `already_cached`, ...), then pass it to `create_app(worker=...)`.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import json
import logging
import random
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .config import ConfigError, WorkerConfig
from .context import (
    RequestContext,
    current_request,
    new_request_id,
    reset_request,
    set_request,
    valid_request_id,
)
from .emulate import RequestFailure, StaleReadKV, WriteLimited, WriteLimitKV
from .kv import KV, KVError, LoggedKV
from .messages import (
    CACHE_KEY,
    COMMENT_PREFIX,
    MAX_TIMESTAMP,
    MESSAGE_TYPES,
    BadInput,
    body_digest,
    cache_add,
    cache_add_all,
    check_json_depth,
    comment_key,
    decode_cache,
    decode_message,
    encode_cache,
    encode_message,
    message_type,
    same_message,
    validate_heal,
    validate_post,
)
from .openapi import openapi_schema
from .ratelimit import RateLimiter

__all__ = [
    "Worker",
    "Sweeper",
    "CacheUpdate",
    "SweepResult",
    "create_app",
    "BodyTooLarge",
    "ADDED",
    "ALREADY_PRESENT",
    "OUTSIDE_WINDOW",
]

log = logging.getLogger("kvheal.worker")


class BodyTooLarge(Exception):
    """A request body over the configured limit (answered with 413)."""


#: what a cache update did for its message (the heal's `result`)
ADDED, ALREADY_PRESENT, OUTSIDE_WINDOW = "added", "already present", "outside the cache's window"
#: a heal whose cache write the store refused (the write limit, SPEC §6 put_fails)
WRITE_FAILED = "write failed"


@dataclass(frozen=True, slots=True)
class CacheUpdate:
    """What a cache update did: `written` (a put or successful cas happened), `attempts` (cas
    tries), `result`: added, already present, or outside the cache's window (older than every
    entry of a full cache, so `add` trims it away)."""

    written: bool
    attempts: int = 1
    result: str = ADDED


@dataclass(frozen=True, slots=True)
class SweepResult:
    """One sweeper pass: how many `comment:` keys it listed, which ids were missing (sorted),
    whether it wrote, and how many more were missing but known to be older than a full
    cache's window (not in `missing`; adding them would change nothing)."""

    listed: int
    missing: tuple[str, ...]
    written: bool
    outside: int = 0


async def cas_backoff(config: WorkerConfig, attempt: int) -> None:
    """Wait after the `attempt`-th lost compare-and-swap: random, exponential, capped (no KV call)."""
    if config.cas_backoff_ms > 0:
        ceiling = min(config.cas_backoff_ms * 2 ** min(attempt - 1, 10), 8.0)
        await asyncio.sleep(random.uniform(0, ceiling) / 1000)


class Worker:
    """The request handlers' logic over one KV; one instance per app (per process)."""

    def __init__(self, kv: KV, config: WorkerConfig | None = None, *, clock=None) -> None:
        self.kv = kv
        self.config = config or WorkerConfig()
        #: the server's clock in ms (a callable; None: the wall clock), for ids and timestamps
        #: the worker fills in and the future-timestamp bound: tests and replay inject one
        self.clock = clock
        if self.config.heal_atomic and not kv.supports_cas:
            design = "atomic_cache" if self.config.atomic_cache else "heal_atomic"
            raise ConfigError(
                f"the {design} design needs compare-and-swap, which the {kv.name} "
                "backend does not offer (use sqlite, redis or memory)"
            )
        self._queue: list[tuple[dict, asyncio.Future, RequestContext | None]] = []
        self._flusher: asyncio.Task | None = None
        self._claims: dict[str, asyncio.Lock] = {}

    # -- heal tokens ---------------------------------------------------------------------------
    def heal_token(self, message: dict) -> str:
        """The token that authorizes healing `message` (returned to its poster): 16 hex digits
        of the stored body's digest, then an HMAC of the id and that digest under the secret."""
        digest = body_digest(message)
        return digest + self._mac(message["id"], digest)

    def _mac(self, message_id: str, digest: str) -> str:
        data = f"{message_id}\n{digest}".encode()
        return hmac.new(self.config.secret, data, hashlib.sha256).hexdigest()[:32]

    def check_heal_token(self, message_id: str, token: str) -> bool:
        """Whether `token` was issued by this deployment for `message_id` (constant-time; no KV
        call). The body it was issued for is checked after the read (`token_fits`)."""
        if len(token) != 48:
            return False
        return hmac.compare_digest(self._mac(message_id, token[:16]), token[16:])

    def token_fits(self, token: str, message: dict) -> bool:
        """Whether `token` was issued for this very body (not an earlier message of the same id)."""
        return hmac.compare_digest(token[:16], body_digest(message))

    # -- ownership -----------------------------------------------------------------------------
    async def claim(self, message: dict, *, timestamp_given: bool = True) -> tuple[str, dict | None]:
        """Before the PostKey write: ("new", None) if the id is free, ("repeat", stored) if the
        stored message is this one again (an idempotent retry), ("taken", stored) otherwise.

        One `get comment:<id>` (a step that changes nothing). Two posts of one free id in the
        same process are serialised (`claimed`); across processes a race needs the id before it
        is stored, which nobody but its poster has (ids become public through GET only after).

        With ``repost`` (SPEC §6, the worker as deployed) there is no check and no call: every
        POST is "new", so a POST of an id that exists writes its key and caches it again.
        """
        if "repost" in self.config.variants:
            return "new", None
        stored = decode_message(await self.kv.get(comment_key(message["id"])))
        if stored is None:
            return "new", None
        if same_message(stored, message, timestamp_given=timestamp_given):
            return "repeat", stored
        return "taken", stored

    def claimed(self, message_id: str) -> _Claim:
        """An async context that serialises this process's posts of one id."""
        return _Claim(self._claims, message_id)

    # -- the steps -------------------------------------------------------------------------------
    async def post(self, message: dict) -> CacheUpdate | None:
        """Store a validated message, then add it to the cache; None if the cache update failed."""
        await self.store(message)
        try:
            return await self.update_cache(message)
        except RequestFailure:
            raise  # an injected failure of the request itself (SPEC §6 post_fails): 500
        except KVError as exc:
            log.warning("cache update for %s failed after the key was stored: %s", message["id"], exc)
            return None

    async def store(self, message: dict) -> None:
        """Write `comment:<id>` (PostKey)."""
        await self.kv.put(comment_key(message["id"]), encode_message(message))

    async def read_message(self, message_id: str) -> dict | None:
        """Read `comment:<id>` (HealKey); None if there is no such message."""
        return decode_message(await self.kv.get(comment_key(message_id)))

    async def heal(self, message_id: str) -> CacheUpdate | None:
        """Read `comment:<id>` and add it to the cache; None if there is no such message (404)."""
        message = await self.read_message(message_id)
        if message is None:
            return None
        return await self.update_cache(message, atomic=self.config.heal_atomic)

    async def read_cache(self) -> list[dict]:
        """The cache's messages, oldest first (one `get`)."""
        return decode_cache(await self.kv.get(CACHE_KEY))

    async def update_cache(self, message: dict, atomic: bool | None = None) -> CacheUpdate:
        """Add `message` to the cache as the design says: racy read-modify-write or a CAS loop
        (`atomic`: the heal's own choice with heal_atomic; default: the design's)."""
        if self.config.atomic_cache if atomic is None else atomic:
            if self.config.cache_lock:
                return await self._batched(message)
            return (await self._update_batch([message]))[0]
        return await self._update_cache_rmw(message)

    async def _update_batch(self, messages: list[dict]) -> list[CacheUpdate]:
        """Add `messages` in order in one atomic update (the store's own, or a cas loop)."""
        if self.config.store_update and getattr(self.kv, "supports_cache_script", False):
            return await self._update_cache_by_script(messages)
        if self.config.store_update and getattr(self.kv, "supports_update", False):
            return await self._update_cache_in_store(messages)
        return await self._update_cache_cas(messages)

    async def _batched(self, message: dict) -> CacheUpdate:
        """Group commit: this process's cache updates go through one flusher task, which adds
        every message that queued up while the previous update ran in one atomic update. One
        message waiting alone is one update with the request's own context (SPEC §8's calls);
        a batch's calls carry the members' request ids, endpoints and message ids joined by
        '+'. Over a `LoggedKV` every update is one message's, so that trace validation can
        attribute each. A request that goes away while waiting still has its message added."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((message, future, current_request()))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        # Under an operation log, one message per update: trace validation reads each logged
        # cache update as one request's step (a batch is still atomic, but unattributed).
        single = isinstance(self.kv, LoggedKV)
        while self._queue:
            if single:
                batch, self._queue = self._queue[:1], self._queue[1:]
            else:
                batch, self._queue = self._queue, []
            ctxs = [ctx for _, _, ctx in batch]
            token = set_request(
                ctxs[0]
                if len(batch) == 1 and ctxs[0]
                else RequestContext(
                    "+".join(c.request_id if c else "?" for c in ctxs),
                    "+".join(c.endpoint if c else "?" for c in ctxs),
                    "+".join(m["id"] for m, _, _ in batch),
                )
            )
            try:
                updates = await self._update_batch([m for m, _, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved: a request that went away logs nothing
            else:
                for (_, future, _), update in zip(batch, updates):
                    if not future.done():
                        future.set_result(update)
            finally:
                reset_request(token)

    def _plan(self, entries: list[dict], message: dict) -> tuple[str, list[dict] | None]:
        """What adding `message` to `entries` means: (result, value to write or None)."""
        if self.config.dedupe and self.already_cached(entries, message):
            return ALREADY_PRESENT, None
        updated = self.cache_add(entries, message)
        if any(entry is message for entry in updated):
            return ADDED, updated
        # older than every entry of a full cache: `add` trims it away again
        return OUTSIDE_WINDOW, None if self.config.skip_noop_cache_write else updated

    def _plan_all(self, entries: list[dict], messages: list[dict]) -> tuple[list[str], list[dict] | None]:
        """`_plan` for several messages added one after the other: their results, and the value
        to write (None if none of them changes the cache)."""
        results, wrote = [], False
        for message in messages:
            result, updated = self._plan(entries, message)
            results.append(result)
            if updated is not None:
                entries, wrote = updated, True
        return results, entries if wrote else None

    async def _update_cache_rmw(self, message: dict) -> CacheUpdate:
        entries = decode_cache(await self.kv.get(CACHE_KEY))
        result, updated = self._plan(entries, message)
        if updated is None:
            return CacheUpdate(written=False, result=result)
        await self.kv.put(CACHE_KEY, encode_cache(updated))
        return CacheUpdate(written=True, result=result)

    async def _update_cache_cas(self, messages: list[dict]) -> list[CacheUpdate]:
        limit = self.config.max_cas_attempts
        attempt = 0
        while limit is None or attempt < limit:
            attempt += 1
            raw, version = await self.kv.get_versioned(CACHE_KEY)
            results, updated = self._plan_all(decode_cache(raw), messages)
            if updated is None:
                return [CacheUpdate(written=False, attempts=attempt, result=r) for r in results]
            if await self.kv.cas(CACHE_KEY, version, encode_cache(updated)):
                return [CacheUpdate(written=r == ADDED, attempts=attempt, result=r) for r in results]
            await cas_backoff(self.config, attempt)
        raise KVError(
            f"cache update for {', '.join(m['id'] for m in messages)} lost {limit} "
            "compare-and-swap races in a row"
        )

    async def _update_cache_in_store(self, messages: list[dict]) -> list[CacheUpdate]:
        # The store serialises the read-modify-write itself (`KV.update`: a SQLite write
        # transaction, a fenced lock on Redis): no lost swap between processes.
        outcome: dict[str, list[str]] = {}

        def plan(raw: str | None) -> str | None:
            results, updated = self._plan_all(decode_cache(raw), messages)
            outcome["results"] = results
            return None if updated is None else encode_cache(updated)

        _, written = await self.kv.update(CACHE_KEY, plan)
        return [CacheUpdate(written=written is not None and r == ADDED, result=r) for r in outcome["results"]]

    async def _update_cache_by_script(self, messages: list[dict]) -> list[CacheUpdate]:
        # Redis: SPEC §3 `add` run by the server itself (`KV.cache_add_all`: one script run for
        # the batch, one round trip): no lock, no retry. Not under an operation log (`LoggedKV`
        # does not pass `supports_cache_script` on; it logs `update`'s reads and writes).
        results = await self.kv.cache_add_all(
            CACHE_KEY,
            messages,
            cap=self.config.cap,
            dedupe=self.config.dedupe,
            write_outside=not self.config.skip_noop_cache_write,
        )
        named = {"added": ADDED, "present": ALREADY_PRESENT, "outside": OUTSIDE_WINDOW}
        return [CacheUpdate(written=r == "added", result=named[r]) for r in results]

    def already_cached(self, entries: list[dict], message: dict) -> bool:
        """Whether `message` is in a cache snapshot (the `dedupe` test: same id)."""
        return any(entry["id"] == message["id"] for entry in entries)

    def cache_add(self, entries: list[dict], message: dict) -> list[dict]:
        """SPEC §3 `add` with this worker's capacity."""
        return cache_add(entries, message, self.config.cap)


class _Claim:
    """Per-id lock of one process's posts (see `Worker.claimed`); forgotten when unused."""

    def __init__(self, locks: dict[str, asyncio.Lock], message_id: str) -> None:
        self.locks, self.message_id = locks, message_id

    async def __aenter__(self) -> None:
        lock = self.locks.get(self.message_id)
        if lock is None:
            lock = self.locks[self.message_id] = asyncio.Lock()
        self.lock = lock
        await lock.acquire()

    async def __aexit__(self, *exc) -> None:
        self.lock.release()
        if not self.lock.locked() and not getattr(self.lock, "_waiters", None):
            self.locks.pop(self.message_id, None)


class Sweeper:
    """SPEC §5's reconciler: lists `comment:` keys and adds the ids the cache lacks.

    One pass (`run_once`), seed design:
        list comment:                     SweepList
        get recent:comments               SweepRead
        get comment:<id> per missing id   stutter (message bodies never change once written);
                                          bodies already read are remembered, so usually none
        put recent:comments               SweepWrite (skipped if no id is missing)
    With atomic_cache: list, then repeat get_versioned + body gets + cas until the cas succeeds;
    the successful cas (or the versioned read that finds nothing missing) is the single
    SweepRead+SweepWrite step, the other calls are stutter steps.

    One deliberate difference from the model: when every missing id would be trimmed away at
    once (all older than a full cache), the write would not change what was read, and the
    sweeper skips it (`WorkerConfig.sweeper_skip_noop_write`); the model writes its snapshot
    back. Without that, a sweeper on a store with more than `cap` messages would rewrite the
    cache on every pass for ever. Lockstep tests with eviction turn the skip off.

    Cost: a pass costs the list call plus set operations on its keys (in C), and reads only the
    bodies of ids it has never seen. Bodies never change once stored (a repost of an id is
    refused), so the sweeper remembers every timestamp it learns (from the cache or a body) and
    keeps the keys older than a full cache's oldest entry in `outside`, which only grows while
    that floor rises (a heap of the other known keys by timestamp feeds it); if the floor falls
    (the cache lost entries), `outside` is rebuilt from what is remembered. Every pass still
    checks every listed key, so anything missing within the window is repaired on the next pass.
    On a store that indexes its `comment:` keys (Redis: `put` appends a new key to an index in
    the same script) the listing itself is incremental: the keys known so far plus those the
    index gained since the last pass (`_list`); listing 50,000 keys through SCAN alone costs
    Redis about 160 ms.
    """

    #: bodies remembered between passes (oldest forgotten first)
    memo_size = 10_000
    #: with an indexed store, a full listing every this many passes all the same
    full_every = 100
    #: timestamps remembered (keys beyond this are forgotten, oldest learned first, and read again)
    timestamps_size = 2_000_000

    def __init__(self, kv: KV, config: WorkerConfig | None = None) -> None:
        self.kv = kv
        self.config = config or WorkerConfig()
        self._bodies: dict[str, dict] = {}
        self._timestamps: dict[str, int] = {}  # comment key -> timestamp
        self._inside: list[tuple[int, str]] = []  # heap of known keys not in `_outside`
        self._outside: set[str] = set()  # known keys older than the floor
        self._floor: int | None = None
        self._listed: set[str] | None = None  # with an indexed store: every key listed so far
        self._cursor: int | None = None
        self._task: asyncio.Task | None = None
        self.passes = 0

    async def run_once(self) -> SweepResult:
        """One pass of the reconciler; returns what it found and whether it wrote."""
        token = set_request(RequestContext(f"sweep-{new_request_id()}", "sweep"))
        try:
            self.passes += 1
            keys = await self._list()
            if self.config.atomic_cache:
                return await self._pass_cas(keys)
            entries = decode_cache(await self.kv.get(CACHE_KEY))
            missing, outside, updated = await self._repair(keys, entries)
            if updated is None:
                return SweepResult(len(keys), missing, False, outside)
            await self.kv.put(CACHE_KEY, encode_cache(updated))
            return SweepResult(len(keys), missing, True, outside)
        finally:
            reset_request(token)

    async def _list(self) -> list[str] | set[str]:
        """Every stored `comment:` key: the store's listing, or, where the store keeps an index
        of them (`supports_list_since`: Redis), the keys known so far plus those written since
        the last pass (a full listing on the first pass, every `full_every` passes, and when
        the index shrank). Keys are never deleted (a wipe of the store is a new deployment)."""
        if not getattr(self.kv, "supports_list_since", False):
            return await self.kv.list(COMMENT_PREFIX)
        if self._cursor is not None and self.passes % self.full_every == 0:
            self._cursor = None
        new, self._cursor, full = await self.kv.list_since(COMMENT_PREFIX, self._cursor)
        if full or self._listed is None:
            self._listed = set(new)
        else:
            self._listed.update(new)
        return self._listed

    async def _repair(
        self, keys: list[str] | set[str], entries: list[dict]
    ) -> tuple[tuple[str, ...], int, list[dict] | None]:
        """The listed ids missing from `entries` (but those known to be older than a full cache,
        when the config skips no-op writes), how many those were, and the cache value that adds
        the missing ids (None when nothing is to be written)."""
        cached = set()
        for entry in entries:
            key = COMMENT_PREFIX + entry["id"]
            cached.add(key)
            self._remember(key, entry["timestamp"])
        absent = set(keys)
        absent -= cached
        skip = self.config.sweeper_skip_noop_write
        outside = 0
        if skip and len(entries) >= self.config.cap:
            self._raise_floor(min(entry["timestamp"] for entry in entries))
            before = len(absent)
            absent -= self._outside
            outside = before - len(absent)
        missing = tuple(sorted(key[len(COMMENT_PREFIX) :] for key in absent))
        if not missing:
            return missing, outside, None
        updated = cache_add_all(entries, await self._bodies_of(missing), self.config.cap)
        if skip and updated == entries:
            return missing, outside, None
        return missing, outside, updated

    async def _pass_cas(self, keys: list[str] | set[str]) -> SweepResult:
        limit = self.config.max_cas_attempts
        attempt = 0
        while limit is None or attempt < limit:
            attempt += 1
            raw, version = await self.kv.get_versioned(CACHE_KEY)
            missing, outside, updated = await self._repair(keys, decode_cache(raw))
            if updated is None:
                return SweepResult(len(keys), missing, False, outside)
            if await self.kv.cas(CACHE_KEY, version, encode_cache(updated)):
                return SweepResult(len(keys), missing, True, outside)
            await cas_backoff(self.config, attempt)
        raise KVError(f"sweeper lost {limit} compare-and-swap races in a row")

    def _remember(self, key: str, timestamp: int) -> None:
        if key in self._timestamps:
            return
        if len(self._timestamps) >= self.timestamps_size:
            forgotten = next(iter(self._timestamps))
            del self._timestamps[forgotten]
            self._outside.discard(forgotten)  # (a stale heap entry is skipped when popped)
        self._timestamps[key] = timestamp
        if self._floor is not None and timestamp < self._floor:
            self._outside.add(key)
        else:
            heapq.heappush(self._inside, (timestamp, key))

    def _raise_floor(self, floor: int) -> None:
        """Move the known keys older than `floor` (a full cache's oldest timestamp) to `outside`."""
        if self._floor is not None and floor < self._floor:
            # the cache lost entries (a stale write): rebuild from every remembered timestamp
            self._outside = {key for key, ts in self._timestamps.items() if ts < floor}
            self._inside = [(ts, key) for key, ts in self._timestamps.items() if ts >= floor]
            heapq.heapify(self._inside)
        self._floor = floor
        heap = self._inside
        while heap and heap[0][0] < floor:
            ts, key = heapq.heappop(heap)
            if self._timestamps.get(key) == ts:
                self._outside.add(key)

    async def _bodies_of(self, missing: tuple[str, ...]) -> list[dict]:
        bodies = []
        for message_id in missing:
            body = self._bodies.get(message_id)
            if body is None:
                body = decode_message(await self.kv.get(comment_key(message_id)))
                if body is None:
                    continue
                if len(self._bodies) >= self.memo_size:
                    self._bodies.pop(next(iter(self._bodies)))
                self._bodies[message_id] = body
                self._remember(comment_key(message_id), body["timestamp"])
            bodies.append(body)
        bodies.sort(key=lambda body: (body["timestamp"], body["id"]))
        return bodies

    async def run_forever(self, interval: float | None = None) -> None:
        """Run passes every `interval` seconds (the config's by default) until cancelled."""
        interval = self.config.sweep_interval if interval is None else interval
        while True:
            try:
                await self.run_once()
            except KVError as exc:
                log.warning("sweeper pass failed: %s", exc)
            await asyncio.sleep(interval)

    def start(self, interval: float | None = None) -> asyncio.Task:
        """Start `run_forever` as a task of the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run_forever(interval))
        return self._task

    async def stop(self) -> None:
        """Cancel the background loop and wait for it to end."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


# -- HTTP ----------------------------------------------------------------------------------------
class Refused(Exception):
    """A request answered with a 4xx before any KV call: status, reason, extra headers."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def _refusal(exc: Refused | BadInput) -> JSONResponse:
    """The 4xx answer of a request refused before any KV call (bad input is a 400)."""
    if isinstance(exc, Refused):
        return _error(exc.status, exc.reason, exc.headers)
    return _error(400, str(exc))


def _is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _read_json(request: Request, config: WorkerConfig):
    """The request's JSON body, or Refused (415, 413, 408, 400): a JSON content type, at most
    `max_body` bytes arriving within `body_timeout` seconds, nested at most `max_json_depth`."""
    max_body = config.max_body
    if not _is_json_type(request.headers.get("content-type")):
        raise Refused(415, "Content-Type must be application/json")
    length = request.headers.get("content-length")
    if length is not None:
        try:
            too_large = int(length) > max_body
        except ValueError:
            raise Refused(400, "malformed Content-Length") from None
        if too_large:
            raise Refused(413, f"body larger than {max_body} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(config.body_timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    raise Refused(413, f"body larger than {max_body} bytes")
    except TimeoutError:
        raise Refused(
            408, f"request body not received within {config.body_timeout:g} s", {"connection": "close"}
        ) from None
    except ClientDisconnect:
        # nobody will read the answer; no traceback in the log, nothing written
        raise Refused(400, "the client went away before sending its body") from None
    try:
        check_json_depth(bytes(body), config.max_json_depth)
        return json.loads(body)
    except BadInput as exc:
        raise Refused(400, str(exc)) from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Refused(400, "body is not valid JSON") from None


def _enter(endpoint: str, message_id: str | None = None) -> None:
    ctx = current_request()
    set_request(RequestContext(ctx.request_id if ctx else new_request_id(), endpoint, message_id))


def _int_param(request: Request, name: str, low: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"{name} must be an integer") from None
    if value < low:
        raise BadInput(f"{name} must be at least {low}")
    if value > MAX_TIMESTAMP:
        raise BadInput(f"{name} must be at most {MAX_TIMESTAMP}")
    return value


def _client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _limit(limiter: RateLimiter, request: Request, what: str) -> None:
    wait = limiter.take(_client_key(request))
    if wait > 0:
        raise Refused(
            429, f"too many {what} from this address; retry later", {"retry-after": limiter.retry_after(wait)}
        )


def _routes(worker: Worker) -> list[Route]:
    config = worker.config
    post_limiter = RateLimiter(config.post_rate, config.post_burst)
    heal_limiter = RateLimiter(config.heal_rate, config.heal_burst)

    async def post_comment(request: Request) -> JSONResponse:
        _enter("post")
        try:
            _limit(post_limiter, request, "posts")
            body = await _read_json(request, config)
            message = validate_post(
                body,
                max_text=config.max_text,
                max_future_ms=config.max_future_ms,
                now_ms=None if worker.clock is None else int(worker.clock()),
            )
        except (Refused, BadInput) as exc:
            return _refusal(exc)
        timestamp_given = body.get("timestamp") is not None
        _enter("post", message["id"])
        try:
            async with worker.claimed(message["id"]):
                outcome, stored = await worker.claim(message, timestamp_given=timestamp_given)
                if outcome == "taken":
                    return _error(409, "a different message with this id exists")
                if outcome == "repeat":
                    # an idempotent retry: the original acknowledgement, nothing written
                    return JSONResponse(
                        {
                            "success": True,
                            "comment": stored,
                            "healToken": worker.heal_token(stored),
                            "cached": False,
                            "repeat": True,
                        }
                    )
                update = await worker.post(message)
        except RequestFailure as exc:
            # SPEC §6 post_fails: the request fails after put comment:<id> (the deployed app's
            # heartbeat put hit the write limit); the message is stored, the answer is a 500
            log.warning("post %s failed after its key was stored: %s", message["id"], exc)
            return _error(500, "internal error")
        except KVError as exc:
            log.warning("post %s failed: %s", message["id"], exc)
            return _error(503, "store unavailable")
        return JSONResponse(
            {
                "success": True,
                "comment": message,
                "healToken": worker.heal_token(message),
                "cached": update is not None and update.result != OUTSIDE_WINDOW,
            }
        )

    async def get_comments(request: Request) -> JSONResponse:
        _enter("read")
        try:
            after = _int_param(request, "after", 0)
            limit = _int_param(request, "limit", 1)
            offset = _int_param(request, "offset", 0) or 0
            kind = request.query_params.get("type")
            if kind is not None and kind not in MESSAGE_TYPES:
                raise BadInput(f"type must be one of {', '.join(MESSAGE_TYPES)}")
        except BadInput as exc:
            return _error(400, str(exc))
        limit = min(limit or config.default_limit, config.max_limit)
        try:
            entries = await worker.read_cache()
        except KVError as exc:
            log.warning("read failed: %s", exc)
            return _error(503, "store unavailable")
        if after is not None:
            entries = [entry for entry in entries if entry["timestamp"] > after]
        if kind is not None:  # the page's channel (SPEC §6 ai_channel)
            entries = [entry for entry in entries if message_type(entry) == kind]
        newest_first = entries[::-1]
        return JSONResponse({"comments": newest_first[offset : offset + limit], "total": len(entries)})

    async def add_to_cache(request: Request) -> JSONResponse:
        _enter("heal")
        try:
            _limit(heal_limiter, request, "heals")
            message_id, token = validate_heal(await _read_json(request, config))
        except (Refused, BadInput) as exc:
            return _refusal(exc)
        if not worker.check_heal_token(message_id, token):
            return _error(403, "heal token does not match this message")
        _enter("heal", message_id)
        try:
            message = await worker.read_message(message_id)
            if message is None:
                return _error(404, "no such message")
            if not worker.token_fits(token, message):
                return _error(403, "heal token does not match this message")
            update = await worker.update_cache(message, atomic=config.heal_atomic)
        except WriteLimited as exc:
            # SPEC §6 put_fails: the deployed app logged a failed cache write and answered
            # success; the heal ends, the cache unchanged
            log.warning("heal %s: cache write refused: %s", message_id, exc)
            return JSONResponse({"success": True, "added": False, "result": WRITE_FAILED})
        except KVError as exc:
            log.warning("heal %s failed: %s", message_id, exc)
            return _error(503, "store unavailable")
        return JSONResponse({"success": True, "added": update.result == ADDED, "result": update.result})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_schema(config))

    return [
        Route("/api/comments", post_comment, methods=["POST"]),
        Route("/api/comments", get_comments, methods=["GET"]),
        Route("/api/admin/add-to-cache", add_to_cache, methods=["POST"]),
        Route("/api/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


class RequestIdMiddleware:
    """Give every request a request id (the X-Request-Id header if valid, else a fresh one).

    Plain ASGI, so the contextvar is set in the request's own task and seen by the KV layer.
    The id is echoed in the response's X-Request-Id header.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                supplied = value.decode("latin-1")
        request_id = supplied if valid_request_id(supplied) else new_request_id()
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", ())) + [header]
            await send(message)

        token = set_request(RequestContext(request_id))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_request(token)


def create_app(
    kv: KV,
    config: WorkerConfig | None = None,
    *,
    worker: Worker | None = None,
    sweeper: Sweeper | None = None,
    close_kv: bool = False,
) -> Starlette:
    """The worker's ASGI app over `kv`.

    `app.state` holds `kv`, `config`, `worker` and `sweeper` (a `Sweeper` when the design has
    one, else None). With `sweeper` in the variants and `config.sweeper_in_app`, the app's
    lifespan runs the sweeper loop (uvicorn runs lifespans; `httpx2.ASGITransport` does not, so
    in-process tests call `app.state.sweeper.run_once()` themselves). `close_kv` closes the KV
    at shutdown.
    """
    config = config or (worker.config if worker is not None else WorkerConfig())
    if "stale_reads" in config.variants and worker is None and not isinstance(kv, StaleReadKV):
        # SPEC §6 stale_reads in a real run: a cache read within a minute of a write may be
        # served the value before it, as a KV read at another location may
        kv = StaleReadKV(kv, keys=(CACHE_KEY,))
    if "put_fails" in config.variants and worker is None and not isinstance(kv, WriteLimitKV):
        # SPEC §6 put_fails in a real run: KV's one write per second per key, on the cache
        kv = WriteLimitKV(kv, keys=(CACHE_KEY,))
    if worker is None:
        worker = Worker(kv, config)
    if sweeper is None and config.sweeper:
        sweeper = Sweeper(kv, config)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        if sweeper is not None and config.sweeper_in_app:
            sweeper.start()
        try:
            yield
        finally:
            if sweeper is not None:
                await sweeper.stop()
            if close_kv:
                await kv.aclose()

    middleware = []
    if config.allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts)))
    if config.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["content-type", "x-request-id"],
                expose_headers=["x-request-id", "retry-after"],
                max_age=600,
            )
        )
    from .queue_api import queue_routes  # the status and queue endpoints (bot_scan, bot_claims)

    app = Starlette(routes=_routes(worker) + queue_routes(worker), lifespan=lifespan, middleware=middleware)
    app.add_middleware(RequestIdMiddleware)
    app.state.kv = kv
    app.state.config = config
    app.state.worker = worker
    app.state.sweeper = sweeper
    return app

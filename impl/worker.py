"""The worker: SPEC §8's HTTP API as a Starlette app over an injected KV, in every design.

KV calls per request, in order (each one step of SPEC §4; nothing else touches the KV):

    POST /api/comments           put comment:<id>                          PostKey
                                 cache update (below)                      PostRead/PostWrite | PostCache
                                 200 {comment, healToken, cached}          PostAck (when the client records it)
    POST /api/admin/add-to-cache heal token checked first (403, no KV call)
                                 get comment:<id>  (404 if absent)          HealKey
                                 cache update (below)                      HealRead/HealWrite | HealCache
    GET  /api/comments           get recent:comments                       PollRead

    cache update, seed/dedupe:   get recent:comments                       *Read
                                 put recent:comments  (no put if `dedupe`
                                 and the id is in what was read)           *Write
    cache update, atomic_cache:  repeat: get_versioned recent:comments;
                                 (stop if `dedupe` and the id is there);
                                 cas  -> done if it succeeded, else a short
                                 random backoff (no KV call) and again     the successful cas (or, with dedupe,
                                                                           the read that found the id) is
                                                                           PostCache/HealCache; the other calls
                                                                           change nothing: stutter steps

A failed cache update after the key was written is logged and the POST still answers 200 with
`cached: false`, as the original did: the message is stored and the heal repairs the cache.
The sweeper (SPEC §5 `sweeper`) is in `Sweeper`; see its docstring for its calls.

Heal authorization: the POST's answer carries `healToken`, an HMAC of the id under the
worker's secret; add-to-cache without the right token is refused (403) before any KV call, so
nobody but the poster can make the worker write. Unknown ids get 404.

To plant a fault for tests, subclass `Worker` (or `Sweeper`) and override one small method
(`post`, `update_cache`, `already_cached`, ...), then pass it to `create_app(worker=...)`.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .config import ConfigError, WorkerConfig
from .context import (RequestContext, current_request, new_request_id, reset_request, set_request,
                      valid_request_id)
from .kv import KV, KVError
from .messages import (CACHE_KEY, COMMENT_PREFIX, BadInput, cache_add, cache_add_all, comment_key,
                       decode_cache, decode_message, encode_cache, encode_message, validate_heal,
                       validate_post)

__all__ = ["Worker", "Sweeper", "CacheUpdate", "SweepResult", "create_app", "BodyTooLarge"]

log = logging.getLogger("kvheal.worker")


class BodyTooLarge(Exception):
    """A request body over the configured limit (answered with 413)."""


@dataclass(frozen=True, slots=True)
class CacheUpdate:
    """What a cache update did: `written` (a put or successful cas happened), `attempts` (cas tries)."""

    written: bool
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class SweepResult:
    """One sweeper pass: how many `comment:` keys it listed, which ids were missing, whether it wrote."""

    listed: int
    missing: tuple[str, ...]
    written: bool


async def cas_backoff(config: WorkerConfig, attempt: int) -> None:
    """Wait after the `attempt`-th lost compare-and-swap: random, exponential, capped (no KV call)."""
    if config.cas_backoff_ms > 0:
        ceiling = min(config.cas_backoff_ms * 2 ** (attempt - 1), 8.0)
        await asyncio.sleep(random.uniform(0, ceiling) / 1000)


class Worker:
    """The request handlers' logic over one KV; one instance per app (per process)."""

    def __init__(self, kv: KV, config: WorkerConfig | None = None) -> None:
        self.kv = kv
        self.config = config or WorkerConfig()
        if self.config.atomic_cache and not kv.supports_cas:
            raise ConfigError(f"the atomic_cache design needs compare-and-swap, which the {kv.name} "
                              "backend does not offer (use sqlite, redis or memory)")

    # -- heal tokens ---------------------------------------------------------------------------
    def heal_token(self, message_id: str) -> str:
        """The token that authorizes healing `message_id` (returned to its poster)."""
        return hmac.new(self.config.secret, message_id.encode(), hashlib.sha256).hexdigest()[:32]

    def check_heal_token(self, message_id: str, token: str) -> bool:
        """Whether `token` authorizes healing `message_id` (constant-time comparison)."""
        return hmac.compare_digest(self.heal_token(message_id), token)

    # -- the steps -------------------------------------------------------------------------------
    async def post(self, message: dict) -> CacheUpdate | None:
        """Store a validated message, then add it to the cache; None if the cache update failed."""
        await self.store(message)
        try:
            return await self.update_cache(message)
        except KVError as exc:
            log.warning("cache update for %s failed after the key was stored: %s", message["id"], exc)
            return None

    async def store(self, message: dict) -> None:
        """Write `comment:<id>` (PostKey)."""
        await self.kv.put(comment_key(message["id"]), encode_message(message))

    async def heal(self, message_id: str) -> CacheUpdate | None:
        """Read `comment:<id>` and add it to the cache; None if there is no such message (404)."""
        message = decode_message(await self.kv.get(comment_key(message_id)))
        if message is None:
            return None
        return await self.update_cache(message)

    async def read_cache(self) -> list[dict]:
        """The cache's messages, oldest first (one `get`)."""
        return decode_cache(await self.kv.get(CACHE_KEY))

    async def update_cache(self, message: dict) -> CacheUpdate:
        """Add `message` to the cache as the design says: racy read-modify-write or a CAS loop."""
        if self.config.atomic_cache:
            return await self._update_cache_cas(message)
        return await self._update_cache_rmw(message)

    async def _update_cache_rmw(self, message: dict) -> CacheUpdate:
        entries = decode_cache(await self.kv.get(CACHE_KEY))
        if self.config.dedupe and self.already_cached(entries, message):
            return CacheUpdate(written=False)
        await self.kv.put(CACHE_KEY, encode_cache(self.cache_add(entries, message)))
        return CacheUpdate(written=True)

    async def _update_cache_cas(self, message: dict) -> CacheUpdate:
        for attempt in range(1, self.config.max_cas_attempts + 1):
            raw, version = await self.kv.get_versioned(CACHE_KEY)
            entries = decode_cache(raw)
            if self.config.dedupe and self.already_cached(entries, message):
                return CacheUpdate(written=False, attempts=attempt)
            if await self.kv.cas(CACHE_KEY, version, encode_cache(self.cache_add(entries, message))):
                return CacheUpdate(written=True, attempts=attempt)
            await cas_backoff(self.config, attempt)
        raise KVError(f"cache update for {message['id']} lost {self.config.max_cas_attempts} "
                      "compare-and-swap races in a row")

    def already_cached(self, entries: list[dict], message: dict) -> bool:
        """Whether `message` is in a cache snapshot (the `dedupe` test: same id)."""
        return any(entry["id"] == message["id"] for entry in entries)

    def cache_add(self, entries: list[dict], message: dict) -> list[dict]:
        """SPEC §3 `add` with this worker's capacity."""
        return cache_add(entries, message, self.config.cap)


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
    """

    #: bodies remembered between passes (oldest forgotten first)
    memo_size = 10_000

    def __init__(self, kv: KV, config: WorkerConfig | None = None) -> None:
        self.kv = kv
        self.config = config or WorkerConfig()
        self._bodies: dict[str, dict] = {}
        self._task: asyncio.Task | None = None
        self.passes = 0

    async def run_once(self) -> SweepResult:
        """One pass of the reconciler; returns what it found and whether it wrote."""
        token = set_request(RequestContext(f"sweep-{new_request_id()}", "sweep"))
        try:
            self.passes += 1
            keys = await self.kv.list(COMMENT_PREFIX)
            ids = [key[len(COMMENT_PREFIX):] for key in keys]
            if self.config.atomic_cache:
                return await self._pass_cas(ids)
            entries = decode_cache(await self.kv.get(CACHE_KEY))
            missing, updated = await self._repair(ids, entries)
            if updated is None:
                return SweepResult(len(ids), tuple(missing), False)
            await self.kv.put(CACHE_KEY, encode_cache(updated))
            return SweepResult(len(ids), tuple(missing), True)
        finally:
            reset_request(token)

    async def _repair(self, ids: list[str], entries: list[dict]) -> tuple[list[str], list[dict] | None]:
        """The listed ids missing from `entries`, and the cache value that adds them (None when
        nothing is to be written: nothing missing, or a no-op write that the config skips)."""
        missing = self._missing(ids, entries)
        if not missing:
            return missing, None
        updated = cache_add_all(entries, await self._bodies_of(missing), self.config.cap)
        if self.config.sweeper_skip_noop_write and updated == entries:
            return missing, None
        return missing, updated

    async def _pass_cas(self, ids: list[str]) -> SweepResult:
        for attempt in range(1, self.config.max_cas_attempts + 1):
            raw, version = await self.kv.get_versioned(CACHE_KEY)
            missing, updated = await self._repair(ids, decode_cache(raw))
            if updated is None:
                return SweepResult(len(ids), tuple(missing), False)
            if await self.kv.cas(CACHE_KEY, version, encode_cache(updated)):
                return SweepResult(len(ids), tuple(missing), True)
            await cas_backoff(self.config, attempt)
        raise KVError(f"sweeper lost {self.config.max_cas_attempts} compare-and-swap races in a row")

    @staticmethod
    def _missing(ids: list[str], entries: list[dict]) -> list[str]:
        cached = {entry["id"] for entry in entries}
        return [message_id for message_id in ids if message_id not in cached]

    async def _bodies_of(self, missing: list[str]) -> list[dict]:
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
def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def _read_json(request: Request, max_body: int):
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > max_body:
                raise BodyTooLarge
        except ValueError:
            raise BadInput("malformed Content-Length") from None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise BodyTooLarge
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("body is not valid JSON") from None


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
    return value


def _routes(worker: Worker) -> list[Route]:
    config = worker.config

    async def post_comment(request: Request) -> JSONResponse:
        _enter("post")
        try:
            message = validate_post(await _read_json(request, config.max_body), max_text=config.max_text)
        except BadInput as exc:
            return _error(400, str(exc))
        except BodyTooLarge:
            return _error(413, f"body larger than {config.max_body} bytes")
        _enter("post", message["id"])
        try:
            update = await worker.post(message)
        except KVError as exc:
            log.warning("post %s failed: %s", message["id"], exc)
            return _error(503, "store unavailable")
        return JSONResponse({"success": True, "comment": message,
                             "healToken": worker.heal_token(message["id"]),
                             "cached": update is not None})

    async def get_comments(request: Request) -> JSONResponse:
        _enter("read")
        try:
            after = _int_param(request, "after", 0)
            limit = _int_param(request, "limit", 1)
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
        return JSONResponse({"comments": entries[::-1][:limit]})

    async def add_to_cache(request: Request) -> JSONResponse:
        _enter("heal")
        try:
            message_id, token = validate_heal(await _read_json(request, config.max_body))
        except BadInput as exc:
            return _error(400, str(exc))
        except BodyTooLarge:
            return _error(413, f"body larger than {config.max_body} bytes")
        if not worker.check_heal_token(message_id, token):
            return _error(403, "heal token does not match this message")
        _enter("heal", message_id)
        try:
            update = await worker.heal(message_id)
        except KVError as exc:
            log.warning("heal %s failed: %s", message_id, exc)
            return _error(503, "store unavailable")
        if update is None:
            return _error(404, "no such message")
        return JSONResponse({"success": True, "added": update.written})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return [
        Route("/api/comments", post_comment, methods=["POST"]),
        Route("/api/comments", get_comments, methods=["GET"]),
        Route("/api/admin/add-to-cache", add_to_cache, methods=["POST"]),
        Route("/api/health", health, methods=["GET"]),
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


def create_app(kv: KV, config: WorkerConfig | None = None, *, worker: Worker | None = None,
               sweeper: Sweeper | None = None, close_kv: bool = False) -> Starlette:
    """The worker's ASGI app over `kv`.

    `app.state` holds `kv`, `config`, `worker` and `sweeper` (a `Sweeper` when the design has
    one, else None). With `sweeper` in the variants and `config.sweeper_in_app`, the app's
    lifespan runs the sweeper loop (uvicorn runs lifespans; `httpx2.ASGITransport` does not, so
    in-process tests call `app.state.sweeper.run_once()` themselves). `close_kv` closes the KV
    at shutdown.
    """
    config = config or (worker.config if worker is not None else WorkerConfig())
    worker = worker or Worker(kv, config)
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

    app = Starlette(routes=_routes(worker), lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    app.state.kv = kv
    app.state.config = config
    app.state.worker = worker
    app.state.sweeper = sweeper
    return app

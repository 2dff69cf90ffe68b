"""Message statuses and the bot's queue: SPEC §8's status and queue endpoints.

A message that wants a bot's reply has a status, kept in its own key and in each cache copy:

    status:<id>      {"status": "pending" | "processing" | "complete" | "failed", "bot": ..., "reply": ...}
    recent:comments  each entry of the id may carry "status" (a copy, patched by the writers below)

`pending` asks for a reply, a claim makes it `processing`, `complete` and `failed` are final. A
message without a status key is a plain chat message (the bot's own replies are such).

Endpoints (all but the poster's PATCH need the bot token, `Authorization: Bearer <token>`, an
HMAC under the worker's secret: `bot_token`; every check comes before any KV call):

    PATCH /api/comments/<id>      {"status", "healToken"?}: the bot sets any status; the poster
                                  (with the message's heal token) may set "pending" once.
                                  get comment:<id> (404), [poster: get status:<id>, 409 if set],
                                  put status:<id>, then the cache patch (below)
    GET   /api/queue/pending      the pending scan (below); answers the pending messages
    POST  /api/queue/claim        {"messageId", "bot"?}: pending -> processing; 409 if not pending
    POST  /api/queue/complete     {"messageId", "bot"?, "replyId"?}: processing -> complete, then
                                  the cache patch; 409 if not claimed

The pending scan, as built (`bot_scan`, the original app's, SPEC §6):

    get recent:comments                         ScanRead
    get status:<id> of the first copy of each   stutters (they change nothing)
      id whose copy is not final
    put recent:comments: the array it read,     ScanWrite (always, even when nothing changed:
      the first copy of each id patched         whatever reached the cache meanwhile is lost)

and without the flag: `list status:`, `get recent:comments`, `get status:<id>` of each non-final
id that has a key, then, only if some copy differs from its key, the cache patch. The cache
patch (PATCH, complete, the fixed scan) is one atomic update that sets the status of every copy
of the ids and writes nothing when nothing changes: the store's own read-modify-write
(`KV.update`, with `store_update`) or a `get_versioned`/`cas` loop; it never changes which ids
the cache holds, so it is a stutter of the model.

The claim, as built (`bot_claims` without `claim_cas`): `get status:<id>` (ClaimRead), `put
status:<id>` processing (ClaimWrite): two bots that both read "pending" both claim. Otherwise
(by default, and with `claim_cas`): `get_versioned status:<id>` (a stutter), `cas status:<id>`
(ClaimCas; a lost swap reads again and finds it claimed). A claim touches only the key (as the
model's): the next scan copies the new status into the cache.

A backend without compare-and-swap cannot do the atomic versions: those requests answer 501
before any KV call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .config import WorkerConfig
from .kv import KV, KVError
from .messages import CACHE_KEY, MAX_ID_LENGTH, BadInput, decode_cache, encode_cache, json_or_none
from .openapi import MAX_SCAN_LIMIT, STATUSES
from .ratelimit import RateLimiter
from .worker import Refused, Worker, _enter, _error, _int_param, _limit, _read_json, _refusal, cas_backoff

__all__ = [
    "STATUS_PREFIX",
    "STATUSES",
    "FINAL",
    "status_key",
    "bot_token",
    "Queue",
    "ScanResult",
    "queue_routes",
    "CLAIMED",
    "TAKEN",
    "NOT_QUEUED",
    "COMPLETED",
    "NOT_CLAIMED",
    "DEFAULT_SCAN_LIMIT",
    "MAX_SCAN_LIMIT",
]

STATUS_PREFIX = "status:"
FINAL = frozenset({"complete", "failed"})
DEFAULT_SCAN_LIMIT = 10
#: what a claim or a completion did
CLAIMED, TAKEN, NOT_QUEUED = "claimed", "taken", "not queued"
COMPLETED, NOT_CLAIMED = "completed", "not claimed"


def status_key(message_id: str) -> str:
    """The KV key that holds message `message_id`'s status."""
    return STATUS_PREFIX + message_id


def bot_token(secret: bytes) -> str:
    """The token the bot presents (`Authorization: Bearer ...`): 48 hex digits of an HMAC under
    the worker's secret, so whoever has the deployment's secret file can run a bot."""
    return hmac.new(secret, b"kvheal bot token", hashlib.sha256).hexdigest()[:48]


def decode_status(raw: str | bytes | None) -> dict | None:
    """The value of a `status:<id>` key, or None if absent or unreadable."""
    value = json_or_none(raw)
    if not isinstance(value, dict) or value.get("status") not in STATUSES:
        return None
    return value


def encode_status(status: str, **extra: Any) -> str:
    value = {"status": status, **{k: v for k, v in extra.items() if v is not None}}
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


#: the order in which a message's status advances (the scan never moves a copy back)
_RANK = {None: -1, "pending": 0, "processing": 1, "complete": 2, "failed": 2}


def patch_entries(
    entries: list[dict], statuses: dict[str, str], *, first_only: bool, forward_only: bool = False
) -> tuple[list[dict], bool]:
    """`entries` with the status of the ids in `statuses` set (in the first copy of each id
    only, as the original's writers did, or in every copy; with `forward_only`, only where it
    advances the copy's status); whether anything changed."""
    out, done, changed = [], set(), False
    for entry in entries:
        status = statuses.get(entry["id"])
        if status is not None and not (first_only and entry["id"] in done):
            done.add(entry["id"])
            current = entry.get("status")
            if current != status and not (forward_only and _RANK.get(current, -1) >= _RANK[status]):
                entry = {**entry, "status": status}
                changed = True
        out.append(entry)
    return out, changed


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One pending scan: the pending messages (cache copies, oldest first, at most the limit),
    how many status keys it read, and whether it wrote the cache."""

    pending: list[dict]
    status_reads: int
    written: bool


class NeedsCas(Exception):
    """The operation needs compare-and-swap, which the backend lacks (answered with 501)."""


class Queue:
    """The status writers and the queue's operations over one KV (one per app)."""

    def __init__(self, kv: KV, config: WorkerConfig | None = None) -> None:
        self.kv = kv
        self.config = config or WorkerConfig()

    @property
    def scan_as_built(self) -> bool:
        """The original's scan: write back the array read (`bot_scan`)."""
        return "bot_scan" in self.config.variants

    @property
    def claim_as_built(self) -> bool:
        """The original's claim: a plain get then put (`bot_claims` without `claim_cas`)."""
        return "bot_claims" in self.config.variants and "claim_cas" not in self.config.variants

    def check_cas(self, operation: str) -> None:
        """NeedsCas if `operation` would need compare-and-swap and the backend has none."""
        atomic = {"scan": not self.scan_as_built, "claim": not self.claim_as_built}.get(operation, True)
        if atomic and not self.kv.supports_cas:
            raise NeedsCas(
                f"the {self.kv.name} backend has no compare-and-swap, which the {operation} "
                "endpoint needs in this design"
            )

    async def read_status(self, message_id: str) -> dict | None:
        """The status key's value (one get), or None."""
        return decode_status(await self.kv.get(status_key(message_id)))

    async def set_status(self, message_id: str, status: str, **extra: Any) -> bool:
        """Put the status key, then patch the cache; whether the cache was written."""
        await self.kv.put(status_key(message_id), encode_status(status, **extra))
        return await self.patch_cache({message_id: status})

    async def patch_cache(self, statuses: dict[str, str], *, forward_only: bool = False) -> bool:
        """Set the status of every cache copy of these ids in one atomic update (nothing
        written when nothing changes; with `forward_only` no copy's status moves back: the
        scan's statuses may be older than a completion that patched meanwhile); whether it wrote."""

        def patch(raw: str | None) -> str | None:
            updated, changed = patch_entries(
                decode_cache(raw), statuses, first_only=False, forward_only=forward_only
            )
            return encode_cache(updated) if changed else None

        if self.config.store_update and getattr(self.kv, "supports_update", False):
            _, written = await self.kv.update(CACHE_KEY, patch)
            return written is not None
        limit, attempt = self.config.max_cas_attempts, 0
        while limit is None or attempt < limit:
            attempt += 1
            raw, version = await self.kv.get_versioned(CACHE_KEY)
            value = patch(raw)
            if value is None:
                return False
            if await self.kv.cas(CACHE_KEY, version, value):
                return True
            await cas_backoff(self.config, attempt)
        raise KVError(f"status patch lost {limit} compare-and-swap races in a row")

    async def scan(self, limit: int = DEFAULT_SCAN_LIMIT) -> ScanResult:
        """The pending scan (`GET /api/queue/pending`), as the design says (module docstring)."""
        if self.scan_as_built:
            keyed = None
        else:
            keyed = {key[len(STATUS_PREFIX) :] for key in await self.kv.list(STATUS_PREFIX)}
        entries = decode_cache(await self.kv.get(CACHE_KEY))
        todo: list[str] = []
        seen: set[str] = set()
        for entry in entries:
            mid = entry["id"]
            if mid in seen:
                continue
            seen.add(mid)
            if entry.get("status") not in FINAL and (keyed is None or mid in keyed):
                todo.append(mid)
        statuses: dict[str, str] = {}
        for mid in todo:
            value = await self.read_status(mid)
            if value is not None:
                statuses[mid] = value["status"]
        if self.scan_as_built:
            patched, _ = patch_entries(entries, statuses, first_only=True)
            await self.kv.put(CACHE_KEY, encode_cache(patched))
            written = True
        else:
            _, changed = patch_entries(entries, statuses, first_only=False, forward_only=True)
            written = await self.patch_cache(statuses, forward_only=True) if changed else False
        pending, listed = [], set()
        for entry in entries:
            mid = entry["id"]
            if statuses.get(mid) == "pending" and mid not in listed and len(pending) < limit:
                listed.add(mid)
                pending.append({**entry, "status": "pending"})
        return ScanResult(pending, len(todo), written)

    async def claim(self, message_id: str, bot: str | None = None) -> str:
        """Claim a pending message for `bot`: CLAIMED, TAKEN (not pending), or NOT_QUEUED (no
        status key)."""
        key = status_key(message_id)
        value = encode_status("processing", bot=bot)
        if self.claim_as_built:
            current = decode_status(await self.kv.get(key))
            if current is None:
                return NOT_QUEUED
            if current["status"] != "pending":
                return TAKEN
            await self.kv.put(key, value)
            return CLAIMED
        limit, attempt = self.config.max_cas_attempts, 0
        while limit is None or attempt < limit:
            attempt += 1
            raw, version = await self.kv.get_versioned(key)
            current = decode_status(raw)
            if current is None:
                return NOT_QUEUED
            if current["status"] != "pending":
                return TAKEN
            if await self.kv.cas(key, version, value):
                return CLAIMED
            await cas_backoff(self.config, attempt)
        raise KVError(f"claim of {message_id} lost {limit} compare-and-swap races in a row")

    async def complete(
        self, message_id: str, bot: str | None = None, reply_id: str | None = None
    ) -> tuple[str, bool]:
        """Mark a claimed message complete: (COMPLETED, cache written) or (NOT_CLAIMED or
        NOT_QUEUED, False)."""
        current = await self.read_status(message_id)
        if current is None:
            return NOT_QUEUED, False
        if current["status"] != "processing":
            return NOT_CLAIMED, False
        return COMPLETED, await self.set_status(message_id, "complete", bot=bot, reply=reply_id)


# -- HTTP ----------------------------------------------------------------------------------------
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _check_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or not set(value) <= _NAME_CHARS:
        raise BadInput(f"{field} must be 1 to {MAX_ID_LENGTH} letters, digits, '-' or '_'")
    return value


def _optional_name(body: dict, field: str) -> str | None:
    return None if body.get(field) is None else _check_name(body[field], field)


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    return body


def _check_status(body: dict) -> str:
    if "status" not in body:
        raise BadInput("missing field: status")
    status = body["status"]
    if not isinstance(status, str) or status not in STATUSES:
        raise BadInput(f"status must be one of {', '.join(STATUSES)}")
    return status


def _message_id(body: dict) -> str:
    if "messageId" not in body:
        raise BadInput("missing field: messageId")
    return _check_name(body["messageId"], "messageId")


def queue_routes(worker: Worker) -> list[Route]:
    """The status and queue endpoints of `worker`'s app (mounted by `create_app`)."""
    config = worker.config
    queue = Queue(worker.kv, config)
    expected = "Bearer " + bot_token(config.secret)
    poster_limiter = RateLimiter(config.heal_rate, config.heal_burst)

    def bot_auth(request: Request) -> bool:
        """Whether the request presents the bot token; Refused 403 for a wrong one."""
        given = request.headers.get("authorization")
        if given is None:
            return False
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
            raise Refused(403, "wrong bot token")
        return True

    def need_bot(request: Request) -> None:
        if not bot_auth(request):
            raise Refused(401, "this endpoint needs the bot token (Authorization: Bearer <token>)")

    async def run(endpoint: str, message_id: str | None, work):
        """Check compare-and-swap for `endpoint`, run `work`, map store failures to 503."""
        _enter(endpoint, message_id)
        try:
            queue.check_cas(endpoint)
            return await work()
        except NeedsCas as exc:
            return _error(501, str(exc))
        except KVError as exc:
            return _error(503, f"store unavailable ({type(exc).__name__})")

    async def patch_status(request: Request) -> JSONResponse:
        _enter("status")
        try:
            message_id = _check_name(request.path_params["id"], "id")
            is_bot = bot_auth(request)
            if not is_bot:
                _limit(poster_limiter, request, "status updates")
            body = _object(await _read_json(request, config))
            status = _check_status(body)
            token = body.get("healToken")
            if not is_bot:
                if token is None:
                    raise Refused(401, "give the bot token, or the message's healToken to set pending")
                if not isinstance(token, str) or not worker.check_heal_token(message_id, token):
                    raise Refused(403, "heal token does not match this message")
                if status != "pending":
                    raise Refused(403, "a poster may only set pending (the bot sets the others)")
        except (Refused, BadInput) as exc:
            return _refusal(exc)

        async def work() -> JSONResponse:
            message = await worker.read_message(message_id)
            if message is None:
                return _error(404, "no such message")
            if not is_bot:
                if not worker.token_fits(token, message):
                    return _error(403, "heal token does not match this message")
                if await queue.read_status(message_id) is not None:
                    return _error(409, "the message already has a status")
            patched = await queue.set_status(message_id, status)
            return JSONResponse({"success": True, "id": message_id, "status": status, "patched": patched})

        return await run("status", message_id, work)

    async def pending(request: Request) -> JSONResponse:
        _enter("scan")
        try:
            need_bot(request)
            limit = _int_param(request, "limit", 1)
            if limit is not None and limit > MAX_SCAN_LIMIT:
                raise BadInput(f"limit must be at most {MAX_SCAN_LIMIT}")
        except (Refused, BadInput) as exc:
            return _refusal(exc)

        async def work() -> JSONResponse:
            result = await queue.scan(limit or DEFAULT_SCAN_LIMIT)
            return JSONResponse({"pending": result.pending, "written": result.written})

        return await run("scan", None, work)

    async def claim(request: Request) -> JSONResponse:
        _enter("claim")
        try:
            need_bot(request)
            body = _object(await _read_json(request, config))
            message_id, bot = _message_id(body), _optional_name(body, "bot")
        except (Refused, BadInput) as exc:
            return _refusal(exc)

        async def work() -> JSONResponse:
            outcome = await queue.claim(message_id, bot)
            if outcome == NOT_QUEUED:
                return _error(404, "the message is not queued (it has no status)")
            if outcome == TAKEN:
                return _error(409, "the message is not pending (already claimed or done)")
            return JSONResponse({"success": True, "claimed": True, "id": message_id})

        return await run("claim", message_id, work)

    async def complete(request: Request) -> JSONResponse:
        _enter("complete")
        try:
            need_bot(request)
            body = _object(await _read_json(request, config))
            message_id, bot = _message_id(body), _optional_name(body, "bot")
            reply_id = _optional_name(body, "replyId")
        except (Refused, BadInput) as exc:
            return _refusal(exc)

        async def work() -> JSONResponse:
            outcome, patched = await queue.complete(message_id, bot, reply_id)
            if outcome == NOT_QUEUED:
                return _error(404, "the message is not queued (it has no status)")
            if outcome == NOT_CLAIMED:
                return _error(409, "the message is not claimed (pending, or already final)")
            return JSONResponse({"success": True, "id": message_id, "status": "complete", "patched": patched})

        return await run("complete", message_id, work)

    return [
        Route("/api/comments/{id}", patch_status, methods=["PATCH"]),
        Route("/api/queue/pending", pending, methods=["GET"]),
        Route("/api/queue/claim", claim, methods=["POST"]),
        Route("/api/queue/complete", complete, methods=["POST"]),
    ]

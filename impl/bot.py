"""The bot: it polls the queue, claims a pending message, posts an AI reply, completes it, and
heals its replies that are missing from the cache.

As the original's bot (SPEC §6): every `interval` seconds (3) one pass (`run_once`):

    scan_once()      GET  /api/queue/pending?limit=n   the pending scan (a cache writer, bot_scan)
    for each pending message m:
      claim(m)       POST /api/queue/claim             409: another bot has it, skip
      reply(m)       POST /api/comments                the AI reply, through the normal POST; its
                                                       id and heal token join `to_verify`
      complete(m)    POST /api/queue/complete
    verify_once()    GET  /api/comments (the whole      a reply in the cache leaves `to_verify`;
                     cache, no cursor, page by page)   a missing one is healed through
                     POST /api/admin/add-to-cache      the same endpoint as the tabs'

`to_verify` lives in this object's memory only: a bot that restarts (a new `Bot`) has forgotten
which replies it still had to check, and nobody heals those. Each step is a method, so a test can
drive the bot call by call (as the sweeper's `run_once`); the bot never prints (it logs).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx2

__all__ = ["Bot", "BotError", "BotPass", "VerifyResult", "default_reply"]

log = logging.getLogger("kvheal.bot")


class BotError(Exception):
    """The worker refused a bot request or could not be reached; `status` is the HTTP status (or None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def default_reply(message: dict) -> str:
    """The "AI" reply to `message` (deterministic: no model is run)."""
    text = " ".join(str(message.get("text", "")).split())
    return f"You said: {text[:200]}"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """One verification pass: the replies found in the cache (they leave the list), healed (a
    heal was sent; they stay until seen), and given up (the worker cannot cache them)."""

    found: tuple[str, ...]
    healed: tuple[str, ...]
    given_up: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BotPass:
    """One pass of `run_once`: the ids the scan listed, those claimed and replied to (message id,
    reply id), those another bot had, and the verification that followed."""

    listed: tuple[str, ...]
    replied: tuple[tuple[str, str], ...]
    lost_claims: tuple[str, ...]
    verify: VerifyResult


@dataclass
class Bot:
    """One bot process talking to one worker (`transport` or `http` as for `Client`)."""

    base_url: str
    token: str
    name: str = "kvheal-bot"
    transport: httpx2.AsyncBaseTransport | None = None
    http: httpx2.AsyncClient | None = None
    limit: int = 10
    timeout: float = 30.0
    #: the reply's text for a message (the bot's "AI")
    make_reply: Callable[[dict], str] = default_reply
    #: milliseconds since 1970 (the reply's timestamp and id); tests inject their own
    clock: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    #: a reply's id from its timestamp (None: ``<ms>-<name>-<random hex>``); tests inject their own
    reply_id: Callable[[int], str] | None = None
    #: reply id -> heal token: the replies not yet seen in the cache (in memory only)
    to_verify: dict[str, str] = field(default_factory=dict)
    #: (message id, reply id) of every reply this bot posted
    replies: list[tuple[str, str]] = field(default_factory=list)
    passes: int = 0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", self.name):
            raise ValueError("a bot's name is 1 to 40 letters, digits, '-' or '_' (it goes into reply ids)")
        self._owns_http = self.http is None
        if self.http is None:
            self.http = httpx2.AsyncClient(
                base_url=self.base_url, transport=self.transport, timeout=self.timeout
            )
        self._auth = {"authorization": f"Bearer {self.token}"}

    async def __aenter__(self) -> Bot:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            await self.http.aclose()

    async def _send(self, method: str, path: str, *, auth: bool = True, **kwargs) -> httpx2.Response:
        headers = dict(self._auth) if auth else {}
        headers["x-request-id"] = f"bot-{self.name}-{secrets.token_hex(4)}"
        try:
            return await self.http.request(method, path, headers=headers, **kwargs)
        except httpx2.HTTPError as exc:
            raise BotError(f"{method} {path}: {exc}") from exc

    @staticmethod
    def _fail(what: str, response: httpx2.Response) -> BotError:
        try:
            reason = response.json().get("error", response.text)
        except ValueError:
            reason = response.text
        return BotError(f"{what}: {response.status_code} {reason}", response.status_code)

    # -- the steps -------------------------------------------------------------------------------
    async def scan_once(self, limit: int | None = None) -> list[dict]:
        """The pending scan: the pending messages, oldest first (GET /api/queue/pending)."""
        response = await self._send("GET", "/api/queue/pending", params={"limit": limit or self.limit})
        if response.status_code != 200:
            raise self._fail("pending scan", response)
        return response.json()["pending"]

    async def claim(self, message_id: str) -> bool:
        """Claim a message: True if this bot has it now, False if it is not pending (409)."""
        response = await self._send(
            "POST", "/api/queue/claim", json={"messageId": message_id, "bot": self.name}
        )
        if response.status_code == 409:
            return False
        if response.status_code != 200:
            raise self._fail(f"claim of {message_id}", response)
        return True

    async def reply(self, message: dict) -> str:
        """Post the AI reply to `message` through the normal POST; the reply's id (remembered in
        `to_verify` with its heal token)."""
        now = self.clock()
        body = {
            "id": self.reply_id(now) if self.reply_id else f"{now}-{self.name}-{secrets.token_hex(3)}",
            "text": self.make_reply(message),
            "timestamp": now,
            "username": self.name,
            "type": "ai",  # an AI message: the AI channel's pages show it (SPEC §6 ai_channel)
        }
        response = await self._send("POST", "/api/comments", auth=False, json=body)
        if response.status_code != 200:
            raise self._fail(f"reply to {message.get('id')}", response)
        data = response.json()
        reply_id = data["comment"]["id"]
        self.to_verify[reply_id] = data["healToken"]
        self.replies.append((message["id"], reply_id))
        return reply_id

    async def complete(self, message_id: str, reply_id: str | None = None) -> bool:
        """Mark a claimed message complete: True, or False if it was not claimed (409)."""
        body = {"messageId": message_id, "bot": self.name}
        if reply_id is not None:
            body["replyId"] = reply_id
        response = await self._send("POST", "/api/queue/complete", json=body)
        if response.status_code == 409:
            return False
        if response.status_code != 200:
            raise self._fail(f"completion of {message_id}", response)
        return True

    async def set_status(self, message_id: str, status: str) -> bool:
        """Set a message's status (PATCH /api/comments/<id> with the bot token: put
        status:<id>, then the patch of every cache copy); whether the cache was written. The
        model's ``Complete(m)`` (SPEC §6 ``statuses``) is ``set_status(m, "complete")``: the
        completion without the claim before it."""
        response = await self._send("PATCH", f"/api/comments/{message_id}", json={"status": status})
        if response.status_code != 200:
            raise self._fail(f"status of {message_id}", response)
        return bool(response.json().get("patched"))

    async def read_cache(self) -> set[str]:
        """The ids in the whole cache (GET /api/comments, no cursor, page after page)."""
        ids: set[str] = set()
        offset = 0
        for _ in range(100):
            response = await self._send(
                "GET", "/api/comments", auth=False, params={"limit": 1000, "offset": offset}
            )
            if response.status_code != 200:
                raise self._fail("cache read", response)
            data = response.json()
            page = data["comments"]
            ids.update(entry["id"] for entry in page)
            offset += len(page)
            if not page or offset >= data["total"]:
                break
        return ids

    async def heal(self, reply_id: str) -> str | None:
        """Heal one reply through the tabs' endpoint: the worker's `result`, or None if it does
        not know the message (404)."""
        token = self.to_verify[reply_id]
        response = await self._send(
            "POST", "/api/admin/add-to-cache", auth=False, json={"messageId": reply_id, "healToken": token}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(f"heal of {reply_id}", response)
        return response.json()["result"]

    async def verify_once(self) -> VerifyResult:
        """Read the whole cache; drop the replies found, heal the others (once each)."""
        if not self.to_verify:
            return VerifyResult((), (), ())
        cached = await self.read_cache()
        found, healed, given_up = [], [], []
        for reply_id in list(self.to_verify):
            if reply_id in cached:
                found.append(reply_id)
                del self.to_verify[reply_id]
                continue
            result = await self.heal(reply_id)
            if result is None or result == "outside the cache's window":
                given_up.append(reply_id)
                del self.to_verify[reply_id]
            else:
                healed.append(reply_id)
        return VerifyResult(tuple(found), tuple(healed), tuple(given_up))

    async def handle(self, message: dict) -> str | None:
        """Claim, reply, complete: the reply's id, or None if another bot had the message."""
        if not await self.claim(message["id"]):
            return None
        reply_id = await self.reply(message)
        await self.complete(message["id"], reply_id)
        return reply_id

    async def run_once(self) -> BotPass:
        """One pass: scan, handle each pending message, verify."""
        self.passes += 1
        listed = await self.scan_once()
        replied, lost = [], []
        for message in listed:
            reply_id = await self.handle(message)
            if reply_id is None:
                lost.append(message["id"])
            else:
                replied.append((message["id"], reply_id))
        verify = await self.verify_once()
        return BotPass(tuple(m["id"] for m in listed), tuple(replied), tuple(lost), verify)

    async def run(
        self,
        *,
        interval: float = 3.0,
        max_passes: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_pass: Callable[[BotPass | BotError], None] | None = None,
    ) -> int:
        """Run passes every `interval` seconds until cancelled or `max_passes`; a pass that
        fails is logged and the next one tries again. Returns the passes that failed."""
        failed = done = 0
        while max_passes is None or done < max_passes:
            if done:
                await sleep(interval)
            try:
                outcome: BotPass | BotError = await self.run_once()
            except BotError as exc:
                log.warning("bot pass failed: %s", exc)
                failed += 1
                outcome = exc
            done += 1
            if on_pass is not None:
                on_pass(outcome)
        return failed

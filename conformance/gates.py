"""Gates: every KV call and every pending-store call of the system under test parks until the
test lets it through, so the test owns the interleaving.

A call parks *before* it reaches the real backend; `Gatekeeper.release(gate)` lets it run, and
the call records what it did (`Call`) on the actor that made it the moment it returns, before
its caller resumes. An *actor* is whoever makes calls: a post of message m (`("post", m)`), a
poll of tab t (`("poll", t)`), the n-th heal of message m sent by tab t (`("heal", t, m, n)`;
with fire_and_forget two of them may be in flight), the sweeper
(`("sweep",)`). The actor is a context variable: the driver sets it when it starts a post,
poll or sweep task, and `TabTransport` sets it for each heal request it carries, so a call is
attributed without the worker's help (any ASGI worker can be put under the gates).

The worker runs in-process: `TabTransport` hands requests to `httpx2.ASGITransport`, which
awaits the app in the caller's task, so the KV calls of a request run in the task that sent it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2

from kvheal.impl.client import MemoryPendingStore, PendingEntry, PendingStore
from kvheal.impl.kv import KV

__all__ = [
    "ACTOR",
    "Call",
    "Gate",
    "Gatekeeper",
    "GatedKV",
    "GatedPendingStore",
    "GatedLock",
    "TabTransport",
    "BotTransport",
    "ActorRecord",
]

#: the actor making the current call: ("post", m) | ("poll", t) | ("heal", t, m, n) | ("sweep",)
ACTOR: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("kvheal_actor", default=None)


@dataclass(frozen=True, slots=True)
class Call:
    """One call through a gate: `target` "kv" or "store", the operation, the key, and the
    value: for a read what it returned, for a write what it wrote (raw text for the KV, a
    list of ids for the store); `ok` is a compare-and-swap's outcome."""

    target: str
    op: str
    key: str = ""
    value: Any = None
    ok: bool | None = None
    tab: int | None = None

    def __str__(self) -> str:
        where = f" {self.key}" if self.key else ""
        return f"{self.target} {self.op}{where}"


@dataclass(eq=False)
class Gate:
    """A parked call: what it is, who made it, and the event that lets it through."""

    seq: int
    actor: tuple | None
    call: Call
    event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


@dataclass(eq=False)
class ActorRecord:
    """What the test knows of one actor: the calls it made (in order), whether the worker has
    answered it (`responded`), whether its task is over (`done`, also when cancelled)."""

    key: tuple
    calls: list[Call] = field(default_factory=list)
    responded: bool = False
    status: int | None = None
    done: bool = False
    task: asyncio.Task | None = None

    def kv_calls(self) -> list[Call]:
        """The KV calls, in order."""
        return [c for c in self.calls if c.target == "kv"]

    def store_calls(self) -> list[Call]:
        """The pending-store calls, in order."""
        return [c for c in self.calls if c.target == "store"]


class Gatekeeper:
    """The parked calls, and the actors they belong to.

    `actors[key]` is the current record of each actor key (a post's record is replaced when
    its tab sends it again, SPEC §6 repost); `history` keeps every record.
    """

    def __init__(self) -> None:
        self.parked: list[Gate] = []
        self.actors: dict[tuple, ActorRecord] = {}
        self.history: list[ActorRecord] = []
        self.executing = 0
        self._seq = 0

    def actor(self, key: tuple, *, fresh: bool = False) -> ActorRecord:
        """The record of actor `key` (a new one if there is none, or if `fresh`)."""
        record = self.actors.get(key)
        if record is None or fresh:
            record = self.actors[key] = ActorRecord(key)
            self.history.append(record)
        return record

    async def through(
        self, call: Call, run: Callable[[], Awaitable[Any]], finish: Callable[[Any], Call] | None = None
    ) -> Any:
        """Park `call`, wait for its release, run it, record it (as `finish(result)` when
        given), return its result."""
        self._seq += 1
        gate = Gate(self._seq, ACTOR.get(), call)
        self.parked.append(gate)
        try:
            await gate.event.wait()
        finally:
            if gate in self.parked:
                self.parked.remove(gate)
        self.executing += 1
        try:
            result = await run()
        finally:
            self.executing -= 1
        if gate.actor is not None:
            self.actor(gate.actor).calls.append(finish(result) if finish else call)
        return result

    def release(self, gate: Gate) -> None:
        """Let `gate`'s call run (the caller then waits for the system to settle)."""
        if gate not in self.parked:
            raise ValueError(f"call {gate.call} is not parked")
        self.parked.remove(gate)
        gate.event.set()

    def parked_of(self, key: tuple) -> Gate | None:
        """The call actor `key` has parked, if any (an actor parks one call at a time)."""
        for gate in self.parked:
            if gate.actor == key:
                return gate
        return None


class GatedKV(KV):
    """A KV whose every call parks at the gatekeeper first; the inner backend does the work."""

    def __init__(self, inner: KV, keeper: Gatekeeper) -> None:
        self.inner = inner
        self.keeper = keeper
        self.supports_cas = inner.supports_cas
        self.name = inner.name

    async def get(self, key: str) -> str | None:
        return await self.keeper.through(
            Call("kv", "get", key), lambda: self.inner.get(key), lambda v: Call("kv", "get", key, v)
        )

    async def put(self, key: str, value: str) -> None:
        return await self.keeper.through(Call("kv", "put", key, value), lambda: self.inner.put(key, value))

    async def list(self, prefix: str) -> list[str]:
        return await self.keeper.through(
            Call("kv", "list", prefix),
            lambda: self.inner.list(prefix),
            lambda keys: Call("kv", "list", prefix, tuple(keys)),
        )

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        return await self.keeper.through(
            Call("kv", "get_versioned", key),
            lambda: self.inner.get_versioned(key),
            lambda r: Call("kv", "get_versioned", key, r[0]),
        )

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        return await self.keeper.through(
            Call("kv", "cas", key, value),
            lambda: self.inner.cas(key, expected_version, value),
            lambda ok: Call("kv", "cas", key, value, ok=bool(ok)),
        )

    async def clear(self) -> None:
        await self.inner.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()


class GatedPendingStore(PendingStore):
    """Tab `tab`'s view of a pending store (shared between tabs or not): reads and writes park."""

    def __init__(self, inner: MemoryPendingStore, tab: int, keeper: Gatekeeper) -> None:
        self.inner = inner
        self.tab = tab
        self.keeper = keeper

    async def read(self) -> list[PendingEntry]:
        return await self.keeper.through(
            Call("store", "read", tab=self.tab),
            self.inner.read,
            lambda entries: Call("store", "read", value=tuple(e.id for e in entries), tab=self.tab),
        )

    async def write(self, entries: list[PendingEntry]) -> None:
        ids = tuple(e.id for e in entries)
        return await self.keeper.through(
            Call("store", "write", value=ids, tab=self.tab), lambda: self.inner.write(entries)
        )


async def _nothing() -> None:
    return None


class GatedLock:
    """A tab's lock around its pending-list updates, whose acquisition parks at the gates.

    The client takes its lock before reading the list; with a plain lock, whichever task
    reached it first would hold it while parked at the read, fixing the order of the tab's next
    two list tasks. Parking *before* the acquisition leaves the order to the test, as the model
    does (a tab runs one list task at a time, in any order).
    """

    def __init__(self, tab: int, keeper: Gatekeeper) -> None:
        self.tab = tab
        self.keeper = keeper
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self.keeper.through(Call("store", "lock", tab=self.tab), _nothing)
        await self._lock.acquire()  # outside the gate: a held lock blocks the task, not the test

    async def __aexit__(self, *exc) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


class TabTransport(httpx2.AsyncBaseTransport):
    """Tab `tab`'s connection to the in-process worker: names heal requests as actors and
    marks each actor `responded` when the worker's answer arrives."""

    HEAL_PATH = "/api/admin/add-to-cache"

    def __init__(
        self,
        inner: httpx2.AsyncBaseTransport,
        tab: int,
        keeper: Gatekeeper,
        message_of: Callable[[str], int | None],
    ) -> None:
        self.inner = inner
        self.tab = tab
        self.keeper = keeper
        self.message_of = message_of

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        token = None
        key = ACTOR.get()
        if request.url.path == self.HEAL_PATH:
            try:
                m = self.message_of(json.loads(request.content)["messageId"])
            except (ValueError, KeyError, TypeError):
                m = None
            n = sum(1 for r in self.keeper.history if r.key[:3] == ("heal", self.tab, m))
            key = ("heal", self.tab, m, n)  # the n-th heal of m by this tab: one actor each
            self.keeper.actor(key, fresh=True).task = asyncio.current_task()
            token = ACTOR.set(key)
        try:
            response = await self.inner.handle_async_request(request)
        finally:
            if token is not None:
                ACTOR.reset(token)
        if key is not None:
            record = self.keeper.actor(key)
            record.responded = True
            record.status = response.status_code
            if key[0] == "heal":
                record.done = True
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class BotTransport(TabTransport):
    """The bot's connection (SPEC §6 ``bot_replies``): its heal requests are actors
    ``("heal", "bot", m, n)``, and the answer to its POST of a reply parks (a ``store ack``
    call of the post's actor) until the test releases it: the bot's recording of the reply in
    its list to verify is the model's ``PostAck``, a step of its own, as the tab's handling of
    its answer is."""

    POST_PATH = "/api/comments"

    def __init__(self, inner: httpx2.AsyncBaseTransport, keeper: Gatekeeper, message_of) -> None:
        super().__init__(inner, "bot", keeper, message_of)  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await super().handle_async_request(request)
        if request.method == "POST" and request.url.path == self.POST_PATH and response.status_code == 200:
            await self.keeper.through(Call("store", "ack", tab=None), _nothing)
        return response

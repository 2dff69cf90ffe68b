"""Planted bugs: deliberate faults in the real system, switched on only in tests, that the
lockstep machine must find. Each is a small subclass or wrapper of the real thing (the worker's
and the client's documented override points), so `kvheal serve` can never reach one.

    cache_before_key       the worker adds the message to the cache before writing its key
    dedupe_wrong_field     dedupe compares the text instead of the id (every "hello" is a repeat)
    pending_dropped        the tab drops its oldest pending id before checking it against the poll
    cas_ignores_version    the backend's compare-and-swap writes whatever the version
    ack_before_cache       the worker answers the post first and updates the cache in the background

`FAULTS[name]` is a `Fault`: the hooks to give `lockstep_machine` and the design it shows in.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kvheal.impl.client import Client, PendingEntry
from kvheal.impl.kv import KV
from kvheal.impl.worker import CacheUpdate, Worker, create_app

__all__ = ["Fault", "FAULTS", "VersionBlindCAS"]


class _CacheBeforeKey(Worker):
    async def post(self, message: dict) -> CacheUpdate | None:
        update = await self.update_cache(message)
        await self.store(message)
        return update


class _DedupeOnText(Worker):
    def already_cached(self, entries: list[dict], message: dict) -> bool:
        return any(entry.get("text") == message.get("text") for entry in entries)


class _AckBeforeCache(Worker):
    async def post(self, message: dict) -> CacheUpdate | None:
        await self.store(message)
        task = asyncio.get_running_loop().create_task(self.update_cache(message))
        self._background = getattr(self, "_background", set())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return CacheUpdate(written=True)


class _PendingDropped(Client):
    def still_pending(self, entries: list[PendingEntry], present: set[str]) -> list[PendingEntry]:
        return super().still_pending(entries[1:], present)


class VersionBlindCAS(KV):
    """A backend wrapper whose compare-and-swap ignores the version (always writes)."""

    def __init__(self, inner: KV) -> None:
        self.inner = inner
        self.supports_cas = inner.supports_cas
        self.name = inner.name

    async def get(self, key):
        return await self.inner.get(key)

    async def put(self, key, value):
        await self.inner.put(key, value)

    async def list(self, prefix):
        return await self.inner.list(prefix)

    async def get_versioned(self, key):
        return await self.inner.get_versioned(key)

    async def cas(self, key, expected_version, value):
        await self.inner.put(key, value)
        return True

    async def clear(self):
        await self.inner.clear()

    async def aclose(self):
        await self.inner.aclose()


def _worker_app(worker_cls):
    def make_app(self, kv, worker_config):
        return create_app(kv, worker_config, worker=worker_cls(kv, worker_config))

    return make_app


def _client(client_cls):
    def make_client(self, tab, store, transport, keep_verifying):
        return client_cls(
            "http://worker", tab=str(tab), store=store, transport=transport, keep_verifying=keep_verifying
        )

    return make_client


@dataclass(frozen=True)
class Fault:
    """A planted bug: its name, what it does, the design it shows in, the machine hooks, and
    the number of tabs its test runs (a lost update needs requests in flight together)."""

    name: str
    doc: str
    variants: str
    hooks: dict[str, Any] = field(default_factory=dict)
    tabs: int = 2


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault(
            "cache_before_key",
            "the worker adds the message to the cache before writing its key",
            "",
            {"make_app": _worker_app(_CacheBeforeKey)},
        ),
        Fault(
            "dedupe_wrong_field",
            "dedupe compares the text instead of the id",
            "dedupe",
            {"make_app": _worker_app(_DedupeOnText)},
        ),
        Fault(
            "pending_dropped",
            "the tab drops its oldest pending id before checking it",
            "",
            {"make_client": _client(_PendingDropped)},
        ),
        Fault(
            "cas_ignores_version",
            "compare-and-swap writes whatever the version",
            "atomic_cache",
            {"wrap_kv": lambda self, kv: VersionBlindCAS(kv)},
            tabs=3,
        ),
        Fault(
            "ack_before_cache",
            "the worker answers the post before updating the cache",
            "",
            {"make_app": _worker_app(_AckBeforeCache)},
        ),
    ]
}

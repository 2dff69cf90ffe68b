"""Emulations of Workers KV's behaviours that the local backends lack (SPEC §6), as KV wrappers.

`WriteLimitKV` wraps any KV and refuses cache puts the way KV's limit of one write per second
per key does (`put_fails`): a refused put raises :class:`WriteLimited`, which the worker catches
and logs, so the request still answers 200 (as the deployed app did). Two modes:

* ``"time"`` (real runs, ``kvheal serve --variant put_fails``): a put to a key less than
  `interval_ms` after the last accepted put to that key, by the injected `clock` (ms), fails;
* ``"manual"`` (tests and replay): nothing fails until the test arms a failure with
  :meth:`WriteLimitKV.fail_next` (the next put, or compare-and-swap, of a key), so a test that
  releases one call at a time decides exactly which write fails.

The same wrapper injects SPEC §6's failed POST (`post_fails`): :meth:`WriteLimitKV.fail_next`
with ``error=RequestFailure`` makes the next call of a key raise :class:`RequestFailure`, which
the worker answers with 500 (the deployed app's answer when its heartbeat put hit the write limit
after ``put comment:<id>``).

    >>> import asyncio
    >>> from kvheal.impl.kv import MemoryKV
    >>> now = [0]
    >>> kv = WriteLimitKV(MemoryKV(), clock=lambda: now[0])
    >>> asyncio.run(kv.put("k", "1"))
    >>> try:
    ...     asyncio.run(kv.put("k", "2"))
    ... except WriteLimited as exc:
    ...     print(exc)
    put k refused: a write to this key 0 ms ago (KV allows one per 1000 ms)
    >>> now[0] = 1000; asyncio.run(kv.put("k", "3")); asyncio.run(kv.get("k")), kv.refused
    ('3', 1)

`StaleReadKV` wraps a KV and serves a read the value a key had before its last write, as a KV
read at another location may (`stale_reads`, SPEC §6): in manual mode only the reads a test arms
with :meth:`StaleReadKV.serve_stale_next`; in time mode a read within `window_ms` of the last
write is served the older value with probability `probability`. :meth:`StaleReadKV.refresh`
makes every copy fresh again (the model's `Tick`).

This module imports nothing of the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .kv import KV, KVError

__all__ = ["WriteLimited", "RequestFailure", "WriteLimitKV", "StaleReadKV", "system_clock_ms"]


class WriteLimited(KVError):
    """A write refused by the store's per-key write limit (KV: one write per second per key)."""


class RequestFailure(KVError):
    """An injected failure that ends the request (the worker answers 500, SPEC §6 `post_fails`)."""


def system_clock_ms() -> int:
    """The wall clock in milliseconds (the default clock of the worker, the client, the wrapper)."""
    return int(time.time() * 1000)


class WriteLimitKV(KV):
    """A KV whose puts (and compare-and-swaps) may be refused, as Workers KV's write limit does.

    `mode` "time" refuses a write to a key less than `interval_ms` after the last accepted one
    (by `clock`, ms); "manual" refuses only what `fail_next` arms. `refused` counts the
    refusals; `armed` lists the failures still to happen."""

    def __init__(
        self,
        inner: KV,
        *,
        mode: str = "time",
        interval_ms: int = 1000,
        clock: Callable[[], int] = system_clock_ms,
        keys: tuple[str, ...] | None = None,
    ) -> None:
        if mode not in ("time", "manual"):
            raise ValueError(f"unknown write-limit mode {mode!r} (known: time, manual)")
        self.inner = inner
        self.mode = mode
        self.interval_ms = interval_ms
        self.clock = clock
        #: the keys the time mode limits (None: every key)
        self.keys = keys
        self.name = inner.name
        self.supports_cas = inner.supports_cas
        self.supports_update = False  # one write, one check: no store-side read-modify-write
        self.refused = 0
        self.armed: list[tuple[str, type[KVError]]] = []
        self._last: dict[str, int] = {}

    def fail_next(self, key: str, error: type[KVError] = WriteLimited) -> None:
        """Make the next call of `key` that writes (put, cas; with `RequestFailure`: any call)
        raise `error`."""
        self.armed.append((key, error))

    def _armed(self, key: str, writes: bool) -> type[KVError] | None:
        for i, (armed_key, error) in enumerate(self.armed):
            if armed_key == key and (writes or error is RequestFailure):
                del self.armed[i]
                return error
        return None

    def _check_write(self, key: str) -> None:
        error = self._armed(key, True)
        if error is not None:
            self.refused += error is WriteLimited
            raise error(f"put {key} refused (injected: {error.__name__})")
        if self.mode == "time" and (self.keys is None or key in self.keys):
            now = int(self.clock())
            last = self._last.get(key)
            if last is not None and now - last < self.interval_ms:
                self.refused += 1
                raise WriteLimited(
                    f"put {key} refused: a write to this key {now - last} ms ago "
                    f"(KV allows one per {self.interval_ms} ms)"
                )

    def _accepted(self, key: str) -> None:
        if self.mode == "time":
            self._last[key] = int(self.clock())

    def _check_read(self, key: str) -> None:
        error = self._armed(key, False)
        if error is not None:
            raise error(f"call on {key} failed (injected: {error.__name__})")

    async def get(self, key: str) -> str | None:
        self._check_read(key)
        return await self.inner.get(key)

    async def put(self, key: str, value: str) -> None:
        self._check_write(key)
        await self.inner.put(key, value)
        self._accepted(key)

    async def list(self, prefix: str) -> list[str]:
        return await self.inner.list(prefix)

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        self._check_read(key)
        return await self.inner.get_versioned(key)

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        self._check_write(key)
        ok = await self.inner.cas(key, expected_version, value)
        if ok:
            self._accepted(key)
        return ok

    async def clear(self) -> None:
        await self.inner.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()


_UNKNOWN = object()


class StaleReadKV(KV):
    """A KV whose reads may be served the value before the last write (SPEC §6 `stale_reads`).

    For each key of `keys` it remembers the value before the last write that changed it
    (`previous(key)`; a write of the same value leaves it). Mode "manual" serves it to the
    reads `serve_stale_next` arms; mode "time" to a read within `window_ms` of the last write
    with probability `probability` (`rng`: a `random.Random`). `refresh()` forgets every older
    value (every copy caught up). `stale_served` counts the stale answers."""

    def __init__(
        self,
        inner: KV,
        *,
        mode: str = "time",
        keys: tuple[str, ...] = (),
        window_ms: int = 60_000,
        probability: float = 0.5,
        clock: Callable[[], int] = system_clock_ms,
        rng=None,
    ) -> None:
        import random

        if mode not in ("time", "manual"):
            raise ValueError(f"unknown stale-read mode {mode!r} (known: time, manual)")
        self.inner = inner
        self.mode = mode
        self.keys = tuple(keys)
        self.window_ms = window_ms
        self.probability = probability
        self.clock = clock
        self.rng = rng or random.Random()
        self.name = inner.name
        self.supports_cas = inner.supports_cas
        self.supports_update = False
        self.stale_served = 0
        self._armed: list[str] = []
        self._current: dict[str, object] = {}
        self._prev: dict[str, str | None] = {}
        self._written_at: dict[str, int] = {}

    def serve_stale_next(self, key: str) -> None:
        """The next `get` of `key` is served the value before the last write."""
        self._armed.append(key)

    def previous(self, key: str) -> str | None:
        """The value a stale read of `key` is served now (the current one if none is older)."""
        if key in self._prev:
            return self._prev[key]
        current = self._current.get(key, _UNKNOWN)
        return None if current is _UNKNOWN else current  # type: ignore[return-value]

    def refresh(self) -> None:
        """Every copy catches up: no read is stale until the next write."""
        self._prev.clear()

    async def _wrote(self, key: str, value: str) -> None:
        if key not in self.keys:
            return
        old = self._current.get(key, _UNKNOWN)
        if old is _UNKNOWN:
            old = None  # the wrapper sees every write from the start (an empty store)
        if value != old:
            self._prev[key] = old  # type: ignore[assignment]
            self._written_at[key] = int(self.clock())
        self._current[key] = value

    def _stale(self, key: str) -> bool:
        if key in self._armed:
            self._armed.remove(key)
            return True
        if self.mode != "time" or key not in self._prev:
            return False
        recent = int(self.clock()) - self._written_at.get(key, 0) < self.window_ms
        return recent and self.rng.random() < self.probability

    async def get(self, key: str) -> str | None:
        if key in self.keys and self._stale(key):
            self.stale_served += 1
            return self.previous(key)
        value = await self.inner.get(key)
        if key in self.keys and key not in self._current:
            self._current[key] = value
        return value

    async def put(self, key: str, value: str) -> None:
        await self.inner.put(key, value)
        await self._wrote(key, value)

    async def list(self, prefix: str) -> list[str]:
        return await self.inner.list(prefix)

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        return await self.inner.get_versioned(key)

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        ok = await self.inner.cas(key, expected_version, value)
        if ok:
            await self._wrote(key, value)
        return ok

    async def clear(self) -> None:
        await self.inner.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()

"""The KV interface the worker talks to, the in-memory backend, and two wrappers.

Every method is one awaitable call, and the worker makes exactly one call per step of
SPEC §4, so a wrapper (an operation log here, a gate in the conformance tests) sees every step.
Through `get`/`put` a backend behaves like Workers KV: last write wins, no transactions.
Backends that can offer an atomic compare-and-swap set `supports_cas` and implement
`get_versioned`/`cas`; only the `atomic_cache` design uses them. Backends that can serialise a
read-modify-write of one key themselves (SQLite: a `BEGIN IMMEDIATE` transaction; Redis: a lock
fenced by compare-and-swap; memory: no await inside) set `supports_update` and implement
`update(key, fn)`: an optional, faster primitive for the atomic cache under contention, outside
SPEC §8's call list (the lockstep tests gate only get/put/list/get_versioned/cas).
`cache_add(key, message, cap=, dedupe=)` is SPEC §3's `add` done atomically by the store: through
`update` here, as one Lua script on Redis (the serialising writer is the server itself). A version is an integer
bumped by every write to the key (plain `put` included, so a racing `put` makes a CAS fail);
0 means "absent".

Errors::

    KVError             anything a backend could not do (connection lost, disk full...)
    └── CASUnsupported  `get_versioned`/`cas` on a backend without compare-and-swap

Wrappers: `StaleReadKV` emulates a Workers KV location that serves cached reads for up to
`max_staleness_ms`; `LoggedKV` reports every call (request id, op, key, what was read or
written, result) to a sink such as `JsonlOpLog`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from .context import current_request
from .messages import CACHE_KEY, COMMENT_PREFIX, cache_add, decode_cache, encode_cache

__all__ = [
    "KV",
    "KVError",
    "CASUnsupported",
    "MemoryKV",
    "StaleReadKV",
    "LoggedKV",
    "JsonlOpLog",
    "summarize_value",
    "read_design",
    "CACHE_ADDED",
    "CACHE_PRESENT",
    "CACHE_OUTSIDE",
]


#: what `KV.cache_add` did
CACHE_ADDED, CACHE_PRESENT, CACHE_OUTSIDE = "added", "present", "outside"


class KVError(Exception):
    """A KV backend could not carry out a call."""


class CASUnsupported(KVError):
    """The backend has no atomic compare-and-swap (needed by the `atomic_cache` design)."""


class KV(ABC):
    """An async key-value store with Workers KV semantics; values are text (JSON here)."""

    #: whether `get_versioned` and `cas` are available
    supports_cas: bool = False
    #: whether `update` is available
    supports_update: bool = False
    #: whether `cache_add` runs in the store itself (Redis: one script, no lock, no retry); the
    #: worker's atomic cache then uses it instead of `update`. A `LoggedKV` does not pass it on:
    #: trace validation needs what each cache update read and wrote, which `update` logs.
    supports_cache_script: bool = False
    #: whether `list_since` is available (Redis: an append-only index of the keys of indexed
    #: prefixes, written by `put` in the same script); the sweeper then reads only the keys
    #: written since its last pass. Wrappers do not pass it on (an op log keeps `list`).
    supports_list_since: bool = False
    #: a short name for messages and reports
    name: str = "kv"

    @abstractmethod
    async def get(self, key: str) -> str | None:
        """The value of `key`, or None if it is absent."""

    @abstractmethod
    async def put(self, key: str, value: str) -> None:
        """Set `key` to `value` (last write wins)."""

    @abstractmethod
    async def list(self, prefix: str) -> list[str]:
        """The keys that start with `prefix`, sorted."""

    async def list_since(self, prefix: str, cursor: int | None) -> tuple[list[str], int, bool]:
        """The keys under `prefix` written since `cursor` (None: every key, as `list`), the next
        cursor, and whether this was a full listing (the first call, or the index shrank: a
        restore from an older snapshot). Needs `supports_list_since`; a key written twice may
        come twice."""
        raise NotImplementedError(f"the {self.name} backend has no index of its keys")

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        """The value of `key` and its version (0 when absent), for a later `cas`."""
        raise CASUnsupported(f"the {self.name} backend has no compare-and-swap")

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        """Set `key` to `value` if its version is still `expected_version`; whether it did."""
        raise CASUnsupported(f"the {self.name} backend has no compare-and-swap")

    async def update(self, key: str, fn: Callable[[str | None], str | None]) -> tuple[str | None, str | None]:
        """Atomically read `key`, compute `fn(value)` and write the result unless it is None.

        Returns (the value read, the value written or None). No other write to `key` (from any
        process) falls between the read and the write. `fn` must be quick and pure.
        """
        raise CASUnsupported(f"the {self.name} backend has no atomic update")

    async def cache_add(
        self, key: str, message: dict, *, cap: int, dedupe: bool, write_outside: bool = False
    ) -> str:
        """Atomically add `message` to the cache list at `key` (SPEC §3 `add`: append, stable sort
        by timestamp, keep the last `cap`). Returns what it did:

            "present"  with `dedupe`, an entry already has its id: nothing written
            "outside"  older than every entry of a full cache, so `add` trims it away again:
                       nothing written (unless `write_outside`, as SPEC's model writes back)
            "added"    written

        Needs `supports_update`; one transaction (SQLite) or one script (Redis).
        """
        outcome = []

        def add(raw: str | None) -> str | None:
            entries = decode_cache(raw)
            if dedupe and any(entry["id"] == message["id"] for entry in entries):
                outcome.append(CACHE_PRESENT)
                return None
            updated = cache_add(entries, message, cap)
            if not any(entry is message for entry in updated):
                outcome.append(CACHE_OUTSIDE)
                return encode_cache(updated) if write_outside else None
            outcome.append(CACHE_ADDED)
            return encode_cache(updated)

        await self.update(key, add)
        return outcome[-1]

    async def cache_add_all(
        self, key: str, messages: list[dict], *, cap: int, dedupe: bool, write_outside: bool = False
    ) -> list[str]:
        """`cache_add` of each of `messages` in order (each one atomic, the list as a whole not);
        their results. Redis sends them in one round trip."""
        return [
            await self.cache_add(key, m, cap=cap, dedupe=dedupe, write_outside=write_outside)
            for m in messages
        ]

    async def clear(self) -> None:
        """Delete every key (administration: tests and the stress runner, never the worker)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections and threads; the object is unusable afterwards."""


class MemoryKV(KV):
    """A dict in this process: for tests and single-process runs.

    Each call yields to the event loop once (like a real backend's round trip), so
    concurrent requests in one process really interleave between KV calls.
    """

    supports_cas = True
    supports_update = True
    name = "memory"

    def __init__(self, *, cas: bool = True) -> None:
        self._data: dict[str, tuple[str, int]] = {}
        self.supports_cas = cas
        self.supports_update = cas

    async def get(self, key: str) -> str | None:
        await asyncio.sleep(0)
        item = self._data.get(key)
        return None if item is None else item[0]

    async def put(self, key: str, value: str) -> None:
        await asyncio.sleep(0)
        _check_value(value)
        old = self._data.get(key)
        self._data[key] = (value, (old[1] if old else 0) + 1)

    async def list(self, prefix: str) -> list[str]:
        await asyncio.sleep(0)
        return sorted(key for key in self._data if key.startswith(prefix))

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        if not self.supports_cas:
            return await super().get_versioned(key)
        await asyncio.sleep(0)
        return self._data.get(key, (None, 0))

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        if not self.supports_cas:
            return await super().cas(key, expected_version, value)
        await asyncio.sleep(0)
        _check_value(value)
        version = self._data.get(key, (None, 0))[1]
        if version != expected_version:
            return False
        self._data[key] = (value, version + 1)
        return True

    async def update(self, key: str, fn: Callable[[str | None], str | None]) -> tuple[str | None, str | None]:
        if not self.supports_update:
            return await super().update(key, fn)
        await asyncio.sleep(0)
        old, version = self._data.get(key, (None, 0))
        new = fn(old)  # no await between the read and the write: atomic in this process
        if new is not None:
            _check_value(new)
            self._data[key] = (new, version + 1)
        return old, new

    async def clear(self) -> None:
        self._data.clear()

    def snapshot(self) -> dict[str, str]:
        """A copy of every key and value, taken without yielding (for tests and the abstraction)."""
        return {key: value for key, (value, _) in self._data.items()}


def _check_value(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"KV values are str, not {type(value).__name__}")


class StaleReadKV(KV):
    """Emulate one Workers KV location: reads may be served from a local cache for a while.

    A key read (or written) here is remembered with the time it was fetched; later reads of the
    same key within `max_staleness_ms` return the remembered value (or "absent") without asking
    the backend, as a Cloudflare location does with its cacheTtl. A write made here is visible
    here at once. `list` is cached the same way. Compare-and-swap passes straight through.
    Give each worker process its own wrapper: each is one location.
    """

    def __init__(
        self, inner: KV, max_staleness_ms: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self.max_staleness = max_staleness_ms / 1000.0
        self.supports_cas = inner.supports_cas
        self.supports_update = inner.supports_update
        self.supports_cache_script = inner.supports_cache_script
        self.name = f"{inner.name}+stale"
        self._clock = clock
        self._values: dict[str, tuple[float, str | None]] = {}
        self._lists: dict[str, tuple[float, list[str]]] = {}

    def _fresh(self, fetched_at: float) -> bool:
        return self._clock() - fetched_at < self.max_staleness

    async def get(self, key: str) -> str | None:
        hit = self._values.get(key)
        if hit is not None and self._fresh(hit[0]):
            await asyncio.sleep(0)
            return hit[1]
        value = await self.inner.get(key)
        self._values[key] = (self._clock(), value)
        return value

    async def put(self, key: str, value: str) -> None:
        await self.inner.put(key, value)
        self._values[key] = (self._clock(), value)

    async def list(self, prefix: str) -> list[str]:
        hit = self._lists.get(prefix)
        if hit is not None and self._fresh(hit[0]):
            await asyncio.sleep(0)
            return list(hit[1])
        keys = await self.inner.list(prefix)
        self._lists[prefix] = (self._clock(), keys)
        return list(keys)

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        return await self.inner.get_versioned(key)

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        ok = await self.inner.cas(key, expected_version, value)
        if ok:
            self._values[key] = (self._clock(), value)
        return ok

    async def update(self, key: str, fn: Callable[[str | None], str | None]) -> tuple[str | None, str | None]:
        old, new = await self.inner.update(key, fn)
        self._values[key] = (self._clock(), new if new is not None else old)
        return old, new

    async def cache_add(
        self, key: str, message: dict, *, cap: int, dedupe: bool, write_outside: bool = False
    ) -> str:
        self._values.pop(key, None)  # the next read asks the store
        return await self.inner.cache_add(key, message, cap=cap, dedupe=dedupe, write_outside=write_outside)

    async def cache_add_all(
        self, key: str, messages: list[dict], *, cap: int, dedupe: bool, write_outside: bool = False
    ) -> list[str]:
        self._values.pop(key, None)
        return await self.inner.cache_add_all(
            key, messages, cap=cap, dedupe=dedupe, write_outside=write_outside
        )

    async def clear(self) -> None:
        self._values.clear()
        self._lists.clear()
        await self.inner.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()


def summarize_value(key: str, value: str | None) -> Any:
    """What an operation log records of a value: the ids for the cache and messages, else a digest."""
    if value is None:
        return None
    if key == CACHE_KEY or key.startswith(COMMENT_PREFIX):
        try:
            decoded = json.loads(value)
        except ValueError:
            decoded = None
        if key == CACHE_KEY and isinstance(decoded, list):
            return [entry.get("id") for entry in decoded if isinstance(entry, dict)]
        if isinstance(decoded, dict):
            return decoded.get("id")
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


class LoggedKV(KV):
    """Report every KV call to `sink(record)` after it completes.

    A record is a dict: `op`, `key` (or `prefix`), `value` (what was read or written, see
    `summarize_value`), `version`/`expected`/`ok` for compare-and-swap, `keys` for list, the
    request context (`rid`, `endpoint`, `mid`), `pid`, and `t0`/`t1` (wall-clock ns at the start
    and end of the call: across processes only the intervals are meaningful, not the order of
    the lines). Exceptions are recorded with `error` and re-raised.
    """

    def __init__(self, inner: KV, sink: Callable[[dict], None]) -> None:
        self.inner = inner
        self.sink = sink
        self.supports_cas = inner.supports_cas
        self.supports_update = inner.supports_update
        self.name = inner.name
        self._pid = os.getpid()

    def _emit(self, t0: int, record: dict) -> None:
        ctx = current_request()
        record.update(
            rid=ctx.request_id if ctx else None,
            endpoint=ctx.endpoint if ctx else None,
            mid=ctx.message_id if ctx else None,
            pid=self._pid,
            t0=t0,
            t1=time.time_ns(),
        )
        self.sink(record)

    async def _call(self, record: dict, call):
        t0 = time.time_ns()
        try:
            result = await call
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            self._emit(t0, record)
            raise
        return t0, result

    async def get(self, key: str) -> str | None:
        record = {"op": "get", "key": key}
        t0, value = await self._call(record, self.inner.get(key))
        record["value"] = summarize_value(key, value)
        self._emit(t0, record)
        return value

    async def put(self, key: str, value: str) -> None:
        record = {"op": "put", "key": key, "value": summarize_value(key, value)}
        t0, _ = await self._call(record, self.inner.put(key, value))
        self._emit(t0, record)

    async def list(self, prefix: str) -> list[str]:
        record = {"op": "list", "prefix": prefix}
        t0, keys = await self._call(record, self.inner.list(prefix))
        record["keys"] = keys
        self._emit(t0, record)
        return keys

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        record = {"op": "get_versioned", "key": key}
        t0, (value, version) = await self._call(record, self.inner.get_versioned(key))
        record.update(value=summarize_value(key, value), version=version)
        self._emit(t0, record)
        return value, version

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        record = {"op": "cas", "key": key, "expected": expected_version, "value": summarize_value(key, value)}
        t0, ok = await self._call(record, self.inner.cas(key, expected_version, value))
        record["ok"] = ok
        self._emit(t0, record)
        return ok

    async def update(self, key: str, fn: Callable[[str | None], str | None]) -> tuple[str | None, str | None]:
        record = {"op": "update", "key": key}
        t0, (old, new) = await self._call(record, self.inner.update(key, fn))
        record.update(read=summarize_value(key, old), value=summarize_value(key, new), ok=new is not None)
        self._emit(t0, record)
        return old, new

    async def cache_add(
        self, key: str, message: dict, *, cap: int, dedupe: bool, write_outside: bool = False
    ) -> str:
        record = {"op": "cache_add", "key": key, "value": message.get("id"), "cap": cap, "dedupe": dedupe}
        t0, result = await self._call(
            record, self.inner.cache_add(key, message, cap=cap, dedupe=dedupe, write_outside=write_outside)
        )
        record["result"] = result
        self._emit(t0, record)
        return result

    async def clear(self) -> None:
        await self.inner.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()


class JsonlOpLog:
    """A sink for `LoggedKV` that appends one JSON line per record to a file.

    Each line is written with a single `write` on a file opened with O_APPEND, so several
    worker processes can share one log without tearing lines.

    `design` (a dict such as `{"variants": ["dedupe"], "cap": 200}`) makes the log record what
    produced it: a header record `{"op": "design", "variants": [...], "cap": ..., ...}` is written
    first when the file is new or empty (readers such as `kvheal validate` use it; trace
    validation ignores it since it is no KV call). Only one process should pass `design`: `serve`
    writes the header in its main process before starting the workers.
    """

    def __init__(self, path: str | os.PathLike, *, design: dict | None = None) -> None:
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if design is not None and os.fstat(self._fd).st_size == 0:
            now = time.time_ns()
            self({"op": "design", **design, "pid": os.getpid(), "t0": now, "t1": now})

    def __call__(self, record: dict) -> None:
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_design(path: str | os.PathLike) -> dict | None:
    """The design header of an operation log (its first `{"op": "design"}` record), or None."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                return None
            return record if isinstance(record, dict) and record.get("op") == "design" else None
    return None

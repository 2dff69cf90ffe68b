"""The SQLite backend: the embedded default, one file shared by several worker processes.

One table `kv(key, value, version)`. The file is in WAL mode (readers never block the writer)
with a busy timeout, so several uvicorn worker processes, each with its own connection, can
use it at once. Each statement runs in autocommit, so `put` is last-write-wins like Workers
KV; compare-and-swap is `UPDATE ... WHERE version = ?` (or an insert that fails if the key
exists, for version 0). Blocking sqlite3 calls run on one dedicated thread per `SqliteKV`, which
also owns the connection, so the event loop never waits on the disk.

Durability. `synchronous=FULL` by default: in WAL mode SQLite then fsyncs the WAL at every
commit, so a write the worker acknowledged survives a kill -9 of any process *and* a power loss
or kernel crash. `NORMAL` (`kvheal serve --sqlite-sync normal`) fsyncs only at checkpoints: an
acknowledged write still survives a kill -9 of the worker (it is in the OS's page cache), but the
last commits before a power loss may roll back. Measured in `bench/chaos_bench.py`.

Faults. Every call is bounded: SQLite waits at most `busy_timeout_ms` for a lock held by
another process, and the caller at most `timeout` seconds for the call (a disk that stalls):
both become `KVError` (503 from the worker). A timed-out call may still complete on the
connection's thread afterwards: its outcome is unknown to the caller, as with any network store.

Group commit. Puts that queue up while the connection's thread is busy are written in one
transaction (in call order), so under load one fsync serves many of them: with `synchronous=FULL`
an autocommit put per POST made the WAL's fsync, serialised across processes by SQLite's write
lock, the ceiling of the whole server (about 70 posts/s here, whatever the concurrency).

`update(key, fn)` (optional, beside the gated calls) runs a read-modify-write of one key in a
`BEGIN IMMEDIATE` transaction: SQLite's write lock serialises it against every other writer of
every process, so the update is atomic without a retry loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .kv import KV, KVError

__all__ = ["SqliteKV", "DEFAULT_SQLITE_PATH", "SYNC_MODES"]

#: the `synchronous` settings offered (FULL: durable on power loss; NORMAL: on process crash)
SYNC_MODES = ("FULL", "NORMAL")

#: where `kvheal serve --backend sqlite` keeps its data when no --db is given
DEFAULT_SQLITE_PATH = "kvheal.sqlite3"

_SCHEMA = """CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID"""


_UPSERT = (
    "INSERT INTO kv (key, value, version) VALUES (?, ?, 1) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = kv.version + 1"
)


class _Put:
    """A put waiting for the group commit (`SqliteKV.put`)."""

    __slots__ = ("key", "value", "done", "error")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value
        self.done = False
        self.error: BaseException | None = None


class SqliteKV(KV):
    """A KV in one SQLite file (WAL, busy timeout); safe across processes, with compare-and-swap."""

    supports_cas = True
    supports_update = True
    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        busy_timeout_ms: int = 10_000,
        synchronous: str = "FULL",
        timeout: float = 15.0,
    ) -> None:
        self.path = os.fspath(path)
        self.busy_timeout_ms = busy_timeout_ms
        if synchronous.upper() not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNC_MODES)}, got {synchronous!r}")
        self.synchronous = synchronous.upper()
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kvheal-sqlite")
        self._conn: sqlite3.Connection | None = None
        #: puts waiting for the group commit (appended on the event loop, drained on the thread)
        self._puts: deque[_Put] = deque()

    # All of these run on the executor's single thread.
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            # Switching to WAL takes an exclusive lock and can fail at once ("database is
            # locked") without waiting, when another process opens the file at the same moment
            # (worker processes starting together): retry within the busy timeout.
            deadline = time.monotonic() + self.busy_timeout_ms / 1000
            while True:
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def job():
            return fn(self._connection())

        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, job)
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError as exc:
            raise KVError(f"sqlite {self.path}: no answer within {self.timeout} s") from exc
        except sqlite3.Error as exc:
            raise KVError(f"sqlite {self.path}: {exc}") from exc

    async def get(self, key: str) -> str | None:
        row = await self._run(lambda c: c.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone())
        return None if row is None else row[0]

    async def put(self, key: str, value: str) -> None:
        """Write `key` (last write wins), durable under `synchronous` when this returns.

        Group commit: puts that queue up while the connection's thread is busy (another commit's
        fsync, typically) are written in one transaction, in the order they were called, so
        under load one fsync serves many of them instead of one each. Each put still takes
        effect at a commit that lies within its own call, as a put of its own would.
        """
        if not isinstance(value, str):
            raise TypeError(f"KV values are str, not {type(value).__name__}")
        put = _Put(key, value)
        self._puts.append(put)
        await self._run(lambda c: self._write_puts(c, put))

    def _write_puts(self, c: sqlite3.Connection, put: _Put) -> None:
        # On the connection's thread. `put` is either written already (by the batch of an
        # earlier put's job) or still in the queue, which this job drains.
        if not put.done:
            batch = []
            while self._puts:
                batch.append(self._puts.popleft())
            try:
                c.execute("BEGIN IMMEDIATE")  # waits (busy_timeout) for the write lock
                try:
                    c.executemany(_UPSERT, [(p.key, p.value) for p in batch])
                    c.execute("COMMIT")
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
            except BaseException as exc:
                for p in batch:
                    p.error = exc
                raise
            finally:
                for p in batch:
                    p.done = True
        if put.error is not None:
            raise put.error

    async def list(self, prefix: str) -> list[str]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT key FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
            ).fetchall()
        )
        return [row[0] for row in rows]

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        row = await self._run(
            lambda c: c.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
        )
        return (None, 0) if row is None else (row[0], row[1])

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        if not isinstance(value, str):
            raise TypeError(f"KV values are str, not {type(value).__name__}")
        if expected_version == 0:
            cursor = await self._run(
                lambda c: c.execute(
                    "INSERT INTO kv (key, value, version) VALUES (?, ?, 1) ON CONFLICT(key) DO NOTHING",
                    (key, value),
                )
            )
        else:
            cursor = await self._run(
                lambda c: c.execute(
                    "UPDATE kv SET value = ?, version = version + 1 WHERE key = ? AND version = ?",
                    (value, key, expected_version),
                )
            )
        return cursor.rowcount == 1

    async def update(self, key: str, fn: Callable[[str | None], str | None]) -> tuple[str | None, str | None]:
        """Atomically: read `key`, compute `fn(value)`, write it unless it is None.

        Returns (the value read, the value written or None). `fn` runs on the connection's
        thread inside the transaction, so it must be quick and must not touch the event loop.
        """

        def job(c: sqlite3.Connection):
            c.execute("BEGIN IMMEDIATE")  # waits (busy_timeout) for the write lock
            try:
                row = c.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
                old = None if row is None else row[0]
                new = fn(old)
                if new is not None:
                    if not isinstance(new, str):
                        raise TypeError(f"KV values are str, not {type(new).__name__}")
                    c.execute(_UPSERT, (key, new))
                c.execute("COMMIT")
                return old, new
            except BaseException:
                c.execute("ROLLBACK")
                raise

        return await self._run(job)

    async def clear(self) -> None:
        await self._run(lambda c: c.execute("DELETE FROM kv"))

    async def aclose(self) -> None:
        def close():
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, close)
        finally:
            self._executor.shutdown(wait=False)

"""The SQLite backend: the embedded default, one file shared by several worker processes.

One table `kv(key, value, version)`. The file is in WAL mode (readers never block the writer)
with a busy timeout, so several uvicorn worker processes, each with its own connection, can
use it at once. Each statement runs in autocommit, so `put` is last-write-wins like Workers
KV; compare-and-swap is `UPDATE ... WHERE version = ?` (or an insert that fails if the key
exists, for version 0). Blocking sqlite3 calls run on one dedicated thread per `SqliteKV`, which
also owns the connection, so the event loop never waits on the disk.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .kv import KV, KVError

__all__ = ["SqliteKV", "DEFAULT_SQLITE_PATH"]

#: where `kvheal serve --backend sqlite` keeps its data when no --db is given
DEFAULT_SQLITE_PATH = "kvheal.sqlite3"

_SCHEMA = """CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID"""


class SqliteKV(KV):
    """A KV in one SQLite file (WAL, busy timeout); safe across processes, with compare-and-swap."""

    supports_cas = True
    name = "sqlite"

    def __init__(self, path: str | os.PathLike, *, busy_timeout_ms: int = 10_000,
                 synchronous: str = "NORMAL") -> None:
        self.path = os.fspath(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kvheal-sqlite")
        self._conn: sqlite3.Connection | None = None

    # All of these run on the executor's single thread.
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def job():
            return fn(self._connection())
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job)
        except sqlite3.Error as exc:
            raise KVError(f"sqlite {self.path}: {exc}") from exc

    async def get(self, key: str) -> str | None:
        row = await self._run(lambda c: c.execute(
            "SELECT value FROM kv WHERE key = ?", (key,)).fetchone())
        return None if row is None else row[0]

    async def put(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"KV values are str, not {type(value).__name__}")
        await self._run(lambda c: c.execute(
            "INSERT INTO kv (key, value, version) VALUES (?, ?, 1) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = kv.version + 1",
            (key, value)))

    async def list(self, prefix: str) -> list[str]:
        rows = await self._run(lambda c: c.execute(
            "SELECT key FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(prefix), prefix)).fetchall())
        return [row[0] for row in rows]

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        row = await self._run(lambda c: c.execute(
            "SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone())
        return (None, 0) if row is None else (row[0], row[1])

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        if not isinstance(value, str):
            raise TypeError(f"KV values are str, not {type(value).__name__}")
        if expected_version == 0:
            cursor = await self._run(lambda c: c.execute(
                "INSERT INTO kv (key, value, version) VALUES (?, ?, 1) ON CONFLICT(key) DO NOTHING",
                (key, value)))
        else:
            cursor = await self._run(lambda c: c.execute(
                "UPDATE kv SET value = ?, version = version + 1 WHERE key = ? AND version = ?",
                (value, key, expected_version)))
        return cursor.rowcount == 1

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

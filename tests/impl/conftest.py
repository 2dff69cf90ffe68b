"""Fixtures for the implementation's tests: a real redis-server for the session, and a KV per backend."""

from __future__ import annotations

import uuid

import pytest

from kvheal.impl.kv import MemoryKV
from kvheal.impl.redis_server import RedisServer, redis_server_binary
from kvheal.impl.sqlite_kv import SqliteKV

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_url():
    """The URL of a redis-server started for this test session on a free loopback port."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (`make test` installs it: apt-get install redis-server)")
    with RedisServer() as server:
        yield server.url


async def make_kv(backend: str, tmp_path, request):
    """A fresh, empty KV of the given backend."""
    if backend == "memory":
        return MemoryKV()
    if backend == "sqlite":
        return SqliteKV(tmp_path / "kv.sqlite3")
    if backend == "redis":
        from kvheal.impl.redis_kv import RedisKV

        url = request.getfixturevalue("redis_url")
        return RedisKV(url, namespace=f"test-{uuid.uuid4().hex[:8]}:")
    raise ValueError(backend)


@pytest.fixture(params=BACKENDS)
async def kv(request, tmp_path):
    """A fresh KV, once per backend (memory, SQLite in tmp_path, real Redis)."""
    store = await make_kv(request.param, tmp_path, request)
    yield store
    await store.clear()
    await store.aclose()


@pytest.fixture
def backend_factory(request, tmp_path):
    """Build further KV objects on demand: factory(backend) -> KV (closed by the caller)."""

    async def factory(backend: str):
        return await make_kv(backend, tmp_path, request)

    return factory

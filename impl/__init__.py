"""kvheal.impl: the real system of SPEC §1 and §8, in every design of §5.

A flat public API over private-ish modules (names load lazily, so importing a KV backend does
not pull in Starlette or uvicorn)::

    KV layer      KV, KVError, CASUnsupported, MemoryKV, SqliteKV, RedisKV,
                  StaleReadKV, LoggedKV, JsonlOpLog                        (kv, sqlite_kv, redis_kv)
    context       RequestContext, current_request                          (context)
    worker        WorkerConfig, VARIANTS, ConfigError, Worker, Sweeper, create_app   (config, worker)
    messages      CACHE_KEY, COMMENT_PREFIX, comment_key, cache_add       (messages)
    client        Client, PollSchedule, Snapshot, PendingEntry, MemoryPendingStore,
                  SqlitePendingStore, JsonFilePendingStore                 (client)
    running       ServeConfig, serve, UvicornThread, ServerProcess, RedisServer  (server, redis_server)
                  Deployment, tab_client: a throwaway deployment and its tabs  (deploy)
    stress        StressConfig, run_stress, StressReport                   (stress)

It never imports the model: `kvheal.conformance` is the one place that knows both.

Example: a worker in-process, one tab posting and polling::

    import asyncio, httpx2
    from kvheal.impl import Client, MemoryKV, MemoryPendingStore, WorkerConfig, create_app

    async def main():
        app = create_app(MemoryKV(), WorkerConfig(variants="dedupe"))
        async with Client("http://worker", tab=0, store=MemoryPendingStore(),
                          transport=httpx2.ASGITransport(app=app)) as tab:
            await tab.post("hello", id="m0", timestamp=0)
            snapshot = await tab.poll_read()
            result = await tab.poll_done(snapshot)
            return snapshot.ids, result.found

    assert asyncio.run(main()) == (("m0",), ("m0",))
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KV": "kv",
    "KVError": "kv",
    "CASUnsupported": "kv",
    "MemoryKV": "kv",
    "StaleReadKV": "kv",
    "LoggedKV": "kv",
    "JsonlOpLog": "kv",
    "summarize_value": "kv",
    "SqliteKV": "sqlite_kv",
    "RedisKV": "redis_kv",
    "RequestContext": "context",
    "current_request": "context",
    "WorkerConfig": "config",
    "VARIANTS": "config",
    "ConfigError": "config",
    "parse_variants": "config",
    "Worker": "worker",
    "Sweeper": "worker",
    "create_app": "worker",
    "CacheUpdate": "worker",
    "SweepResult": "worker",
    "CACHE_KEY": "messages",
    "COMMENT_PREFIX": "messages",
    "comment_key": "messages",
    "cache_add": "messages",
    "decode_cache": "messages",
    "Client": "client",
    "ClientError": "client",
    "PollSchedule": "client",
    "Snapshot": "client",
    "PollResult": "client",
    "Ack": "client",
    "PendingEntry": "client",
    "PendingStore": "client",
    "MemoryPendingStore": "client",
    "SqlitePendingStore": "client",
    "JsonFilePendingStore": "client",
    "ServeConfig": "server",
    "serve": "server",
    "UvicornThread": "server",
    "ServerProcess": "server",
    "RedisServer": "redis_server",
    "Deployment": "deploy",
    "tab_client": "deploy",
    "StressConfig": "stress",
    "StressReport": "stress",
    "RunResult": "stress",
    "run_stress": "stress",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kvheal.impl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

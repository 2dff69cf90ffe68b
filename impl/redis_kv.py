"""The Redis backend: a real `redis-server` through redis-py's asyncio client.

Each KV key is a Redis hash `{v: value, n: version}` under a namespace prefix, so one server
can hold several independent stores and `clear` deletes only its own keys. `put` and `cas` are
Lua scripts, which Redis runs atomically: `put` sets the value and bumps the version (last write
wins), `cas` does so only if the version is still the expected one.
"""
from __future__ import annotations

import re

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .kv import KV, KVError

__all__ = ["RedisKV", "DEFAULT_REDIS_URL"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_PUT = """
redis.call('HSET', KEYS[1], 'v', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'n', 1)
"""

_CAS = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'n', 1)
return 1
"""

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisKV(KV):
    """A KV on a Redis server; compare-and-swap by Lua script. One instance per event loop."""

    supports_cas = True
    name = "redis"

    def __init__(self, url: str = DEFAULT_REDIS_URL, *, namespace: str = "kvheal:") -> None:
        self.url = url
        self.namespace = namespace
        self._redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._put = self._redis.register_script(_PUT)
        self._cas = self._redis.register_script(_CAS)

    def _key(self, key: str) -> str:
        return self.namespace + key

    async def _guard(self, call):
        try:
            return await call
        except RedisError as exc:
            raise KVError(f"redis {self.url}: {exc}") from exc

    async def get(self, key: str) -> str | None:
        return await self._guard(self._redis.hget(self._key(key), "v"))

    async def put(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"KV values are str, not {type(value).__name__}")
        await self._guard(self._put(keys=[self._key(key)], args=[value]))

    async def list(self, prefix: str) -> list[str]:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self._key(prefix)) + "*"

        async def scan():
            return [key async for key in self._redis.scan_iter(match=pattern, count=1000)]
        keys = await self._guard(scan())
        cut = len(self.namespace)
        return sorted({key[cut:] for key in keys})

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        value, version = await self._guard(self._redis.hmget(self._key(key), "v", "n"))
        return value, int(version or 0)

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        if not isinstance(value, str):
            raise TypeError(f"KV values are str, not {type(value).__name__}")
        ok = await self._guard(self._cas(keys=[self._key(key)], args=[expected_version, value]))
        return ok == 1

    async def clear(self) -> None:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.namespace) + "*"

        async def wipe():
            batch = [key async for key in self._redis.scan_iter(match=pattern, count=1000)]
            for i in range(0, len(batch), 500):
                await self._redis.delete(*batch[i:i + 500])
        await self._guard(wipe())

    async def aclose(self) -> None:
        await self._redis.aclose()

"""The Redis backend: a real `redis-server` through redis-py's asyncio client.

Each KV key is a Redis hash `{v: value, n: version}` under a namespace prefix, so one server
can hold several independent stores and `clear` deletes only its own keys. `put` and `cas` are
Lua scripts, which Redis runs atomically: `put` sets the value and bumps the version (last write
wins), `cas` does so only if the version is still the expected one.

Faults. Every call is bounded: the socket has a read/connect timeout (`timeout`, 5 s) and the
whole call a deadline of twice that, and the connection pool is a `BlockingConnectionPool`
(`max_connections` per process, 64): a request that finds every connection busy waits up to
`pool_timeout` seconds for one instead of failing with "Too many connections". Whatever goes
wrong (timeout, refused connection, a server error) is a `KVError`, which the worker answers
with 503. redis-py's automatic retries are off: a retried `cas` whose first attempt did succeed
would report failure, and the caller owns the retry policy.

Durability. What an acknowledgement promises depends on the server's persistence, which
`persistence()` reports (`CONFIG GET appendonly appendfsync save`, or `INFO persistence` where
CONFIG is refused). `kvheal serve` refuses a server without AOF unless `--allow-volatile`.
With `appendfsync everysec` (stress's own servers, and Redis's recommendation) a write that
Redis acknowledged survives a kill -9 of redis-server (the AOF is in the kernel's page cache as
soon as the command returns) and loses at most about one second on a power loss or kernel
crash; with `always` it survives those too, at the cost of one fsync per write.

`cache_add(key, message, cap=, dedupe=)` (optional, beside the gated calls) is SPEC §3's `add` as
one Lua script: Redis itself is the serialising writer of the cache, in one round trip.

`update(key, fn)` (optional, beside the gated calls) serialises read-modify-writes of one key
across processes: a short lock (`SET NX PX`) admits one writer at a time, and the write itself is
a compare-and-swap on the version read, so a holder whose lock expired while it was paused can
never overwrite a newer value: the lock is for speed under contention, the CAS for safety.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from .kv import CACHE_ADDED, CACHE_OUTSIDE, CACHE_PRESENT, KV, KVError

__all__ = ["RedisKV", "DEFAULT_REDIS_URL", "redis_persistence", "describe_persistence"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_PUT = """
redis.call('HSET', KEYS[1], 'v', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'n', 1)
"""

#: `put` of a key under an indexed prefix: the index (a list) gets the key when it is new, in the
#: same script, so `list_since` never misses a key that exists
_PUT_INDEXED = """
local new = redis.call('EXISTS', KEYS[1]) == 0
redis.call('HSET', KEYS[1], 'v', ARGV[1])
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
if new then redis.call('RPUSH', KEYS[2], ARGV[2]) end
return n
"""
#: the prefixes whose keys are indexed (the sweeper lists them on every pass)
INDEXED_PREFIXES = ("comment:",)

_CAS = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'n', 1)
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# SPEC §3 `add` on the cache list, atomically in the server. cjson decodes; numbers are re-encoded
# by hand since cjson writes 14 significant digits (a 16-digit timestamp would come back rounded).
_CACHE_ADD = r"""
local function enc(v)
  local t = type(v)
  if t == 'string' then return cjson.encode(v) end
  if t == 'number' then
    if v == math.floor(v) and math.abs(v) <= 9007199254740992 then return string.format('%.0f', v) end
    return string.format('%.17g', v)
  end
  if t == 'boolean' then return tostring(v) end
  if t == 'table' then
    local parts = {}
    if #v > 0 then
      for i = 1, #v do parts[i] = enc(v[i]) end
      return '[' .. table.concat(parts, ',') .. ']'
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = cjson.encode(tostring(k)) .. ':' .. enc(v[k]) end
    return '{' .. table.concat(parts, ',') .. '}'
  end
  return 'null'
end
-- The script writes `v` with one entry per line, and keeps "timestamp id" lines in `meta`, valid
-- while `mv` equals the version `n`: then an add is a scan and a splice, with nothing decoded. A plain put (or cas) bumps `n`, and the next add rebuilds
-- them from `v`.
local K = KEYS[1]
local n = tonumber(redis.call('HGET', K, 'n') or '0')
local mv = tonumber(redis.call('HGET', K, 'mv') or '-1')
local parts, stamps, ids = {}, {}, {}
if n > 0 and mv == n then
  -- v is "[\n" .. entries joined by ",\n" .. "\n]" (whitespace JSON allows; compact entries never
  -- hold a raw newline), so its lines are the entries
  for line in string.gmatch(redis.call('HGET', K, 'v') or '', '[^\n]+') do
    if line ~= '[' and line ~= ']' then
      if string.sub(line, -1) == ',' then line = string.sub(line, 1, -2) end
      parts[#parts + 1] = line
    end
  end
  for ts, id in string.gmatch(redis.call('HGET', K, 'meta') or '', '([^ \n]+) ([^\n]*)') do
    stamps[#stamps + 1] = tonumber(ts)
    ids[#ids + 1] = id
  end
else
  local raw = redis.call('HGET', K, 'v')
  local entries = {}
  if raw then
    local ok, decoded = pcall(cjson.decode, raw)
    if ok and type(decoded) == 'table' then
      for _, e in ipairs(decoded) do
        if type(e) == 'table' and type(e.id) == 'string' and type(e.timestamp) == 'number'
           and e.timestamp == math.floor(e.timestamp) then
          entries[#entries + 1] = e
        end
      end
    end
  end
  local order = {}
  for i, e in ipairs(entries) do order[i] = {e = e, i = i} end
  table.sort(order, function(a, b)
    if a.e.timestamp ~= b.e.timestamp then return a.e.timestamp < b.e.timestamp end
    return a.i < b.i
  end)
  for i, o in ipairs(order) do
    parts[i] = enc(o.e)
    stamps[i] = o.e.timestamp
    ids[i] = cjson.encode(o.e.id)
  end
end
-- ARGV: cap, dedupe ('1'/'0'), write_outside ('1'/'0'), then the messages to add, in order.
-- Each is added as SPEC's `add` would, one after the other (each sees the ones before); the
-- cache is written once at the end. Entries before `lo` are trimmed away.
local cap = tonumber(ARGV[1])
local dedupe = ARGV[2] == '1'
local lo = math.max(1, #parts - cap + 1)
local count = {}
for i = lo, #parts do count[ids[i]] = (count[ids[i]] or 0) + 1 end
local results, write = {}, false
for a = 4, #ARGV do
  local new = cjson.decode(ARGV[a])
  local new_id = cjson.encode(new.id)
  if dedupe and (count[new_id] or 0) > 0 then
    results[#results + 1] = 0
  else
    local ts = new.timestamp
    local pos = #parts + 1
    while pos > lo and stamps[pos - 1] > ts do pos = pos - 1 end
    if pos == lo and #parts - lo + 1 >= cap then
      results[#results + 1] = 2  -- older than every entry of the full cache: trimmed away at once
      if ARGV[3] == '1' then write = true end
    else
      table.insert(parts, pos, ARGV[a])
      table.insert(stamps, pos, ts)
      table.insert(ids, pos, new_id)
      count[new_id] = (count[new_id] or 0) + 1
      if #parts - lo + 1 > cap then
        count[ids[lo]] = count[ids[lo]] - 1
        lo = lo + 1
      end
      results[#results + 1] = 1
      write = true
    end
  end
end
if write then
  local meta = {}
  for i = lo, #parts do meta[#meta + 1] = string.format('%.0f', stamps[i]) .. ' ' .. ids[i] end
  local version = redis.call('HINCRBY', K, 'n', 1)
  redis.call('HSET', K, 'v', '[\n' .. table.concat(parts, ',\n', lo, #parts) .. '\n]',
             'meta', table.concat(meta, '\n'), 'mv', version)
end
return results
"""

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisKV(KV):
    """A KV on a Redis server; compare-and-swap by Lua script. One instance per event loop."""

    supports_cas = True
    supports_update = True
    supports_cache_script = True
    supports_list_since = True
    name = "redis"

    def __init__(
        self,
        url: str = DEFAULT_REDIS_URL,
        *,
        namespace: str = "kvheal:",
        timeout: float = 5.0,
        max_connections: int = 64,
        pool_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self.pool_timeout = pool_timeout
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._put = self._redis.register_script(_PUT)
        self._put_indexed = self._redis.register_script(_PUT_INDEXED)
        self._cas = self._redis.register_script(_CAS)
        self._unlock = self._redis.register_script(_UNLOCK)
        self._cache_add = self._redis.register_script(_CACHE_ADD)

    def _key(self, key: str) -> str:
        return self.namespace + key

    async def _guard(self, call, *, deadline: float | None = None):
        try:
            async with asyncio.timeout(deadline or (2 * self.timeout + self.pool_timeout)):
                return await call
        except TimeoutError as exc:
            raise KVError(f"redis {self.url}: no answer within the deadline") from exc
        except RedisError as exc:
            raise KVError(f"redis {self.url}: {exc}") from exc
        except OSError as exc:
            raise KVError(f"redis {self.url}: {exc}") from exc

    async def get(self, key: str) -> str | None:
        return await self._guard(self._redis.hget(self._key(key), "v"))

    async def put(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"KV values are str, not {type(value).__name__}")
        prefix = next((p for p in INDEXED_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            await self._guard(self._put(keys=[self._key(key)], args=[value]))
        else:
            index = self._key("index:" + prefix)
            await self._guard(self._put_indexed(keys=[self._key(key), index], args=[value, key]))

    async def list(self, prefix: str) -> list[str]:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self._key(prefix)) + "*"

        async def scan():
            return [key async for key in self._redis.scan_iter(match=pattern, count=1000)]

        keys = await self._guard(scan(), deadline=60 * self.timeout)
        cut = len(self.namespace)
        internal = (self.namespace + "lock:", self.namespace + "index:")  # the store's own keys
        return sorted({key[cut:] for key in keys if not key.startswith(internal)})

    async def list_since(self, prefix: str, cursor: int | None) -> tuple[list[str], int, bool]:
        if prefix not in INDEXED_PREFIXES:
            raise ValueError(f"{prefix!r} is not an indexed prefix (indexed: {', '.join(INDEXED_PREFIXES)})")
        index = self._key("index:" + prefix)
        if cursor is not None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.llen(index)
                pipe.lrange(index, cursor, -1)
                length, new = await self._guard(pipe.execute())
            if length >= cursor:
                return list(new), cursor + len(new), False
        # the first listing, or the index is shorter than the cursor (a restore from an older
        # snapshot, a wipe): every key, and the index's length before the scan (a key written
        # during the scan is in both; one written before is in the scan)
        length = await self._guard(self._redis.llen(index))
        return await self.list(prefix), length, True

    async def get_versioned(self, key: str) -> tuple[str | None, int]:
        value, version = await self._guard(self._redis.hmget(self._key(key), "v", "n"))
        return value, int(version or 0)

    async def cas(self, key: str, expected_version: int, value: str) -> bool:
        if not isinstance(value, str):
            raise TypeError(f"KV values are str, not {type(value).__name__}")
        ok = await self._guard(self._cas(keys=[self._key(key)], args=[expected_version, value]))
        return ok == 1

    async def update(
        self, key: str, fn: Callable[[str | None], str | None], *, lock_ms: int = 2000, wait_s: float = 30.0
    ) -> tuple[str | None, str | None]:
        """Atomically: read `key`, compute `fn(value)`, write it unless it is None.

        Returns (the value read, the value written or None). Raises KVError when no write got
        through within `wait_s` seconds (the store is down, or the lock was never free).
        """
        lock_key = self.namespace + "lock:" + key
        token = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait_s
        pause = 0.0005
        while True:
            got = await self._guard(self._redis.set(lock_key, token, nx=True, px=lock_ms))
            if got:
                try:
                    value, version = await self.get_versioned(key)
                    new = fn(value)
                    if new is None:
                        return value, None
                    if await self.cas(key, version, new):
                        return value, new
                finally:
                    try:
                        await self._guard(self._unlock(keys=[lock_key], args=[token]))
                    except KVError:
                        pass  # it expires by itself
            if loop.time() > give_up:
                raise KVError(f"redis {self.url}: update of {key} found no free turn within {wait_s} s")
            await asyncio.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 0.02)

    async def cache_add(
        self, key: str, message: dict, *, cap: int, dedupe: bool, write_outside: bool = False
    ) -> str:
        """SPEC §3 `add` of `message` to the cache list at `key`, as one Lua script (see `KV.cache_add`).

        The server runs it atomically: no lock, no retry, one round trip. Entries are re-encoded by
        the script: the same JSON values, keys in sorted order, integers exact up to 2^53.
        """
        (result,) = await self.cache_add_all(
            key, [message], cap=cap, dedupe=dedupe, write_outside=write_outside
        )
        return result

    async def cache_add_all(
        self, key: str, messages: list[dict], *, cap: int, dedupe: bool, write_outside: bool = False
    ) -> list[str]:
        """`cache_add` of each message in order, all in one run of the script: the cache is read
        and written once for the lot (the worker's group commit), and the whole batch is atomic."""
        if cap < 1:
            raise ValueError("cap must be at least 1")
        if not messages:
            return []
        entries = [json.dumps(m, separators=(",", ":"), ensure_ascii=False) for m in messages]
        done = await self._guard(
            self._cache_add(
                keys=[self._key(key)],
                args=[cap, "1" if dedupe else "0", "1" if write_outside else "0", *entries],
            )
        )
        return [{0: CACHE_PRESENT, 1: CACHE_ADDED, 2: CACHE_OUTSIDE}[int(d)] for d in done]

    async def persistence(self) -> dict:
        """What the server promises about acknowledged writes: see `redis_persistence`."""
        return await redis_persistence(self._redis, self.url)

    async def ping(self) -> None:
        """Raise KVError unless the server answers."""
        await self._guard(self._redis.ping())

    async def clear(self) -> None:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.namespace) + "*"

        async def wipe():
            batch = [key async for key in self._redis.scan_iter(match=pattern, count=1000)]
            for i in range(0, len(batch), 500):
                await self._redis.delete(*batch[i : i + 500])

        await self._guard(wipe(), deadline=60 * self.timeout)

    async def aclose(self) -> None:
        await self._redis.aclose()


async def redis_persistence(client, url: str = "") -> dict:
    """`{"appendonly": bool, "appendfsync": str|None, "save": str|None, "source": "config"|"info"}`.

    CONFIG GET first; managed servers often refuse CONFIG, then INFO persistence's
    `aof_enabled` tells whether AOF is on (the fsync policy is then unknown: None).
    """
    try:
        try:
            conf = await client.config_get("appendonly")
            conf.update(await client.config_get("appendfsync"))
            conf.update(await client.config_get("save"))
            return {
                "appendonly": str(conf.get("appendonly", "no")).lower() == "yes",
                "appendfsync": conf.get("appendfsync"),
                "save": conf.get("save"),
                "source": "config",
            }
        except ResponseError:
            info = await client.info("persistence")
            return {
                "appendonly": int(info.get("aof_enabled", 0)) == 1,
                "appendfsync": None,
                "save": None,
                "source": "info",
            }
    except (RedisError, OSError) as exc:
        raise KVError(f"redis {url}: {exc}") from exc


def describe_persistence(p: dict) -> str:
    """One phrase: 'AOF, appendfsync everysec' / 'no AOF (snapshots: 3600 1 ...)' / 'no persistence'."""
    if p["appendonly"]:
        return f"AOF, appendfsync {p['appendfsync'] or 'unknown'}"
    if p.get("save"):
        return f"no AOF (RDB snapshots only: save {p['save']!r})"
    return "no persistence (neither AOF nor snapshots)"

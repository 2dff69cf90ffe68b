"""One suite for every KV backend: Workers KV semantics through get/put, plus compare-and-swap."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid

import pytest

from kvheal.impl.context import RequestContext, reset_request, set_request
from kvheal.impl.kv import (
    CASUnsupported,
    JsonlOpLog,
    KVError,
    LoggedKV,
    MemoryKV,
    StaleReadKV,
    summarize_value,
)
from kvheal.impl.sqlite_kv import SqliteKV


async def test_get_absent_is_none(kv):
    assert await kv.get("nope") is None
    assert await kv.list("") == []


async def test_put_then_get_last_write_wins(kv):
    await kv.put("a", "1")
    await kv.put("a", "2")
    assert await kv.get("a") == "2"


async def test_values_are_text(kv):
    await kv.put("k", 'é\n{"x": [1]}')
    assert await kv.get("k") == 'é\n{"x": [1]}'
    with pytest.raises(TypeError):
        await kv.put("k", b"bytes")


async def test_list_by_prefix_sorted(kv):
    for key in ["comment:b", "comment:a", "recent:comments", "commentary", "comment:*["]:
        await kv.put(key, "x")
    assert await kv.list("comment:") == ["comment:*[", "comment:a", "comment:b"]
    assert await kv.list("comment") == ["comment:*[", "comment:a", "comment:b", "commentary"]
    assert await kv.list("zzz") == []


async def test_cas_versions(kv):
    assert kv.supports_cas
    assert await kv.get_versioned("c") == (None, 0)
    assert await kv.cas("c", 1, "no") is False
    assert await kv.cas("c", 0, "v1") is True
    assert await kv.cas("c", 0, "again") is False
    assert await kv.get_versioned("c") == ("v1", 1)
    assert await kv.cas("c", 1, "v2") is True
    assert await kv.get_versioned("c") == ("v2", 2)
    # a plain put bumps the version, so a CAS based on an older read fails
    await kv.put("c", "v3")
    assert await kv.get_versioned("c") == ("v3", 3)
    assert await kv.cas("c", 2, "lost") is False
    assert await kv.get("c") == "v3"


async def test_concurrent_cas_exactly_one_wins(kv):
    await kv.put("c", "0")
    _, version = await kv.get_versioned("c")
    results = await asyncio.gather(*(kv.cas("c", version, str(i)) for i in range(10)))
    assert sum(results) == 1
    winner = results.index(True)
    assert await kv.get("c") == str(winner)


async def test_racy_read_modify_write_loses_updates_but_cas_loop_does_not(kv):
    """The seed's bug in miniature, and the atomic_cache fix, on every backend."""
    await kv.put("n", "[]")
    both_read = asyncio.Barrier(2)

    async def racy(i):
        value = json.loads(await kv.get("n"))
        await both_read.wait()
        await kv.put("n", json.dumps(value + [i]))

    await asyncio.gather(racy(1), racy(2))
    assert len(json.loads(await kv.get("n"))) == 1

    await kv.put("n", "[]")

    async def atomic(i):
        while True:
            raw, version = await kv.get_versioned("n")
            if await kv.cas("n", version, json.dumps(json.loads(raw) + [i])):
                return

    await asyncio.gather(*(atomic(i) for i in range(8)))
    assert sorted(json.loads(await kv.get("n"))) == list(range(8))


async def test_clear(kv):
    await kv.put("a", "1")
    await kv.put("comment:x", "2")
    await kv.clear()
    assert await kv.list("") == []
    assert await kv.get("a") is None


async def test_memory_without_cas_refuses_cas():
    kv = MemoryKV(cas=False)
    assert not kv.supports_cas
    with pytest.raises(CASUnsupported, match="memory backend has no compare-and-swap"):
        await kv.get_versioned("x")
    with pytest.raises(CASUnsupported):
        await kv.cas("x", 0, "v")


async def test_sqlite_file_shared_between_connections(tmp_path):
    """Two SqliteKV objects on one file (as two worker processes would be) see each other's writes."""
    path = tmp_path / "shared.sqlite3"
    a, b = SqliteKV(path), SqliteKV(path)
    try:
        await a.put("k", "from a")
        assert await b.get("k") == "from a"
        _, version = await b.get_versioned("k")
        assert await a.cas("k", version, "a wins") is True
        assert await b.cas("k", version, "b loses") is False
        assert await b.get("k") == "a wins"
        mode = await a._run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
    finally:
        await a.aclose()
        await b.aclose()


async def test_sqlite_several_processes(tmp_path):
    """Real OS processes hammering one file with CAS increments: none lost, none failed."""
    path = tmp_path / "procs.sqlite3"
    script = (
        "import asyncio, sys\n"
        "from kvheal.impl.sqlite_kv import SqliteKV\n"
        "async def main():\n"
        "    kv = SqliteKV(sys.argv[1])\n"
        "    for _ in range(50):\n"
        "        while True:\n"
        "            raw, v = await kv.get_versioned('n')\n"
        "            if await kv.cas('n', v, str(int(raw or '0') + 1)): break\n"
        "    await kv.aclose()\n"
        "asyncio.run(main())\n"
    )
    import sys

    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(path)) for _ in range(4)]
    codes = [await p.wait() for p in procs]
    assert codes == [0, 0, 0, 0]
    kv = SqliteKV(path)
    assert await kv.get("n") == "200"
    await kv.aclose()


async def test_stale_reads_bounded():
    now = [0.0]
    inner = MemoryKV()
    stale = StaleReadKV(inner, max_staleness_ms=1000, clock=lambda: now[0])
    await inner.put("k", "old")
    assert await stale.get("k") == "old"
    await inner.put("k", "new")  # written at another location
    now[0] = 0.5
    assert await stale.get("k") == "old"  # still served from this location's cache
    now[0] = 1.0
    assert await stale.get("k") == "new"  # expired: fetched again
    await stale.put("k", "mine")  # a write here is visible here at once
    assert await stale.get("k") == "mine"
    assert await stale.get("absent") is None
    await inner.put("absent", "now here")
    assert await stale.get("absent") is None  # a cached "not found", as Workers KV does
    assert await stale.list("") == ["absent", "k"]


async def test_logged_kv_records_every_call(tmp_path):
    records = []
    kv = LoggedKV(MemoryKV(), records.append)
    token = set_request(RequestContext("r1", "post", "m1"))
    try:
        await kv.put("comment:m1", json.dumps({"id": "m1", "text": "t", "timestamp": 1}))
        await kv.get("recent:comments")
        await kv.put("recent:comments", json.dumps([{"id": "m1", "text": "t", "timestamp": 1}]))
        _, version = await kv.get_versioned("recent:comments")
        await kv.cas("recent:comments", version, "[]")
        await kv.list("comment:")
    finally:
        reset_request(token)
    shape = [(r["op"], r.get("key", r.get("prefix")), r.get("value"), r.get("ok")) for r in records]
    assert shape == [
        ("put", "comment:m1", "m1", None),
        ("get", "recent:comments", None, None),
        ("put", "recent:comments", ["m1"], None),
        ("get_versioned", "recent:comments", ["m1"], None),
        ("cas", "recent:comments", [], True),
        ("list", "comment:", None, None),
    ]
    assert records[-1]["keys"] == ["comment:m1"]
    assert {(r["rid"], r["endpoint"], r["mid"]) for r in records} == {("r1", "post", "m1")}
    assert all(r["t0"] <= r["t1"] for r in records)

    log = JsonlOpLog(tmp_path / "ops.jsonl")
    logged = LoggedKV(MemoryKV(), log)
    await logged.put("x", "y")
    log.close()
    lines = (tmp_path / "ops.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["value"].startswith("sha256:")


def test_summarize_value():
    assert summarize_value("recent:comments", "not json").startswith("sha256:")
    assert summarize_value("recent:comments", '[{"id":"a"},{"id":"b"}]') == ["a", "b"]
    assert summarize_value("comment:a", '{"id":"a"}') == "a"
    assert summarize_value("x", None) is None


def test_public_api_and_docstring_example():
    import kvheal.impl as impl

    for name in impl.__all__:
        assert getattr(impl, name) is not None
    # the example in the package docstring runs
    example = impl.__doc__.split("Example: a worker in-process, one tab posting and polling::", 1)[1]
    code = "\n".join(line[4:] for line in example.splitlines())
    exec(compile(code, "kvheal.impl docstring", "exec"), {})


def test_impl_never_imports_model_or_conformance():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "impl"
    for path in root.glob("*.py"):
        imports = [line for line in path.read_text().splitlines() if re.match(r"\s*(from|import)\s", line)]
        assert not [line for line in imports if re.search(r"model|conformance", line)], path


# -- the optional atomic update, timeouts, pools, durability settings --------------------------


async def test_update_is_atomic_across_connections(kv, backend_factory):
    """50 concurrent appends through two connections (two processes' worth): none is lost."""
    other = kv if kv.name == "memory" else await backend_factory(kv.name)
    if kv.name == "redis":
        other.namespace = kv.namespace  # the same store
    if kv.name == "sqlite":
        other.path = kv.path

    def append(item):
        return lambda old: json.dumps(json.loads(old or "[]") + [item])

    await asyncio.gather(*((kv if i % 2 else other).update("list", append(i)) for i in range(50)))
    assert sorted(json.loads(await kv.get("list"))) == list(range(50))
    assert await kv.update("list", lambda old: None) == (await kv.get("list"), None)  # None writes nothing
    if other is not kv:
        await other.aclose()


async def test_logged_update_is_recorded(tmp_path):
    records = []
    logged = LoggedKV(MemoryKV(), records.append)
    assert logged.supports_update
    assert await logged.update("k", lambda old: "v") == (None, "v")
    assert {k: records[0][k] for k in ("op", "key", "read", "ok")} == {
        "op": "update",
        "key": "k",
        "read": None,
        "ok": True,
    }
    with pytest.raises(CASUnsupported):
        await MemoryKV(cas=False).update("k", lambda old: "v")


async def test_redis_paused_server_times_out_into_kverror():
    from kvheal.impl.redis_kv import RedisKV
    from kvheal.impl.redis_server import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        kv = RedisKV(server.url, timeout=0.3, pool_timeout=0.3)
        await kv.put("a", "1")
        server.pause()
        try:
            t0 = time.monotonic()
            with pytest.raises(KVError):
                await kv.get("a")
            assert time.monotonic() - t0 < 1.5  # bounded by the socket timeout, not hanging
        finally:
            server.resume()
        await kv.aclose()


async def test_redis_pool_waits_instead_of_failing(redis_url):
    from kvheal.impl.redis_kv import RedisKV

    kv = RedisKV(redis_url, namespace=f"pool-{uuid.uuid4().hex[:6]}:", max_connections=2, pool_timeout=10)
    await kv.put("k", "v")
    values = await asyncio.gather(*(kv.get("k") for _ in range(300)))  # 300 calls, 2 connections
    assert values == ["v"] * 300
    await kv.clear()
    await kv.aclose()


async def test_redis_persistence_is_reported(redis_url):
    from kvheal.impl.redis_kv import RedisKV, describe_persistence

    kv = RedisKV(redis_url)
    p = await kv.persistence()
    await kv.aclose()
    assert (p["appendonly"], p["appendfsync"], p["source"]) == (True, "everysec", "config")
    assert describe_persistence(p) == "AOF, appendfsync everysec"
    assert (
        describe_persistence({"appendonly": False, "save": ""})
        == "no persistence (neither AOF nor snapshots)"
    )


async def test_sqlite_synchronous_full_by_default_and_busy_lock_is_kverror(tmp_path):
    path = tmp_path / "kv.sqlite3"
    kv = SqliteKV(path)
    assert await kv._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
    normal = SqliteKV(path, synchronous="normal")
    assert await normal._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1
    with pytest.raises(ValueError):
        SqliteKV(path, synchronous="OFF")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    short = SqliteKV(path, busy_timeout_ms=100)
    await short.get("x")  # readers are not blocked (WAL)
    with pytest.raises(KVError, match="locked"):
        await short.put("x", "1")
    with pytest.raises(KVError, match="locked"):
        await short.update("x", lambda old: "1")
    locker.execute("ROLLBACK")
    await short.put("x", "1")
    assert await kv.get("x") == "1"
    locker.close()
    for k in (kv, normal, short):
        await k.aclose()


async def test_sqlite_puts_that_queue_up_share_one_commit(tmp_path):
    """Group commit: 200 concurrent puts (some of one key) are written in a handful of
    transactions, not 200, in the order they were called; a batch that cannot get the write
    lock fails every put in it, and the next put works."""
    path = tmp_path / "kv.sqlite3"
    kv = SqliteKV(path, busy_timeout_ms=300)
    statements: list[str] = []
    await kv._run(lambda c: c.set_trace_callback(statements.append))
    await asyncio.gather(*(kv.put(f"k{i % 150}", f"v{i}") for i in range(200)))
    commits = statements.count("COMMIT")
    assert 1 <= commits <= 50, commits  # not 200 (autocommit: one per put, no COMMIT statement)
    # the later put of a key wins, as if each had been its own transaction
    assert [await kv.get(f"k{i}") for i in (0, 49, 50, 149)] == ["v150", "v199", "v50", "v149"]
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    outcomes = await asyncio.gather(*(kv.put(f"x{i}", "1") for i in range(5)), return_exceptions=True)
    assert all(isinstance(o, KVError) and "locked" in str(o) for o in outcomes), outcomes
    locker.execute("ROLLBACK")
    locker.close()
    assert [await kv.get(f"x{i}") for i in range(5)] == [None] * 5
    await kv.put("x0", "2")
    assert await kv.get("x0") == "2"
    await kv.aclose()


def test_op_log_design_header(tmp_path):
    from kvheal.impl.kv import read_design

    path = tmp_path / "ops.jsonl"
    JsonlOpLog(path, design={"variants": ["dedupe"], "cap": 7}).close()
    JsonlOpLog(path, design={"variants": ["other"], "cap": 1}).close()  # not new: no second header
    log = JsonlOpLog(path)
    log({"op": "get", "key": "x"})
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["op"] for line in lines] == ["design", "get"]
    assert {k: read_design(path)[k] for k in ("variants", "cap")} == {"variants": ["dedupe"], "cap": 7}
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"op":"get","key":"x"}\n')
    assert read_design(plain) is None


CACHE_CASES = [
    ([], {"id": "a", "text": "x", "timestamp": 5}),
    (
        [{"id": "a", "text": "x", "timestamp": 5}],
        {"id": "b", "text": "y", "timestamp": 5},
    ),  # a tie keeps order
    (
        [{"id": "b", "text": "y", "timestamp": 9}, {"id": "c", "text": 'é/"\\n', "timestamp": 12}],
        {"id": "a", "text": "older", "timestamp": 1},
    ),
    (
        [{"id": "f", "text": "far", "timestamp": 2**53 - 1}],
        {"id": "n", "text": "now", "timestamp": 1732900000000, "username": "ü", "extra": None},
    ),
    (
        [{"id": str(i), "text": "t", "timestamp": i} for i in range(5)],
        {"id": "x", "text": "mid", "timestamp": 2},
    ),
    ([{"id": "a", "text": "x", "timestamp": 5}], {"id": "a", "text": "again", "timestamp": 6}),  # dedupe
]


@pytest.mark.parametrize("case", range(len(CACHE_CASES)))
async def test_cache_add_matches_spec_add_on_every_backend(kv, case):
    from kvheal.impl.messages import cache_add, decode_cache, encode_cache

    entries, message = CACHE_CASES[case]
    for dedupe in (True, False):
        await kv.put("cache", encode_cache(entries))
        result = await kv.cache_add("cache", message, cap=4, dedupe=dedupe)
        duplicate = any(e["id"] == message["id"] for e in entries)
        outside = message not in cache_add(entries, message, 4)
        assert result == ("present" if dedupe and duplicate else "outside" if outside else "added")
        expected = entries if result != "added" else cache_add(entries, message, 4)
        assert decode_cache(await kv.get("cache")) == expected


async def test_cache_add_concurrent_from_two_connections(kv, backend_factory):
    from kvheal.impl.messages import decode_cache

    other = kv if kv.name == "memory" else await backend_factory(kv.name)
    if kv.name == "redis":
        other.namespace = kv.namespace
    results = await asyncio.gather(
        *(
            (kv if i % 2 else other).cache_add(
                "cache", {"id": f"m{i % 40}", "text": "t", "timestamp": i % 40}, cap=1000, dedupe=True
            )
            for i in range(80)
        )
    )
    assert sorted(results) == ["added"] * 40 + ["present"] * 40  # every id written once, the repeats found it
    assert [e["id"] for e in decode_cache(await kv.get("cache"))] == [f"m{i}" for i in range(40)]
    _, version = await kv.get_versioned("cache")
    assert version == 40  # a version per write: a racing compare-and-swap sees it
    if other is not kv:
        await other.aclose()


async def test_cache_add_sequences_match_the_reference(kv):
    """Many adds (the Redis script's fast path), a plain put in between (its rebuild), ties, trimming."""
    import random

    from kvheal.impl.messages import cache_add, decode_cache, encode_cache

    rng = random.Random(7)
    reference: list[dict] = []
    for i in range(120):
        if i == 60:
            reference = reference[::2]
            await kv.put("cache", encode_cache(reference))  # someone else's plain write
        message = {"id": f"id {rng.randrange(90)}/é", "text": f"t{i}\u2028", "timestamp": rng.randrange(30)}
        if i % 17 == 0:
            message["timestamp"] = 2**53 - 1 - i
        dedupe = i % 3 != 0
        write_outside = i % 5 == 0
        result = await kv.cache_add("cache", message, cap=25, dedupe=dedupe, write_outside=write_outside)
        present = dedupe and any(e["id"] == message["id"] for e in reference)
        updated = cache_add(reference, message, 25)
        outside = not any(e is message for e in updated)
        assert result == ("present" if present else "outside" if outside else "added"), i
        if result == "added" or result == "outside" and write_outside:
            reference = updated
        assert decode_cache(await kv.get("cache")) == reference, i


async def test_cache_add_all_adds_in_order_with_each_add_seeing_the_previous(kv):
    """A batch (on Redis one run of the script): results per message, a repeat within the batch
    found by dedupe, a message older than the full cache outside, the value as adding one by one."""
    from kvheal.impl.messages import cache_add, decode_cache, encode_cache

    start = [{"id": "a", "text": "a", "timestamp": 10}, {"id": "b", "text": "b", "timestamp": 20}]
    await kv.put("cache", encode_cache(start))
    batch = [
        {"id": "c", "text": "c", "timestamp": 15},
        {"id": "c", "text": "c again", "timestamp": 16},
        {"id": "old", "text": "old", "timestamp": 1},
        {"id": "d", "text": "d", "timestamp": 30},
        {"id": "a", "text": "a", "timestamp": 10},
    ]
    results = await kv.cache_add_all("cache", batch, cap=3, dedupe=True)
    assert results == ["added", "present", "outside", "added", "outside"]
    expected = cache_add(cache_add(start, batch[0], 3), batch[3], 3)
    assert [e["id"] for e in expected] == ["c", "b", "d"]
    assert decode_cache(await kv.get("cache")) == expected
    _, version = await kv.get_versioned("cache")
    # the put, then a write per add (Redis: one write for the batch, one script run); nothing
    # written for the others
    assert version == (2 if kv.name == "redis" else 3)
    assert await kv.cache_add_all("cache", [], cap=3, dedupe=True) == []


async def test_cache_add_all_batches_match_adding_one_by_one(kv):
    """Random batches (ties, trimming, repeats within and across batches, an oversized cache put
    in between): results and value as SPEC's `add` applied one message at a time."""
    import random

    from kvheal.impl.messages import cache_add, decode_cache, encode_cache

    rng = random.Random(11)
    reference: list[dict] = []
    for b in range(40):
        if b == 20:
            reference = [{"id": f"p{i}", "text": "put", "timestamp": i} for i in range(30)]
            await kv.put("cache", encode_cache(reference))  # more entries than the cap
        dedupe, write_outside = b % 3 != 0, b % 4 == 0
        batch = [
            {"id": f"id{rng.randrange(60)}", "text": f"b{b}", "timestamp": rng.randrange(40)}
            for _ in range(rng.randrange(1, 9))
        ]
        results = await kv.cache_add_all("cache", batch, cap=12, dedupe=dedupe, write_outside=write_outside)
        expected, wrote = [], False
        for message in batch:
            if dedupe and any(e["id"] == message["id"] for e in reference):
                expected.append("present")
                continue
            updated = cache_add(reference, message, 12)
            if any(e is message for e in updated):
                expected.append("added")
                reference, wrote = updated, True
            else:
                expected.append("outside")
                if write_outside:
                    reference, wrote = updated, True
        assert results == expected, b
        assert decode_cache(await kv.get("cache")) == reference, (b, wrote)


async def test_redis_lists_the_comment_keys_written_since_a_cursor(redis_url):
    """`list_since`: the first call lists every key (those written before the index existed
    too) and returns the index's length; later calls return only the keys written since; an
    index shorter than the cursor (a restore from an older snapshot) gives a full listing."""
    from kvheal.impl.redis_kv import RedisKV

    kv = RedisKV(redis_url, namespace=f"since-{uuid.uuid4().hex[:6]}:")
    try:
        await kv._redis.hset(kv._key("comment:old"), mapping={"v": "{}", "n": 1})  # not indexed
        await kv.put("comment:a", "{}")
        await kv.put("recent:comments", "[]")  # not an indexed prefix
        keys, cursor, full = await kv.list_since("comment:", None)
        assert (sorted(keys), cursor, full) == (["comment:a", "comment:old"], 1, True)
        assert await kv.list("") == ["comment:a", "comment:old", "recent:comments"]  # not the index
        assert await kv.list_since("comment:", cursor) == ([], 1, False)
        await kv.put("comment:b", "{}")
        await kv.put("comment:b", "{}")  # written again: indexed once
        await kv.put("comment:c", "{}")
        assert await kv.list_since("comment:", cursor) == (["comment:b", "comment:c"], 3, False)
        await kv._redis.delete(kv._key("index:comment:"))  # the index lost (an older snapshot)
        keys, cursor, full = await kv.list_since("comment:", 3)
        assert (keys, cursor, full) == (["comment:a", "comment:b", "comment:c", "comment:old"], 0, True)
        with pytest.raises(ValueError, match="not an indexed prefix"):
            await kv.list_since("status:", None)
    finally:
        await kv.clear()
        await kv.aclose()


async def test_the_sweeper_on_redis_reads_only_the_new_keys(redis_url):
    """A sweeper pass on Redis lists every key once, then reads the index's new entries: a
    message stored but not cached is still repaired, without another listing of the store."""
    from kvheal.impl.config import WorkerConfig
    from kvheal.impl.messages import CACHE_KEY, decode_cache, encode_cache, encode_message
    from kvheal.impl.redis_kv import RedisKV
    from kvheal.impl.worker import Sweeper

    kv = RedisKV(redis_url, namespace=f"sweepidx-{uuid.uuid4().hex[:6]}:")
    listings = []
    plain_list = kv.list

    async def counted(prefix):
        listings.append(prefix)
        return await plain_list(prefix)

    kv.list = counted
    try:
        a = {"id": "a", "text": "a", "timestamp": 1}
        await kv.put("comment:a", encode_message(a))
        await kv.put(CACHE_KEY, encode_cache([a]))
        sweeper = Sweeper(kv, WorkerConfig(variants="dedupe,sweeper", cap=10))
        first = await sweeper.run_once()
        assert (first.missing, first.written, listings) == ((), False, ["comment:"])
        b = {"id": "b", "text": "b", "timestamp": 2}
        await kv.put("comment:b", encode_message(b))  # stored, never cached
        second = await sweeper.run_once()
        assert (second.missing, second.written, listings) == (("b",), True, ["comment:"])
        assert [e["id"] for e in decode_cache(await kv.get(CACHE_KEY))] == ["a", "b"]
        sweeper.full_every = 1  # every pass lists the store again
        await sweeper.run_once()
        assert listings == ["comment:", "comment:"]
    finally:
        await kv.clear()
        await kv.aclose()

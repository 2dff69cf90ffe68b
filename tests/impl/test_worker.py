"""The worker's KV calls, step by step, in every design (in-process, memory KV)."""

from __future__ import annotations

import asyncio
import json

import pytest
from impl_helpers import asgi_client, calls, logged

from kvheal.impl.config import ConfigError, WorkerConfig
from kvheal.impl.kv import MemoryKV
from kvheal.impl.messages import cache_add
from kvheal.impl.worker import Sweeper, Worker, create_app

C, K = "recent:comments", "comment:"


def config_of(variants: str) -> WorkerConfig:
    """`variants`, with "+update" for the store's own atomic update (else the cas loop)."""
    return WorkerConfig(variants=variants.replace("+update", ""), store_update="+update" in variants)


def msg(i: int) -> dict:
    return {"id": f"m{i}", "text": f"message {i}", "timestamp": i}


async def post(http, i):
    r = await http.post("/api/comments", json=msg(i))
    assert r.status_code == 200, r.text
    return r.json()


async def cache_ids(kv) -> list[str]:
    return [e["id"] for e in json.loads(await kv.get(C) or "[]")]


@pytest.mark.parametrize(
    "variants, expected",
    [
        ("", [("get", K + "m1"), ("put", K + "m1"), ("get", C), ("put", C)]),
        ("dedupe", [("get", K + "m1"), ("put", K + "m1"), ("get", C), ("put", C)]),
        ("atomic_cache", [("get", K + "m1"), ("put", K + "m1"), ("get_versioned", C), ("cas", C, True)]),
        ("atomic_cache+update", [("get", K + "m1"), ("put", K + "m1"), ("update", C)]),
    ],
)
async def test_post_calls(variants, expected):
    kv, records = logged(MemoryKV())
    app = create_app(kv, config_of(variants))
    async with asgi_client(app) as http:
        body = await post(http, 1)
    assert calls(records) == expected
    assert body["comment"] == msg(1) and body["cached"] is True
    assert body["healToken"] == app.state.worker.heal_token(msg(1))
    assert {r["endpoint"] for r in records} == {"post"} and {r["mid"] for r in records} == {"m1"}
    assert len({r["rid"] for r in records}) == 1


async def test_get_is_one_read_newest_first():
    kv, records = logged(MemoryKV())
    app = create_app(kv, WorkerConfig())
    async with asgi_client(app) as http:
        for i in (3, 1, 2):
            await post(http, i)
        records.clear()
        r = await http.get("/api/comments")
        assert [c["id"] for c in r.json()["comments"]] == ["m3", "m2", "m1"]
        assert calls(records) == [("get", C)]
        r = await http.get("/api/comments", params={"after": 1, "limit": 1})
        assert [c["id"] for c in r.json()["comments"]] == ["m3"]
        r = await http.get("/api/comments", params={"after": 3})
        assert r.json() == {"comments": [], "total": 0}
        # paging: offset skips the newest, total counts what `after` leaves
        r = await http.get("/api/comments", params={"limit": 2, "offset": 1})
        assert ([c["id"] for c in r.json()["comments"]], r.json()["total"]) == (["m2", "m1"], 3)
        r = await http.get("/api/comments", params={"limit": 2, "offset": 3})
        assert r.json() == {"comments": [], "total": 3}


async def test_request_id_header_is_used_and_echoed():
    kv, records = logged(MemoryKV())
    async with asgi_client(create_app(kv)) as http:
        r = await http.post("/api/comments", json=msg(1), headers={"x-request-id": "post-1"})
        assert r.headers["x-request-id"] == "post-1"
        r = await http.get("/api/comments", headers={"x-request-id": "bad id with spaces"})
        assert r.headers["x-request-id"] != "bad id with spaces"
    assert [r["rid"] for r in records] == ["post-1"] * 4 + [records[-1]["rid"]]


@pytest.mark.parametrize(
    "variants, expected",
    [
        ("", [("get", K + "m1"), ("get", C), ("put", C)]),
        ("atomic_cache", [("get", K + "m1"), ("get_versioned", C), ("cas", C, True)]),
        ("atomic_cache+update", [("get", K + "m1"), ("update", C)]),
    ],
)
async def test_heal_calls_and_duplicates_without_dedupe(variants, expected):
    kv, records = logged(MemoryKV())
    app = create_app(kv, config_of(variants))
    async with asgi_client(app) as http:
        token = (await post(http, 1))["healToken"]
        records.clear()
        r = await http.post("/api/admin/add-to-cache", json={"messageId": "m1", "healToken": token})
        assert r.json() == {"success": True, "added": True, "result": "added"}
    assert calls(records) == expected
    assert await cache_ids(kv) == ["m1", "m1"]  # the seed's heal does not look: a duplicate


@pytest.mark.parametrize(
    "variants, expected",
    [
        ("dedupe", [("get", K + "m1"), ("get", C)]),
        ("dedupe,atomic_cache", [("get", K + "m1"), ("get_versioned", C)]),
        ("dedupe,atomic_cache+update", [("get", K + "m1"), ("update", C)]),
    ],
)
async def test_heal_of_cached_id_writes_nothing_with_dedupe(variants, expected):
    kv, records = logged(MemoryKV())
    async with asgi_client(create_app(kv, config_of(variants))) as http:
        token = (await post(http, 1))["healToken"]
        before = await kv.get(C)
        records.clear()
        r = await http.post("/api/admin/add-to-cache", json={"messageId": "m1", "healToken": token})
        assert r.json() == {"success": True, "added": False, "result": "already present"}
    assert calls(records) == expected
    assert await kv.get(C) == before


async def test_heal_authorization_and_unknown_id():
    kv, records = logged(MemoryKV())
    app = create_app(kv)
    worker = app.state.worker
    async with asgi_client(app) as http:
        await post(http, 1)
        records.clear()
        r = await http.post("/api/admin/add-to-cache", json={"messageId": "m1", "healToken": "0" * 48})
        assert (r.status_code, r.json()) == (403, {"error": "heal token does not match this message"})
        r = await http.post(
            "/api/admin/add-to-cache", json={"messageId": "m1", "healToken": worker.heal_token(msg(2))}
        )
        assert r.status_code == 403
        assert records == []  # refused before touching the store
        r = await http.post(
            "/api/admin/add-to-cache",
            json={"messageId": "nope", "healToken": worker.heal_token({**msg(1), "id": "nope"})},
        )
        assert (r.status_code, r.json()) == (404, {"error": "no such message"})
        assert calls(records) == [("get", K + "nope")]
        # a token minted for another body of the same id (not the stored one): 403 after the read
        records.clear()
        other = worker.heal_token({**msg(1), "text": "not what is stored"})
        r = await http.post("/api/admin/add-to-cache", json={"messageId": "m1", "healToken": other})
        assert (r.status_code, r.json()) == (403, {"error": "heal token does not match this message"})
        assert calls(records) == [("get", K + "m1")]


async def test_secret_decides_tokens():
    a = Worker(MemoryKV(), WorkerConfig(secret=b"one"))
    b = Worker(MemoryKV(), WorkerConfig(secret=b"one"))
    c = Worker(MemoryKV(), WorkerConfig(secret=b"two"))
    x = {"id": "x", "text": "t", "timestamp": 1}
    assert a.heal_token(x) == b.heal_token(x) != c.heal_token(x)
    assert len(a.heal_token(x)) == 48
    assert a.check_heal_token("x", b.heal_token(x)) and not a.check_heal_token("x", c.heal_token(x))
    assert not a.check_heal_token("y", a.heal_token(x))
    assert a.token_fits(a.heal_token(x), x) and not a.token_fits(a.heal_token(x), {**x, "text": "u"})


async def test_repost_of_the_same_message_is_an_idempotent_retry():
    kv, records = logged(MemoryKV())
    async with asgi_client(create_app(kv, WorkerConfig(variants="dedupe"))) as http:
        first = await post(http, 1)
        records.clear()
        again = await post(http, 1)
    assert calls(records) == [("get", K + "m1")]  # nothing written
    assert again == {**first, "cached": False, "repeat": True}
    assert await cache_ids(kv) == ["m1"]


async def test_seed_race_loses_a_message_and_atomic_does_not():
    """Two posts whose cache reads both happen before either write: the seed loses one."""
    for variants, expected in [("", 1), ("atomic_cache", 2), ("dedupe", 1)]:
        kv = MemoryKV()
        # no per-process lock: the two swaps must race (the lock would serialise them)
        worker = Worker(kv, WorkerConfig(variants=variants, cache_lock=False))
        gate = asyncio.Barrier(2)
        real_get, real_gv = kv.get, kv.get_versioned

        async def get(key, _real=real_get):
            value = await _real(key)
            if key == C:
                await gate.wait()  # noqa: B023 (awaited within this iteration)
            return value

        kv.get = get
        if variants == "atomic_cache":
            first = {"n": 0}

            async def gv(key, _real=real_gv):
                value = await _real(key)
                first["n"] += 1  # noqa: B023 (awaited within this iteration)
                if first["n"] <= 2:  # noqa: B023 (awaited within this iteration)
                    await gate.wait()  # noqa: B023 (awaited within this iteration)
                return value

            kv.get_versioned = gv
        await asyncio.gather(worker.post(msg(1)), worker.post(msg(2)))
        kv.get, kv.get_versioned = real_get, real_gv
        assert len(await cache_ids(kv)) == expected, variants
        assert sorted(await kv.list(K)) == [K + "m1", K + "m2"]


async def test_cache_capacity_and_order():
    kv = MemoryKV()
    worker = Worker(kv, WorkerConfig(cap=3))
    for i in (5, 1, 4, 2, 3):
        await worker.post(msg(i))
    assert await cache_ids(kv) == ["m3", "m4", "m5"]
    assert cache_add([msg(1), msg(3)], {"id": "x", "timestamp": 1}, 10) == [
        msg(1),
        {"id": "x", "timestamp": 1},
        msg(3),
    ]


async def test_atomic_cache_needs_cas():
    with pytest.raises(ConfigError, match="atomic_cache design needs compare-and-swap"):
        create_app(MemoryKV(cas=False), WorkerConfig(variants="atomic_cache"))
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        WorkerConfig(variants="dedupe,nope")


async def test_cas_conflict_retries():
    kv, records = logged(MemoryKV())
    worker = Worker(kv, WorkerConfig(variants="atomic_cache", store_update=False))
    inner = kv.inner
    real = inner.get_versioned
    sneaked = {"done": False}

    async def get_versioned(key):
        value = await real(key)
        if not sneaked["done"]:
            sneaked["done"] = True
            await inner.put(C, json.dumps([msg(9)]))  # another writer between read and cas
        return value

    inner.get_versioned = get_versioned
    update = await worker.update_cache(msg(1))
    assert update.attempts == 2 and update.written
    assert calls(records) == [("get_versioned", C), ("cas", C, False), ("get_versioned", C), ("cas", C, True)]
    assert await cache_ids(kv) == ["m1", "m9"]


@pytest.mark.parametrize("variants", ["sweeper", "sweeper,atomic_cache"])
async def test_sweeper_pass(variants):
    kv, records = logged(MemoryKV())
    config = WorkerConfig(variants=variants, cap=3)
    sweeper = Sweeper(kv, config)
    atomic = "atomic_cache" in variants
    read = ("get_versioned", C) if atomic else ("get", C)
    write = ("cas", C, True) if atomic else ("put", C)
    # m1, m2 stored, cache has only m2
    await kv.inner.put(K + "m1", json.dumps(msg(1)))
    await kv.inner.put(K + "m2", json.dumps(msg(2)))
    await kv.inner.put(C, json.dumps([msg(2)]))
    result = await sweeper.run_once()
    assert (result.listed, result.missing, result.written) == (2, ("m1",), True)
    assert calls(records) == [("list", K), read, ("get", K + "m1"), write]
    assert {r["endpoint"] for r in records} == {"sweep"}
    assert await cache_ids(kv.inner) == ["m1", "m2"]
    records.clear()
    result = await sweeper.run_once()
    assert (result.missing, result.written) == ((), False)
    assert calls(records) == [("list", K), read]
    # a missing id that the trim would drop at once: no write (a documented model difference)
    for i in (3, 4, 5):
        await kv.inner.put(K + f"m{i}", json.dumps(msg(i)))
    await kv.inner.put(C, json.dumps([msg(3), msg(4), msg(5)]))
    records.clear()
    result = await sweeper.run_once()
    # both timestamps are known (m1's body was read, m2 was cached): older than the full
    # cache's oldest entry, so no body is read and nothing written
    assert (result.missing, result.outside, result.written) == ((), 2, False)
    assert calls(records) == [("list", K), read]
    # a new message older than the window: its body is read once, then it is known
    await kv.inner.put(K + "m0", json.dumps(msg(0)))
    records.clear()
    result = await sweeper.run_once()
    assert (result.missing, result.outside, result.written) == (("m0",), 2, False)
    assert calls(records) == [("list", K), read, ("get", K + "m0")]
    records.clear()
    result = await sweeper.run_once()
    assert (result.missing, result.outside, result.written) == ((), 3, False)
    assert calls(records) == [("list", K), read]
    # the floor falls (a stale write put an older entry back): m2 and m3 are in the window again
    await kv.inner.put(C, json.dumps([msg(2), msg(4), msg(5)]))
    records.clear()
    result = await sweeper.run_once()
    assert (result.missing, result.outside, result.written) == (("m3",), 2, True)
    assert calls(records) == [("list", K), read, ("get", K + "m3"), write]  # m3 was only seen cached
    assert await cache_ids(kv.inner) == ["m3", "m4", "m5"]


async def test_sweeper_writes_back_when_configured_like_the_model():
    kv, records = logged(MemoryKV())
    sweeper = Sweeper(kv, WorkerConfig(variants="sweeper", cap=1, sweeper_skip_noop_write=False))
    await kv.inner.put(K + "m1", json.dumps(msg(1)))
    await kv.inner.put(K + "m2", json.dumps(msg(2)))
    await kv.inner.put(C, json.dumps([msg(2)]))
    result = await sweeper.run_once()
    assert result.written and calls(records) == [("list", K), ("get", C), ("get", K + "m1"), ("put", C)]
    assert await cache_ids(kv) == ["m2"]


async def test_sweeper_background_loop_in_lifespan():
    import httpx2

    from kvheal.impl.server import UvicornThread

    kv = MemoryKV()
    await kv.put(K + "m1", json.dumps(msg(1)))
    app = create_app(kv, WorkerConfig(variants="sweeper", sweep_interval=0.01))
    with UvicornThread(app) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            for _ in range(200):
                if (await http.get("/api/comments")).json()["comments"]:
                    break
                await asyncio.sleep(0.01)
            assert [c["id"] for c in (await http.get("/api/comments")).json()["comments"]] == ["m1"]
    assert app.state.sweeper.passes >= 1


async def test_cache_write_failure_still_acknowledges():
    from kvheal.impl.kv import KVError

    kv = MemoryKV()
    real_put = kv.put

    async def put(key, value):
        if key == C:
            raise KVError("disk full")
        await real_put(key, value)

    kv.put = put
    async with asgi_client(create_app(kv)) as http:
        body = await post(http, 1)
    assert body["cached"] is False
    assert await kv.get(K + "m1") is not None and await kv.get(C) is None


@pytest.mark.parametrize("store_update", [True, False])
async def test_concurrent_updates_of_one_process_are_batched_and_all_cached(store_update):
    class Counting(MemoryKV):
        writes = 0

        async def cas(self, key, expected_version, value):
            Counting.writes += 1
            return await super().cas(key, expected_version, value)

        async def update(self, key, fn):
            Counting.writes += 1
            return await super().update(key, fn)

    kv = Counting()
    worker = Worker(kv, WorkerConfig(variants="atomic_cache,dedupe", cap=1000, store_update=store_update))
    results = await asyncio.gather(*(worker.post(msg(i)) for i in range(200)))
    assert [r.result for r in results] == ["added"] * 200
    assert await cache_ids(kv) == [f"m{i}" for i in range(200)]
    assert Counting.writes == 1  # every post had queued before the flusher task first ran
    # a heal of a cached id and a post queued together: one batch, truthful results
    healed, new = await asyncio.gather(worker.update_cache(msg(5)), worker.post(msg(300)))
    assert (healed.result, healed.written, new.result) == ("already present", False, "added")


async def test_a_logged_kv_gets_one_update_per_message():
    kv, records = logged(MemoryKV())
    worker = Worker(kv, WorkerConfig(variants="atomic_cache,dedupe"))
    await asyncio.gather(*(worker.post(msg(i)) for i in range(5)))
    assert [op for op, *_ in calls(records)].count("update") == 5
    assert {r["mid"] for r in records if r["op"] == "update"} == {f"m{i}" for i in range(5)}


async def test_a_failed_batch_fails_each_waiting_post_and_the_next_one_works():
    from kvheal.impl.kv import KVError

    kv = MemoryKV()
    real = kv.update
    failing = {"on": True}

    async def update(key, fn):
        if failing["on"]:
            raise KVError("disk full")
        return await real(key, fn)

    kv.update = update
    worker = Worker(kv, WorkerConfig(variants="atomic_cache"))
    assert await asyncio.gather(*(worker.post(msg(i)) for i in range(3))) == [None, None, None]
    failing["on"] = False
    assert (await worker.post(msg(9))).result == "added"
    assert await cache_ids(kv) == ["m9"]


async def test_write_limit_emulation_and_injected_post_failure():
    """SPEC §6 put_fails and post_fails on the real worker: a cache put the write limit refuses
    still answers 200 (post: cached false; heal: result "write failed"), a request failure
    injected after put comment:<id> answers 500 with the key stored; in time mode the second
    write of a key within a second fails."""
    from kvheal.impl.emulate import RequestFailure, WriteLimited, WriteLimitKV

    now = [0]
    kv = WriteLimitKV(MemoryKV(), mode="manual", clock=lambda: now[0])
    app = create_app(kv, WorkerConfig())
    async with asgi_client(app) as http:
        kv.fail_next("recent:comments")
        r = await http.post("/api/comments", json={"text": "a", "id": "m0", "timestamp": 1})
        assert (r.status_code, r.json()["cached"], kv.refused) == (200, False, 1)
        token = r.json()["healToken"]
        kv.fail_next("recent:comments")
        r = await http.post("/api/admin/add-to-cache", json={"messageId": "m0", "healToken": token})
        assert (r.status_code, r.json()["result"], kv.refused) == (200, "write failed", 2)
        kv.fail_next("recent:comments", RequestFailure)
        r = await http.post("/api/comments", json={"text": "b", "id": "m1", "timestamp": 2})
        assert r.status_code == 500 and await kv.get("comment:m1") is not None
        assert await kv.get("recent:comments") is None and kv.refused == 2
    timed = WriteLimitKV(MemoryKV(), clock=lambda: now[0])
    await timed.put("k", "1")
    now[0] = 999
    with pytest.raises(WriteLimited):
        await timed.put("k", "2")
    now[0] = 1000
    await timed.put("k", "3")
    assert (await timed.get("k"), timed.refused) == ("3", 1)
    # kvheal serve --variant put_fails limits the cache's writes by the clock
    served = create_app(MemoryKV(), WorkerConfig(variants=frozenset({"put_fails"})))
    assert isinstance(served.state.worker.kv, WriteLimitKV) and served.state.worker.kv.keys == (
        "recent:comments",
    )


async def test_stale_read_emulation():
    """SPEC §6 stale_reads: a read of the cache may be served its value before the last write
    that changed it: armed (manual mode) or within the window by chance (time mode); a refresh
    (the model's Tick) makes every copy fresh; a write of the same value ages nothing."""
    import random

    from kvheal.impl.emulate import StaleReadKV

    kv = StaleReadKV(MemoryKV(), mode="manual", keys=("recent:comments",))
    await kv.put("recent:comments", "[1]")
    await kv.put("recent:comments", "[1,2]")
    await kv.put("recent:comments", "[1,2]")  # no change: the older value stays "[1]"
    kv.serve_stale_next("recent:comments")
    assert [await kv.get("recent:comments"), await kv.get("recent:comments")] == ["[1]", "[1,2]"]
    kv.refresh()
    kv.serve_stale_next("recent:comments")
    assert (await kv.get("recent:comments"), kv.stale_served) == ("[1,2]", 2)
    now = [0]
    timed = StaleReadKV(MemoryKV(), keys=("k",), window_ms=1000, clock=lambda: now[0], rng=random.Random(1))
    await timed.put("k", "a")
    await timed.put("k", "b")
    served = {await timed.get("k") for _ in range(20)}
    now[0] = 1000
    later = {await timed.get("k") for _ in range(20)}
    assert (served, later) == ({"a", "b"}, {"b"})
    app = create_app(MemoryKV(), WorkerConfig(variants=frozenset({"tab_view", "stale_reads", "put_fails"})))
    assert isinstance(app.state.worker.kv.inner, StaleReadKV)


async def test_get_filters_by_message_type():
    """SPEC §6 ai_channel: GET /api/comments?type= returns one channel's messages (a message
    without a type is human); a bad type, posted or asked for, is a one-line 400."""
    app = create_app(MemoryKV(), WorkerConfig())
    async with asgi_client(app) as http:
        for i, kind in enumerate((None, "ai", "human")):
            body = {**msg(i), **({"type": kind} if kind else {})}
            assert (await http.post("/api/comments", json=body)).status_code == 200
        bad = await http.post("/api/comments", json={**msg(9), "type": "bot"})
        assert (bad.status_code, bad.json()["error"]) == (400, "type must be one of human, ai")
        got = {}
        for kind in ("ai", "human"):
            got[kind] = [c["id"] for c in (await http.get(f"/api/comments?type={kind}")).json()["comments"]]
        assert got == {"ai": ["m1"], "human": ["m2", "m0"]}
        refused = await http.get("/api/comments?type=bot")
        assert (refused.status_code, refused.json()["error"]) == (400, "type must be one of human, ai")

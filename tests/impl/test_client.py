"""The client (browser tab): pending store, poll steps, heals, schedule, crash, shared list."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest

from kvheal.impl.client import (
    Client,
    ClientError,
    JsonFilePendingStore,
    MemoryPendingStore,
    PendingEntry,
    PollResult,
    PollSchedule,
    Snapshot,
    SqlitePendingStore,
)
from kvheal.impl.config import WorkerConfig
from kvheal.impl.kv import MemoryKV
from kvheal.impl.worker import create_app


def make(app, tab, store, **kw) -> Client:
    return Client("http://worker", tab=tab, store=store, transport=httpx2.ASGITransport(app=app), **kw)


async def drop_from_cache(kv, message_id):
    entries = [e for e in json.loads(await kv.get("recent:comments")) if e["id"] != message_id]
    await kv.put("recent:comments", json.dumps(entries))


async def test_post_poll_heal_cycle(tmp_path):
    kv = MemoryKV()
    app = create_app(kv, WorkerConfig())
    store = SqlitePendingStore(tmp_path / "local.sqlite3", "pending:0")
    async with make(app, 0, store) as tab:
        ack = await tab.post("hi", id="m1", timestamp=1)
        assert ack.id == "m1" and ack.token == app.state.worker.heal_token(ack.comment) and ack.cached
        assert await tab.pending_ids() == ["m1"]
        await drop_from_cache(kv, "m1")
        snap = await tab.poll_read()
        assert snap.ids == ()
        result = await tab.poll_done(snap)
        assert (result.found, result.missing, result.heals) == ((), ("m1",), ("m1",))
        await tab.wait_heals()
        assert tab.heals_sent == 1 and tab.healing == set()
        assert await tab.pending_ids() == ["m1"]
        result = await tab.poll_once()
        assert (result.found, result.missing, result.heals) == (("m1",), (), ())
        assert await tab.pending_ids() == []
        assert tab.shown == {"m1"} and tab.polls == 2
    await store.aclose()


async def test_pending_store_survives_restart(tmp_path):
    app = create_app(MemoryKV(), WorkerConfig())
    path = tmp_path / "local.sqlite3"
    store = SqlitePendingStore(path, "pending:0")
    async with make(app, 0, store) as tab:
        await tab.post("one", id="m1", timestamp=1)
    await store.aclose()
    again = SqlitePendingStore(path, "pending:0")
    stored = {"id": "m1", "text": "one", "timestamp": 1}
    assert await again.read() == [PendingEntry("m1", app.state.worker.heal_token(stored), "0")]
    assert await SqlitePendingStore(path, "pending:1").read() == []
    await again.aclose()

    json_store = JsonFilePendingStore(tmp_path / "pending.json")
    assert await json_store.read() == []
    await json_store.write([PendingEntry("a", "t", "0")])
    assert await JsonFilePendingStore(tmp_path / "pending.json").read() == [PendingEntry("a", "t", "0")]
    (tmp_path / "pending.json").write_text("{corrupt")
    assert await json_store.read() == []


async def test_one_heal_in_flight_per_id_per_client():
    kv = MemoryKV()
    app = create_app(kv, WorkerConfig())
    async with make(app, 0, MemoryPendingStore()) as tab:
        await tab.post("hi", id="m1", timestamp=1)
        empty = Snapshot((), ())
        assert (await tab.poll_done(empty, start_heals=False)).heals == ("m1",)
        assert (await tab.poll_done(empty, start_heals=False)).heals == ()
        assert tab.healing == {"m1"}
        assert await tab.heal("m1") == 200
        assert tab.healing == set()
        assert (await tab.poll_done(empty, start_heals=False)).heals == ("m1",)
        assert await tab.heal("m1", "0" * 48) == 403


async def test_keep_verifying_never_drops():
    app = create_app(MemoryKV(), WorkerConfig(variants="dedupe"))
    async with make(app, 0, MemoryPendingStore(), keep_verifying=True) as tab:
        await tab.post("hi", id="m1", timestamp=1)
        for _ in range(3):
            result = await tab.poll_once()
            assert result.found == ("m1",)
        assert await tab.pending_ids() == ["m1"]


async def test_shared_pending_race_loses_an_entry():
    """Two tabs add to one shared list at once: both read [], both write back; one entry is lost."""
    app = create_app(MemoryKV(), WorkerConfig())
    shared = MemoryPendingStore()
    both_read = asyncio.Barrier(2)
    real_read = shared.read

    async def read():
        value = await real_read()
        await both_read.wait()
        return value

    shared.read = read
    async with make(app, 0, shared) as a, make(app, 1, shared) as b:
        await asyncio.gather(a.post("from a", id="a1", timestamp=1), b.post("from b", id="b1", timestamp=2))
    assert len(shared.peek()) == 1


async def test_shared_pending_every_tab_heals_every_id():
    kv = MemoryKV()
    app = create_app(kv, WorkerConfig(variants="dedupe"))
    shared = MemoryPendingStore()
    async with make(app, 0, shared) as a, make(app, 1, shared) as b:
        await a.post("from a", id="a1", timestamp=1)
        await drop_from_cache(kv, "a1")
        result = await b.poll_done(await b.poll_read(), start_heals=False)
        assert result.heals == ("a1",)  # b heals a's message with the token from the shared list
        assert await b.heal("a1") == 200
        assert (await a.poll_once()).found == ("a1",)
        assert shared.peek() == []


async def test_crashed_tab_stops_but_its_list_stays():
    app = create_app(MemoryKV(), WorkerConfig())
    store = MemoryPendingStore()
    async with make(app, 0, store) as tab:
        await tab.post("hi", id="m1", timestamp=1)
        tab.crash()
        with pytest.raises(ClientError, match="tab 0 has crashed"):
            await tab.post("again", id="m2", timestamp=2)
        assert (await tab.poll_done(Snapshot((), ()))).heals == ()
        assert await tab.run(max_polls=3) == 0
    assert [e.id for e in store.peek()] == ["m1"]


async def test_schedule_and_run_loop():
    schedule = PollSchedule()
    assert [schedule.delay(n) for n in (0, 1, 2, 147, 148, 1000)] == [5.0, 7.0, 9.0, 299.0, 300.0, 300.0]
    kv = MemoryKV()
    app = create_app(kv, WorkerConfig())
    delays = []

    async with make(app, 0, MemoryPendingStore(), schedule=PollSchedule(0.01, 0.005, 0.02)) as tab:

        async def sleep(seconds):  # a fake clock that lets background heals finish
            delays.append(seconds)
            await tab.wait_heals()

        await tab.post("hi", id="m1", timestamp=1)
        await drop_from_cache(kv, "m1")
        polls = await tab.run(until_drained=True, sleep=sleep)
    assert polls == 2 and delays == [0.01, 0.015]


async def test_post_refused_raises_with_status():
    app = create_app(MemoryKV(), WorkerConfig(max_text=3))
    async with make(app, 0, MemoryPendingStore()) as tab:
        with pytest.raises(ClientError) as info:
            await tab.post("too long", id="m1")
        assert info.value.status == 400
        assert await tab.pending_ids() == [] and tab.shown == set()


async def test_request_ids_name_the_tab_and_still_pending_is_a_hook():
    from impl_helpers import logged

    kv, records = logged(MemoryKV())
    app = create_app(kv, WorkerConfig())

    class Forgetful(Client):  # a planted client fault: drops every pending id unchecked
        def still_pending(self, entries, present):
            return []

    async with make(app, 3, MemoryPendingStore()) as tab:
        await tab.post("hi", id="m1", timestamp=1)
        await tab.poll_read()
        await tab.post("named", id="m2", timestamp=2, request_id="custom-1")
    rids = [r["rid"] for r in records]
    assert rids[0].startswith("t3-post-1-") and rids[4].startswith("t3-poll-2-") and rids[5] == "custom-1"
    store = MemoryPendingStore()
    async with Forgetful("http://worker", tab=0, store=store, transport=httpx2.ASGITransport(app=app)) as tab:
        await tab.post("x", id="m3", timestamp=3)
        await drop_from_cache(kv, "m3")
        await tab.poll_done(Snapshot((), ()), start_heals=False)
        assert store.peek() == []


async def test_poll_pages_through_a_cache_larger_than_one_response():
    from kvheal.impl.messages import encode_cache

    kv = MemoryKV()
    app = create_app(kv, WorkerConfig(cap=2500))
    messages = [{"id": f"m{i}", "text": "x", "timestamp": i} for i in range(2500)]
    await kv.put("recent:comments", encode_cache(messages))
    seen = []

    class Counting(httpx2.ASGITransport):
        async def handle_async_request(self, request):
            seen.append(str(request.url.params))
            return await super().handle_async_request(request)

    async with Client(
        "http://worker", tab="0", store=MemoryPendingStore(), transport=Counting(app=app)
    ) as tab:
        snap = await tab.poll_read()
    assert snap.ids == tuple(f"m{i}" for i in range(2500))
    assert seen == ["limit=1000", "limit=1000&offset=1000", "limit=1000&offset=2000"]


async def test_a_post_whose_answer_was_lost_is_retried_idempotently():
    kv = MemoryKV()
    app = create_app(kv, WorkerConfig(variants="dedupe"))
    answered = []

    class LosesFirstAnswer(httpx2.ASGITransport):
        async def handle_async_request(self, request):
            response = await super().handle_async_request(request)
            answered.append(response.status_code)
            if len(answered) == 1:  # the worker stored the post; its answer never arrives
                raise httpx2.ReadTimeout("timed out", request=request)
            return response

    store = MemoryPendingStore()
    async with Client(
        "http://worker", tab="0", store=store, transport=LosesFirstAnswer(app=app), retry_delay=0.01
    ) as tab:
        ack = await tab.post("hello")
        assert tab.post_retries_sent == 1
    assert answered == [200, 200]
    assert await kv.list("comment:") == ["comment:" + ack.id]
    assert json.loads(await kv.get("comment:" + ack.id))["text"] == "hello"
    assert [e.id for e in store.peek()] == [ack.id]
    assert [e["id"] for e in json.loads(await kv.get("recent:comments"))] == [ack.id]
    assert ack.token == app.state.worker.heal_token(ack.comment)


async def test_a_post_that_never_gets_through_raises_after_its_retries():
    class Down(httpx2.AsyncBaseTransport):
        calls = 0

        async def handle_async_request(self, request):
            Down.calls += 1
            raise httpx2.ConnectError("refused", request=request)

    async with Client(
        "http://worker",
        tab="0",
        store=MemoryPendingStore(),
        transport=Down(),
        retry_delay=0.001,
        post_retries=2,
    ) as tab:
        with pytest.raises(ClientError, match="POST /api/comments"):
            await tab.post("hello")
        assert (Down.calls, tab.post_retries_sent) == (3, 2)
        assert await tab.pending_ids() == []


async def test_ids_no_heal_can_bring_back_are_given_up():
    from kvheal.impl.messages import encode_cache

    kv = MemoryKV()
    app = create_app(kv, WorkerConfig(variants="dedupe", cap=1))
    store = MemoryPendingStore()
    async with make(app, 0, store, give_up_hopeless=True) as tab:
        old = await tab.post("old", id="old", timestamp=1)
        await tab.post("new", id="new", timestamp=2)  # pushes "old" out of the one-entry cache
        lost = await tab.post("lost", id="lost", timestamp=3)
        await kv.put("comment:lost", "")  # the store lost it (decodes as absent)
        await kv.put("recent:comments", encode_cache([{"id": "new", "text": "new", "timestamp": 2}]))
        first = await tab.poll_once()
        await tab.wait_heals()
        assert (set(first.heals), tab.heals_sent) == ({"old", "lost"}, 2)
        assert tab.abandoned == {"old": "outside the cache's window", "lost": "not found"}
        assert sorted(await tab.pending_ids()) == ["lost", "old"]  # written back before the answers
        second = await tab.poll_once()
        await tab.wait_heals()
        assert (second.heals, tab.heals_sent) == ((), 2)  # never healed again
        assert await tab.pending_ids() == []  # and dropped at the write-back
    assert old.cached and lost.cached
    async with make(app, 1, MemoryPendingStore()) as stubborn:  # the default: heal for ever, as the model
        await stubborn.record_ack(old)
        for _ in range(2):
            await stubborn.poll_once()
            await stubborn.wait_heals()
        assert (stubborn.heals_sent, stubborn.abandoned) == (2, {})


# -- the as-built tab (SPEC §6) ------------------------------------------------------------------
LAG = 6000


async def test_the_as_built_tab_cursor_hides_a_message_healed_after_it_passed():
    """tab_view + found_in_response: timestamps from the injected clock, polls ask only for what
    is newer than the cursor, which follows the clock minus the lag; a message that reaches the
    cache after the cursor passed it is never shown, and its owner heals it on every poll."""
    now = [1_000_000]
    kv = MemoryKV()
    app = create_app(kv, WorkerConfig())
    view = dict(clock=lambda: now[0], tab_view=True, found_in_response=True, lag_ms=LAG)
    async with (
        make(app, 0, MemoryPendingStore(), **view) as poster,
        make(app, 1, MemoryPendingStore(), **view) as reader,
    ):
        assert reader.cursor == 999_999  # just before the load time
        ack = await poster.post("hi", id="m0")
        assert ack.comment["timestamp"] == 1_000_000 and poster.shown == {"m0"}
        await drop_from_cache(kv, "m0")  # its cache update was lost
        now[0] += LAG
        snap = await reader.poll_read()
        assert reader.shown == set()  # shown when the poll is processed, not when it is read
        await reader.poll_done(snap)
        assert reader.cursor == 1_000_000 and reader.shown == set()
        for expected_heals in (1, 2):
            result = await poster.poll_once()
            assert result.missing == ("m0",)
            await poster.wait_heals()
            assert poster.heal_counts["m0"] == expected_heals
        assert [e["id"] for e in json.loads(await kv.get("recent:comments"))] == ["m0", "m0"]
        await reader.poll_once()
        assert reader.shown == set()  # in the cache, behind the cursor: never shown
        await poster.post("later", id="m1")
        await reader.poll_once()
        assert reader.shown == {"m1"}


async def test_a_reload_restarts_the_page_and_its_snapshot_counts_as_found():
    """reload: the cursor restarts at the load time, the shown set empties, the page-load
    snapshot is retaken from the local store (found_in_response counts it as found), the
    pending list survives, and the old page's poll answer is dropped."""
    now = [1_000_000]
    kv = MemoryKV()
    app = create_app(kv, WorkerConfig())
    async with make(
        app, 0, MemoryPendingStore(), clock=lambda: now[0], tab_view=True, found_in_response=True
    ) as tab:
        await tab.post("hi", id="m0")
        await drop_from_cache(kv, "m0")
        old = await tab.poll_read()
        now[0] += LAG
        tab.reload()
        assert (tab.reloads, tab.shown, tab.cursor, tab.page_snapshot) == (1, set(), now[0] - 1, {"m0"})
        assert await tab.poll_done(old) == PollResult((), (), ())  # the old page's answer
        assert await tab.pending_ids() == ["m0"]
        result = await tab.poll_once()
        assert (result.found, result.heals) == (("m0",), ())  # found in the snapshot, not the cache
        assert await tab.pending_ids() == [] and json.loads(await kv.get("recent:comments")) == []


async def test_a_lost_answer_drops_the_post_and_a_500_too():
    """post_fails at the tab: a lost answer (injected) and an error answer both leave the
    message untracked and no longer shown."""
    kv = MemoryKV()
    app = create_app(kv, WorkerConfig())
    async with make(app, 0, MemoryPendingStore(), tab_view=True, post_retries=0) as tab:
        tab.lose_answer("m0")
        with pytest.raises(ClientError, match="answer to the POST of m0 was lost"):
            await tab.post("hi", id="m0")
        assert (tab.shown, tab.failed_posts, await tab.pending_ids()) == (set(), {"m0"}, [])
        assert await kv.get("comment:m0") is not None  # stored all the same


async def test_fire_and_forget_heals_without_waiting():
    """heals_in_flight=None (SPEC §6 fire_and_forget, as deployed): every poll that misses an id
    sends a heal for it, however many are in flight; a bound of 2 stops at two."""
    app = create_app(MemoryKV(), WorkerConfig())
    empty = Snapshot((), ())
    async with make(app, 0, MemoryPendingStore(), heals_in_flight=None) as tab:
        await tab.post("hi", id="m1", timestamp=1)
        for _ in range(3):
            assert (await tab.poll_done(empty, start_heals=False)).heals == ("m1",)
        assert tab.healing == {"m1"} and tab.heal_counts["m1"] == 3
        for _ in range(3):
            assert await tab.heal("m1") == 200
        assert tab.healing == set()
    async with make(app, 1, MemoryPendingStore(), heals_in_flight=2) as tab:
        await tab.post("hi", id="m2", timestamp=2)
        assert [(await tab.poll_done(empty, start_heals=False)).heals for _ in range(3)] == [
            ("m2",),
            ("m2",),
            (),
        ]
        assert await tab.heal("m2") == 200
        assert (await tab.poll_done(empty, start_heals=False)).heals == ("m2",)


async def test_repost_sends_a_failed_post_again():
    """SPEC §6 repost: a POST whose answer was lost is sent again with the same id, text and
    timestamp. The worker as deployed (`repost`) writes the key and caches the message again (a
    duplicate); the default worker answers the repeat with its first acknowledgement."""
    for variants, cache in (("post_fails,repost", ["m1", "m1"]), ("", ["m1"])):
        kv = MemoryKV()
        app = create_app(kv, WorkerConfig(variants=variants))
        async with make(app, 0, MemoryPendingStore()) as tab:
            with pytest.raises(ClientError, match="no failed post m1"):
                await tab.repost("m1")
            tab.lose_answer("m1")
            with pytest.raises(ClientError, match="was lost"):
                await tab.post("hi", id="m1", timestamp=7)
            assert (tab.failed_posts, tab.shown, await tab.pending_ids()) == ({"m1"}, set(), [])
            ack = await tab.repost("m1")
            assert (ack.comment["timestamp"], ack.comment["text"]) == (7, "hi")
            assert (tab.failed_posts, tab.shown, await tab.pending_ids()) == (set(), {"m1"}, ["m1"])
            assert [e["id"] for e in json.loads(await kv.get("recent:comments"))] == cache

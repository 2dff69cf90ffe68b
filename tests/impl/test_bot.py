"""The status and queue endpoints and the bot (SPEC §6, §8), on real SQLite and a real Redis.

Interleavings are driven step by step: a `Pause` wrapper holds one chosen KV call of a request
until the test lets it through, so "the scan read the cache, then a post ran" is exact, not
timing. Every outcome is pinned.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner
from impl_helpers import asgi_client, logged

from kvheal.cli import main
from kvheal.impl.bot import Bot, VerifyResult
from kvheal.impl.config import WorkerConfig
from kvheal.impl.kv import KV, MemoryKV
from kvheal.impl.queue_api import bot_token
from kvheal.impl.server import UvicornThread
from kvheal.impl.worker import create_app

SECRET = b"bot-test-secret"
TOKEN = bot_token(SECRET)
AUTH = {"authorization": f"Bearer {TOKEN}"}
C = "recent:comments"
REAL = ["sqlite", "redis"]


class Pause(KV):
    """`inner`, except that once armed (`arm()`), the next call of `op` on `key` waits at
    `parked` until `release`."""

    def __init__(self, inner: KV, op: str, key: str) -> None:
        self.inner, self.op, self.key = inner, op, key
        self.supports_cas, self.supports_update, self.name = (
            inner.supports_cas,
            inner.supports_update,
            inner.name,
        )
        self.parked, self.release, self.armed = asyncio.Event(), asyncio.Event(), False

    def arm(self) -> None:
        self.armed = True

    async def _hold(self, op: str, key: str) -> None:
        if self.armed and (op, key) == (self.op, self.key):
            self.armed = False
            self.parked.set()
            await self.release.wait()

    async def get(self, key):
        await self._hold("get", key)
        return await self.inner.get(key)

    async def put(self, key, value):
        await self._hold("put", key)
        return await self.inner.put(key, value)

    async def list(self, prefix):
        return await self.inner.list(prefix)

    async def get_versioned(self, key):
        await self._hold("get_versioned", key)
        return await self.inner.get_versioned(key)

    async def cas(self, key, version, value):
        await self._hold("cas", key)
        return await self.inner.cas(key, version, value)

    async def update(self, key, fn):
        await self._hold("update", key)
        return await self.inner.update(key, fn)

    async def clear(self):
        await self.inner.clear()

    async def aclose(self):
        await self.inner.aclose()


@pytest.fixture(params=REAL)
async def real_kv(request, tmp_path):
    from conftest import make_kv

    store = await make_kv(request.param, tmp_path, request)
    yield store
    await store.clear()
    await store.aclose()


def app_of(kv: KV, variants: str = ""):
    return create_app(kv, WorkerConfig(variants=variants, secret=SECRET))


def msg(mid: str, ts: int) -> dict:
    return {"id": mid, "text": f"text of {mid}", "timestamp": ts}


async def post(http, mid: str, ts: int) -> dict:
    r = await http.post("/api/comments", json=msg(mid, ts))
    assert r.status_code == 200, r.text
    return r.json()


async def queue(http, mid: str) -> None:
    r = await http.patch(f"/api/comments/{mid}", json={"status": "pending"}, headers=AUTH)
    assert r.status_code == 200, r.text


async def cache(kv: KV) -> list[tuple[str, str | None]]:
    return [(e["id"], e.get("status")) for e in json.loads(await kv.get(C) or "[]")]


async def started(task: asyncio.Task, pause: Pause) -> None:
    """Wait until `task` is parked at `pause` (and fail if it ended first)."""
    waiter = asyncio.ensure_future(pause.parked.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert waiter in done, "the request never reached the paused call"


def writes(records: list[dict]) -> list[tuple]:
    """The KV writes among logged calls (a put, a successful cas or update)."""
    return [
        (r["op"], r["key"])
        for r in records
        if r["op"] == "put" or (r["op"] in ("cas", "update") and r.get("ok"))
    ]


# -- the pending scan ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variants, expected",
    [
        # as built: the scan puts back the array it read, with A's copy patched: B is lost
        ("bot_scan", [("A", "processing")]),
        # fixed: the patch is atomic and keeps what reached the cache meanwhile
        ("", [("A", "processing"), ("B", None)]),
    ],
)
async def test_a_scan_and_a_concurrent_post(real_kv, variants, expected):
    pause = Pause(real_kv, "get", "status:A")  # the scan has read the cache, not yet written
    app = app_of(pause, variants)
    async with asgi_client(app) as http, Bot("http://worker", TOKEN, http=http) as bot:
        await post(http, "A", 1000)
        await queue(http, "A")
        assert await bot.claim("A") is True  # the key says processing, A's cache copy pending
        assert await cache(real_kv) == [("A", "pending")]
        pause.arm()
        scan = asyncio.create_task(bot.scan_once())
        await started(scan, pause)
        answer = await post(http, "B", 2000)  # the whole post runs while the scan is held
        assert answer["cached"] is True
        assert await cache(real_kv) == [("A", "pending"), ("B", None)]
        pause.release.set()
        assert await scan == []  # A is claimed: nothing pending
    assert await cache(real_kv) == expected
    assert await real_kv.get("comment:B") is not None  # B is stored either way


@pytest.mark.parametrize(
    "variants, held, expected",
    [
        # as built: the scan's put brings back the status it read before the completion
        ("bot_scan", ("put", C), [("A", "processing")]),
        # fixed: the scan's patch never moves a copy's status back
        ("", ("update", C), [("A", "complete")]),
    ],
)
async def test_a_scan_and_a_concurrent_completion(real_kv, variants, held, expected):
    pause = Pause(real_kv, *held)  # the scan has read A's key ("processing"), not yet written
    app = app_of(pause, variants)
    async with asgi_client(app) as http, Bot("http://worker", TOKEN, http=http) as bot:
        await post(http, "A", 1000)
        await queue(http, "A")
        assert await bot.claim("A")
        pause.arm()
        scan = asyncio.create_task(bot.scan_once())
        await started(scan, pause)
        assert await bot.complete("A")
        assert await cache(real_kv) == [("A", "complete")]
        pause.release.set()
        assert await scan == []
    assert await cache(real_kv) == expected
    assert json.loads(await real_kv.get("status:A"))["status"] == "complete"


@pytest.mark.parametrize(
    "variants, calls, n_writes",
    [
        # as built: every non-final copy's key (B has no status: read too), then the put
        ("bot_scan", [("get", C), ("get", "status:A"), ("get", "status:B"), ("put", C)], 1),
        # fixed: the keys that exist, only those of non-final copies, and no write
        ("", [("list", "status:"), ("get", C), ("get", "status:A")], 0),
    ],
)
async def test_a_scan_with_nothing_to_change(real_kv, variants, calls, n_writes):
    kv, records = logged(real_kv)
    app = app_of(kv, variants)
    async with asgi_client(app) as http, Bot("http://worker", TOKEN, http=http) as bot:
        for mid, ts in (("A", 1000), ("B", 2000), ("D", 3000)):
            await post(http, mid, ts)
        await queue(http, "A")
        await queue(http, "D")
        assert await bot.claim("D") and await bot.complete("D")
        assert await cache(real_kv) == [("A", "pending"), ("B", None), ("D", "complete")]
        before = await real_kv.get(C)
        for _ in range(2):
            del records[:]
            pending = await bot.scan_once()
            assert [m["id"] for m in pending] == ["A"]
            assert [(r["op"], r.get("key", r.get("prefix"))) for r in records] == calls
            assert len(writes(records)) == n_writes
    assert await real_kv.get(C) == before  # the same value either way: the as-built put is a no-op


# -- claims ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variants, held, outcomes",
    [
        # get then put: both bots read "pending" before either writes, both claim
        ("bot_claims", ("put", "status:A"), (True, True)),
        # compare-and-swap: the held swap fails, the re-read finds A claimed
        ("bot_claims,claim_cas", ("cas", "status:A"), (True, False)),
        ("", ("cas", "status:A"), (True, False)),
    ],
)
async def test_two_bots_claim_one_message(real_kv, variants, held, outcomes):
    pause = Pause(real_kv, *held)
    app = app_of(pause, variants)
    async with asgi_client(app) as http:
        one, two = (
            Bot("http://worker", TOKEN, name="one", http=http),
            Bot("http://worker", TOKEN, name="two", http=http),
        )
        await post(http, "A", 1000)
        await queue(http, "A")
        pause.arm()
        first = asyncio.create_task(one.claim("A"))
        await started(first, pause)  # bot one has read A's key, its write is held
        second = await two.claim("A")
        pause.release.set()
        assert (second, await first) == outcomes
        # each bot that claimed replies and completes: with get-then-put, two replies
        for bot, claimed in ((two, second), (one, await first)):
            if claimed:
                reply = await bot.reply(msg("A", 1000))
                await bot.complete("A", reply)
        replies = [e for e in json.loads(await real_kv.get(C)) if e.get("username") in ("one", "two")]
        assert len(replies) == sum(outcomes)
        assert json.loads(await real_kv.get("status:A"))["status"] == "complete"


# -- the bot's list of replies to verify ----------------------------------------------------------
@pytest.mark.parametrize("restart", [False, True])
async def test_the_bot_heals_its_reply_unless_it_restarted(real_kv, restart):
    pause = Pause(real_kv, "get", "status:A")
    app = app_of(pause, "bot_scan")
    clock = iter(range(5000, 6000)).__next__
    async with asgi_client(app) as http:
        bot = Bot("http://worker", TOKEN, http=http, clock=clock)
        other = Bot("http://worker", TOKEN, name="other", http=http)
        await post(http, "A", 1000)
        await queue(http, "A")
        assert [m["id"] for m in await bot.scan_once()] == ["A"]
        assert await bot.claim("A")
        pause.arm()
        scan = asyncio.create_task(other.scan_once())  # another poll's scan reads [A] ...
        await started(scan, pause)
        reply = await bot.reply(msg("A", 1000))  # ... the reply reaches the cache ...
        assert reply.startswith("5000-kvheal-bot-")
        assert [mid for mid, _ in await cache(real_kv)] == ["A", reply]
        pause.release.set()
        assert await scan == []
        assert await cache(real_kv) == [("A", "processing")]  # ... and the scan's put drops it
        assert await bot.complete("A", reply)
        assert bot.to_verify == {reply: bot.to_verify[reply]}
        if restart:
            bot = Bot("http://worker", TOKEN, http=http, clock=clock)  # memory gone
            assert await bot.verify_once() == VerifyResult((), (), ())
            assert await cache(real_kv) == [("A", "complete")]  # nobody heals the reply
        else:
            assert await bot.verify_once() == VerifyResult((), (reply,), ())
            assert await bot.verify_once() == VerifyResult((reply,), (), ())
            assert bot.to_verify == {}
            assert await cache(real_kv) == [("A", "complete"), (reply, None)]
        assert json.loads(await real_kv.get(f"comment:{reply}"))["username"] == "kvheal-bot"


# -- refusals write nothing ----------------------------------------------------------------------
async def test_bad_requests_are_refused_and_write_nothing():
    kv = MemoryKV()
    app = app_of(kv)
    async with asgi_client(app) as http:
        token = (await post(http, "A", 1000))["healToken"]
        other = (await post(http, "B", 2000))["healToken"]
        wrong = {"authorization": "Bearer " + "0" * 48}
        cases = [
            ("GET", "/api/queue/pending", {}, None, 401, "this endpoint needs the bot token (Authorization: Bearer <token>)"),
            ("GET", "/api/queue/pending", wrong, None, 403, "wrong bot token"),
            ("GET", "/api/queue/pending?limit=101", AUTH, None, 400, "limit must be at most 100"),
            ("GET", "/api/queue/pending?limit=0", AUTH, None, 400, "limit must be at least 1"),
            ("PATCH", "/api/comments/A", AUTH, {"status": "done"}, 400, "status must be one of pending, processing, complete, failed"),
            ("PATCH", "/api/comments/A", AUTH, {}, 400, "missing field: status"),
            ("PATCH", "/api/comments/Z", AUTH, {"status": "pending"}, 404, "no such message"),
            ("PATCH", "/api/comments/A", {}, {"status": "pending"}, 401, "give the bot token, or the message's healToken to set pending"),
            ("PATCH", "/api/comments/A", {}, {"status": "pending", "healToken": other}, 403, "heal token does not match this message"),
            ("PATCH", "/api/comments/A", {}, {"status": "complete", "healToken": token}, 403, "a poster may only set pending (the bot sets the others)"),
            ("POST", "/api/queue/claim", AUTH, {"messageId": "A"}, 404, "the message is not queued (it has no status)"),
            ("POST", "/api/queue/claim", AUTH, {"messageId": "A\n"}, 400, "messageId must be 1 to 64 letters, digits, '-' or '_'"),
            ("POST", "/api/queue/claim", AUTH, [], 400, "body must be a JSON object"),
            ("POST", "/api/queue/complete", AUTH, {"messageId": "A", "bot": 7}, 400, "bot must be 1 to 64 letters, digits, '-' or '_'"),
            ("POST", "/api/queue/complete", AUTH, {"messageId": "A"}, 404, "the message is not queued (it has no status)"),
        ]  # fmt: skip
        for method, path, headers, body, status, reason in cases:
            before = kv.snapshot()
            r = await http.request(method, path, headers=headers, json=body)
            assert (r.status_code, r.json()) == (status, {"error": reason}), (method, path, body)
            assert kv.snapshot() == before
        # the poster may queue its own message once; a second time is refused
        r = await http.patch("/api/comments/A", json={"status": "pending", "healToken": token})
        assert (r.status_code, r.json()) == (
            200,
            {"success": True, "id": "A", "status": "pending", "patched": True},
        )
        before = kv.snapshot()
        r = await http.patch("/api/comments/A", json={"status": "pending", "healToken": token})
        assert (r.status_code, r.json()) == (409, {"error": "the message already has a status"})
        r = await http.post("/api/queue/complete", json={"messageId": "A"}, headers=AUTH)
        assert (r.status_code, r.json()) == (
            409,
            {"error": "the message is not claimed (pending, or already final)"},
        )
        assert kv.snapshot() == before


async def test_without_compare_and_swap_the_fixed_endpoints_answer_501():
    kv = MemoryKV(cas=False)
    async with asgi_client(app_of(kv)) as http:
        await post(http, "A", 1000)
        before = kv.snapshot()
        r = await http.get("/api/queue/pending", headers=AUTH)
        assert r.status_code == 501
        assert r.json()["error"].startswith("the memory backend has no compare-and-swap")
        assert kv.snapshot() == before
    async with asgi_client(app_of(kv, "bot_scan")) as http:  # the as-built scan needs none
        assert (await http.get("/api/queue/pending", headers=AUTH)).json() == {"pending": [], "written": True}


# -- the bot process over real HTTP ---------------------------------------------------------------
def test_kvheal_bot_replies_over_http(tmp_path):
    from kvheal.impl.sqlite_kv import SqliteKV

    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    kv = SqliteKV(tmp_path / "kv.sqlite3")
    with UvicornThread(app_of(kv)) as url:
        import httpx2

        with httpx2.Client(base_url=url) as http:
            for mid, ts in (("A", 1000), ("B", 2000)):
                assert http.post("/api/comments", json=msg(mid, ts)).status_code == 200
            assert http.patch("/api/comments/B", json={"status": "pending"}, headers=AUTH).status_code == 200
            args = [
                "bot",
                "--url",
                url,
                "--secret-file",
                str(secret_file),
                "--interval",
                "0",
                "--passes",
                "2",
            ]
            result = CliRunner().invoke(main, [*args, "--json"])
            assert result.exit_code == 0, result.output
            first, second = (json.loads(line) for line in result.stdout.splitlines())
            assert first["listed"] == ["B"] and first["replied"][0][0] == "B" and first["lost_claims"] == []
            reply = first["replied"][0][1]
            assert first["found"] == [reply]  # the reply reached the cache with its post
            assert second == {
                "listed": [],
                "replied": [],
                "lost_claims": [],
                "found": [],
                "healed": [],
                "given_up": [],
            }
            comments = http.get("/api/comments").json()["comments"]
            assert [(c["id"], c.get("status")) for c in comments] == [
                (reply, None),
                ("B", "complete"),
                ("A", None),
            ]
            # a wrong secret: every pass fails (403), exit 1, one line per pass
            secret_file.write_bytes(b"another")
            result = CliRunner().invoke(main, [*args])
            assert result.exit_code == 1
            assert (
                result.stderr.splitlines()
                == ["kvheal bot: pass failed: pending scan: 403 wrong bot token"] * 2
            )


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--interval", "-1"], "--interval must be at least 0, got -1"),
        (["--limit", "0", "--secret-file", "x"], "--limit must be 1 to 100, got 0"),
        (["--name", "a b"], "--name must be 1 to 40 letters, digits, '-' or '_'"),
        (["--secret-file", "/nonexistent/kvheal"], "cannot read --secret-file /nonexistent/kvheal: No such file or directory"),
        (["--secret-file", "a", "--db", "b"], "give --secret-file or --db, not both"),
    ],
)  # fmt: skip
def test_kvheal_bot_usage_errors(args, reason):
    result = CliRunner().invoke(main, ["bot", *args])
    assert result.exit_code == 2
    assert result.stderr == f"kvheal: error: {reason}\n"


def test_a_bot_name_must_fit_in_a_reply_id():
    with pytest.raises(ValueError, match="a bot's name is 1 to 40 letters"):
        Bot("http://worker", TOKEN, name="x" * 41)

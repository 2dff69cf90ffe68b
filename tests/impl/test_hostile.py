"""Hostile clients against the worker through real uvicorn: every refusal is a 4xx with a reason
and writes nothing; reposts, far-future timestamps, forged or stale heal tokens, floods, slow
bodies, foreign origins and hosts."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx2
import pytest
from conftest import make_kv

from kvheal.impl.config import ConfigError, WorkerConfig
from kvheal.impl.kv import MemoryKV
from kvheal.impl.server import WORKER_OPTIONS, ServeConfig, ServerProcess, UvicornThread, build_app
from kvheal.impl.worker import Worker, create_app

JSON = {"content-type": "application/json"}


async def dump(kv) -> dict[str, str | None]:
    return {key: await kv.get(key) for key in await kv.list("")}


def serve(kv, **config):
    return UvicornThread(create_app(kv, WorkerConfig(**config)))


@pytest.fixture(params=["memory", "sqlite"])
async def kv(request, tmp_path):
    store = await make_kv(request.param, tmp_path, request)
    yield store
    await store.aclose()


async def test_inputs_that_once_gave_500_get_400_and_write_nothing(kv):
    with serve(kv, variants="dedupe") as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            r = await http.post("/api/comments", json={"id": "a-1", "text": "kept", "timestamp": 1})
            assert r.status_code == 200
            token = r.json()["healToken"]
            before = await dump(kv)
            cases = [
                ("/api/comments", b'{"text": "x\\ud800y"}', "text is not valid Unicode (a lone surrogate)"),
                (
                    "/api/comments",
                    b'{"text": "x", "username": "\\udfff"}',
                    "username is not valid Unicode (a lone surrogate)",
                ),
                ("/api/comments", b"[" * 5000 + b"]" * 5000, "JSON nested deeper than 32 levels"),
                (
                    "/api/comments",
                    b'{"text": "x", "pad": ' + b"[" * 33 + b"]" * 33 + b"}",
                    "JSON nested deeper than 32 levels",
                ),
                (
                    "/api/comments",
                    json.dumps({"text": "x", "id": "a-2\n"}).encode(),
                    "id may only contain letters, digits, '-' and '_'",
                ),
                (
                    "/api/admin/add-to-cache",
                    json.dumps({"messageId": "a-1", "healToken": "é" * 48}).encode(),
                    "missing or malformed field: healToken",
                ),
                (
                    "/api/admin/add-to-cache",
                    json.dumps({"messageId": "a-1\n", "healToken": token}).encode(),
                    "messageId may only contain letters, digits, '-' and '_'",
                ),
                (
                    "/api/comments",
                    json.dumps({"text": "x", "timestamp": 2**53 - 1}).encode(),
                    "timestamp more than 60000 ms ahead of the server's clock",
                ),
            ]
            for path, body, reason in cases:
                r = await http.post(path, content=body, headers=JSON)
                assert (r.status_code, r.json()) == (400, {"error": reason}), body[:40]
                assert "Traceback" not in r.text
            # brackets inside strings are not nesting
            r = await http.post(
                "/api/comments", content=json.dumps({"text": "[" * 100, "id": "b-1"}).encode(), headers=JSON
            )
            assert r.status_code == 200
            assert (await dump(kv)).keys() == before.keys() | {"comment:b-1"}


async def test_json_bodies_need_a_json_content_type(kv):
    with serve(kv) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            body = json.dumps({"text": "from a cross-site form"})
            for headers in (
                {"content-type": "text/plain"},
                {"content-type": "application/x-www-form-urlencoded"},
                {},
                {"content-type": "multipart/form-data; boundary=x"},
            ):
                r = await http.post("/api/comments", content=body, headers=headers)
                assert (r.status_code, r.json()) == (415, {"error": "Content-Type must be application/json"})
            assert await dump(kv) == {}
            for ct in ("application/json; charset=utf-8", "application/merge-patch+json", "Application/JSON"):
                r = await http.post("/api/comments", content=body, headers={"content-type": ct})
                assert r.status_code == 200, ct


async def test_repost_of_a_taken_id_is_refused_and_a_retry_is_idempotent(kv):
    with serve(kv, variants="dedupe") as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            first = await http.post("/api/comments", json={"id": "m-1", "text": "mine", "timestamp": 5})
            assert first.status_code == 200 and first.json()["cached"] is True
            before = await dump(kv)
            for body in (
                {"id": "m-1", "text": "yours", "timestamp": 5},
                {"id": "m-1", "text": "mine", "timestamp": 6},
                {"id": "m-1", "text": "mine", "timestamp": 5, "username": "eve"},
            ):
                r = await http.post("/api/comments", json=body)
                assert (r.status_code, r.json()) == (
                    409,
                    {"error": "a different message with this id exists"},
                )
            assert await dump(kv) == before
            # the same message again (with or without its timestamp): the original acknowledgement
            for body in ({"id": "m-1", "text": "mine", "timestamp": 5}, {"id": "m-1", "text": "mine"}):
                r = await http.post("/api/comments", json=body)
                assert r.status_code == 200
                assert r.json() == {
                    "success": True,
                    "comment": {"id": "m-1", "text": "mine", "timestamp": 5},
                    "healToken": first.json()["healToken"],
                    "cached": False,
                    "repeat": True,
                }
            assert await dump(kv) == before


async def test_tokens_are_bound_to_the_body_and_survive_a_restart(kv):
    message = {"id": "m-1", "text": "mine", "timestamp": 5}
    with serve(kv, secret=b"s" * 32) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            token = (await http.post("/api/comments", json=message)).json()["healToken"]
    await kv.put("recent:comments", "[]")
    # a new process with the same secret (what --secret / --secret-file give): the token heals
    with serve(kv, secret=b"s" * 32) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            r = await http.post("/api/admin/add-to-cache", json={"messageId": "m-1", "healToken": token})
            assert r.json() == {"success": True, "added": True, "result": "added"}
    # another secret: refused
    await kv.put("recent:comments", "[]")
    with serve(kv, secret=b"t" * 32) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            r = await http.post("/api/admin/add-to-cache", json={"messageId": "m-1", "healToken": token})
            assert r.status_code == 403
    assert await kv.get("recent:comments") == "[]"
    # a token the worker minted for another body of the same id does not heal the stored one
    forged = Worker(MemoryKV(), WorkerConfig(secret=b"s" * 32)).heal_token({**message, "text": "other"})
    with serve(kv, secret=b"s" * 32) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            r = await http.post("/api/admin/add-to-cache", json={"messageId": "m-1", "healToken": forged})
            assert (r.status_code, r.json()) == (403, {"error": "heal token does not match this message"})
    assert await kv.get("recent:comments") == "[]"


@pytest.mark.parametrize(
    "variants, store_update",
    [("dedupe", False), ("atomic_cache,dedupe", False), ("atomic_cache,dedupe", True)],
)
async def test_heals_answer_what_they_did_and_write_only_when_something_changes(kv, variants, store_update):
    with serve(kv, variants=variants, cap=2, store_update=store_update) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            tokens = {}
            for i, ts in (("old", 1), ("a", 10), ("b", 20)):
                r = await http.post("/api/comments", json={"id": i, "text": i, "timestamp": ts})
                tokens[i] = r.json()["healToken"]
            assert [e["id"] for e in json.loads(await kv.get("recent:comments"))] == ["a", "b"]

            async def heal(i):
                r = await http.post("/api/admin/add-to-cache", json={"messageId": i, "healToken": tokens[i]})
                return r.status_code, r.json()

            cache = await kv.get("recent:comments")
            assert await heal("a") == (200, {"success": True, "added": False, "result": "already present"})
            assert await heal("old") == (
                200,
                {"success": True, "added": False, "result": "outside the cache's window"},
            )
            assert await kv.get("recent:comments") == cache  # nothing written
            await kv.put("recent:comments", json.dumps([json.loads(await kv.get("comment:b"))]))
            assert await heal("a") == (200, {"success": True, "added": True, "result": "added"})
            assert [e["id"] for e in json.loads(await kv.get("recent:comments"))] == ["a", "b"]
            tokens["ghost"] = Worker(MemoryKV(), create_app(kv).state.config).heal_token(
                {"id": "ghost", "text": "x", "timestamp": 1}
            )
            status, _ = await heal("ghost")
            assert status == 403  # another secret than the served worker's


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
async def test_the_atomic_cache_is_the_store_s_own_update_and_answers_what_it_did(backend, tmp_path, request):
    """atomic_cache,dedupe over the store's own update (on Redis the `cache_add` script, which
    writes one entry per line; on SQLite a write transaction): heals answer what they did and
    write nothing when nothing changes; 60 simultaneous posts are all cached, each id once."""
    kv = await make_kv(backend, tmp_path, request)
    app = create_app(kv, WorkerConfig(variants="atomic_cache,dedupe", cap=2, secret=b"s" * 32))
    try:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://w") as http:
            tokens = {}
            for i, ts in (("old", 1), ("a", 10), ("b", 20)):
                r = await http.post("/api/comments", json={"id": i, "text": i, "timestamp": ts})
                assert r.json()["cached"] is True  # old first, trimmed when b comes
                tokens[i] = r.json()["healToken"]
            raw, version = await kv.get_versioned("recent:comments")
            assert raw.startswith("[\n") is (backend == "redis")  # the script's layout
            assert [e["id"] for e in json.loads(raw)] == ["a", "b"]
            for i, result in (("a", "already present"), ("old", "outside the cache's window")):
                r = await http.post("/api/admin/add-to-cache", json={"messageId": i, "healToken": tokens[i]})
                assert r.json() == {"success": True, "added": False, "result": result}
            assert await kv.get_versioned("recent:comments") == (raw, version)  # nothing written
        app = create_app(kv, WorkerConfig(variants="atomic_cache,dedupe", cap=100, secret=b"s" * 32))
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://w") as http:
            answers = await asyncio.gather(
                *(
                    http.post("/api/comments", json={"id": f"m{i}", "text": "x", "timestamp": 100 + i % 7})
                    for i in range(60)
                )
            )
        assert [r.json()["cached"] for r in answers] == [True] * 60
        ids = [e["id"] for e in json.loads(await kv.get("recent:comments"))]
        assert sorted(ids) == sorted(["a", "b"] + [f"m{i}" for i in range(60)])
    finally:
        await kv.aclose()


async def test_an_old_post_answers_not_cached_and_writes_no_cache():
    kv = MemoryKV()
    with serve(kv, variants="dedupe", cap=1) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            await http.post("/api/comments", json={"id": "new", "text": "x", "timestamp": 10})
            cache = await kv.get("recent:comments")
            r = await http.post("/api/comments", json={"id": "old", "text": "x", "timestamp": 1})
            assert r.status_code == 200 and r.json()["cached"] is False
            assert await kv.get("recent:comments") == cache and await kv.get("comment:old") is not None


async def test_far_future_timestamps_are_refused_and_near_ones_accepted():
    kv = MemoryKV()
    with serve(kv) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            now = int(time.time() * 1000)
            r = await http.post("/api/comments", json={"text": "x", "timestamp": now + 3_600_000})
            assert (r.status_code, r.json()) == (
                400,
                {"error": "timestamp more than 60000 ms ahead of the server's clock"},
            )
            r = await http.post("/api/comments", json={"text": "x", "timestamp": now + 30_000})
            assert r.status_code == 200
            r = await http.post(
                "/api/comments", json={"text": "x", "timestamp": 0}
            )  # the past: only its own loss
            assert r.status_code == 200
    assert len(await kv.list("comment:")) == 2


async def test_rate_limits_per_client_answer_429_with_retry_after():
    kv = MemoryKV()
    with serve(kv, variants="dedupe", post_rate=0.5, post_burst=2, heal_rate=0.5, heal_burst=1) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            statuses = []
            for i in range(3):
                r = await http.post("/api/comments", json={"id": f"m{i}", "text": "x", "timestamp": i})
                statuses.append(r.status_code)
            assert statuses == [200, 200, 429]
            assert r.headers["retry-after"] == "2"
            assert r.json() == {"error": "too many posts from this address; retry later"}
            assert sorted(await kv.list("comment:")) == ["comment:m0", "comment:m1"]
            token = await http.post("/api/comments", json={"id": "m0", "text": "x", "timestamp": 0})
            assert token.status_code == 429  # even a retry waits its turn
    with serve(kv, variants="dedupe", heal_rate=0.5, heal_burst=1) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            bodies = [{"messageId": "m0", "healToken": "0" * 48}] * 2
            r1 = await http.post("/api/admin/add-to-cache", json=bodies[0])
            r2 = await http.post("/api/admin/add-to-cache", json=bodies[1])
            assert (r1.status_code, r2.status_code) == (403, 429)
            assert r2.json() == {"error": "too many heals from this address; retry later"}


def _raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(data)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


async def test_a_slow_body_gets_408_and_the_connection_closes():
    kv = MemoryKV()
    with serve(kv, body_timeout=0.3) as url:
        port = int(url.rsplit(":", 1)[1])
        started = time.monotonic()
        sock = await asyncio.to_thread(
            _raw,
            port,
            b"POST /api/comments HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"te',
        )
        answer = await asyncio.to_thread(_read_all, sock)  # returns only once the server closes
        sock.close()
        elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b'{"error":"request body not received within 0.3 s"}' in answer
        assert 0.25 < elapsed < 4
    assert await dump(kv) == {}


async def test_cors_is_off_by_default_and_configurable():
    kv = MemoryKV()
    preflight = {
        "origin": "https://chat.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    with serve(kv) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            r = await http.get("/api/comments", headers={"origin": "https://evil.example"})
            assert "access-control-allow-origin" not in r.headers
            r = await http.options("/api/comments", headers=preflight)
            assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
    with serve(kv, cors_origins=("https://chat.example",)) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            r = await http.options("/api/comments", headers=preflight)
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == "https://chat.example"
            r = await http.options("/api/comments", headers={**preflight, "origin": "https://evil.example"})
            assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
            r = await http.get("/api/comments", headers={"origin": "https://chat.example"})
            assert r.headers["access-control-allow-origin"] == "https://chat.example"


async def test_allowed_hosts():
    kv = MemoryKV()
    with serve(kv, allowed_hosts=("chat.example", "127.0.0.1")) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            assert (await http.get("/api/health")).status_code == 200
            r = await http.post("/api/comments", json={"text": "x"}, headers={"host": "evil.example"})
            assert (r.status_code, r.text) == (400, "Invalid host header")
            r = await http.get("/api/health", headers={"host": "chat.example"})
            assert r.status_code == 200
    assert await dump(kv) == {}


async def test_openapi_document_is_served():
    with serve(MemoryKV(), max_text=100) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    assert sorted(doc["paths"]) == [
        "/api/admin/add-to-cache",
        "/api/comments",
        "/api/comments/{id}",
        "/api/health",
        "/api/queue/claim",
        "/api/queue/complete",
        "/api/queue/pending",
        "/openapi.json",
    ]
    post = doc["paths"]["/api/comments"]["post"]
    assert (
        post["requestBody"]["content"]["application/json"]["schema"]["properties"]["text"]["maxLength"] == 100
    )
    assert sorted(post["responses"]) == ["200", "400", "408", "409", "413", "415", "429", "503"]


def test_serve_config_carries_the_worker_options_to_the_app():
    config = ServeConfig(backend="memory", post_rate=2.5, cors_origins=["https://a.example"], max_future_ms=7)
    assert ServeConfig.from_json(config.to_json()) == config  # what worker processes rebuild
    app_config = build_app(config, sweeper_in_app=True).state.config
    assert (app_config.post_rate, app_config.cors_origins, app_config.max_future_ms) == (
        2.5,
        ("https://a.example",),
        7,
    )
    # the defaults are the worker's own (stress, chaos and benchmarks rely on them: no rate limits)
    default = build_app(ServeConfig(backend="memory"), sweeper_in_app=True).state.config
    assert {name: getattr(default, name) for name in WORKER_OPTIONS} == {
        name: getattr(WorkerConfig(), name) for name in WORKER_OPTIONS
    }
    with pytest.raises(ConfigError, match="post_rate must be at least 0"):
        ServeConfig(backend="memory", post_rate=-1)


def test_worker_options_reach_every_worker_process(tmp_path):
    config = ServeConfig(
        db=str(tmp_path / "kv.sqlite3"), workers=2, allowed_hosts=["127.0.0.1"], max_future_ms=1000
    )
    with ServerProcess(config) as url, httpx2.Client(base_url=url) as http:
        future = int(time.time() * 1000) + 60_000
        for i in range(6):  # new connections: uvicorn's processes share them out
            with httpx2.Client(base_url=url) as fresh:
                r = fresh.post("/api/comments", json={"id": f"f{i}", "text": "x", "timestamp": future})
                assert r.status_code == 400 and "ahead" in r.text, r.text
                assert fresh.get("/api/health", headers={"host": "evil.example"}).status_code == 400
        assert http.get("/api/health").status_code == 200


def _start_serve(args: list[str], port: int):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "kvheal", "serve", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    for _ in range(300):
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                return proc
        except httpx2.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.stderr.read().decode())


def _stop_serve(proc) -> str:
    import os
    import signal

    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=15)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return err


async def _slowloris(port: int, *, slow: int, bound: float) -> dict:
    """`slow` connections send a request's headers a byte every 50 ms (never finishing), one
    more first completes a request and then trickles the next one's, one opens and sends
    nothing, one sends its headers slowly but within the bound; meanwhile a client makes
    ordinary requests. Returns when each connection closed and what it was answered."""
    never_done = b"GET /api/comments HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 2000
    deadline = bound + 5

    async def connection(head: bytes, *, first: bytes = b"", delay: float = 0.05) -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if first:  # a complete request on the same connection, answered before the slow one starts
            writer.write(first)
            await writer.drain()
            await reader.readuntil(b'{"ok":true}')
        started = time.monotonic()

        async def trickle() -> None:
            try:
                for i in range(len(head)):
                    writer.write(head[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(delay)
            except ConnectionError:
                pass

        sender = asyncio.create_task(trickle())
        try:
            answer = await asyncio.wait_for(reader.read(), deadline)  # until the server closes
        except ConnectionError:
            answer = b"reset"
        except TimeoutError:
            answer = b"still open"
        elapsed = time.monotonic() - started
        sender.cancel()
        writer.close()
        return elapsed, answer

    async def ordinary() -> list[int]:
        statuses = []
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for i in range(40):
                r = await http.post("/api/comments", json={"id": f"ok{i}", "text": "fine"})
                statuses.append(r.status_code)
                statuses.append((await http.get("/api/comments")).status_code)
                await asyncio.sleep(0.02)
        return statuses

    keep_alive_first = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
    in_time = b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    results = await asyncio.gather(
        *(connection(never_done) for _ in range(slow)),
        connection(never_done, first=keep_alive_first),
        connection(b""),
        connection(in_time, delay=bound * 0.4 / len(in_time)),
        ordinary(),
    )
    return {
        "slow": results[:slow],
        "kept_alive": results[slow],
        "silent": results[slow + 1],
        "in_time": results[slow + 2],
        "ordinary": results[slow + 3],
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_slow_headers_are_cut_off_while_normal_requests_succeed(tmp_path, workers):
    """Slowloris against a real `kvheal serve`: connections that send their headers a byte at
    a time, or nothing at all, are answered 408 and closed within the bound (uvicorn alone
    holds them for ever); headers that arrive slowly but in time, and every ordinary request
    made meanwhile, are served."""
    from kvheal.impl.redis_server import free_port

    bound = 1.0
    port = free_port()
    args = ["--db", str(tmp_path / "kv.sqlite3"), "--workers", str(workers), "--header-timeout", str(bound)]
    proc = _start_serve([*args, "--post-rate", "0"], port)
    try:
        found = asyncio.run(_slowloris(port, slow=30, bound=bound))
    finally:
        err = _stop_serve(proc)
    cut = [*found["slow"], found["kept_alive"], found["silent"]]
    for elapsed, answer in cut:
        assert bound * 0.9 < elapsed < bound + 2.5, (elapsed, answer[:80])
        assert answer.startswith(b"HTTP/1.1 408 ") or answer == b"reset", answer[:80]
    assert sum(answer.startswith(b"HTTP/1.1 408 ") for _, answer in cut) >= len(cut) // 2
    assert b"request headers not received within 1 s" in next(a for _, a in cut if a != b"reset")
    elapsed, answer = found["in_time"]
    assert answer.startswith(b"HTTP/1.1 200 ") and b'{"ok":true}' in answer, answer[:200]
    assert found["ordinary"] == [200] * 80
    assert "Traceback" not in err


def test_serve_secret_file_and_http_options(tmp_path):
    from kvheal.impl.redis_server import free_port

    secret = tmp_path / "heal.key"
    secret.write_text("a shared deployment key\n")
    port = free_port()
    proc = _start_serve(
        [
            "--backend",
            "memory",
            "--secret-file",
            str(secret),
            "--post-burst",
            "2",
            "--post-rate",
            "0.1",
            "--cors-origin",
            "https://chat.example",
            "--host",
            "0.0.0.0",
        ],
        port,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        message = {"id": "a", "text": "x", "timestamp": 1}
        r = httpx2.post(base + "/api/comments", json=message)
        # the token is the one any worker with this key mints: valid after a restart, in any process
        assert r.json()["healToken"] == Worker(
            MemoryKV(), WorkerConfig(secret=b"a shared deployment key")
        ).heal_token(message)
        r = httpx2.post(
            base + "/api/comments", content=b'{"text": "x"}', headers={"content-type": "text/plain"}
        )
        assert r.status_code == 415  # (it took the burst's second token)
        r = httpx2.post(base + "/api/comments", json={"id": "c", "text": "x"})
        assert (r.status_code, r.headers["retry-after"]) == (429, "10")
        r = httpx2.get(base + "/api/comments", headers={"origin": "https://chat.example"})
        assert r.headers["access-control-allow-origin"] == "https://chat.example"
    finally:
        err = _stop_serve(proc)
    assert (
        "kvheal: warning: --host 0.0.0.0 serves beyond this machine, and the API has no authentication" in err
    )
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args, reason",
    [
        (
            ["--secret-file", "/nonexistent/heal.key"],
            "cannot read --secret-file /nonexistent/heal.key: No such file or directory",
        ),
        (["--secret", "a", "--secret-file", "b"], "give --secret or --secret-file, not both"),
        (["--post-rate", "-1"], "post_rate must be at least 0 (0: no limit)"),
        (["--body-timeout", "0"], "body_timeout must be positive"),
    ],
)
def test_serve_bad_options_one_line_exit_2(args, reason, tmp_path):
    from click.testing import CliRunner

    from kvheal.cli import main

    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "kv.sqlite3"), *args])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"Error: {reason}" or reason in result.output
    assert "Traceback" not in result.output


def test_serve_empty_secret_file(tmp_path):
    from click.testing import CliRunner

    from kvheal.cli import main

    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    result = CliRunner().invoke(
        main, ["serve", "--db", str(tmp_path / "kv.sqlite3"), "--secret-file", str(empty)]
    )
    assert result.exit_code == 2 and f"--secret-file {empty} is empty" in result.output


def test_serve_on_redis_without_a_secret_file_warns(redis_url):
    from kvheal.impl.redis_server import free_port

    port = free_port()
    proc = _start_serve(["--backend", "redis", "--redis-url", redis_url, "--allow-volatile"], port)
    err = _stop_serve(proc)
    assert (
        "kvheal: warning: no --secret-file: heal tokens are signed with a key drawn now, and every token "
        "handed out stops working when serve restarts"
    ) in err


async def test_a_client_that_leaves_mid_body_leaves_no_traceback(caplog):
    kv = MemoryKV()
    app = create_app(kv, WorkerConfig())
    messages = [{"type": "http.request", "body": b'{"te', "more_body": True}, {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/comments",
        "headers": [(b"content-type", b"application/json"), (b"host", b"x")],
        "query_string": b"",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {"error": "the client went away before sending its body"}
    assert kv.snapshot() == {}

"""The worker through real uvicorn on loopback, on every backend: the API and its refusals."""

from __future__ import annotations

import json

import httpx2
import pytest
from conftest import BACKENDS, make_kv

from kvheal.impl.config import WorkerConfig
from kvheal.impl.server import UvicornThread
from kvheal.impl.worker import create_app


async def dump(kv) -> dict[str, str | None]:
    return {key: await kv.get(key) for key in await kv.list("")}


@pytest.fixture(params=BACKENDS)
async def served(request, tmp_path):
    """(base URL, app, a second KV on the same data for inspection) for a uvicorn-served worker."""
    backend = request.param
    kv = await make_kv(backend, tmp_path, request)
    if backend == "memory":
        inspect = kv
    elif backend == "sqlite":
        from kvheal.impl.sqlite_kv import SqliteKV

        inspect = SqliteKV(kv.path)
    else:
        from kvheal.impl.redis_kv import RedisKV

        inspect = RedisKV(kv.url, namespace=kv.namespace)
    app = create_app(kv, WorkerConfig(variants="dedupe", max_body=4096, max_text=100), close_kv=True)
    with UvicornThread(app) as url:
        yield url, app, inspect
    await inspect.clear()
    if inspect is not kv:
        await inspect.aclose()


async def test_post_get_heal_roundtrip(served):
    url, app, inspect = served
    async with httpx2.AsyncClient(base_url=url) as http:
        r = await http.post("/api/comments", json={"id": "a-1", "text": "hello", "timestamp": 10})
        assert r.status_code == 200
        token = r.json()["healToken"]
        r = await http.post("/api/comments", json={"text": "no id or timestamp"})
        generated = r.json()["comment"]
        assert generated["id"] and generated["timestamp"] > 10
        r = await http.get("/api/comments")
        assert [c["id"] for c in r.json()["comments"]] == [generated["id"], "a-1"]
        # lose a-1 from the cache, then heal it back
        await inspect.put("recent:comments", json.dumps([generated]))
        r = await http.post("/api/admin/add-to-cache", json={"messageId": "a-1", "healToken": token})
        assert r.json() == {"success": True, "added": True, "result": "added"}
        r = await http.get("/api/comments", params={"limit": 1})
        assert [c["id"] for c in r.json()["comments"]] == [generated["id"]]
    stored = await dump(inspect)
    assert json.loads(stored["comment:a-1"]) == {"id": "a-1", "text": "hello", "timestamp": 10}
    assert [e["id"] for e in json.loads(stored["recent:comments"])] == ["a-1", generated["id"]]


BAD_POSTS = [
    (b"not json", 400, "body is not valid JSON"),
    (b"\xff\xfe", 400, "body is not valid JSON"),
    (b"[1, 2]", 400, "body must be a JSON object"),
    (b"{}", 400, "missing field: text"),
    (b'{"text": 5}', 400, "text must be a string"),
    (b'{"text": "  "}', 400, "text must not be empty"),
    (json.dumps({"text": "x" * 101}).encode(), 400, "text longer than 100 characters"),
    (b'{"text": "x", "id": "a b"}', 400, "id may only contain letters, digits, '-' and '_'"),
    (b'{"text": "x", "id": "../etc"}', 400, "id may only contain letters, digits, '-' and '_'"),
    (json.dumps({"text": "x", "id": "a" * 65}).encode(), 400, "id longer than 64 characters"),
    (b'{"text": "x", "id": ""}', 400, "id must not be empty"),
    (b'{"text": "x", "id": 5}', 400, "id must be a string"),
    (b'{"text": "x", "timestamp": "1"}', 400, "timestamp must be an integer (milliseconds)"),
    (b'{"text": "x", "timestamp": true}', 400, "timestamp must be an integer (milliseconds)"),
    (b'{"text": "x", "timestamp": 1.5}', 400, "timestamp must be an integer (milliseconds)"),
    (b'{"text": "x", "timestamp": -1}', 400, "timestamp out of range"),
    (b'{"text": "x", "username": 7}', 400, "username must be a string of at most 64 characters"),
    (json.dumps({"text": "x", "pad": "y" * 5000}).encode(), 413, "body larger than 4096 bytes"),
]

BAD_HEALS = [
    (b"nope", 400, "body is not valid JSON"),
    (b"{}", 400, "missing field: messageId"),
    (b'{"messageId": "a-1"}', 400, "missing or malformed field: healToken"),
    (
        b'{"messageId": "a/1", "healToken": "t"}',
        400,
        "messageId may only contain letters, digits, '-' and '_'",
    ),
    (b'{"messageId": "a-1", "healToken": "forged"}', 400, "missing or malformed field: healToken"),
    (
        json.dumps({"messageId": "a-1", "healToken": "0" * 48}).encode(),
        403,
        "heal token does not match this message",
    ),
    (json.dumps({"messageId": "a-1", "healToken": "t" * 5000}).encode(), 413, "body larger than 4096 bytes"),
]


async def test_bad_input_is_refused_and_writes_nothing(served):
    url, app, inspect = served
    async with httpx2.AsyncClient(base_url=url) as http:
        r = await http.post("/api/comments", json={"id": "a-1", "text": "kept", "timestamp": 1})
        assert r.status_code == 200
        before = await dump(inspect)
        cases = [("/api/comments", *case) for case in BAD_POSTS]
        cases += [("/api/admin/add-to-cache", *case) for case in BAD_HEALS]
        for path, body, status, reason in cases:
            r = await http.post(path, content=body, headers={"content-type": "application/json"})
            assert (r.status_code, r.json()) == (status, {"error": reason}), body[:60]
            assert await dump(inspect) == before, body[:60]

        async def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b"x" * 1000

        r = await http.post("/api/comments", content=chunks(), headers={"content-type": "application/json"})
        assert (r.status_code, r.json()) == (413, {"error": "body larger than 4096 bytes"})
        for params, reason in [
            ({"after": "x"}, "after must be an integer"),
            ({"limit": "0"}, "limit must be at least 1"),
            ({"after": "-5"}, "after must be at least 0"),
        ]:
            r = await http.get("/api/comments", params=params)
            assert (r.status_code, r.json()) == (400, {"error": reason})
        token = app.state.worker.heal_token({"id": "ghost", "text": "x", "timestamp": 1})
        r = await http.post("/api/admin/add-to-cache", json={"messageId": "ghost", "healToken": token})
        assert (r.status_code, r.json()) == (404, {"error": "no such message"})
        assert (await http.get("/api/nothing")).status_code == 404
        assert (await http.put("/api/comments", json={})).status_code == 405
    assert await dump(inspect) == before

"""Fuzzing the worker from its own OpenAPI document (`/openapi.json`), with Hypothesis.

Strategies are built from the served schema: valid requests (bodies and query parameters drawn
from the documented types, lengths, patterns and ranges) and hostile ones (each documented
constraint broken, wrong types, arbitrary JSON, raw bytes, deep nesting, lone surrogates,
non-JSON content types; path parameters; the bot token given, wrong or absent, and requests
aimed at the seeded messages and their statuses). For every request: no 5xx, the status is one the schema documents for
the operation, a 200's body has the documented required fields, and a refused request (4xx)
leaves the KV exactly as it was.
"""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import quote

import httpx2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kvheal.impl.config import WorkerConfig
from kvheal.impl.kv import MemoryKV
from kvheal.impl.openapi import STATUSES
from kvheal.impl.queue_api import Queue, bot_token
from kvheal.impl.worker import Worker, create_app

CONFIG = WorkerConfig(variants="dedupe", cap=5, max_text=50, max_body=2048, secret=b"fuzz")
SEEDED = [{"id": f"s{i}", "text": f"seed {i}", "timestamp": 1000 + i} for i in range(3)]
#: the seeded messages' statuses: s0 waits for the bot, s1 is claimed, s2 has none
SEEDED_STATUS = {"s0": "pending", "s1": "processing"}
BOT_AUTH = "Bearer " + bot_token(CONFIG.secret)


def _document() -> dict:
    async def fetch():
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=create_app(MemoryKV(), CONFIG)), base_url="http://worker"
        ) as http:
            return (await http.get("/openapi.json")).json()

    return asyncio.run(fetch())


DOC = _document()


def valid(schema: dict) -> st.SearchStrategy:
    """Values that satisfy `schema` (the subset of JSON Schema the document uses)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 80)
        pattern = schema.get("pattern")
        if pattern and pattern.startswith("^") and pattern.endswith("$"):
            body = pattern[1:-1]
            if body.endswith("+"):  # "[...]+" within the length bounds
                body = body[:-1] + f"{{{low},{high}}}"
            return st.from_regex(body, fullmatch=True)
        strings = st.text(min_size=low, max_size=high)
        if pattern:
            strings = strings.filter(lambda s: re.search(pattern, s))
        return strings
    if kind == "object":
        props = schema.get("properties", {})
        required = {k: valid(props[k]) for k in schema.get("required", [])}
        optional = {k: valid(v) for k, v in props.items() if k not in required}
        return st.fixed_dictionaries(required, optional=optional)
    return st.none()


def broken(schema: dict) -> st.SearchStrategy:
    """Values that break `schema` in one documented constraint, or in type."""
    kind = schema.get("type")
    options = [st.sampled_from([None, True, 1.5, [], {}, "x" if kind != "string" else 7])]
    if kind == "integer":
        if "minimum" in schema:
            options.append(st.integers(max_value=schema["minimum"] - 1))
        if "maximum" in schema:
            options.append(st.integers(min_value=schema["maximum"] + 1))
    if kind == "string":
        if "maxLength" in schema:
            options.append(st.text(min_size=schema["maxLength"] + 1, max_size=schema["maxLength"] + 5))
        if schema.get("minLength", 0) > 0:
            options.append(st.just(""))
        if "pattern" in schema:
            options.append(st.text(max_size=10).filter(lambda s: not re.search(schema["pattern"], s)))
            options.append(valid(schema).map(lambda s: s + "\n"))
    return st.one_of(options)


def body_for(schema: dict) -> st.SearchStrategy:
    """A request body (bytes) for a JSON object schema: valid, one field broken or dropped, or junk."""
    props = schema.get("properties", {})
    good = valid(schema)

    @st.composite
    def one_broken(draw):
        value = draw(good)
        name = draw(st.sampled_from(sorted(props)))
        action = draw(st.sampled_from(["break", "drop"]))
        if action == "drop":
            value.pop(name, None)
        else:
            value[name] = draw(broken(props[name]))
        return value

    junk_json = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    )
    as_json = st.one_of(good, one_broken(), junk_json).map(lambda v: json.dumps(v).encode())
    surrogate = good.map(
        lambda v: (
            json.dumps({**v, **{k: "a\\ud800" for k in list(v)[:1]}}, ensure_ascii=True)
            .replace("\\\\ud800", "\\ud800")
            .encode()
        )
    )
    deep = st.integers(30, 3000).map(lambda n: b'{"text": "x", "n": ' + b"[" * n + b"]" * n + b"}")
    oversized = st.integers(2100, 5000).map(lambda n: json.dumps({"text": "x" * n}).encode())
    return st.one_of(as_json, as_json, as_json, surrogate, deep, oversized, st.binary(max_size=64))


CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 6
    + ["text/plain", "", "application/x-www-form-urlencoded", "application/json; charset=utf-8"]
)


def operations():
    ops = []
    for path, methods in DOC["paths"].items():
        for method, op in methods.items():
            ops.append((path, method.upper(), op))
    return ops


#: a path segment the router still sends to the endpoint (no '/', not '.' or '..'), valid or not
PATH_SEGMENT = st.text(st.characters(blacklist_characters="/"), min_size=1, max_size=70).filter(
    lambda s: s not in (".", "..")
)


@st.composite
def requests(draw):
    path, method, op = draw(st.sampled_from(operations()))
    headers, params, content = {}, {}, None
    url, path_values = path, {}
    if op.get("security") and draw(st.integers(0, 9)) > 0:
        headers["authorization"] = draw(
            st.sampled_from([BOT_AUTH] * 8 + ["Bearer " + "0" * 48, "Basic eA=="])
        )
    for p in op.get("parameters", []):
        if p["in"] == "path":
            seeded_id = st.sampled_from([m["id"] for m in SEEDED])
            value = draw(st.one_of(seeded_id, seeded_id, valid(p["schema"]), PATH_SEGMENT))
            path_values[p["name"]] = value
            url = url.replace("{" + p["name"] + "}", quote(value, safe=""))
            continue
        if draw(st.booleans()):
            value = draw(st.one_of(valid(p["schema"]), broken(p["schema"])))
            params[p["name"]] = (
                "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            )
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        content = draw(body_for(schema))
        aimed = False
        if path == "/api/admin/add-to-cache" and draw(st.booleans()):
            # aim at the stored messages: a real id with its real token, or another's
            seeded = draw(st.sampled_from(SEEDED))
            owner = draw(st.sampled_from(SEEDED))
            content = json.dumps({"messageId": seeded["id"], "healToken": TOKENS[owner["id"]]}).encode()
        if path.startswith("/api/queue/") and draw(st.booleans()):
            # aim at the seeded messages, most often the one the endpoint can move on
            likely = ["s0", "s1"] if path == "/api/queue/claim" else ["s1", "s1"]
            target = draw(st.sampled_from([*likely, "s0", "s1", "s2"]))
            content, aimed = json.dumps({"messageId": target, "bot": "fuzz"}).encode(), True
        aim = draw(st.sampled_from(["no", "bot", "poster"])) if path == "/api/comments/{id}" else "no"
        if aim == "bot":
            content, aimed = json.dumps({"status": draw(st.sampled_from(STATUSES))}).encode(), True
        elif aim == "poster":
            # the poster's way: a heal token (the message's own or another's), no bot token
            headers.pop("authorization", None)
            owner = path_values["id"] if path_values["id"] in TOKENS and draw(st.booleans()) else "s0"
            status = draw(st.sampled_from(["pending", "pending", "complete"]))
            content, aimed = json.dumps({"status": status, "healToken": TOKENS[owner]}).encode(), True
        ctype = "application/json" if aimed else draw(CONTENT_TYPES)
        if ctype:
            headers["content-type"] = ctype
    return path, url, method, op, params, content, headers


#: the seeded messages' heal tokens (the same in every app: one secret)
TOKENS: dict[str, str] = {m["id"]: Worker(MemoryKV(), CONFIG).heal_token(m) for m in SEEDED}


def _request(method: str, url: str, content: bytes | None, headers: dict) -> tuple:
    path = "/api/comments/{id}" if url.startswith("/api/comments/") else url
    return path, url, method, DOC["paths"][path][method.lower()], {}, content, headers


#: a batch of requests the derandomized draws reach too rarely to count on (each status of the
#: queue endpoints: set, refused, claimed, claimed again, completed, completed again)
JSON_BOT = {"authorization": BOT_AUTH, "content-type": "application/json"}
EXAMPLES = [
    _request("PATCH", "/api/comments/s2", b'{"status": "failed"}', JSON_BOT),
    _request("PATCH", "/api/comments/s0", json.dumps({"status": "pending", "healToken": TOKENS["s0"]}).encode(), {"content-type": "application/json"}),
    _request("GET", "/api/queue/pending", None, {"authorization": "Bearer " + "0" * 48}),
    _request("POST", "/api/queue/claim", b'{"messageId": "s0"}', JSON_BOT),
    _request("POST", "/api/queue/claim", b'{"messageId": "s0"}', JSON_BOT),
    _request("POST", "/api/queue/complete", b'{"messageId": "s1", "replyId": "r1"}', JSON_BOT),
    _request("POST", "/api/queue/complete", b'{"messageId": "s1"}', JSON_BOT),
]  # fmt: skip


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(requests(), min_size=1, max_size=4))
@example(EXAMPLES)
def test_fuzz_from_the_openapi_document(batch):
    asyncio.run(_run(batch))


async def seeded_app():
    """A worker over a fresh MemoryKV with the seeded messages and statuses."""
    kv = MemoryKV()
    app = create_app(kv, CONFIG)
    worker = app.state.worker
    for message in SEEDED:
        await worker.post(message)
        assert TOKENS[message["id"]] == worker.heal_token(message)
    queue = Queue(kv, CONFIG)
    for message_id, status in SEEDED_STATUS.items():
        await queue.set_status(message_id, status)
    return kv, app


async def _run(batch):
    kv, app = await seeded_app()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://worker") as http:
        for path, url, method, op, params, content, headers in batch:
            before = kv.snapshot()
            r = await http.request(method, url, params=params, content=content, headers=headers)
            documented = set(op["responses"])
            assert r.status_code < 500, (path, params, content, r.text)
            assert str(r.status_code) in documented, (path, params, content, r.status_code, r.text)
            data = r.json()
            if r.status_code >= 400:
                assert kv.snapshot() == before, (path, content, r.status_code)
                assert set(data) == {"error"} and data["error"]
            else:
                schema = op["responses"]["200"]["content"]["application/json"]["schema"]
                assert set(schema.get("required", [])) <= set(data), (path, data)
                if path == "/api/admin/add-to-cache":
                    assert data["result"] in schema["properties"]["result"]["enum"]
                if path == "/api/comments" and method == "POST":
                    assert re.fullmatch("[0-9a-f]{48}", data["healToken"])


def test_the_fuzzer_reaches_every_status():
    """The strategies are not vacuous: a fixed sample of them meets each interesting status."""
    seen: set[tuple[str, str, int]] = set()

    async def collect(batch):
        _, app = await seeded_app()
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://worker"
        ) as http:
            for path, url, method, _op, params, content, headers in batch:
                r = await http.request(method, url, params=params, content=content, headers=headers)
                seen.add((method, path, r.status_code))

    @settings(
        max_examples=400,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(requests(), min_size=1, max_size=4))
    @example(EXAMPLES)
    def run(batch):
        asyncio.run(collect(batch))

    run()
    for wanted in [
        ("POST", "/api/comments", 200),
        ("POST", "/api/comments", 400),
        ("POST", "/api/comments", 415),
        ("POST", "/api/comments", 413),
        ("POST", "/api/admin/add-to-cache", 200),
        ("POST", "/api/admin/add-to-cache", 400),
        ("POST", "/api/admin/add-to-cache", 403),
        ("GET", "/api/comments", 200),
        ("GET", "/api/comments", 400),
        ("PATCH", "/api/comments/{id}", 200),
        ("PATCH", "/api/comments/{id}", 400),
        ("PATCH", "/api/comments/{id}", 401),
        ("PATCH", "/api/comments/{id}", 403),
        ("PATCH", "/api/comments/{id}", 404),
        ("PATCH", "/api/comments/{id}", 409),
        ("GET", "/api/queue/pending", 200),
        ("GET", "/api/queue/pending", 400),
        ("GET", "/api/queue/pending", 401),
        ("GET", "/api/queue/pending", 403),
        ("POST", "/api/queue/claim", 200),
        ("POST", "/api/queue/claim", 404),
        ("POST", "/api/queue/claim", 409),
        ("POST", "/api/queue/complete", 200),
        ("POST", "/api/queue/complete", 409),
    ]:
        assert wanted in seen, (wanted, sorted(seen))

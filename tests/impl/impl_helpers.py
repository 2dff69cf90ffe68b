"""Shared helpers of the implementation tests."""

from __future__ import annotations

import httpx2

from kvheal.impl.kv import LoggedKV


def asgi_client(app) -> httpx2.AsyncClient:
    """An httpx2 client that calls `app` in-process."""
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://worker")


def calls(records: list[dict]) -> list[tuple]:
    """A log of LoggedKV records as (op, key) pairs, with cas outcomes."""
    out = []
    for r in records:
        if r["op"] == "cas":
            out.append(("cas", r["key"], r["ok"]))
        else:
            out.append((r["op"], r.get("key", r.get("prefix"))))
    return out


def logged(kv):
    """`kv` wrapped in a LoggedKV, and the list its records go to."""
    records: list[dict] = []
    return LoggedKV(kv, records.append), records

"""POST latency of the real worker, measured for `kvheal report --stress`.

A served worker (``kvheal serve``'s code in a child process: SQLite, several processes, on a
free loopback port) and ``tabs`` clients, each on its own connection as a browser tab is, that
post at the same instant, round after round (the burst of the post-mortem's test); every
POST /api/comments is timed from the request to its answer. The load generator shares the
machine with the server, so the figures describe this machine under this load, not a capacity.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import tempfile
import time
from typing import Any

#: Worker processes of the measured server (as `kvheal stress` runs it).
WORKERS = 4


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, nearest rank: the smallest value with at least
    a share q of the values at or below it.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    rank = math.ceil(q * len(sorted_values) - 1e-9)  # 1-based; the epsilon absorbs 0.9 * 10 = 9.000…1
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def summarize(latencies_ms: list[float], errors: int) -> dict[str, Any]:
    """Median, 90th and 99th percentiles, maximum and mean of the latencies (ms).

    >>> summarize([4.0, 1.0, 3.0, 2.0], 0)["p50_ms"]
    2.0
    """
    xs = sorted(latencies_ms)
    return {
        "posts": len(xs),
        "errors": errors,
        "p50_ms": round(percentile(xs, 0.50), 2),
        "p90_ms": round(percentile(xs, 0.90), 2),
        "p99_ms": round(percentile(xs, 0.99), 2),
        "max_ms": round(xs[-1], 2),
        "mean_ms": round(statistics.fmean(xs), 2),
    }


async def _bursts(base_url: str, tabs: int, rounds: int, tag: str) -> tuple[list[float], int]:
    import httpx2

    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx2.AsyncClient(base_url=base_url, limits=limits, timeout=60) for _ in range(tabs)]
    latencies: list[float] = []
    errors = 0
    try:
        await asyncio.gather(*(c.get("/api/health") for c in clients))  # connections up first
        base_ts = int(time.time() * 1000)
        for r in range(rounds):
            barrier = asyncio.Barrier(tabs)

            async def post(t: int, r: int = r, barrier: asyncio.Barrier = barrier) -> tuple[float, int]:
                m = r * tabs + t
                body = {
                    "id": f"{tag}-r{r}-t{t}",
                    "text": f"message {m} from tab {t}",
                    "timestamp": base_ts + m,
                }
                await barrier.wait()
                t0 = time.perf_counter()
                resp = await clients[t].post("/api/comments", json=body)
                return (time.perf_counter() - t0) * 1000, resp.status_code

            for ms, status in await asyncio.gather(*(post(t) for t in range(tabs))):
                latencies.append(ms)
                errors += status != 200
    finally:
        for c in clients:
            await c.aclose()
    return latencies, errors


def measure(design: str, tabs: int, rounds: int, workers: int = WORKERS) -> dict[str, Any]:
    """POST latency of ``design`` (a variant label, ``seed`` for none) with ``tabs`` tabs
    posting at once, ``rounds`` times: the summary and every latency (ms, ascending)."""
    from kvheal.impl.server import ServeConfig, ServerProcess

    variants = "" if design == "seed" else design
    with tempfile.TemporaryDirectory(prefix="kvheal-latency-") as tmp:
        config = ServeConfig(
            backend="sqlite", variants=variants, port=0, workers=workers, db=f"{tmp}/kv.sqlite3"
        )
        with ServerProcess(config) as url:
            latencies, errors = asyncio.run(_bursts(url, tabs, rounds, "lat"))
    return {
        "design": design,
        "tabs": tabs,
        "rounds": rounds,
        "backend": "sqlite",
        "workers": workers,
        **summarize(latencies, errors),
        "latencies_ms": [round(x, 2) for x in sorted(latencies)],
    }

"""Benchmark of the real system: HTTP throughput and latency per backend, and the stress report.

    python -m bench.impl_bench             # every backend, stress at 8 and 64 tabs (~2-3 minutes)
    python -m bench.impl_bench --quick     # fewer requests and runs, for a smoke run
    python -m bench.impl_bench --json      # one JSON object instead of lines

HTTP: a served worker (uvicorn in a child process on 127.0.0.1; memory needs one process,
SQLite and Redis get `--workers`), an asyncio load generator with `--concurrency` clients in a
closed loop (each its own connection, as tabs), measuring requests/s and p50/p99 latency of
POST /api/comments (seed design and atomic_cache,dedupe) and of GET /api/comments?limit=200 on
a full cache. The load generator
shares the machine's CPUs with the server, so the figures are a floor, not a capacity.

Stress: `kvheal stress` per design at 8 and 64 tabs on SQLite with several processes.
Redis is benchmarked only if `redis-server` is installed (a throwaway one is started).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time

import httpx2

from kvheal.impl.deploy import shared_ssl_context
from kvheal.impl.redis_server import RedisServer, redis_server_binary
from kvheal.impl.server import ServeConfig, ServerProcess
from kvheal.impl.stress import StressConfig, run_stress

DESIGNS = ["", "dedupe", "atomic_cache", "atomic_cache,dedupe", "sweeper"]


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, nearest rank."""
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


async def load(
    base_url: str, method: str, n: int, concurrency: int, tag: str, *, shared_pool: bool = False
) -> dict:
    """Send n requests from `concurrency` clients in a closed loop; returns requests/s and
    latency percentiles (ms).

    Each client has its own connection, as each tab has. `shared_pool` sends them instead
    through one httpx client with `concurrency` connections (what this benchmark did until
    #13's review): its pool scans every connection on each request, probing idle sockets, which
    at 256 connections cost the load generator more CPU than the server spent (profiled: 7 of
    12.7 s in `_assign_requests_to_connections`, the server 0.9 s), so the figures measured
    the client's pool as much as the server."""
    latencies: list[float] = []
    counter = iter(range(n))
    errors = 0
    if shared_pool:
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        pool = httpx2.AsyncClient(base_url=base_url, limits=limits, timeout=60, verify=shared_ssl_context())
        clients = [pool] * concurrency
    else:
        limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [
            httpx2.AsyncClient(base_url=base_url, limits=limits, timeout=60, verify=shared_ssl_context())
            for _ in range(concurrency)
        ]
    try:
        await asyncio.gather(*(http.get("/api/health") for http in clients))  # connections up first

        async def worker(http: httpx2.AsyncClient) -> None:
            nonlocal errors
            for i in counter:
                t0 = time.perf_counter()
                if method == "POST":
                    r = await http.post(
                        "/api/comments", json={"id": f"{tag}-{i}", "text": f"message {i}", "timestamp": i}
                    )
                else:
                    r = await http.get("/api/comments", params={"limit": 200})
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(http) for http in clients))
        elapsed = time.perf_counter() - t0
    finally:
        for http in set(clients):
            await http.aclose()
    latencies.sort()
    return {
        "requests": n,
        "errors": errors,
        "rps": round(n / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }


def http_bench(backend: str, workers: int, n: int, concurrency: int, redis_url: str, tmp: str) -> list[dict]:
    """POST (seed, atomic_cache+dedupe) and GET figures for one backend."""
    rows = []
    for variants in ["", "atomic_cache,dedupe"]:
        config = ServeConfig(
            backend=backend,
            variants=variants,
            port=0,
            workers=1 if backend == "memory" else workers,
            db=f"{tmp}/bench-{backend}-{variants or 'seed'}.sqlite3",
            redis_url=redis_url,
            redis_namespace=f"bench-{variants or 'seed'}:",
        )
        with ServerProcess(config) as url:
            post = asyncio.run(load(url, "POST", n, concurrency, "p"))
            rows.append(
                {
                    "backend": backend,
                    "workers": config.workers,
                    "request": "POST",
                    "design": variants or "seed",
                    **post,
                }
            )
            if not variants:
                get = asyncio.run(load(url, "GET", n, concurrency, "g"))
                rows.append(
                    {
                        "backend": backend,
                        "workers": config.workers,
                        "request": "GET",
                        "design": "any (cache of 200)",
                        **get,
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn processes for SQLite and Redis")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    n = 300 if args.quick else 2000
    runs = {8: 2 if args.quick else 5, 64: 1 if args.quick else 2}
    out = {"http": [], "stress": [], "notes": []}

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    redis = None
    with tempfile.TemporaryDirectory(prefix="kvheal-bench-") as tmp:
        try:
            backends = ["memory", "sqlite"]
            if redis_server_binary():
                redis = RedisServer().start()
                backends.append("redis")
            else:
                out["notes"].append("redis-server not installed: Redis skipped")
                say("# redis-server not installed: Redis skipped")
            say(
                f"# HTTP: {n} requests per row, {args.concurrency} in flight, load generator on the same machine"
            )
            for backend in backends:
                for row in http_bench(
                    backend, args.workers, n, args.concurrency, redis.url if redis else "", tmp
                ):
                    out["http"].append(row)
                    say(
                        f"http   {row['backend']:<7} {row['request']:<4} {row['design']:<20} "
                        f"{row['rps']:>8.1f} req/s  p50 {row['p50_ms']:>6.2f} ms  p99 {row['p99_ms']:>7.2f} ms"
                        f"  ({row['workers']} proc, {row['errors']} errors)"
                    )
            say(
                "# stress: sqlite, 4 uvicorn processes; all tabs post at once, then poll rounds (20 ms +10 ms)"
            )
            for tabs in (8, 64):
                for design in DESIGNS:
                    report = run_stress(
                        StressConfig(tabs=tabs, runs=runs[tabs], variants=design, workers=4, max_rounds=60)
                    )
                    s = report.summary
                    out["stress"].append({"tabs": tabs, "design": design or "seed", **s})
                    say(
                        f"stress {tabs:>2} tabs {design or 'seed':<20} runs {s['runs']}  acked {s['acked']:>3}  "
                        f"missing after post {s['missing_after_post']:>3} ({s['runs_with_missing_after_post']} runs)  "
                        f"after heal {s['in_cache_after_heal']:>3}  dup {s['duplicates']}  "
                        f"polls max {s['converge_polls_max']} mean {s['converge_polls_mean']}  "
                        f"heals {s['heals_sent']}  {s['seconds']} s"
                    )
        finally:
            if redis is not None:
                redis.stop()
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

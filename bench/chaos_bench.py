"""Benchmark of the real system under faults and load (issue #13's targets).

    python -m bench.chaos_bench                  # every section (~10 minutes on 2 busy cores)
    python -m bench.chaos_bench --quick          # smaller numbers, for a smoke run
    python -m bench.chaos_bench --only contention,tabs
    python -m bench.chaos_bench --json

Sections (each prints its figures as it goes):

- `durability`: POST throughput of the seed design at 64 clients under each durability setting:
  SQLite synchronous FULL (the default: an acknowledged post survives power loss) and NORMAL
  (survives a crash of any process); Redis with AOF `everysec` (what stress starts, and what
  `serve` requires at least), `always`, and without persistence (for scale only).
- `contention`: closed loop at 256 clients, POST throughput and p50/p99 of `atomic_cache,dedupe`
  against the seed design on the same backend (target: at least 80%, p99 under 1 s).
- `tabs`: `kvheal stress` with 512 and 1,024 tabs posting at the same instant on SQLite and Redis
  (target: 0 refused posts).
- `chaos`: `kvheal chaos` for each converging design on SQLite and on Redis (AOF), larger than
  the tests (64 clients, 6 s of load per scenario); then kill -9 of redis-server in each
  persistence mode, to show what each loses (target: 0 lost with AOF, 0 writes by refused
  requests).
- `fuzz`: the suite's OpenAPI fuzzer (`tests/impl/test_openapi_fuzz.py`'s strategies, drawn from
  the served `/openapi.json`) against a real `kvheal serve` over SQLite, more examples than the
  test (target: 0 answers 5xx, 0 writes by refused requests, every status documented).
- `sweeper`: a sweeper pass over 50,000 stored messages with nothing to repair, on SQLite and
  Redis (target: under 100 ms); the first pass after a start, which learns the timestamps, apart.

Every target is printed on a line of its own starting with `target`, with `met` or `MISSED`.

Everything runs on loopback with the load generator on the same machine, so throughput figures
are a floor, not a capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time

from bench.impl_bench import load
from kvheal.impl.chaos import ChaosConfig, run_chaos
from kvheal.impl.deploy import Deployment
from kvheal.impl.redis_server import redis_server_binary
from kvheal.impl.server import ServeConfig
from kvheal.impl.stress import CONVERGING_DESIGNS, StressConfig, run_stress

SECTIONS = ("durability", "contention", "tabs", "chaos", "fuzz", "sweeper")


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _post_bench(
    backend: str,
    variants: str,
    n: int,
    concurrency: int,
    tmp: str,
    *,
    workers: int,
    sqlite_sync: str = "FULL",
    redis_persistence: str = "aof",
    shared_pool: bool = False,
) -> dict:
    deployment = Deployment(
        ServeConfig(
            backend=backend,
            variants=variants,
            workers=workers,
            db=f"{tmp}/{backend}-{variants or 'seed'}-{sqlite_sync}-{time.monotonic_ns()}.sqlite3",
            sqlite_sync=sqlite_sync,
            allow_volatile=True,
            cap=200,
        ),
        own_redis=backend == "redis",
        redis_persistence=redis_persistence,
    )
    with deployment:
        return asyncio.run(
            load(
                deployment.base_url,
                "POST",
                n,
                concurrency,
                f"b{time.monotonic_ns()}",
                shared_pool=shared_pool,
            )
        )


def _fuzz_bench(batches: int, tmp: str) -> dict:
    """The suite's fuzz strategies against a served worker: counts of statuses, 5xx, statuses
    the schema does not document, and refused requests after which the store differs."""
    import importlib.util
    import os
    import sqlite3
    from collections import Counter

    import httpx2
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "impl")
    spec = importlib.util.spec_from_file_location(
        "kvheal_fuzz_strategies", os.path.join(path, "test_openapi_fuzz.py")
    )
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    db = f"{tmp}/fuzz-{time.monotonic_ns()}.sqlite3"
    config = ServeConfig(
        backend="sqlite",
        variants="dedupe",
        workers=2,
        db=db,
        cap=5,
        post_rate=0,
        heal_rate=0,
        sweep_interval=3600,
    )
    counts: Counter = Counter()
    bad = {"5xx": 0, "undocumented": 0, "refused_written": 0}
    examples: list[str] = []
    t0 = time.monotonic()
    with Deployment(config) as deployment, httpx2.Client(base_url=deployment.base_url, timeout=30) as http:
        fuzz.DOC = http.get("/openapi.json").json()  # the served document, not the test's own
        for message in fuzz.SEEDED:
            fuzz.TOKENS[message["id"]] = http.post("/api/comments", json=message).json()["healToken"]
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)

        def snapshot() -> list:
            return conn.execute("SELECT key, value, version FROM kv ORDER BY key").fetchall()

        @settings(
            max_examples=batches,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(fuzz.requests(), min_size=1, max_size=4))
        def run(batch):
            for item in batch:
                # (path, url, method, op, params, content, headers); older versions had no url
                req_path, method, op, params, content, headers = item[-6:]
                before = snapshot()
                r = http.request(method, req_path, params=params, content=content, headers=headers)
                counts[r.status_code] += 1
                if r.status_code >= 500:
                    bad["5xx"] += 1
                    examples.append(f"{r.status_code} {method} {req_path} {content!r:.80}")
                if str(r.status_code) not in op["responses"]:
                    bad["undocumented"] += 1
                    examples.append(f"undocumented {r.status_code} {method} {req_path}")
                if 400 <= r.status_code < 500 and snapshot() != before:
                    bad["refused_written"] += 1
                    examples.append(f"refused {r.status_code} wrote: {method} {req_path} {content!r:.80}")

        run()
        conn.close()
    return {
        "requests": sum(counts.values()),
        "statuses": dict(sorted(counts.items())),
        **bad,
        "examples": examples[:5],
        "seconds": round(time.monotonic() - t0, 1),
    }


async def _sweeper_bench(backend: str, n: int, tmp: str) -> dict:
    """Fill a store with `n` messages (the newest 1,000 cached), then time sweeper passes."""
    import sqlite3
    import statistics

    from kvheal.impl.config import WorkerConfig
    from kvheal.impl.messages import CACHE_KEY, encode_cache, encode_message
    from kvheal.impl.worker import Sweeper

    cap = 1000
    messages = [{"id": f"m{i}", "text": f"message {i}", "timestamp": 1_700_000_000_000 + i} for i in range(n)]
    rows = [(f"comment:{m['id']}", encode_message(m)) for m in messages]
    redis_server = None
    if backend == "sqlite":
        from kvheal.impl.sqlite_kv import SqliteKV

        db = f"{tmp}/sweeper-{time.monotonic_ns()}.sqlite3"
        kv = SqliteKV(db)
        await kv.put(CACHE_KEY, encode_cache(messages[-cap:]))
        with sqlite3.connect(db) as conn:
            conn.executemany("INSERT INTO kv (key, value, version) VALUES (?, ?, 1)", rows)
    else:
        from kvheal.impl.redis_kv import RedisKV
        from kvheal.impl.redis_server import RedisServer

        redis_server = RedisServer(persistence="none").start()
        kv = RedisKV(redis_server.url, namespace="sweep:")
        await kv.put(CACHE_KEY, encode_cache(messages[-cap:]))
        pipe = kv._redis.pipeline(transaction=False)
        for i, (key, value) in enumerate(rows):
            pipe.hset(kv._key(key), mapping={"v": value, "n": 1})
            if i % 1000 == 999:
                await pipe.execute()
        await pipe.execute()
    try:
        sweeper = Sweeper(kv, WorkerConfig(variants="dedupe,sweeper", cap=cap))

        async def timed(call):
            t = time.perf_counter()
            result = await call
            return (time.perf_counter() - t) * 1000, result

        first_ms, first = await timed(sweeper.run_once())
        times, lists = [], []
        for _ in range(10):
            ms, result = await timed(sweeper.run_once())
            assert not result.missing and not result.written, result
            times.append(ms)
            lists.append((await timed(kv.list("comment:")))[0])
        # one message stored but never cached: the next pass adds it
        late = {"id": "late", "text": "late", "timestamp": messages[-1]["timestamp"] + 1}
        await kv.put("comment:late", encode_message(late))
        repair_ms, repaired = await timed(sweeper.run_once())
        return {
            "messages": n,
            "first_ms": round(first_ms, 1),
            "first_missing": first.outside + len(first.missing),
            "passes": len(times),
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "list_ms": round(statistics.median(lists), 1),
            "repair_ms": round(repair_ms, 1),
            "repaired": repaired.missing == ("late",) and repaired.written,
        }
    finally:
        await kv.aclose()
        if redis_server is not None:
            redis_server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller numbers")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS)
    )
    parser.add_argument("--workers", type=int, default=4, help="uvicorn processes")
    parser.add_argument(
        "--shared-pool",
        action="store_true",
        help="send the load through one httpx pool (the load generator before #13's review) "
        "instead of a connection per client",
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r} (known: {', '.join(SECTIONS)})")
    backends = ["sqlite"] + (["redis"] if redis_server_binary() else [])
    out: dict = {"notes": [] if "redis" in backends else ["redis-server not installed: Redis skipped"]}

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="kvheal-chaos-bench-") as tmp:
        if "durability" in sections:
            n = 400 if args.quick else 1500
            say(f"# durability: seed design, POST, {n} requests, 64 in flight, {args.workers} processes")
            rows = []
            settings = [("sqlite", {"sqlite_sync": "FULL"}), ("sqlite", {"sqlite_sync": "NORMAL"})]
            if "redis" in backends:
                settings += [("redis", {"redis_persistence": m}) for m in ("aof", "aof-always", "none")]
            for clients, count in ((64, n), (1, n // 5)):
                for backend, kw in settings:
                    r = _post_bench(
                        backend,
                        "",
                        count,
                        clients,
                        tmp,
                        workers=args.workers,
                        shared_pool=args.shared_pool,
                        **kw,
                    )
                    label = f"{backend} {next(iter(kw.values()))}"
                    rows.append({"setting": label, "clients": clients, **r})
                    say(
                        f"durability {label:<20} {clients:>3} client(s) {r['rps']:>8.1f} req/s  "
                        f"p50 {r['p50_ms']:>7.1f} ms  p99 {r['p99_ms']:>7.1f} ms  ({r['errors']} errors)"
                    )
            out["durability"] = rows

        if "contention" in sections:
            n = 800 if args.quick else 3000
            clients = "one shared httpx pool" if args.shared_pool else "a connection per client"
            say(f"# contention: POST, {n} requests, 256 clients ({clients}), {args.workers} processes")
            rows = []
            for backend in backends:
                kw = {"workers": args.workers, "shared_pool": args.shared_pool}
                seed = _post_bench(backend, "", n, 256, tmp, **kw)
                atomic = _post_bench(backend, "atomic_cache,dedupe", n, 256, tmp, **kw)
                ratio = atomic["rps"] / seed["rps"] if seed["rps"] else 0.0
                rows.append(
                    {
                        "backend": backend,
                        "seed": seed,
                        "atomic_cache,dedupe": atomic,
                        "ratio": round(ratio, 3),
                    }
                )
                for name, r in (("seed", seed), ("atomic_cache,dedupe", atomic)):
                    say(
                        f"contention {backend:<6} {name:<20} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:>7.1f} ms  "
                        f"p99 {r['p99_ms']:>7.1f} ms  ({r['errors']} errors)"
                    )
                say(f"contention {backend:<6} atomic/seed = {ratio:.0%}")
                say(
                    f"target contention {backend}: atomic_cache,dedupe at 256 clients >= 80% of the seed's "
                    f"POST throughput ({ratio:.0%}) and p99 < 1000 ms ({atomic['p99_ms']:.0f} ms): "
                    f"{_verdict(ratio >= 0.8 and atomic['p99_ms'] < 1000 and not atomic['errors'])}"
                )
            out["contention"] = rows

        if "tabs" in sections:
            tab_counts = (512,) if args.quick else (512, 1024)
            say(f"# tabs: kvheal stress, every tab posts at the same instant, {args.workers} processes")
            rows = []
            for backend in backends:
                for tabs in tab_counts:
                    for design in ("", "atomic_cache,dedupe"):
                        cap = min(tabs, 1000)  # a GET returns at most 1,000
                        report = run_stress(
                            StressConfig(
                                tabs=tabs,
                                runs=1,
                                backend=backend,
                                variants=design,
                                workers=args.workers,
                                max_rounds=0,
                                cap=cap,
                            )
                        )
                        s = report.summary
                        rows.append(
                            {"backend": backend, "tabs": tabs, "cap": cap, "design": design or "seed", **s}
                        )
                        say(
                            f"tabs {backend:<6} {tabs:>5} {design or 'seed':<20} acked {s['acked']:>5}  "
                            f"refused {s['failed_posts']:>4}  cache {cap}: missing right after posting "
                            f"{s['missing_after_post']:>4} (evicted {s['evicted']}, lost {s['lost']})  {s['seconds']} s"
                        )
                        say(
                            f"target tabs {backend} {tabs} {design or 'seed'}: 0 refused posts "
                            f"({s['failed_posts']} of {tabs}): {_verdict(s['failed_posts'] == 0 and s['acked'] == tabs)}"
                        )
            out["tabs"] = rows

        if "chaos" in sections:
            clients, load_s = (16, 3.0) if args.quick else (64, 6.0)
            say(f"# chaos: {clients} clients, {load_s} s of load per scenario, {args.workers} processes")
            rows = []
            for backend in backends:
                for design in CONVERGING_DESIGNS:
                    variants = ",".join(sorted(design))
                    report = run_chaos(
                        ChaosConfig(
                            backend=backend,
                            variants=variants,
                            clients=clients,
                            load_s=load_s,
                            workers=args.workers,
                        )
                    )
                    for s in report.scenarios:
                        rows.append({"backend": backend, "design": variants, **s.to_dict()})
                    total = {
                        k: sum(getattr(s, k) for s in report.scenarios)
                        for k in (
                            "tried",
                            "acked",
                            "failed",
                            "unknown",
                            "lost",
                            "evicted",
                            "orphaned",
                            "refused_written",
                        )
                    }
                    bad = [s.name for s in report.scenarios if not s.ok]
                    for s in report.scenarios:
                        say(
                            f"  {s.name:<20} tried {s.tried:>6}  acked {s.acked:>6}  failed {s.failed:>5}  "
                            f"unknown {s.unknown:>3}  lost {s.lost:>3}  evicted {s.evicted:>5}  "
                            f"orphaned {s.orphaned:>3}  refused-written {s.refused_written}  {s.seconds:>5.1f} s  "
                            f"{'ok' if s.ok else 'FAILED: ' + '; '.join(s.violations + s.notes)[:300]}"
                        )
                    say(
                        f"chaos {backend:<6} {variants:<22} {len(report.scenarios)} scenarios  tried {total['tried']:>6}  "
                        f"acked {total['acked']:>6}  failed {total['failed']:>5}  unknown {total['unknown']:>3}  "
                        f"lost {total['lost']:>3}  evicted {total['evicted']:>5}  orphaned {total['orphaned']:>3}  "
                        f"{'ok' if not bad else 'FAILED: ' + ', '.join(bad)}"
                    )
                    say(
                        f"target chaos {backend} {variants}: 0 acknowledged posts lost in every scenario "
                        f"({total['lost']}), 0 writes by refused requests ({total['refused_written']}), no broken "
                        f"promise ({len(bad)} scenario(s) failed): "
                        f"{_verdict(total['lost'] == 0 and total['refused_written'] == 0 and not bad)}"
                    )
            if "redis" in backends:
                for mode in ("aof", "aof-always", "rdb", "none"):
                    report = run_chaos(
                        ChaosConfig(
                            backend="redis",
                            scenarios=("kill-redis",),
                            clients=clients,
                            load_s=load_s,
                            workers=args.workers,
                            redis_persistence=mode,
                        )
                    )
                    (s,) = report.scenarios
                    rows.append(
                        {"backend": f"redis ({mode})", "design": "atomic_cache,dedupe", **s.to_dict()}
                    )
                    say(
                        f"chaos kill -9 redis-server, {mode:<10}  acked {s.acked:>5}  lost {s.lost:>5}  "
                        f"{'ok' if s.ok else 'FAILED'}"
                    )
                    if mode.startswith("aof"):
                        say(
                            f"target chaos kill -9 redis-server with {mode}: 0 acknowledged posts lost "
                            f"({s.lost} of {s.acked}): {_verdict(s.ok)}"
                        )
            out["chaos"] = rows

        if "fuzz" in sections:
            batches = 300 if args.quick else 1500
            say(f"# fuzz: {batches} batches of 1-4 requests from the OpenAPI fuzzer, kvheal serve on SQLite")
            r = _fuzz_bench(batches, tmp)
            say(
                f"fuzz {r['requests']} requests: statuses {r['statuses']}, 5xx {r['5xx']}, "
                f"undocumented {r['undocumented']}, writes by refused requests {r['refused_written']}  "
                f"{r['seconds']} s"
            )
            say(
                f"target fuzz: 0 answers 5xx ({r['5xx']}) and 0 writes by refused requests "
                f"({r['refused_written']}) in {r['requests']} requests: "
                f"{_verdict(r['5xx'] == 0 and r['refused_written'] == 0 and r['undocumented'] == 0)}"
            )
            out["fuzz"] = r

        if "sweeper" in sections:
            n = 50_000
            say(f"# sweeper: one pass over {n:,} stored messages, cache of 1,000, design dedupe,sweeper")
            rows = []
            for backend in backends:
                r = asyncio.run(_sweeper_bench(backend, n, tmp))
                rows.append({"backend": backend, **r})
                say(
                    f"sweeper {backend:<6} first pass {r['first_ms']:>8.1f} ms (learns {r['first_missing']:,} "
                    f"timestamps); nothing to repair: median {r['median_ms']:.1f} ms, max {r['max_ms']:.1f} ms "
                    f"over {r['passes']} passes (list {r['list_ms']:.1f} ms); one missing: {r['repair_ms']:.1f} ms"
                )
                say(
                    f"target sweeper {backend}: a pass with nothing to repair at {n:,} messages < 100 ms "
                    f"(max {r['max_ms']:.1f} ms): {_verdict(r['max_ms'] < 100 and r['repaired'])}"
                )
            out["sweeper"] = rows
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

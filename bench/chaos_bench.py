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
  persistence mode, to show what each loses (target: 0 lost with AOF).

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

SECTIONS = ("durability", "contention", "tabs", "chaos")


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
            for backend, kw in settings:
                r = _post_bench(
                    backend, "", n, 64, tmp, workers=args.workers, shared_pool=args.shared_pool, **kw
                )
                label = f"{backend} {next(iter(kw.values()))}"
                rows.append({"setting": label, **r})
                say(
                    f"durability {label:<20} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:>7.1f} ms  "
                    f"p99 {r['p99_ms']:>7.1f} ms  ({r['errors']} errors)"
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
                say(f"contention {backend:<6} atomic/seed = {ratio:.0%} (target >= 80%, p99 < 1000 ms)")
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
                        for k in ("tried", "acked", "failed", "unknown", "lost", "evicted")
                    }
                    bad = [s.name for s in report.scenarios if not s.ok]
                    say(
                        f"chaos {backend:<6} {variants:<22} {len(report.scenarios)} scenarios  tried {total['tried']:>6}  "
                        f"acked {total['acked']:>6}  failed {total['failed']:>5}  unknown {total['unknown']:>3}  "
                        f"lost {total['lost']:>3}  evicted {total['evicted']:>5}  "
                        f"{'ok' if not bad else 'FAILED: ' + ', '.join(bad)}"
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
            out["chaos"] = rows
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The stress runner: many tabs post at the same instant against a served worker, then heal.

One served worker (several uvicorn processes on 127.0.0.1, so the race is between processes
as well as between requests of one process) is started once; each run then wipes the store,
opens one client per tab (its own connection, already established), releases every tab's
posts at once through a barrier, and measures:

- acknowledged posts, and how many of them are in the cache right after posting;
- then polling rounds (each live tab polls once, heals run, a check reads the cache) until the
  cache holds every acknowledged message and every pending list is empty, or `max_rounds`;
- how many are in the cache after healing, duplicates in the final cache, the round at which
  the cache first held every acknowledged message ("time to converge in poll cycles"; 0 when
  nothing was missing), the heals sent, and the ids the tabs gave up healing (the worker
  answered 404 or "outside the cache's window": `deploy.tab_client`), which also leave the
  pending lists, so a run whose window moved past some messages ends once the rest converged.

An acknowledged message absent from the final cache is *evicted* when the cache is full and
the message is older than everything in it (the cache's window moved past it: what a capacity
means, not a fault), and *lost* otherwise. A run has converged when every acknowledged message
is cached or evicted. `converging_design(variants)` says which designs the model proves
converge; `kvheal stress` exits 1 when one of them did not converge or lost a message.

Processes: the served worker and a throwaway redis-server (started with AOF, everysec) are
children that the kernel kills if this process dies; SIGTERM is turned into the same clean
shutdown as Ctrl-C (SIGINT), and the server's stderr is drained on a thread.

`run_stress` returns a `StressReport` (nothing is printed); `kvheal stress` renders it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx2

from .client import Client, ClientError, PollSchedule, SqlitePendingStore
from .config import ConfigError, parse_variants
from .deploy import Deployment, tab_client, terminate_as_interrupt
from .kv import JsonlOpLog
from .redis_server import redis_server_binary
from .server import ServeConfig

__all__ = [
    "StressConfig",
    "RunResult",
    "StressReport",
    "run_stress",
    "converging_design",
    "CONVERGING_DESIGNS",
]

#: the designs whose convergence the model proves (README: `kvheal check`, `kvheal prove`)
CONVERGING_DESIGNS = (
    frozenset({"atomic_cache", "dedupe"}),
    frozenset({"dedupe", "keep_verifying"}),
    frozenset({"dedupe", "sweeper"}),
)


def converging_design(variants) -> bool:
    """Whether a design contains a proven-converging one and none of the client faults."""
    variants = frozenset(variants)
    if variants & {"tab_crash", "shared_pending"}:
        return False
    return any(design <= variants for design in CONVERGING_DESIGNS)


@dataclass(frozen=True)
class StressConfig:
    """One stress experiment: tabs, messages per tab, design, backend, processes, runs, schedule."""

    tabs: int = 8
    per_tab: int = 1
    variants: frozenset[str] = frozenset()
    backend: str = "sqlite"
    workers: int = 4
    runs: int = 10
    cap: int = 200
    #: SQLite file (a temporary one when empty)
    db: str = ""
    #: Redis server (a throwaway redis-server on a free port when empty)
    redis_url: str = ""
    poll_first_ms: float = 20.0
    poll_step_ms: float = 10.0
    poll_max_ms: float = 200.0
    max_rounds: int = 30
    #: the whole experiment stops starting runs after this many seconds
    timeout_s: float = 300.0
    #: seconds between sweeper passes (with `sweeper`); long enough that the race still shows
    sweep_interval: float = 0.5
    #: with tab_crash: this many tabs die right after their posts are acknowledged
    crash_tabs: int = 1
    #: append every KV call of the worker to this JSONL file
    op_log: str = ""
    #: persistence of the throwaway redis-server (see `RedisServer`): aof, aof-always, rdb, none
    redis_persistence: str = "aof"

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", parse_variants(self.variants))
        if not 1 <= self.tabs <= 1024:
            raise ConfigError(f"--tabs must be between 1 and 1024, got {self.tabs}")
        if not 1 <= self.per_tab <= 1000:
            raise ConfigError(f"--per-tab must be between 1 and 1000, got {self.per_tab}")
        if not 1 <= self.runs <= 10_000:
            raise ConfigError(f"--runs must be between 1 and 10000, got {self.runs}")
        if self.backend == "memory" and self.workers != 1:
            object.__setattr__(self, "workers", 1)  # one process holds the dict

    @property
    def schedule(self) -> PollSchedule:
        """The tabs' poll schedule (milliseconds here, seconds in the original)."""
        return PollSchedule(self.poll_first_ms / 1000, self.poll_step_ms / 1000, self.poll_max_ms / 1000)


@dataclass
class RunResult:
    """What one run measured."""

    run: int
    acked: int
    failed_posts: int
    in_cache_after_post: int
    in_cache_after_heal: int
    missing_after_post: list[str]
    #: acknowledged, absent from the final cache, older than the full cache's window
    evicted: int
    #: acknowledged, absent from the final cache, not evicted
    lost: list[str]
    duplicates: int
    #: poll round after which the cache first held every acknowledged message; None if never
    converged_after_polls: int | None
    heals_sent: int
    seconds: float
    #: ids the tabs stopped healing: the worker answered 404 (not stored) or "outside the
    #: cache's window" (`Client.give_up_hopeless`)
    heals_given_up: int = 0


@dataclass
class StressReport:
    """Every run's result and the totals over runs."""

    config: dict
    runs: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def summary(self) -> dict:
        """Totals and extremes over the runs."""
        converge = [r.converged_after_polls for r in self.runs if r.converged_after_polls is not None]
        return {
            "runs": len(self.runs),
            "acked": sum(r.acked for r in self.runs),
            "failed_posts": sum(r.failed_posts for r in self.runs),
            "in_cache_after_post": sum(r.in_cache_after_post for r in self.runs),
            "missing_after_post": sum(len(r.missing_after_post) for r in self.runs),
            "runs_with_missing_after_post": sum(1 for r in self.runs if r.missing_after_post),
            "in_cache_after_heal": sum(r.in_cache_after_heal for r in self.runs),
            "missing_after_heal": sum(r.acked - r.in_cache_after_heal for r in self.runs),
            "evicted": sum(r.evicted for r in self.runs),
            "lost": sum(len(r.lost) for r in self.runs),
            "duplicates": sum(r.duplicates for r in self.runs),
            "converged_runs": len(converge),
            "converge_polls_max": max(converge, default=None),
            "converge_polls_mean": round(statistics.fmean(converge), 3) if converge else None,
            "heals_sent": sum(r.heals_sent for r in self.runs),
            "heals_given_up": sum(r.heals_given_up for r in self.runs),
            "seconds": round(self.seconds, 3),
        }

    @property
    def failure(self) -> str | None:
        """Why a converging design failed here (None: it converged, or the design need not)."""
        if not converging_design(self.config.get("variants", ())):
            return None
        s = self.summary
        if s["lost"]:
            return f"{s['lost']} acknowledged message(s) lost (neither cached nor evicted)"
        if s["converged_runs"] < s["runs"]:
            return f"{s['runs'] - s['converged_runs']} of {s['runs']} run(s) did not converge"
        return None

    def to_dict(self) -> dict:
        """The report as plain JSON-able data."""
        return {"config": self.config, "summary": self.summary, "runs": [asdict(r) for r in self.runs]}


def run_stress(config: StressConfig, *, on_run: Callable[[RunResult], None] | None = None) -> StressReport:
    """Start a served worker, do `config.runs` runs against it, stop it; returns the report."""
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="kvheal-stress-")
    with terminate_as_interrupt():
        try:
            return _run_stress(config, on_run, started, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _run_stress(config: StressConfig, on_run, started: float, workdir: str) -> StressReport:
    own_redis = config.backend == "redis" and not config.redis_url
    if own_redis and redis_server_binary() is None:
        raise ConfigError("the redis backend needs --redis-url or an installed redis-server")
    deployment = Deployment(
        ServeConfig(
            backend=config.backend,
            variants=config.variants,
            workers=config.workers,
            port=0,
            db=config.db or os.path.join(workdir, "kv.sqlite3"),
            redis_url=config.redis_url or ServeConfig.redis_url,
            redis_namespace=f"kvheal-stress-{uuid.uuid4().hex[:8]}:",
            cap=config.cap,
            sweep_interval=config.sweep_interval,
            op_log=config.op_log,
            allow_volatile=True,
        ),
        own_redis=own_redis,
        redis_persistence=config.redis_persistence,
    )
    report = StressReport(
        config={
            **asdict(config),
            "variants": sorted(config.variants),
            "workers": deployment.serve.workers,
            "warnings": deployment.warnings,
        }
    )
    with deployment:
        asyncio.run(_runs(config, deployment, workdir, report, on_run, started))
    report.seconds = time.monotonic() - started
    return report


async def _runs(
    config: StressConfig, deployment: Deployment, workdir: str, report: StressReport, on_run, started: float
) -> None:
    kv = deployment.admin_kv()
    try:
        for run in range(config.runs):
            if time.monotonic() - started > config.timeout_s:
                break
            began = time.time_ns()
            await kv.clear()
            if "sweeper" in config.variants:
                # A sweeper pass that read the old store before the clear may put its cache
                # back after it: let such a pass end (one takes milliseconds), clear again.
                await asyncio.sleep(_SWEEP_SETTLE_S)
                await kv.clear()
            if config.op_log:
                _mark_clear(config.op_log, run, began)
            result = await _one_run(
                config, deployment.base_url, run, os.path.join(workdir, f"pending-{run}.sqlite3")
            )
            report.runs.append(result)
            if on_run is not None:
                on_run(result)
    finally:
        await kv.aclose()


#: how long a sweeper pass that straddles the clear between runs is given to end
_SWEEP_SETTLE_S = 0.05


def _mark_clear(path: str, run: int, began: int) -> None:
    # The operation log's readers (trace validation) start a fresh store at this record: a
    # record goes after it when it began after the clear ended (t1), whatever its line.
    log = JsonlOpLog(path)
    try:
        log({"op": "clear", "run": run, "t0": began, "t1": time.time_ns()})
    finally:
        log.close()


async def _cache(http: httpx2.AsyncClient) -> list[dict]:
    response = await http.get("/api/comments", params={"limit": 1000})
    response.raise_for_status()
    return response.json()["comments"][::-1]


async def _cache_ids(http: httpx2.AsyncClient) -> list[str]:
    return [c["id"] for c in await _cache(http)]


def evicted_ids(acked: dict[str, int], cache: list[dict], cap: int) -> set[str]:
    """The acknowledged ids (id -> timestamp) that a full cache's window has moved past."""
    if len(cache) < cap or not cache:
        return set()
    cached = {c["id"] for c in cache}
    oldest = min(c["timestamp"] for c in cache)
    return {mid for mid, ts in acked.items() if mid not in cached and ts <= oldest}


async def _one_run(config: StressConfig, base_url: str, run: int, pending_path: str) -> RunResult:
    t0 = time.monotonic()
    shared = "shared_pending" in config.variants
    stores = [
        SqlitePendingStore(pending_path, "pendingMessages" if shared else f"pending:{t}")
        for t in range(config.tabs)
    ]
    clients = [
        tab_client(
            base_url,
            t,
            stores[t],
            variants=config.variants,
            schedule=config.schedule,
            timeout=60.0,
            max_connections=config.per_tab + 2,
        )
        for t in range(config.tabs)
    ]
    checker = httpx2.AsyncClient(base_url=base_url, timeout=60.0)
    try:
        await asyncio.gather(*(c.http.get("/api/health") for c in clients))  # connections up first
        barrier = asyncio.Barrier(config.tabs)
        base_ts = int(time.time() * 1000)

        async def tab(t: int) -> list[str]:
            await barrier.wait()

            async def one(k: int) -> str | None:
                m = k * config.tabs + t
                try:
                    ack = await clients[t].post(
                        f"message {m} from tab {t}", id=f"r{run}-t{t}-m{m}", timestamp=base_ts + m
                    )
                    return ack.id, base_ts + m
                except ClientError:
                    return None

            return [a for a in await asyncio.gather(*(one(k) for k in range(config.per_tab))) if a]

        stamps = dict(
            pair for pairs in await asyncio.gather(*(tab(t) for t in range(config.tabs))) for pair in pairs
        )
        acked = list(stamps)
        after_post = await _cache_ids(checker)
        missing = sorted(set(acked) - set(after_post))
        if "tab_crash" in config.variants:
            for client in clients[: config.crash_tabs]:
                client.crash()
        live = [c for c in clients if c.alive]

        async def converged() -> tuple[bool, list[str]]:
            cache = await _cache(checker)
            ids = [c["id"] for c in cache]
            return set(acked) <= set(ids) | evicted_ids(stamps, cache, config.cap), ids

        done, final = await converged()
        converged_at = 0 if done else None
        rounds = 0
        while rounds < config.max_rounds:
            drained = "keep_verifying" in config.variants or not any([await c.pending_ids() for c in live])
            if done and drained:
                break
            await asyncio.sleep(config.schedule.delay(rounds))
            rounds += 1
            await asyncio.gather(*(_poll(c) for c in live))
            await asyncio.gather(*(c.wait_heals() for c in live))
            done, final = await converged()
            if done and converged_at is None:
                converged_at = rounds
        if converged_at is None:
            done, final = await converged()
        acked_set = set(acked)
        final_cache = await _cache(checker)
        final = [c["id"] for c in final_cache]
        evicted = evicted_ids(stamps, final_cache, config.cap)
        return RunResult(
            run=run,
            acked=len(acked),
            failed_posts=config.tabs * config.per_tab - len(acked),
            in_cache_after_post=len(acked_set & set(after_post)),
            in_cache_after_heal=len(acked_set & set(final)),
            missing_after_post=missing,
            evicted=len(evicted),
            lost=sorted(acked_set - set(final) - evicted),
            duplicates=len(final) - len(set(final)),
            converged_after_polls=converged_at,
            heals_sent=sum(c.heals_sent for c in clients),
            seconds=round(time.monotonic() - t0, 4),
            heals_given_up=sum(len(c.abandoned) for c in clients),
        )
    finally:
        await checker.aclose()
        for client in clients:
            await client.aclose()
        for store in stores:
            await store.aclose()


async def _poll(client: Client) -> None:
    try:
        await client.poll_once()
    except ClientError:
        pass  # a failed poll is retried next round, as the original's loop does

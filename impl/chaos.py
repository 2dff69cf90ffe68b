"""`kvheal chaos`: a fault suite for the real system, in the spirit of Jepsen.

Each scenario starts a fresh real deployment (a `kvheal serve` child with several uvicorn worker
processes over a real SQLite file, or over a real redis-server in a chosen persistence mode),
puts it under concurrent load from real HTTP clients (`impl.client.Client`: they post, remember
what they posted, poll and heal), injects one fault while the load runs, lets the clients heal,
and then checks the store and the cache directly through the KV:

- every **acknowledged** post (a 200) is stored and, in a converging design, in the cache by the
  end (after healing and sweeping): otherwise it counts as **lost**;
- every **refused** post (a 4xx: a definite "no") wrote nothing;
- posts whose outcome the client never learned (no answer, a 5xx) are **unknown**: the client
  retries them (same id, text and timestamp: an idempotent retry) once the fault is over; those
  still unresolved are reported apart, never counted as lost.

The clients are `deploy.tab_client`s: an id whose heal is answered 404 (the store lost it) is
given up, not healed on every poll for ever; `heals` and `heals_given_up` count both.

Faults (`SCENARIOS`): kill -9 or SIGSTOP a worker process, the main process (its workers must
die with it, and a restart on the same port must work at once), or redis-server (restarted on
its data: what survives depends on its persistence mode); clients killed right after their
acknowledgement (they never heal); and hostile clients: reposts of existing ids with another
text, posts dated in the far future, replays of a heal token, floods of forged heals. The hostile
scenarios check what issue #13 asks of the worker (409 for a repost, server-bounded timestamps,
heals that write nothing when nothing changes); against a worker without those they fail, and
say why.

`run_chaos(config)` returns a `ChaosReport`; `kvheal chaos` prints it (`--json`:
`{"scenarios": [{"name", "tried", "failed", "unknown", "lost", ...}]}`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import httpx2

from .client import Client, ClientError, MemoryPendingStore, PollSchedule
from .config import ConfigError, parse_variants
from .deploy import Deployment, shared_ssl_context, tab_client, terminate_as_interrupt
from .kv import KV, KVError
from .messages import CACHE_KEY, comment_key, decode_cache
from .redis_server import PERSISTENCE_MODES, redis_server_binary
from .server import ServeConfig
from .stress import converging_design, evicted_ids

__all__ = ["ChaosConfig", "ScenarioResult", "ChaosReport", "run_chaos", "SCENARIOS", "DEFAULT_SCENARIOS"]

FAR_FUTURE = 2**53 - 1


@dataclass(frozen=True)
class ChaosConfig:
    """A chaos run: backend and design, load, which scenarios, and how long each phase lasts."""

    backend: str = "sqlite"
    variants: frozenset[str] = frozenset({"atomic_cache", "dedupe"})
    scenarios: tuple[str, ...] = ()
    workers: int = 2
    #: concurrent clients of the load
    clients: int = 16
    #: seconds of load per scenario (the fault fires at a third of it)
    load_s: float = 3.0
    #: pause between one client's posts (seconds)
    think_s: float = 0.02
    #: how long a SIGSTOP lasts, and a killed process stays down before its restart
    pause_s: float = 2.0
    down_s: float = 0.5
    #: redis-server's persistence (see `RedisServer`): aof (what serve requires), aof-always, rdb, none
    redis_persistence: str = "aof"
    #: poll rounds for healing after the load, and the pause between them
    heal_rounds: int = 60
    #: each round, every live client polls once at a random moment within this many seconds
    heal_pause_s: float = 0.5
    sweep_interval: float = 0.3
    #: HTTP timeout of the clients (seconds)
    client_timeout: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", parse_variants(self.variants))
        if self.backend not in ("sqlite", "redis"):
            raise ConfigError(f"chaos runs on sqlite or redis (real processes), not {self.backend!r}")
        if self.redis_persistence not in PERSISTENCE_MODES:
            raise ConfigError(
                f"unknown --redis-persistence {self.redis_persistence!r} "
                f"(known: {', '.join(PERSISTENCE_MODES)})"
            )
        names = self.scenarios or tuple(n for n in DEFAULT_SCENARIOS if _applies(n, self.backend))
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise ConfigError(f"unknown scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})")
        wrong = [n for n in names if not _applies(n, self.backend)]
        if wrong:
            raise ConfigError(f"scenario {wrong[0]!r} needs the redis backend")
        object.__setattr__(self, "scenarios", tuple(names))
        if not 1 <= self.clients <= 2048:
            raise ConfigError(f"--clients must be between 1 and 2048, got {self.clients}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.load_s <= 0:
            raise ConfigError(f"--load must be positive, got {self.load_s}")


@dataclass
class ScenarioResult:
    """What one scenario tried and found."""

    name: str
    #: posts attempted (honest load and hostile requests)
    tried: int = 0
    #: acknowledged (200)
    acked: int = 0
    #: definite refusals (4xx) and failures the client gave up on
    failed: int = 0
    #: posts whose outcome stayed unknown (no answer or 5xx, still so after retrying)
    unknown: int = 0
    #: unknown at first, acknowledged by an idempotent retry
    retried: int = 0
    #: acknowledged but not stored, or (converging designs) not in the cache at the end;
    #: for hostile scenarios also honest messages overwritten or pushed out
    lost: int = 0
    #: of the unknown posts, how many were stored anyway
    unknown_stored: int = 0
    #: acknowledged, stored, and older than every entry of a full cache: moved out of the
    #: cache's window by newer posts (not lost: the store has them)
    evicted: int = 0
    #: `kill-clients` in a design whose convergence rests on the poster's own tab
    #: (`dedupe,keep_verifying`): acknowledged posts of a killed client, stored but never
    #: cached. The model's verdict on that design with `tab_crash` (Converges fails), not a
    #: broken promise of the implementation; reported apart from `lost`.
    orphaned: int = 0
    #: refused requests (4xx) that wrote anyway: a violation whenever it is not 0
    refused_written: int = 0
    #: heals the honest clients sent, and the ids they gave up healing (the worker answered 404:
    #: not stored, or "outside the cache's window"; `Client.give_up_hopeless`)
    heals: int = 0
    heals_given_up: int = 0
    #: other broken promises, one sentence each (writes by refused requests, orphans, ...)
    violations: list[str] = field(default_factory=list)
    #: remarks that are not failures
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Nothing acknowledged lost and no promise broken."""
        return self.lost == 0 and not self.violations

    def to_dict(self) -> dict:
        """JSON-able, with `ok`."""
        return {**asdict(self), "ok": self.ok}


@dataclass
class ChaosReport:
    """The configuration and every scenario's result."""

    config: dict
    scenarios: list[ScenarioResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every scenario passed."""
        return all(s.ok for s in self.scenarios)

    def to_dict(self) -> dict:
        """`{"config", "ok", "scenarios": [...]}`."""
        return {"config": self.config, "ok": self.ok, "scenarios": [s.to_dict() for s in self.scenarios]}


# -- the deployment under test -------------------------------------------------------------------


def _deployment(config: ChaosConfig, workdir: str, *, cap: int) -> Deployment:
    """A served worker (and its redis-server) that scenarios can kill, pause and restart."""
    return Deployment(
        ServeConfig(
            backend=config.backend,
            variants=config.variants,
            workers=config.workers,
            db=os.path.join(workdir, "kv.sqlite3"),
            redis_namespace=f"kvheal-chaos-{uuid.uuid4().hex[:8]}:",
            cap=cap,
            sweep_interval=config.sweep_interval,
            allow_volatile=True,
            redis_timeout=2.0,
            secret=os.urandom(32).hex(),
        ),
        own_redis=config.backend == "redis",
        redis_persistence=config.redis_persistence,
        redis_dir=os.path.join(workdir, "redis"),
    )


# -- the load ------------------------------------------------------------------------------------


@dataclass
class Post:
    id: str
    text: str
    timestamp: int
    client: int
    outcome: str = "pending"  # acked | refused | unknown
    status: int | None = None
    retried: bool = False
    error: str = ""


class Load:
    """Honest clients posting unique messages until told to stop; they heal what they posted."""

    def __init__(self, config: ChaosConfig, base_url: str, tag: str, rng: random.Random) -> None:
        self.config = config
        self.base_url = base_url
        self.tag = tag
        self.rng = rng
        self.posts: list[Post] = []
        self.clients = [self._client(c) for c in range(config.clients)]
        self.stop = asyncio.Event()
        #: a client in this set dies right after its next acknowledgement
        self.doomed: set[int] = set()
        self.killed: set[int] = set()

    def _client(self, c: int) -> Client:
        return tab_client(
            self.base_url,
            f"{self.tag}{c}",
            MemoryPendingStore(),
            variants=self.config.variants,
            schedule=PollSchedule(0.05, 0.05, 0.3),
            timeout=self.config.client_timeout,
        )

    async def _one(self, c: int, k: int) -> None:
        client = self.clients[c]
        post = Post(
            f"{self.tag}-c{c}-m{k}", f"message {k} of client {c} ({self.tag})", int(time.time() * 1000), c
        )
        self.posts.append(post)
        await self.send(client, post)
        if post.outcome == "acked" and c in self.doomed:
            client.crash()  # killed right after its acknowledgement: it never polls nor heals
            self.killed.add(c)

    async def send(self, client: Client, post: Post) -> None:
        try:
            await client.post(post.text, id=post.id, timestamp=post.timestamp)
            post.outcome, post.status = "acked", 200
        except ClientError as exc:
            post.status = exc.status
            post.error = str(exc)[:200]
            if exc.status is not None and 400 <= exc.status < 500:
                post.outcome = "refused"
            else:
                post.outcome = "unknown"  # no answer, or a 5xx: the key may or may not be written
        except Exception:  # noqa: BLE001 - anything else the client hit: the outcome is unknown
            post.outcome = "unknown"

    async def run(self) -> None:
        async def client_loop(c: int) -> None:
            k = 0
            await asyncio.sleep(self.rng.uniform(0, self.config.think_s * 4))
            while not self.stop.is_set() and self.clients[c].alive:
                await self._one(c, k)
                k += 1
                backoff = 0.2 if self.posts and self.posts[-1].outcome == "unknown" else 0
                await asyncio.sleep(backoff + self.rng.uniform(0, 2 * self.config.think_s))

        await asyncio.gather(*(client_loop(c) for c in range(self.config.clients)))

    async def retry_unknown(self, rounds: int = 3) -> None:
        """Retry, idempotently, every post whose outcome the client did not learn."""
        for _ in range(rounds):
            pending = [p for p in self.posts if p.outcome == "unknown" and self.clients[p.client].alive]
            if not pending:
                return

            async def again(post: Post) -> None:
                await self.send(self.clients[post.client], post)
                if post.outcome == "acked":
                    post.retried = True

            await asyncio.gather(*(again(p) for p in pending))
            if any(p.outcome == "unknown" for p in pending):
                await asyncio.sleep(0.5)

    async def heal(self, missing: Callable[[], Awaitable[int]]) -> int:
        """Poll rounds of every live client until `missing()` is 0, nothing changes for 10 rounds,
        or the round budget is spent; the rounds used."""
        last, still = None, 0
        for rounds in range(self.config.heal_rounds + 1):
            now = await missing()
            if now == 0:
                return rounds
            still = still + 1 if now == last else 0
            last = now
            if still >= 10:
                return rounds  # ten rounds without progress: the rest is lost for good
            live = [c for c in self.clients if c.alive]

            async def poll(client: Client) -> None:
                # Tabs poll on their own clocks, not in lockstep: each at a random moment of the round.
                await asyncio.sleep(self.rng.uniform(0, self.config.heal_pause_s))
                try:
                    await client.poll_once()
                    await client.wait_heals()
                except (ClientError, httpx2.HTTPError):
                    pass

            await asyncio.gather(*(poll(c) for c in live))
        return self.config.heal_rounds

    async def aclose(self) -> None:
        for client in self.clients:
            try:
                await asyncio.wait_for(client.aclose(), 5)
            except Exception:  # noqa: BLE001
                pass


# -- checking ------------------------------------------------------------------------------------


async def _read_state(kv: KV, ids: list[str]) -> tuple[dict[str, dict | None], list[dict]]:
    stored: dict[str, dict | None] = {}
    for i in range(0, len(ids), 64):
        chunk = ids[i : i + 64]
        values = await asyncio.gather(*(kv.get(comment_key(mid)) for mid in chunk))
        for mid, raw in zip(chunk, values):
            stored[mid] = json.loads(raw) if raw is not None else None
    return stored, decode_cache(await kv.get(CACHE_KEY))


def survives_tab_crash(variants) -> bool:
    """Whether the design converges even when a tab dies right after its acknowledgement
    (`kvheal check --variant D,tab_crash`: Converges holds for atomic_cache,dedupe and
    dedupe,sweeper, where the post or the sweeper caches the message; it fails for
    dedupe,keep_verifying, where only the poster's tab heals it)."""
    variants = frozenset(variants)
    return any(d <= variants for d in ({"atomic_cache", "dedupe"}, {"dedupe", "sweeper"}))


async def _check_load(
    result: ScenarioResult, load: Load, kv: KV, *, converging: bool, cap: int | None = None
) -> None:
    posts = load.posts
    stored, cache = await _read_state(kv, [p.id for p in posts])
    cached = {entry["id"] for entry in cache}
    result.tried += len(posts)
    result.acked += sum(p.outcome == "acked" for p in posts)
    result.failed += sum(p.outcome == "refused" for p in posts)
    result.unknown += sum(p.outcome == "unknown" for p in posts)
    result.retried += sum(p.retried for p in posts)
    result.unknown_stored += sum(p.outcome == "unknown" and stored[p.id] is not None for p in posts)
    errors = sorted(
        {p.error.split(":")[0] + ":" + p.error.split(":")[-1][:60] for p in posts if p.outcome == "unknown"}
    )
    if errors:
        result.notes.append(f"unknown outcomes: {'; '.join(errors[:3])}")
    not_stored = [p.id for p in posts if p.outcome == "acked" and stored[p.id] is None]
    not_cached = (
        [p.id for p in posts if p.outcome == "acked" and stored[p.id] is not None and p.id not in cached]
        if converging
        else []
    )
    if not_cached and cap is not None:
        stamps = {mid: stored[mid]["timestamp"] for mid in not_cached}
        evicted = evicted_ids(stamps, cache, cap)
        result.evicted += len(evicted)
        not_cached = [mid for mid in not_cached if mid not in evicted]
        if evicted:
            result.notes.append(f"{len(evicted)} acknowledged post(s) moved out of the full cache's window")
    if not_cached and load.killed and not survives_tab_crash(load.config.variants):
        client_of = {p.id: p.client for p in posts}
        orphaned = [mid for mid in not_cached if client_of[mid] in load.killed]
        result.orphaned += len(orphaned)
        not_cached = [mid for mid in not_cached if client_of[mid] not in load.killed]
        if orphaned:
            result.notes.append(
                f"{len(orphaned)} acknowledged post(s) of killed clients stored but never cached: "
                "only the poster's tab heals in this design (the model's verdict with tab_crash)"
            )
    result.lost += len(not_stored) + len(not_cached)
    if not_stored:
        result.notes.append(f"{len(not_stored)} acknowledged post(s) not in the store, e.g. {not_stored[0]}")
    if not_cached:
        result.notes.append(
            f"{len(not_cached)} acknowledged post(s) stored but never cached, e.g. {not_cached[0]}"
        )
    written = [p.id for p in posts if p.outcome == "refused" and stored[p.id] is not None]
    result.refused_written += len(written)
    if written:
        result.violations.append(f"{len(written)} refused post(s) were written, e.g. {written[0]}")
    statuses = sorted({p.status for p in posts if p.outcome == "refused"})
    if statuses:
        result.notes.append(f"refusals answered {', '.join(map(str, statuses))}")
    if load.killed:
        result.notes.append(f"{len(load.killed)} client(s) killed right after an acknowledgement")
    result.heals += sum(c.heals_sent for c in load.clients)
    given_up = Counter(why for c in load.clients for why in c.abandoned.values())
    result.heals_given_up += sum(given_up.values())
    if given_up:
        result.notes.append(
            "heals given up: " + ", ".join(f"{n} {why}" for why, n in sorted(given_up.items()))
        )
    dup = len(cache) - len(cached)
    if dup and "dedupe" in load.config.variants:
        result.violations.append(f"{dup} duplicate entr(ies) in the cache")


async def _honest_missing(
    load: Load, kv: KV, converging: bool, cap: int | None = None
) -> Callable[[], Awaitable[int]]:
    """How many acknowledged posts the heal rounds still wait for: not cached, not moved out of a
    full cache's window (`cap`), and not a killed client's where only the poster's tab heals."""
    # posts of killed clients in a design where only the poster's tab heals: nobody will
    orphans = (
        set()
        if survives_tab_crash(load.config.variants)
        else {p.id for p in load.posts if p.client in load.doomed}
    )

    async def missing() -> int:
        if not converging:
            return 0
        acked = {p.id: p.timestamp for p in load.posts if p.outcome == "acked"}
        try:
            cache = decode_cache(await kv.get(CACHE_KEY))
        except KVError:
            return len(acked)
        cached = {entry["id"] for entry in cache}
        missing = {mid: ts for mid, ts in acked.items() if mid not in cached and mid not in orphans}
        # moved out of a full cache's window by newer posts: no heal brings them back (the
        # client sends its own timestamp, which the store keeps: the same as the stored one)
        return len(missing) - (len(evicted_ids(missing, cache, cap)) if cap else 0)

    return missing


# -- scenarios -----------------------------------------------------------------------------------

Fault = Callable[["ScenarioContext"], Awaitable[None]]


@dataclass
class ScenarioContext:
    config: ChaosConfig
    deployment: Deployment
    result: ScenarioResult
    load: Load
    rng: random.Random


async def _fault_none(ctx: ScenarioContext) -> None:
    return None


async def _fault_kill_worker(ctx: ScenarioContext) -> None:
    workers = ctx.deployment.server.worker_pids()
    if not workers:
        ctx.result.notes.append("one process: no worker to kill apart from the main one")
        return
    victim = ctx.rng.choice(workers)
    os.kill(victim, 9)
    ctx.result.notes.append(f"killed worker {victim} (uvicorn starts a new one)")


async def _fault_pause_worker(ctx: ScenarioContext) -> None:
    workers = ctx.deployment.server.worker_pids()
    if not workers:
        return
    victim = ctx.rng.choice(workers)
    os.kill(victim, 19)  # SIGSTOP
    await asyncio.sleep(ctx.config.pause_s)
    os.kill(victim, 18)  # SIGCONT
    ctx.result.notes.append(f"paused worker {victim} for {ctx.config.pause_s} s")


async def _fault_kill_main(ctx: ScenarioContext) -> None:
    server = ctx.deployment.server
    alive = await asyncio.to_thread(server.kill)
    if alive:
        ctx.result.violations.append(f"{len(alive)} worker process(es) outlived their killed main process")
    await asyncio.sleep(ctx.config.down_s)
    try:
        seconds = (
            ctx.deployment.restart_server()
        )  # on this thread: the child's parent-death signal is tied to it
        ctx.result.notes.append(
            f"killed the main process; its workers died with it; restarted on the same "
            f"port in {seconds:.2f} s"
        )
    except RuntimeError as exc:
        ctx.result.violations.append(f"restart on the same port failed: {str(exc).splitlines()[0][:200]}")


async def _fault_pause_main(ctx: ScenarioContext) -> None:
    pid = ctx.deployment.server.pid
    os.kill(pid, 19)
    await asyncio.sleep(ctx.config.pause_s)
    os.kill(pid, 18)
    ctx.result.notes.append(f"paused the main process (sweeper, supervisor) for {ctx.config.pause_s} s")


async def _fault_kill_redis(ctx: ScenarioContext) -> None:
    redis = ctx.deployment.redis
    redis.kill()
    await asyncio.sleep(ctx.config.down_s)
    redis.start()
    ctx.result.notes.append(
        f"kill -9 of redis-server ({ctx.config.redis_persistence}), restarted on its data"
    )


async def _fault_pause_redis(ctx: ScenarioContext) -> None:
    redis = ctx.deployment.redis
    redis.pause()
    await asyncio.sleep(ctx.config.pause_s)
    redis.resume()
    ctx.result.notes.append(f"paused redis-server for {ctx.config.pause_s} s")


async def _fault_kill_clients(ctx: ScenarioContext) -> None:
    n = max(1, ctx.config.clients // 4)
    ctx.load.doomed.update(ctx.rng.sample(range(ctx.config.clients), n))


_FAULTS: dict[str, Fault] = {
    "baseline": _fault_none,
    "kill-worker": _fault_kill_worker,
    "pause-worker": _fault_pause_worker,
    "kill-main": _fault_kill_main,
    "pause-main": _fault_pause_main,
    "kill-redis": _fault_kill_redis,
    "pause-redis": _fault_pause_redis,
    "kill-clients": _fault_kill_clients,
}


async def _http(ctx: ScenarioContext) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        base_url=ctx.deployment.base_url,
        timeout=ctx.config.client_timeout,
        verify=shared_ssl_context(),
        limits=httpx2.Limits(max_connections=64),
    )


async def _honest_posts(http: httpx2.AsyncClient, tag: str, n: int, *, ts: int | None = None) -> list[dict]:
    async def one(i: int) -> dict | None:
        body = {"id": f"{tag}-{i}", "text": f"honest {i}", "timestamp": ts or int(time.time() * 1000)}
        r = await http.post("/api/comments", json=body)
        return {
            "body": body,
            "status": r.status_code,
            "token": r.json().get("healToken") if r.status_code == 200 else None,
        }

    # One after another: racing honest posts would lose cache entries in the designs without
    # atomic_cache, and nobody heals them here; these scenarios test the hostile side.
    return [await one(i) for i in range(n)]


async def _hostile_repost(ctx: ScenarioContext, kv: KV) -> None:
    r = ctx.result
    async with await _http(ctx) as http:
        honest = [h for h in await _honest_posts(http, "own", 20) if h["status"] == 200]
        r.tried += 20
        r.acked += len(honest)
        answers = await asyncio.gather(
            *(
                http.post(
                    "/api/comments",
                    json={
                        "id": h["body"]["id"],
                        "text": "overwritten by someone else",
                        "timestamp": h["body"]["timestamp"],
                    },
                )
                for h in honest
            )
        )
        r.tried += len(answers)
        r.failed += sum(400 <= a.status_code < 500 for a in answers)
        same = [a for a in answers if a.status_code == 200]
        tokens = {a.json().get("healToken") for a in same} & {h["token"] for h in honest}
        if same:
            r.violations.append(f"{len(same)} repost(s) of existing ids with another text answered 200")
        if tokens:
            r.violations.append(f"{len(tokens)} repost(s) got the original poster's heal token")
        r.notes.append(f"reposts answered {sorted({a.status_code for a in answers})}")
    stored, cache = await _read_state(kv, [h["body"]["id"] for h in honest])
    text = {e["id"]: e["text"] for e in cache}
    changed = [
        mid
        for mid, m in stored.items()
        if m is None
        or m.get("text") != next(h["body"]["text"] for h in honest if h["body"]["id"] == mid)
        or text.get(mid) not in (None, m.get("text"))
    ]
    r.lost += len(changed)
    refused = {h["body"]["id"] for h, a in zip(honest, answers) if 400 <= a.status_code < 500}
    r.refused_written += len(refused & set(changed))
    if refused & set(changed):
        r.violations.append(f"{len(refused & set(changed))} refused repost(s) changed the store")
    if changed:
        r.notes.append(f"{len(changed)} honest message(s) overwritten in the store, e.g. {changed[0]}")


async def _hostile_future(ctx: ScenarioContext, kv: KV) -> None:
    r = ctx.result
    cap = ctx.deployment.serve.cap
    async with await _http(ctx) as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    "/api/comments",
                    json={"id": f"future-{i}", "text": "from the far future", "timestamp": FAR_FUTURE - i},
                )
                for i in range(cap)
            )
        )
        r.tried += len(answers)
        r.failed += sum(400 <= a.status_code < 500 for a in answers)
        r.notes.append(f"{cap} posts dated {FAR_FUTURE}: answered {sorted({a.status_code for a in answers})}")
        refused_ids = [f"future-{i}" for i, a in enumerate(answers) if 400 <= a.status_code < 500]
        await asyncio.sleep(1.5)  # honest posts come later: any sane clock bound lets them through
        honest = [h for h in await _honest_posts(http, "later", 10) if h["status"] == 200]
        r.tried += 10
        r.acked += len(honest)
    stored, cache = await _read_state(kv, refused_ids)
    written = [mid for mid in refused_ids if stored[mid] is not None]
    r.refused_written += len(written)
    if written:
        r.violations.append(f"{len(written)} refused far-future post(s) were stored, e.g. {written[0]}")
    cached = {e["id"] for e in cache}
    pushed = [h["body"]["id"] for h in honest if h["body"]["id"] not in cached]
    r.lost += len(pushed)
    if pushed:
        r.notes.append(
            f"{len(pushed)} honest post(s) made after the far-future ones are not in the cache "
            "(the server lets clients date their posts)"
        )
    future = max((e["timestamp"] for e in cache), default=0)
    if future > int(time.time() * 1000) + 3_600_000:
        r.violations.append(f"the cache holds a message dated {future} (more than an hour ahead)")


async def _hostile_heal_replay(ctx: ScenarioContext, kv: KV) -> None:
    r = ctx.result
    async with await _http(ctx) as http:
        honest = [h for h in await _honest_posts(http, "replayed", 3) if h["status"] == 200]
        r.tried += 3
        r.acked += len(honest)
        if not honest:
            r.violations.append("the honest posts of the scenario were refused")
            return
        victim = honest[0]
        await http.post(
            "/api/admin/add-to-cache", json={"messageId": victim["body"]["id"], "healToken": victim["token"]}
        )
        _, before = await kv.get_versioned(CACHE_KEY)
        answers = await asyncio.gather(
            *(
                http.post(
                    "/api/admin/add-to-cache",
                    json={"messageId": victim["body"]["id"], "healToken": victim["token"]},
                )
                for _ in range(200)
            )
        )
        _, after = await kv.get_versioned(CACHE_KEY)
    r.tried += len(answers)
    r.failed += sum(a.status_code != 200 for a in answers)
    added = sum(a.status_code == 200 and a.json().get("added") is True for a in answers)
    r.notes.append(
        f"200 replays of one heal token: answered {sorted({a.status_code for a in answers})}, "
        f"{after - before} cache write(s)"
    )
    if after != before and "dedupe" in ctx.config.variants:
        refused = sum(400 <= a.status_code < 500 for a in answers)
        if refused == len(answers):
            r.refused_written += after - before
        r.violations.append(f"replayed heals of a cached message wrote the cache {after - before} time(s)")
    if added:
        r.violations.append(f"{added} replayed heal(s) of a cached message answered added: true")
    _, cache = await _read_state(kv, [])
    copies = sum(e["id"] == victim["body"]["id"] for e in cache)
    if copies > 1:
        r.violations.append(f"the cache holds {copies} copies of the replayed message")


async def _hostile_heal_flood(ctx: ScenarioContext, kv: KV) -> None:
    r = ctx.result
    async with await _http(ctx) as http:
        honest = [h for h in await _honest_posts(http, "flooded", 5) if h["status"] == 200]
        r.tried += 5
        r.acked += len(honest)
        _, before = await kv.get_versioned(CACHE_KEY)
        forged = [
            {
                "messageId": honest[i % len(honest)]["body"]["id"] if i % 2 and honest else f"ghost-{i}",
                "healToken": uuid.uuid4().hex,
            }
            for i in range(1000)
        ]
        answers = await asyncio.gather(
            *(http.post("/api/admin/add-to-cache", json=body) for body in forged), return_exceptions=True
        )
        _, after = await kv.get_versioned(CACHE_KEY)
        health = await http.get("/api/health")
        later = [h for h in await _honest_posts(http, "after-flood", 5) if h["status"] == 200]
        r.tried += 5
        r.acked += len(later)
    codes = [a.status_code for a in answers if not isinstance(a, BaseException)]
    r.tried += len(forged)
    r.failed += len(codes)
    r.notes.append(
        f"1,000 forged heals answered {sorted(set(codes))} ({len(answers) - len(codes)} without an answer)"
    )
    if after != before:
        r.refused_written += after - before
        r.violations.append(f"forged heals wrote the cache {after - before} time(s)")
    if any(c == 200 for c in codes):
        r.violations.append(f"{sum(c == 200 for c in codes)} forged heal(s) answered 200")
    if any(c >= 500 for c in codes):
        r.violations.append(f"{sum(c >= 500 for c in codes)} forged heal(s) answered 5xx")
    if health.status_code != 200:
        r.violations.append(f"/api/health answered {health.status_code} after the flood")
    _, cache = await _read_state(kv, [])
    cached = {e["id"] for e in cache}
    missing = [h["body"]["id"] for h in honest + later if h["body"]["id"] not in cached]
    r.lost += len(missing)


_HOSTILE = {
    "hostile-repost": _hostile_repost,
    "hostile-future": _hostile_future,
    "hostile-heal-replay": _hostile_heal_replay,
    "hostile-heal-flood": _hostile_heal_flood,
}

SCENARIOS = tuple(_FAULTS) + tuple(_HOSTILE)
DEFAULT_SCENARIOS = (
    "baseline",
    "kill-worker",
    "pause-worker",
    "kill-main",
    "pause-main",
    "kill-redis",
    "pause-redis",
    "kill-clients",
    "hostile-repost",
    "hostile-future",
    "hostile-heal-replay",
    "hostile-heal-flood",
)


def _applies(name: str, backend: str) -> bool:
    return backend == "redis" or not name.endswith("-redis")


# -- running -------------------------------------------------------------------------------------


async def _scenario(
    config: ChaosConfig, name: str, deployment: Deployment, rng: random.Random
) -> ScenarioResult:
    result = ScenarioResult(name=name)
    converging = converging_design(config.variants)
    kv = deployment.admin_kv()
    try:
        if name in _HOSTILE:
            ctx = ScenarioContext(config, deployment, result, None, rng)  # type: ignore[arg-type]
            await _HOSTILE[name](ctx, kv)
            return result
        load = Load(config, deployment.base_url, "x" + name.replace("-", "")[:6], rng)
        ctx = ScenarioContext(config, deployment, result, load, rng)
        runner = asyncio.create_task(load.run())
        try:
            await asyncio.sleep(config.load_s / 3)
            await _FAULTS[name](ctx)
            remaining = config.load_s * 2 / 3 - (config.pause_s if "pause" in name else 0)
            await asyncio.sleep(max(0.2, remaining))
        finally:
            load.stop.set()
            await runner
        await load.retry_unknown()
        rounds = await load.heal(await _honest_missing(load, kv, converging, deployment.serve.cap))
        if converging:
            result.notes.append(f"healed in {rounds} poll round(s)")
        await _check_load(result, load, kv, converging=converging, cap=deployment.serve.cap)
        await load.aclose()
        return result
    finally:
        await kv.aclose()


def run_chaos(
    config: ChaosConfig, *, on_scenario: Callable[[ScenarioResult], None] | None = None
) -> ChaosReport:
    """Run every scenario of `config` on a fresh deployment each; returns the report."""
    if config.backend == "redis" and redis_server_binary() is None:
        raise ConfigError(
            "chaos on redis needs an installed redis-server (Debian: apt-get install redis-server)"
        )
    report = ChaosReport(
        config={
            **asdict(config),
            "variants": sorted(config.variants),
            "scenarios": list(config.scenarios),
            "converging": converging_design(config.variants),
        }
    )
    rng = random.Random(config.seed)
    with terminate_as_interrupt():
        for name in config.scenarios:
            workdir = tempfile.mkdtemp(prefix=f"kvheal-chaos-{name}-")
            cap = 1000 if name != "hostile-future" else 50
            deployment = _deployment(config, workdir, cap=cap)
            t0 = time.monotonic()
            try:
                deployment.start()
                result = asyncio.run(_scenario(config, name, deployment, rng))
            except (RuntimeError, KVError, OSError) as exc:
                result = ScenarioResult(
                    name=name, violations=[f"the scenario could not run: {str(exc).splitlines()[0][:300]}"]
                )
            finally:
                deployment.stop()
                shutil.rmtree(workdir, ignore_errors=True)
            result.seconds = round(time.monotonic() - t0, 2)
            report.scenarios.append(result)
            if on_scenario is not None:
                on_scenario(result)
    return report

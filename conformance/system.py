"""The system under test, in-process and under gates: the real worker app, T real clients, one
event loop that the test owns.

`InProcessSystem` starts actors (a post, a poll, a sweeper pass), releases their parked calls
one at a time, lets a tab crash, and takes snapshots for the abstraction function. After every
move it runs the loop until nothing can run (every task parked at a gate, waiting on a tab's
lock, or over), so each run is deterministic and Hypothesis can shrink it.

`perform(action)` carries out one SPEC §4 action on the real system: it starts the actor when
the action starts one (PostKey, PollRead, SweepList), then releases the actor's parked calls
until the abstraction changes. The as-built actions (SPEC §6) are the test's own moves: `Tick`
advances the injected clock one lag (`LAG_MS`, the deployed app's 6 s), `Reload(t)` reloads
tab t's page (its poll in flight is dropped), the failing puts (`PostWriteFail`,
`HealWriteFail`, `PostCacheFail`, `HealCacheFail`) arm the write-limit emulation
(`kvheal.impl.emulate.WriteLimitKV`, manual mode) to refuse the actor's next cache write and then
release it, and `PostFail(m)` fails the POST: before its cache update by an injected failure of
its next KV call (the worker answers 500), after it by losing the answer at the tab
(`Client.lose_answer`). That needs no table of which KV call is which step: a worker
with a different call pattern (an extra read, a retry) passes as long as each call is a model
step or changes nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import os
from collections.abc import Callable
from typing import Any

import httpx2

from kvheal.impl.bot import Bot
from kvheal.impl.client import Client, MemoryPendingStore
from kvheal.impl.config import QUEUE_VARIANTS, WORKER_VARIANTS, WorkerConfig
from kvheal.impl.emulate import RequestFailure, StaleReadKV, WriteLimitKV
from kvheal.impl.kv import KV, MemoryKV
from kvheal.impl.messages import CACHE_KEY, COMMENT_PREFIX, decode_message, message_type
from kvheal.impl.queue_api import STATUS_PREFIX, bot_token, encode_status, status_key
from kvheal.impl.worker import create_app
from kvheal.model import Action, Config
from kvheal.model.definition import HORIZON

from .abstraction import SystemSnapshot, abstract
from .abstraction import _cache_ids as _cache_real_ids
from .gates import ACTOR, BotTransport, Gate, GatedKV, GatedLock, GatedPendingStore, Gatekeeper, TabTransport

__all__ = ["InProcessSystem", "Blocked", "message_ids", "BASE_TIMESTAMP", "LAG_MS"]

#: timestamp of message 0 (ms); message m has BASE_TIMESTAMP + 1000·m (without the tab view;
#: with it, the injected clock starts here and messages are stamped with it)
BASE_TIMESTAMP = 1_761_868_800_000
#: one tick of the model's clock: the cursor's lag (the deployed app's 6 s)
LAG_MS = 6000

#: the model's actions that are the test's own moves, not an actor's parked call
_MOVES = frozenset({"Crash", "Tick", "Reload", "BotRestart"})
#: the reads served the value before the last write (SPEC §6 stale_reads)
_STALE = frozenset({"PostReadStale", "PollReadStale", "HealReadStale", "HealReadStale2", "BotVerifyStale"})
#: the bot's actions that start a claim (the rest of a claim is its parked put)
_CLAIM_STARTS = frozenset({"ClaimRead", "ClaimRead2", "ClaimCas", "ClaimCas2"})
#: the failing cache writes (SPEC §6 put_fails; the second heal's too, with fire_and_forget)
_PUT_FAILS = frozenset(
    {"PostWriteFail", "HealWriteFail", "PostCacheFail", "HealCacheFail", "HealWriteFail2", "HealCacheFail2"}
)
#: the bot's actions that are one model step but several real calls (SPEC §6 statuses): the
#: completion (put status:<id>, then the compare-and-swap patch of every copy) and the fixed
#: scan (list, reads, then the patch); `perform` releases every call of their actor
_WHOLE = frozenset({"Complete", "ScanPatch"})


class Blocked(Exception):
    """The implementation cannot take this action now (its actor has no call parked)."""


def message_ids(messages: int) -> tuple[str, ...]:
    """Real-looking ids (`<ms>-<hex>`, as the original's browsers made them) of messages 0..M-1."""
    return tuple(
        f"{BASE_TIMESTAMP + 1000 * m}-{hashlib.sha256(str(m).encode()).hexdigest()[:6]}"
        for m in range(messages)
    )


def _make_app(kv: KV, config: WorkerConfig):
    return create_app(kv, config)


def _make_client(tab: int, store, transport, keep_verifying: bool) -> Client:
    return Client(
        "http://worker", tab=str(tab), store=store, transport=transport, keep_verifying=keep_verifying
    )


async def _sweep_once(app) -> None:
    await app.state.sweeper.run_once()


class InProcessSystem:
    """The worker and its tabs for one model configuration, driven step by step.

    `backend` is "memory" or "sqlite" (a file at `path`); `wrap_kv(kv)` may wrap the backend
    (a planted fault); `make_app(kv, worker_config)` builds the ASGI worker; `make_client(tab,
    store, transport, keep_verifying)` a tab; `sweep_once(app)` runs one sweeper pass.
    """

    def __init__(
        self,
        config: Config,
        *,
        backend: str = "memory",
        path: str | None = None,
        wrap_kv: Callable[[KV], KV] | None = None,
        make_app: Callable[[KV, WorkerConfig], Any] | None = None,
        make_client: Callable[..., Client] | None = None,
        sweep_once: Callable[[Any], Any] | None = None,
    ) -> None:
        self.config = config
        self.T, self.M = config.tabs, config.messages
        self.variants = frozenset(config.variants)
        self.ids = message_ids(self.M)
        self.index = {real: m for m, real in enumerate(self.ids)}
        self.loop = asyncio.new_event_loop()
        self.keeper = Gatekeeper()
        if backend == "memory":
            self.backend: KV = MemoryKV()
        elif backend == "sqlite":
            from kvheal.impl.sqlite_kv import SqliteKV

            if path is None:
                raise ValueError("the sqlite backend needs a path")
            if os.path.exists(path):
                os.unlink(path)
            self.backend = SqliteKV(path)
        elif backend == "redis":
            from kvheal.impl.redis_kv import RedisKV

            if path is None:
                raise ValueError("the redis backend needs a URL")
            self.backend = self.loop.run_until_complete(self._redis(RedisKV, path))
        else:
            raise ValueError(f"unknown backend {backend!r} (known: memory, sqlite, redis)")
        inner = wrap_kv(self.backend) if wrap_kv else self.backend
        #: the injected clock (ms) of the tabs and the worker: the start of the current tick
        #: (`Tick` advances it by LAG_MS) plus an offset within the tick (see `now`)
        self.clock_ms = BASE_TIMESTAMP
        self.offset_ms = 0
        self.view_on = "tab_view" in self.variants
        #: the write-limit emulation, in manual mode: only the failures the test arms happen
        self.limit: WriteLimitKV | None = None
        #: the stale-read emulation, in manual mode: only the stale reads the test arms
        self.stale: StaleReadKV | None = None
        if "stale_reads" in self.variants:
            inner = self.stale = StaleReadKV(inner, mode="manual", keys=(CACHE_KEY,))
        if self.variants & {"put_fails", "post_fails"}:
            inner = self.limit = WriteLimitKV(inner, mode="manual", clock=self.now)
        #: the heals each PollDone sent: (tab, real id, ids of the cache its poll read)
        self.heal_requests: list[tuple[int, str, tuple[str, ...]]] = []
        self.kv = GatedKV(inner, self.keeper)
        self.worker_config = WorkerConfig(
            # repost (with post_fails, which it needs): the worker as deployed, which never
            # checks whether a posted id exists
            variants=self.variants & (WORKER_VARIANTS | QUEUE_VARIANTS | {"repost", "post_fails"}),
            cap=config.cap,
            secret=b"kvheal-conformance",
            max_cas_attempts=1_000_000,
            cas_backoff_ms=0.0,
            sweeper_in_app=False,
            # the model's behaviour: any cache update may go first, no-op writes are written
            cache_lock=False,
            skip_noop_cache_write=False,
            store_update=False,
            sweeper_skip_noop_write=False,
        )
        self.app = (make_app or _make_app)(self.kv, self.worker_config)
        worker = getattr(getattr(self.app, "state", None), "worker", None)
        if self.view_on and worker is not None:
            worker.clock = self.now
        self._sweep_once = sweep_once or _sweep_once
        shared = "shared_pending" in self.variants
        inners = [MemoryPendingStore()] if shared else [MemoryPendingStore() for _ in range(self.T)]
        self.inner_stores = inners
        self.clients: list[Client] = []
        browser: set[str] = set()  # one local store (IndexedDB) when the tabs share a browser
        asgi = httpx2.ASGITransport(app=self.app)
        for t in range(self.T):
            store = GatedPendingStore(inners[0 if shared else t], t, self.keeper)
            transport = TabTransport(asgi, t, self.keeper, self.index.get)
            client = self.loop.run_until_complete(
                self._client(
                    make_client or _make_client, t, store, transport, "keep_verifying" in self.variants
                )
            )
            if isinstance(getattr(client, "_lock", None), asyncio.Lock):
                client._lock = GatedLock(t, self.keeper)  # see GatedLock: the test picks the order
            if "fire_and_forget" in self.variants:
                client.heals_in_flight = 2  # the model's bound of heals of one id in flight
            if self.view_on:
                self._as_built_tab(client, t, browser)
            self.clients.append(client)
        #: the bot's two overlapping polls (`bot_scan`, `bot_claims`): every message is queued
        #: for it from the start (its status key says pending), as the original's were
        self.bots: list[Bot] = []
        if self.variants & {"bot_scan", "bot_claims", "statuses"}:
            if self.variants & {"bot_scan", "bot_claims"}:
                for real in self.ids[: config.tab_messages]:  # the bot's reply has no status
                    self.loop.run_until_complete(self.backend.put(status_key(real), encode_status("pending")))
            token = bot_token(self.worker_config.secret)
            self._bot_http = httpx2.AsyncClient(base_url="http://worker", transport=asgi)
            self.bots = [Bot("http://worker", token, name=f"bot{k}", http=self._bot_http) for k in range(2)]
        #: bot_replies (SPEC §6): the bot that posts its reply to message 0 (id `reply`) and
        #: verifies it; a restart replaces it with a new `Bot` (an empty list to verify), and
        #: `bot_gen` counts the restarts (its verification passes are actors ("verify", gen))
        self.reply = config.reply
        self.reply_bot: Bot | None = None
        self.bot_gen = 0
        if self.reply is not None:
            self._reply_http = httpx2.AsyncClient(
                base_url="http://worker", transport=BotTransport(asgi, self.keeper, self.index.get)
            )
            self.reply_bot = self._new_reply_bot()
        self.steps = 0

    def _new_reply_bot(self) -> Bot:
        r = self.reply
        clock = self.now if self.view_on else (lambda: self.timestamp(r))
        return Bot(
            "http://worker",
            bot_token(self.worker_config.secret),
            name="bot",
            http=self._reply_http,
            clock=clock,
            reply_id=lambda _now: self.ids[r],
        )

    def now(self) -> int:
        """The injected clock, in ms: the tick's start plus where in the tick the step falls.

        The model's tick stands for any time within the lag; the system picks, per step, a
        millisecond within the tick that keeps the real order the model's: message m is
        stamped at offset m (so the cache, ordered by timestamp, orders by id as the model's
        does, also when duplicates make it trim), a poll is processed at offset M (after every
        stamp of the tick, so its cursor passes none of them), and a page loads at offset 0
        (before every stamp of its tick, so it shows them). A tab's clock may thus step back
        by less than M ms within a tick (a poll, then a reload), which a model tick cannot see.
        """
        return self.clock_ms + self.offset_ms

    def tab_clock(self, t: int):
        """Tab t's clock: the system's, or with clock_skew one lag behind for the last tab:
        its tick is one less, floored at the first as the model's, and the offset within the
        tick is the system's (so its stamps still order by id within a tick, see `now`)."""
        if "clock_skew" in self.variants and t == self.T - 1:
            return lambda: max(BASE_TIMESTAMP, self.clock_ms - LAG_MS) + self.offset_ms
        return self.now

    def _as_built_tab(self, client: Client, t: int, browser: set[str]) -> None:
        client.clock = self.tab_clock(t)
        client.tab_view = True
        client.found_in_response = "found_in_response" in self.variants
        client.full_poll = "full_poll" in self.variants
        if "ai_channel" in self.variants:  # the last tab's page shows the AI channel
            client.channel = "ai" if t == self.T - 1 else "human"
        client.lag_ms = LAG_MS
        if "shared_pending" in self.variants:
            client.local_store = browser
        client.start_page()

    @staticmethod
    async def _redis(cls, url: str):
        import uuid

        return cls(url, namespace=f"kvheal-conformance-{uuid.uuid4().hex[:8]}:")

    @staticmethod
    async def _client(make, t, store, transport, keep_verifying: bool) -> Client:
        return make(t, store, transport, keep_verifying)

    # -- running the loop ------------------------------------------------------------------
    def run(self, coro) -> Any:
        """Run `coro` on the system's loop to completion."""
        return self.loop.run_until_complete(coro)

    async def _settle(self) -> None:
        # Quiescent: no callback ready to run (other than this task's own resumption) and no
        # released call still running on a backend thread. `_ready` is CPython's run queue; a
        # loop without it falls back to many idle turns.
        loop = asyncio.get_running_loop()
        idle = 0
        deadline = loop.time() + 30.0
        while loop.time() < deadline:
            await asyncio.sleep(0)
            ready = getattr(loop, "_ready", None)
            if self.keeper.executing:
                idle = 0
                await asyncio.sleep(0.0002)
                continue
            if ready is not None and len(ready) == 0:
                idle += 1
                if idle >= 2:
                    return
            elif ready is None:
                idle += 1
                if idle >= 200:
                    return
            else:
                idle = 0
        raise RuntimeError(
            "the system under test did not settle within 30 s (a released call never returned)"
        )

    def settle(self) -> None:
        """Run the loop until nothing can run."""
        self.run(self._settle())

    def _start(self, key: tuple, coro_fn: Callable[[], Any]) -> None:
        record = self.keeper.actor(key, fresh=True)
        ctx = contextvars.copy_context()
        ctx.run(ACTOR.set, key)
        task = self.loop.create_task(coro_fn(), context=ctx)
        record.task = task

        def done(_task: asyncio.Task) -> None:
            record.done = True
            if not _task.cancelled():
                _task.exception()  # retrieve: a refused post or poll is visible in the state

        task.add_done_callback(done)
        self.settle()

    # -- starting actors ---------------------------------------------------------------------
    def start_post(self, m: int) -> None:
        """Tab m mod T posts message m (its calls park at the gates); the bot posts its reply."""
        if m == self.reply:
            message = {"id": self.ids[0], "text": "hello"}
            self._start(("post", m), lambda: self.reply_bot.reply(message))
            return
        client = self.clients[m % self.T]
        text = "hello"  # the same text for every message, as in a real chat
        stamp = None if self.view_on else self.timestamp(m)  # with the tab view: the tab's clock
        self._start(("post", m), lambda: client.post(text, id=self.ids[m], timestamp=stamp))

    def start_repost(self, m: int) -> None:
        """Tab m mod T sends the failed POST of message m again (SPEC §6 repost)."""
        client = self.clients[m % self.T]
        self._start(("post", m), lambda: client.repost(self.ids[m]))

    def start_poll(self, t: int) -> None:
        """Tab t polls once (read, then check its pending list and heal)."""
        self._start(("poll", t), self.clients[t].poll_once)

    def start_sweep(self) -> None:
        """One sweeper pass."""
        self._start(("sweep",), lambda: self._sweep_once(self.app))

    def start_scan(self) -> None:
        """The bot's pending scan (GET /api/queue/pending)."""
        self._start(("scan",), self.bots[0].scan_once)

    def start_complete(self, m: int) -> None:
        """The bot completes message m (SPEC §6 statuses): PATCH /api/comments/<id> complete."""
        self._start(("complete", m), lambda: self.bots[0].set_status(self.ids[m], "complete"))

    def start_claim(self, k: int, m: int) -> None:
        """Bot poll k (0, or 1: the overlapping one) claims message m (POST /api/queue/claim)."""
        self._start(("claim", k, m), lambda: self.bots[k].claim(self.ids[m]))

    def start_verify(self) -> None:
        """The bot's verification pass (bot_replies): the whole cache read, a heal if its reply
        is missing (awaited)."""
        self._start(("verify", self.bot_gen), self.reply_bot.verify_once)

    def restart_bot(self) -> None:
        """The bot restarts: a new `Bot` with an empty list to verify. The old one's requests the
        worker is handling run on (nothing observes the old object again)."""
        self.bot_gen += 1
        self.reply_bot = self._new_reply_bot()
        self.settle()

    def timestamp(self, m: int) -> int:
        """The timestamp (ms) message m is posted with."""
        return BASE_TIMESTAMP + 1000 * m

    def describe(self, call) -> str:
        """A call as short text, real ids shown as model ids (``put comment:#1``)."""
        text = f"{call.op} {call.key}" if call.key else f"{call.op}"
        if call.target == "store":
            text = f"pending {call.op}"
        for m, real in enumerate(self.ids):
            text = text.replace(real, f"#{m}")
        return text

    def release(self, gate: Gate) -> None:
        """Let one parked call run, then settle."""
        self.keeper.release(gate)
        self.settle()
        self.steps += 1

    def crash(self, t: int) -> None:
        """Tab t dies: it never acts again. Its tasks that are past the worker's answer (or have
        not reached the worker) are cancelled; requests the worker is handling run on."""
        client = self.clients[t]
        client.crash()
        for key, record in list(self.keeper.actors.items()):
            if record.done or record.task is None:
                continue
            mine = (key[0] == "poll" and key[1] == t) or (
                key[0] == "post" and key[1] != self.reply and key[1] % self.T == t
            )
            if not mine:
                continue
            untouched = not record.kv_calls()
            if key[0] == "poll" or record.responded or untouched:
                record.task.cancel()
        self.settle()

    # -- what can move -----------------------------------------------------------------------
    def actor_of(self, action: Action) -> tuple | None:
        """The actor that carries out `action` (None for Crash)."""
        name, args = action.name, action.args
        if name in _MOVES:
            return None
        if name.startswith("Scan"):
            return ("scan",)
        if name == "Complete":
            return ("complete", args["m"])
        if name in ("BotVerify", "BotVerifyStale"):
            return ("verify", self.bot_gen)
        if name.startswith("Claim"):
            return ("claim", 1 if name.endswith("2") else 0, args["m"])
        if name.startswith("Post") and name != "PendingWrite":
            return ("post", args["m"])
        if name.startswith("Poll"):
            return ("poll", args["t"])
        if name.startswith("Heal"):
            m = args["m"]
            t = args.get("t", "bot" if m == self.reply else m % self.T)
            # the heals of (t, m) in flight, oldest first: the model's heal, then heal2
            # (fire_and_forget); an action of a slot with no heal in flight has no actor
            live = [
                key
                for key, record in self.keeper.actors.items()
                if key[:3] == ("heal", t, m) and not record.done
            ]
            k = 1 if name.endswith("2") else 0
            return sorted(live, key=lambda key: key[3])[k] if k < len(live) else ("heal", t, m, None)
        if name.startswith("Sweep"):
            return ("sweep",)
        if name == "PendingWrite":
            for gate in self.keeper.parked:
                if gate.call.target == "store" and gate.call.op == "write" and gate.call.tab == args["t"]:
                    return gate.actor
            return ("pending-write", args["t"])
        return None

    def _running(self, key: tuple) -> bool:
        record = self.keeper.actors.get(key)
        return record is not None and not record.done

    def can_perform(self, action: Action) -> bool:
        """Whether the implementation can take `action` now."""
        name = action.name
        if name in _MOVES:
            return True
        if name == "PostKey":
            return ("post", action.args["m"]) not in self.keeper.actors
        if name == "PostAgain":  # the owner, alive, saw the POST fail
            m = action.args["m"]
            if m == self.reply:  # the bot never resends a reply
                return False
            client = self.clients[self.config.owner(m)]
            return client.alive and self.ids[m] in client.failed_posts and not self._running(("post", m))
        if name in ("PollRead", "PollReadStale"):
            return not self._running(("poll", action.args["t"]))
        if name == "PostFail":  # a lost answer is dropped when the tab takes its list lock
            gate = self.keeper.parked_of(self.actor_of(action))
            if action.args["m"] == self.reply:
                return gate is not None
            lock = getattr(self.clients[self.config.owner(action.args["m"])], "_lock", None)
            if gate is not None and gate.call.target == "store" and lock is not None and lock.locked():
                return False
            return gate is not None
        if name == "SweepList":
            return not self._running(("sweep",))
        if name in ("BotVerify", "BotVerifyStale"):
            return self.reply_bot is not None and not self._running(("verify", self.bot_gen))
        if name in ("ScanRead", "ScanPatch"):
            return bool(self.bots) and not self._running(("scan",))
        if name == "Complete":
            return bool(self.bots) and not self._running(("complete", action.args["m"]))
        if name in _CLAIM_STARTS:  # each bot poll claims a message once
            return bool(self.bots) and self.actor_of(action) not in self.keeper.actors
        if name in _PUT_FAILS and self.write_is_noop(action):
            return False
        return self.keeper.parked_of(self.actor_of(action)) is not None

    def write_is_noop(self, action: Action) -> bool:
        """Whether the cache write a refused-put action (the write limit) would refuse is one the
        implementation does not make: with dedupe an atomic update that finds its id in the
        cache writes nothing, so there is no put to refuse. The model lets that write fail
        (its step only sets put_failed); the implementation cannot, which is sound: it has
        fewer behaviours (SPEC §6)."""
        if "dedupe" not in self.variants or action.name not in (
            "PostCacheFail",
            "HealCacheFail",
            "HealCacheFail2",
        ):
            return False
        return self.ids[action.args["m"]] in self.cache_ids()

    def tab_busy(self, t: int) -> bool:
        """Whether tab t is in the middle of a pending-list task (its one thread is busy)."""
        return any(
            g.call.target == "store" and g.call.op != "lock" and g.call.tab == t for g in self.keeper.parked
        )

    def kv_gates(self) -> list[Gate]:
        """Parked worker-side calls (KV), in a stable order: by actor, then arrival."""
        # (the as-built scan's reads of status keys are among them: the last one is the
        # model's ScanKeys, the others stutters; `perform` of ScanKeys releases them all)
        gates = [g for g in self.keeper.parked if g.call.target == "kv" and g.actor is not None]
        return sorted(gates, key=lambda g: (repr(g.actor), g.seq))

    # -- performing model actions ------------------------------------------------------------
    def perform(self, action: Action, *, max_calls: int = 64) -> list[str]:
        """Carry out `action` on the real system; returns the calls that ran, as text.

        Raises `Blocked` if the action's actor has nothing parked."""
        name, args = action.name, action.args
        if name == "Crash":
            self.crash(args["t"])
            return [f"tab {args['t']} crashes"]
        if name == "Tick":
            if (self.clock_ms - BASE_TIMESTAMP) // LAG_MS < HORIZON:  # the model's clock stops there
                self.clock_ms += LAG_MS
            self.offset_ms = 0
            if self.stale is not None:
                self.stale.refresh()  # every copy catches up within a tick
            self.settle()
            return [f"the clock ticks to +{(self.clock_ms - BASE_TIMESTAMP) // 1000} s"]
        if name == "Reload":
            self.offset_ms = 0
            self.reload(args["t"])
            return [f"tab {args['t']} reloads"]
        if name == "BotRestart":
            self.restart_bot()
            return ["the bot restarts (its list to verify is forgotten)"]
        if name == "PostFail" and args["m"] == self.reply:
            gate = self.keeper.parked_of(("post", args["m"]))
            if gate is not None and gate.call.target == "store":  # the answer is lost: no 200
                self.keeper.actors[("post", args["m"])].task.cancel()
                self.settle()
                return ["the answer to the bot's POST is lost"]
        if name == "PostKey":
            self.offset_ms = args["m"]
        elif name == "PollDone":
            self.offset_ms = self.M
        before = self.view()
        key = self.actor_of(action)
        if name in _PUT_FAILS or name == "PostFail":
            self._inject(name, key, args)
        if name in _STALE:
            if self.stale is None:
                raise Blocked(f"{name}: no stale-read emulation (stale_reads is off)")
            self.stale.serve_stale_next(CACHE_KEY)
        if name == "PollDone":
            self._note_heals(args["t"], lambda: self._perform(action, key, before, max_calls))
            return self._last_ran
        return self._perform(action, key, before, max_calls)

    def _inject(self, name: str, key: tuple, args: dict) -> None:
        gate = self.keeper.parked_of(key)
        if gate is None:
            raise Blocked(f"{name}: the implementation has no call of {key} parked")
        if name in _PUT_FAILS:
            if self.limit is None:
                raise Blocked(f"{name}: no write-limit emulation (put_fails is off)")
            self.limit.fail_next(CACHE_KEY)
        elif gate.call.target == "kv":  # before the cache update: the request fails (500)
            if self.limit is None:
                raise Blocked(f"{name}: no fault injection (post_fails is off)")
            self.limit.fail_next(gate.call.key, RequestFailure)
        else:  # the worker has answered: the answer is lost on its way to the tab
            self.clients[self.config.owner(args["m"])].lose_answer(self.ids[args["m"]])

    def _note_heals(self, t: int, run: Callable[[], list[str]]) -> None:
        record = self.keeper.actors.get(("poll", t))
        reads = [c for c in record.kv_calls() if c.op == "get" and c.key == CACHE_KEY] if record else []
        read = tuple(_cache_real_ids(reads[-1].value)) if reads else ()
        seen = len(self.keeper.history)
        self._last_ran = run()
        for rec in self.keeper.history[seen:]:
            if rec.key[0] == "heal" and rec.key[1] == t and rec.key[2] is not None:
                self.heal_requests.append((t, self.ids[rec.key[2]], read))

    def reload(self, t: int) -> None:
        """Tab t's page reloads: its poll in flight is dropped, then the client starts a new page."""
        record = self.keeper.actors.get(("poll", t))
        if record is not None and not record.done and record.task is not None:
            record.task.cancel()
        self.settle()
        self.clients[t].reload()
        self.settle()

    def _perform(self, action: Action, key: tuple | None, before: dict, max_calls: int) -> list[str]:
        name, args = action.name, action.args
        if name == "PostKey":
            self.start_post(args["m"])
        elif name == "PostAgain":
            self.start_repost(args["m"])
        elif name in ("PollRead", "PollReadStale"):
            self.start_poll(args["t"])
        elif name == "SweepList":
            self.start_sweep()
        elif name in ("ScanRead", "ScanPatch"):
            self.start_scan()
        elif name in ("BotVerify", "BotVerifyStale"):
            self.start_verify()
        elif name == "Complete":
            self.start_complete(args["m"])
        elif name in _CLAIM_STARTS:
            self.start_claim(key[1], key[2])
        ran: list[str] = []
        for _ in range(max_calls):
            gate = self.keeper.parked_of(key)
            if gate is None:
                break
            ran.append(self.describe(gate.call))
            self.release(gate)
            if name in _WHOLE:
                continue
            if self.view() != before and not self._mid_list_update(key):
                return ran
        if not ran:
            raise Blocked(f"{action}: the implementation has no call of {key} parked")
        return ran

    def _mid_list_update(self, key: tuple) -> bool:
        # Without shared_pending a tab's pending list is its own: reading it and writing it
        # back is one model step (PostAck, PollDone), so a parked write is not a place to stop.
        if "shared_pending" in self.variants:
            return False
        gate = self.keeper.parked_of(key)
        return gate is not None and gate.call.target == "store" and gate.call.op == "write"

    # -- observing ---------------------------------------------------------------------------
    async def _kv_contents(self) -> dict[str, str]:
        if isinstance(self.backend, MemoryKV):
            return self.backend.snapshot()
        keys = await self.backend.list(COMMENT_PREFIX)
        if self.bots:
            keys += await self.backend.list(STATUS_PREFIX)
        out = {}
        for key in keys + [CACHE_KEY]:
            value = await self.backend.get(key)
            if value is not None:
                out[key] = value
        return out

    def snapshot(self) -> SystemSnapshot:
        """What can be observed of the system now (call between steps)."""
        writes = tuple(
            (g.call.tab, g.call.value)
            for g in self.keeper.parked
            if g.call.target == "store" and g.call.op == "write"
        )
        return SystemSnapshot(
            tabs=self.T,
            ids=self.ids,
            variants=self.variants,
            kv=self.run(self._kv_contents()),
            actors=tuple(self.keeper.history),
            parked_writes=writes,
            stores=tuple(tuple(e.id for e in s.peek()) for s in self.inner_stores),
            healing=tuple(frozenset(c.healing) for c in self.clients),
            alive=tuple(c.alive for c in self.clients),
            clock_ms=self.clock_ms,
            cursors=tuple(getattr(c, "cursor", None) for c in self.clients),
            shown=tuple(frozenset(c.shown) for c in self.clients),
            page_snapshots=tuple(frozenset(getattr(c, "page_snapshot", ())) for c in self.clients),
            reloads=tuple(getattr(c, "reloads", 0) for c in self.clients),
            failed_posts=tuple(frozenset(getattr(c, "failed_posts", ())) for c in self.clients),
            verify=tuple(self.reply_bot.to_verify) if self.reply_bot is not None else (),
            puts_refused=self.limit.refused if self.limit is not None else 0,
            stale_prev=self.stale.previous(CACHE_KEY) if self.stale is not None else None,
        )

    def view(self) -> dict[str, Any]:
        """The abstraction of the current state (`KVHealModel.view`'s shape)."""
        return abstract(self.snapshot())

    def due(self, t: int, m: int) -> bool:
        """Whether tab t's page shows message m when a poll returns it: always, or on a page
        with a channel (ai_channel) when m's stored type is that channel's."""
        channel = getattr(self.clients[t], "channel", None)
        if channel is None:
            return True
        stored = decode_message(self.run(self._kv_contents()).get(COMMENT_PREFIX + self.ids[m]))
        return stored is not None and message_type(stored) == channel

    def cache_ids(self) -> list[str]:
        """The real ids in the real cache, in stored order."""
        return _cache_real_ids(self.run(self._kv_contents()).get(CACHE_KEY))

    # -- the end -----------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel every task, close clients and the backend, close the loop."""

        async def shutdown():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in self.clients:
                await client.aclose()
            if self.bots:
                await self._bot_http.aclose()
            if self.reply_bot is not None:
                await self._reply_http.aclose()
            await self.backend.aclose()

        try:
            self.loop.run_until_complete(shutdown())
        finally:
            self.loop.close()

"""The system under test, in-process and under gates: the real worker app, T real clients, one
event loop that the test owns.

`InProcessSystem` starts actors (a post, a poll, a sweeper pass), releases their parked calls
one at a time, lets a tab crash, and takes snapshots for the abstraction function. After every
move it runs the loop until nothing can run (every task parked at a gate, waiting on a tab's
lock, or over), so each run is deterministic and Hypothesis can shrink it.

`perform(action)` carries out one SPEC §4 action on the real system: it starts the actor when
the action starts one (PostKey, PollRead, SweepList), then releases the actor's parked calls
until the abstraction changes. That needs no table of which KV call is which step: a worker
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

from kvheal.impl.client import Client, MemoryPendingStore
from kvheal.impl.config import WORKER_VARIANTS, WorkerConfig
from kvheal.impl.kv import KV, MemoryKV
from kvheal.impl.messages import CACHE_KEY, COMMENT_PREFIX
from kvheal.impl.worker import create_app
from kvheal.model import Action, Config

from .abstraction import SystemSnapshot, abstract
from .gates import ACTOR, Gate, GatedKV, GatedLock, GatedPendingStore, Gatekeeper, TabTransport

__all__ = ["InProcessSystem", "Blocked", "message_ids", "BASE_TIMESTAMP"]

#: timestamp of message 0 (ms); message m has BASE_TIMESTAMP + 1000·m
BASE_TIMESTAMP = 1_761_868_800_000


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
        self.kv = GatedKV(inner, self.keeper)
        self.worker_config = WorkerConfig(
            variants=self.variants & WORKER_VARIANTS,
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
        self._sweep_once = sweep_once or _sweep_once
        shared = "shared_pending" in self.variants
        inners = [MemoryPendingStore()] if shared else [MemoryPendingStore() for _ in range(self.T)]
        self.inner_stores = inners
        self.clients: list[Client] = []
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
            self.clients.append(client)
        self.steps = 0

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
        """Tab m mod T posts message m (its calls park at the gates)."""
        client = self.clients[m % self.T]
        text = "hello"  # the same text for every message, as in a real chat
        self._start(("post", m), lambda: client.post(text, id=self.ids[m], timestamp=self.timestamp(m)))

    def start_poll(self, t: int) -> None:
        """Tab t polls once (read, then check its pending list and heal)."""
        self._start(("poll", t), self.clients[t].poll_once)

    def start_sweep(self) -> None:
        """One sweeper pass."""
        self._start(("sweep",), lambda: self._sweep_once(self.app))

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
            mine = (key[0] == "poll" and key[1] == t) or (key[0] == "post" and key[1] % self.T == t)
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
        if name.startswith("Post") and name != "PendingWrite":
            return ("post", args["m"])
        if name.startswith("Poll"):
            return ("poll", args["t"])
        if name.startswith("Heal"):
            m = args["m"]
            return ("heal", args.get("t", m % self.T), m)
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
        if name == "Crash":
            return True
        if name == "PostKey":
            return ("post", action.args["m"]) not in self.keeper.actors
        if name == "PollRead":
            return not self._running(("poll", action.args["t"]))
        if name == "SweepList":
            return not self._running(("sweep",))
        return self.keeper.parked_of(self.actor_of(action)) is not None

    def tab_busy(self, t: int) -> bool:
        """Whether tab t is in the middle of a pending-list task (its one thread is busy)."""
        return any(
            g.call.target == "store" and g.call.op != "lock" and g.call.tab == t for g in self.keeper.parked
        )

    def kv_gates(self) -> list[Gate]:
        """Parked worker-side calls (KV), in a stable order: by actor, then arrival."""
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
        before = self.view()
        if name == "PostKey":
            self.start_post(args["m"])
        elif name == "PollRead":
            self.start_poll(args["t"])
        elif name == "SweepList":
            self.start_sweep()
        key = self.actor_of(action)
        ran: list[str] = []
        for _ in range(max_calls):
            gate = self.keeper.parked_of(key)
            if gate is None:
                break
            ran.append(self.describe(gate.call))
            self.release(gate)
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
        )

    def view(self) -> dict[str, Any]:
        """The abstraction of the current state (`KVHealModel.view`'s shape)."""
        return abstract(self.snapshot())

    def cache_ids(self) -> list[str]:
        """The real ids in the real cache, in stored order."""
        from .abstraction import _cache_ids

        return _cache_ids(self.run(self._kv_contents()).get(CACHE_KEY))

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
            await self.backend.aclose()

        try:
            self.loop.run_until_complete(shutdown())
        finally:
            self.loop.close()

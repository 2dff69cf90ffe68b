"""A throwaway deployment of the real system on loopback, and the tabs that use it: what
`kvheal stress`, `kvheal chaos` and the benchmarks start.

`Deployment` serves a `ServeConfig` on a free loopback port: `kvheal serve` in a child process
(`ServerProcess`: its uvicorn workers, killed by the kernel if this process dies), or for the
memory backend uvicorn in a thread of this process (one process holds the dict). With
`own_redis` it starts a redis-server of its own (AOF everysec unless told otherwise; its data
is deleted when it stops) and serves over it. It keeps the port, so a fault can kill the
server and `restart_server` start it again where the clients expect it; `admin_kv` reads the
store directly, around the worker.

`tab_client` makes one tab: a `Client` in the design's client flags, with its own connection
pool, that gives up the heals no heal can bring back (`give_up_hopeless`): an id the worker
answers 404 (the store lost the message) or "outside the cache's window" (older than a full
cache) is not healed again, and leaves the pending list at the next write-back, instead of
costing a heal on every poll for ever.

`terminate_as_interrupt` turns SIGTERM into the KeyboardInterrupt of a Ctrl-C while a
deployment runs, so `finally` blocks stop its children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import replace

import httpx2

from .client import Client, PendingStore, PollSchedule
from .kv import KV
from .redis_server import RedisServer, free_port
from .server import ServeConfig, ServerProcess, UvicornThread, build_kv, preflight

__all__ = ["Deployment", "tab_client", "shared_ssl_context", "terminate_as_interrupt"]


class Deployment:
    """A served worker on a free loopback port, with the redis-server it brings (`own_redis`).

    `start()` returns the base URL; `stop()` stops everything (also as a context manager).
    `warnings` holds what `preflight` found (nothing is bound before `start`).
    """

    def __init__(
        self,
        serve: ServeConfig,
        *,
        own_redis: bool = False,
        redis_persistence: str = "aof",
        redis_dir: str | None = None,
    ) -> None:
        # Bad paths and an unreachable Redis are found before anything starts (ConfigError).
        self.warnings = preflight(replace(serve, backend="sqlite") if own_redis else serve, bind=False)
        self.redis: RedisServer | None = None
        if own_redis:
            if redis_dir is not None:
                os.makedirs(redis_dir, exist_ok=True)
            self.redis = RedisServer(persistence=redis_persistence, data_dir=redis_dir)
            serve = replace(serve, redis_url=self.redis.url)
        if serve.port in (0, ServeConfig.port):
            serve = replace(serve, port=free_port())  # chosen once: a restart takes the same port
        self.serve = serve.with_secret()
        self.server: ServerProcess | UvicornThread | None = None
        self._memory_kv: KV | None = None

    @property
    def base_url(self) -> str:
        """The server's http:// address."""
        return f"http://{self.serve.host}:{self.serve.port}"

    def start(self) -> str:
        """Start redis-server (if its own), then the server; returns the base URL once it answers."""
        if self.redis is not None:
            self.redis.start()
        self._start_server()
        return self.base_url

    def _start_server(self, timeout: float = 30.0) -> None:
        if self.serve.backend == "memory":
            from .worker import create_app

            self._memory_kv = build_kv(self.serve)
            app = create_app(self._memory_kv, self.serve.worker_config(sweeper_in_app=True))
            self.server = UvicornThread(
                app, host=self.serve.host, port=self.serve.port, header_timeout=self.serve.header_timeout
            )
            self.server.start(timeout)
        else:
            self.server = ServerProcess(self.serve)
            self.server.start(timeout)

    def restart_server(self) -> float:
        """Start the served worker again on the same port (after a kill); seconds it took to answer."""
        t0 = time.monotonic()
        self._start_server(timeout=20)
        return time.monotonic() - t0

    def admin_kv(self) -> KV:
        """A KV on the deployment's store, past the worker (close it with `aclose`); for the
        memory backend, the app's own KV."""
        if self._memory_kv is not None:
            return self._memory_kv
        return build_kv(self.serve, op_log=False)

    def stop(self) -> None:
        """Stop the server and the redis-server it brought."""
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            if self.redis is not None:
                self.redis.stop()

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()  # the redis-server may be up although the server failed to start
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def tab_client(
    base_url: str,
    tab,
    store: PendingStore,
    *,
    variants,
    schedule: PollSchedule,
    timeout: float,
    max_connections: int | None = None,
) -> Client:
    """One tab of stress or chaos: a `Client` with its own connection pool (at most
    `max_connections`; httpx's default when None), keep_verifying and fire_and_forget (no
    limit on heals of one id in flight) as the design says, and `give_up_hopeless`
    (`Client.abandoned` says which ids it gave up, and why)."""
    limits = (
        httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        if max_connections
        else None
    )
    return Client(
        base_url,
        tab=tab,
        store=store,
        keep_verifying="keep_verifying" in variants,
        heals_in_flight=None if "fire_and_forget" in variants else 1,
        schedule=schedule,
        timeout=timeout,
        limits=limits,
        verify=shared_ssl_context(),
        give_up_hopeless=True,
    )


_SSL_CONTEXT = None


def shared_ssl_context():
    """One SSL context for every client: httpx builds one per client otherwise, and loading the
    CA bundle costs ~65 ms each (17 s for 256 tabs, before anything is posted)."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        import ssl

        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


@contextlib.contextmanager
def terminate_as_interrupt():
    """While inside, SIGTERM raises KeyboardInterrupt (as SIGINT does), so `finally` blocks stop
    the children; outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

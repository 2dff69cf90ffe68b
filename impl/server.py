"""Running the worker: backends by name, uvicorn in a thread or in worker processes.

`ServeConfig` is everything `kvheal serve` needs, the worker's limits and HTTP options included
(`WORKER_OPTIONS`); it travels to uvicorn's worker processes as JSON in the
`KVHEAL_SERVE_CONFIG` environment variable, and `app_from_env` (a uvicorn app factory) rebuilds
the app in each process with its own KV connection. With several processes
the sweeper runs once, in the supervising process, not once per worker.

`UvicornThread` serves an app object in a background thread on a free loopback port (tests);
`ServerProcess` runs `serve` in a child process and stops it (stress, bench, chaos).

Processes. The uvicorn worker processes and the sweeper die with the main process: each worker
asks the kernel for SIGTERM when its parent dies (`procs.die_with_parent`, PR_SET_PDEATHSIG plus
a getppid watch), so a kill -9 of the main process leaves no worker serving and no orphan
holding the port (uvicorn binds with SO_REUSEADDR, so a restart on the same port works at once).
The sweeper is a thread of the main process, supervised: a pass that fails is retried at the
next interval, and a sweeper loop that dies is restarted after a second.

`preflight(config)` finds what would make serving fail, before anything starts: a port out of
range or taken, a `--db`/`--op-log` in a missing folder, an unreachable Redis, and a Redis
without AOF (refused unless `allow_volatile`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, h11

from .config import ConfigError, WorkerConfig, parse_variants
from .kv import KV, JsonlOpLog, KVError, LoggedKV, MemoryKV, StaleReadKV
from .procs import (
    PARENT_PID_ENV,
    PipeDrain,
    check_parent_dir,
    check_port,
    child_pids_of,
    child_preexec,
    die_with_parent,
)
from .redis_server import free_port
from .sqlite_kv import DEFAULT_SQLITE_PATH, SYNC_MODES, SqliteKV
from .worker import Sweeper, create_app

__all__ = [
    "BACKENDS",
    "ServeConfig",
    "build_kv",
    "build_app",
    "app_from_env",
    "serve",
    "preflight",
    "UvicornThread",
    "ServerProcess",
    "HeaderTimeoutProtocol",
    "ENV_CONFIG",
    "WORKER_OPTIONS",
    "child_pids",
]

log = logging.getLogger("kvheal.serve")

BACKENDS = ("sqlite", "redis", "memory")
ENV_CONFIG = "KVHEAL_SERVE_CONFIG"
#: seconds a client may take to send a request's headers (`HeaderTimeoutProtocol`)
DEFAULT_HEADER_TIMEOUT = 10.0
#: the `WorkerConfig` fields a `ServeConfig` carries (same names, same defaults) to every worker
WORKER_OPTIONS = (
    "max_future_ms",
    "post_rate",
    "post_burst",
    "heal_rate",
    "heal_burst",
    "cors_origins",
    "allowed_hosts",
    "body_timeout",
)


@dataclass(frozen=True)
class ServeConfig:
    """A served worker: backend and where its data is, design flags, processes, address."""

    backend: str = "sqlite"
    variants: frozenset[str] = frozenset()
    workers: int = 1
    host: str = "127.0.0.1"
    port: int = 8787
    db: str = DEFAULT_SQLITE_PATH
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_namespace: str = "kvheal:"
    cap: int = 200
    #: hex; empty means: SQLite keeps one in `<db>.secret`, other backends draw a fresh one
    secret: str = field(default="", repr=False)
    sweep_interval: float = 5.0
    #: emulate a Workers KV location per process: reads may be this many ms stale (0 = off)
    stale_ms: float = 0.0
    #: append every KV call to this JSONL file (empty = off)
    op_log: str = ""
    log_level: str = "warning"
    #: SQLite's `synchronous` (FULL: an acknowledged post survives power loss; NORMAL: process crash)
    sqlite_sync: str = "FULL"
    #: serve a Redis without AOF (acknowledged posts are lost when redis-server dies)
    allow_volatile: bool = False
    #: seconds a Redis call may take (socket timeouts); connections per process (the pool waits)
    redis_timeout: float = 5.0
    redis_max_connections: int = 64
    # What the worker refuses and limits: `WorkerConfig`'s fields of the same names and defaults
    # (WORKER_OPTIONS). `kvheal serve`'s own defaults turn the rate limits on.
    max_future_ms: int | None = WorkerConfig.max_future_ms
    post_rate: float = WorkerConfig.post_rate
    post_burst: int = WorkerConfig.post_burst
    heal_rate: float = WorkerConfig.heal_rate
    heal_burst: int = WorkerConfig.heal_burst
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    body_timeout: float = WorkerConfig.body_timeout
    #: seconds a request's headers may take to arrive (then 408 and the connection is closed)
    header_timeout: float = DEFAULT_HEADER_TIMEOUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", parse_variants(self.variants))
        for name in ("cors_origins", "allowed_hosts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        # the worker's own checks, here, before any process starts
        WorkerConfig(secret=b"-", **self.worker_options())
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r} (known: {', '.join(BACKENDS)})")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.backend == "memory" and self.workers > 1:
            raise ConfigError("the memory backend lives in one process: use --workers 1, or sqlite/redis")
        if self.cap < 1:
            raise ConfigError(f"--cap must be at least 1, got {self.cap}")
        if self.sqlite_sync.upper() not in SYNC_MODES:
            raise ConfigError(
                f"--sqlite-sync must be one of {', '.join(m.lower() for m in SYNC_MODES)}, "
                f"got {self.sqlite_sync!r}"
            )
        if self.header_timeout <= 0:
            raise ConfigError(f"--header-timeout must be positive, got {self.header_timeout}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 1 and 65535, got {self.port}")

    def to_json(self) -> str:
        """This configuration as JSON (for the environment of worker processes)."""
        data = asdict(self)
        data["variants"] = sorted(self.variants)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """The configuration `to_json` wrote."""
        data = json.loads(text)
        data["variants"] = frozenset(data["variants"])
        return cls(**data)

    def with_secret(self) -> ServeConfig:
        """This configuration with a definite secret, shared by all its worker processes."""
        if self.secret:
            return self
        if self.backend == "sqlite":
            return replace(self, secret=_sqlite_secret(self.db))
        return replace(self, secret=secrets.token_hex(32))

    def worker_options(self) -> dict:
        """The `WORKER_OPTIONS` fields of this configuration, by name."""
        return {name: getattr(self, name) for name in WORKER_OPTIONS}

    def worker_config(self, *, sweeper_in_app: bool) -> WorkerConfig:
        """The `WorkerConfig` of each worker process."""
        return WorkerConfig(
            variants=self.variants,
            cap=self.cap,
            secret=bytes.fromhex(self.secret),
            sweep_interval=self.sweep_interval,
            sweeper_in_app=sweeper_in_app,
            **self.worker_options(),
        )


def _sqlite_secret(db: str) -> str:
    # Heal tokens must outlive a restart, like the pending lists that hold them.
    path = db + ".secret"
    try:
        with open(path, encoding="ascii") as f:
            value = f.read().strip()
        bytes.fromhex(value)
        if value:
            return value
    except (FileNotFoundError, ValueError):
        pass
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value)
    return value


def build_kv(config: ServeConfig, *, op_log: bool = True) -> KV:
    """The KV a process of this configuration uses (its own connection), wrapped as configured."""
    if config.backend == "sqlite":
        kv: KV = SqliteKV(config.db, synchronous=config.sqlite_sync)
    elif config.backend == "redis":
        from .redis_kv import RedisKV

        kv = RedisKV(
            config.redis_url,
            namespace=config.redis_namespace,
            timeout=config.redis_timeout,
            max_connections=config.redis_max_connections,
        )
    else:
        kv = MemoryKV()
    if config.stale_ms > 0:
        kv = StaleReadKV(kv, config.stale_ms)
    if op_log and config.op_log:
        kv = LoggedKV(kv, JsonlOpLog(config.op_log))
    return kv


def build_app(config: ServeConfig, *, sweeper_in_app: bool):
    """The app of one worker process of this configuration."""
    config = config.with_secret()
    kv = build_kv(config)
    return create_app(kv, config.worker_config(sweeper_in_app=sweeper_in_app), close_kv=True)


def app_from_env():
    """uvicorn app factory for worker processes: the app of the configuration in KVHEAL_SERVE_CONFIG."""
    config = ServeConfig.from_json(os.environ[ENV_CONFIG])
    parent = os.environ.get(PARENT_PID_ENV)
    if parent:  # a worker process of `serve`: it must not outlive the main process
        die_with_parent(int(parent))
    return build_app(config, sweeper_in_app=config.workers == 1)


def _design(config: ServeConfig) -> dict:
    """The op log's design header."""
    return {
        "variants": sorted(config.variants),
        "cap": config.cap,
        "backend": config.backend,
        "workers": config.workers,
    }


async def check_redis(config: ServeConfig) -> dict:
    """Connect to the configured Redis; its persistence (see `redis_kv.redis_persistence`)."""
    from .redis_kv import RedisKV

    kv = RedisKV(
        config.redis_url, namespace=config.redis_namespace, timeout=2.0, max_connections=2, pool_timeout=2.0
    )
    try:
        await kv.ping()
        return await kv.persistence()
    finally:
        await kv.aclose()


def preflight(config: ServeConfig, *, bind: bool = True) -> list[str]:
    """Raise ConfigError (one line) for what would make serving fail; return warnings to show.

    Checks the port (range, and that it can be bound now), the folders of `--db` and
    `--op-log`, and for Redis that the server answers and persists with AOF (without AOF a
    ConfigError unless `allow_volatile`, then a warning).
    """
    warnings: list[str] = []
    check_port(config.port, config.host, allow_zero=True, bind=bind)
    if config.backend == "sqlite":
        check_parent_dir(config.db, "--db")
    if config.op_log:
        check_parent_dir(config.op_log, "--op-log")
    if config.backend == "redis":
        from .redis_kv import describe_persistence

        try:
            persistence = asyncio.run(check_redis(config))
        except KVError as exc:
            raise ConfigError(
                f"cannot reach Redis at {config.redis_url}: {str(exc).split(': ', 1)[-1]}"
            ) from None
        except ValueError as exc:  # a malformed URL
            raise ConfigError(f"--redis-url {config.redis_url!r}: {exc}") from None
        if not persistence["appendonly"]:
            what = describe_persistence(persistence)
            if not config.allow_volatile:
                raise ConfigError(
                    f"Redis at {config.redis_url} has {what}: acknowledged posts would be lost "
                    "when it restarts; enable AOF (appendonly yes) or pass --allow-volatile"
                )
            warnings.append(
                f"Redis at {config.redis_url} has {what}: acknowledged posts are lost when it "
                "restarts (--allow-volatile)"
            )
        elif persistence["appendfsync"] == "no":
            warnings.append(
                f"Redis at {config.redis_url} has AOF with appendfsync no: a power loss can lose "
                "an unbounded number of acknowledged posts (everysec or always are safer)"
            )
    return warnings


def _sweeper_thread(config: ServeConfig, stop: threading.Event) -> threading.Thread:
    async def loop():
        kv = build_kv(config)
        sweeper = Sweeper(kv, config.worker_config(sweeper_in_app=False))
        try:
            while not stop.is_set():
                try:
                    await sweeper.run_once()
                except Exception as exc:  # noqa: BLE001 - a failed pass is retried at the next interval
                    log.warning("sweeper pass failed: %s", exc)
                await asyncio.to_thread(stop.wait, config.sweep_interval)
        finally:
            await kv.aclose()

    def supervise():
        while not stop.is_set():
            try:
                asyncio.run(loop())
            except BaseException as exc:  # noqa: BLE001 - the supervisor restarts a dead sweeper
                log.error("sweeper died (%s: %s); restarting it in 1 s", type(exc).__name__, exc)
                stop.wait(1.0)

    thread = threading.Thread(target=supervise, name="kvheal-sweeper", daemon=True)
    thread.start()
    return thread


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a bound on the time a request's headers take to arrive.

    uvicorn times out only an idle keep-alive connection (`timeout_keep_alive`, armed after a
    response and cancelled by the first byte of the next request): a connection that never
    sends anything, or sends its headers a byte at a time (slowloris), is held for ever, and a
    few thousand of them hold every file descriptor of the process. Slow bodies are the app's
    to time out (`WorkerConfig.body_timeout`, 408); the headers come before the app is called,
    so their bound lives here: from the connection's opening, or from the first byte of a
    request on a kept-alive connection, the headers must be complete within `header_timeout`
    seconds (the uvicorn config's attribute), else the answer is a 408 and the connection is
    closed. kvheal always serves with it, so with h11: uvicorn's `auto` would take httptools
    when that is installed (it is not a dependency), whose protocol has no such bound either.
    """

    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout = getattr(config, "header_timeout", DEFAULT_HEADER_TIMEOUT)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the headers are in: a request is under way
            self._cancel_header_timer()
        elif self.conn.trailing_data[0]:  # part of the next request's headers has arrived
            self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None and self.header_timeout:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        body = f"request headers not received within {self.header_timeout:g} s".encode()
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()


class _UvicornConfig(uvicorn.Config):
    """uvicorn's config with kvheal's HTTP protocol (`HeaderTimeoutProtocol`, whose bound is
    `header_timeout`), and a listening socket that says it is TCP.

    uvicorn binds the shared socket of its worker processes with protocol 0; asyncio only sets
    TCP_NODELAY on connections of sockets whose protocol is IPPROTO_TCP, so every response
    waited ~40 ms for a delayed ACK (Nagle). Re-wrapping the descriptor lets the kernel report
    the real protocol.
    """

    def __init__(self, app, *, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **kwargs) -> None:
        super().__init__(app, http=HeaderTimeoutProtocol, **kwargs)
        self.header_timeout = header_timeout

    def bind_socket(self):
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(fileno=sock.detach())
        return sock


def serve(config: ServeConfig) -> None:
    """Serve the worker with uvicorn until interrupted (blocking)."""
    config = config.with_secret()
    if config.op_log:
        JsonlOpLog(config.op_log, design=_design(config)).close()
    if config.workers == 1:
        app = build_app(config, sweeper_in_app=True)
        uv_config = _UvicornConfig(
            app,
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            header_timeout=config.header_timeout,
        )
        uvicorn.Server(uv_config).run()
        return
    os.environ[ENV_CONFIG] = config.to_json()
    os.environ[PARENT_PID_ENV] = str(os.getpid())
    stop = threading.Event()
    sweeper = _sweeper_thread(config, stop) if "sweeper" in config.variants else None
    try:
        from uvicorn.supervisors import Multiprocess

        uv_config = _UvicornConfig(
            "kvheal.impl.server:app_from_env",
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers,
            log_level=config.log_level,
            header_timeout=config.header_timeout,
        )
        Multiprocess(uv_config, sockets=[uv_config.bind_socket()]).run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if sweeper is not None:
            sweeper.join(timeout=config.sweep_interval + 5)


class UvicornThread:
    """Serve an ASGI app with uvicorn in a background thread on a free loopback port.

    `with UvicornThread(app) as base_url: ...`; the app runs on the thread's own event loop, so
    a KV bound to a loop (Redis) must be used only by the app while it runs.
    """

    def __init__(
        self,
        app,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    ) -> None:
        self.config = _UvicornConfig(
            app, host=host, port=port, log_level=log_level, lifespan="on", header_timeout=header_timeout
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="kvheal-uvicorn", daemon=True)
        self.base_url = ""

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; returns the base URL once uvicorn accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.005)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    def stop(self) -> None:
        """Ask uvicorn to shut down (lifespan included) and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def child_pids(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc; empty elsewhere)."""
    return child_pids_of(pid)


class ServerProcess:
    """`serve(config)` in a child process on a free loopback port; stopped by `stop()`/context exit.

    The child is killed by the kernel if this process dies (PR_SET_PDEATHSIG), its workers die
    with it, and its stderr is drained on a thread (`stderr_tail()`), so warnings never fill
    the pipe. `kill()`, `pause()`/`resume()` and `worker_pids()` serve the fault suite.
    """

    def __init__(self, config: ServeConfig, *, echo_stderr: bool = False) -> None:
        if config.port == 0 or config.port == ServeConfig.port:
            config = replace(config, port=free_port())
        self.config = config.with_secret()
        self.process: subprocess.Popen | None = None
        self._stderr: PipeDrain | None = None
        self._echo = (lambda chunk: sys.stderr.buffer.write(chunk)) if echo_stderr else None

    @property
    def base_url(self) -> str:
        """The server's http:// address."""
        return f"http://{self.config.host}:{self.config.port}"

    @property
    def pid(self) -> int | None:
        """The main process's id while it runs."""
        return self.process.pid if self.process is not None else None

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes of the main process (empty with one process)."""
        if self.process is None:
            return []
        return [pid for pid in child_pids(self.process.pid) if b"spawn_main" in _cmdline(pid)]

    def stderr_tail(self) -> str:
        """The last 16 KB the server wrote to stderr."""
        return self._stderr.tail() if self._stderr is not None else ""

    def start(self, timeout: float = 30.0) -> str:
        """Start the process and wait until /api/health answers; returns the base URL."""
        import httpx2

        env = dict(os.environ, **{ENV_CONFIG: self.config.to_json()})
        env.pop(PARENT_PID_ENV, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kvheal.impl.server"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=child_preexec,
        )
        self._stderr = PipeDrain(self.process.stderr, echo=self._echo)
        deadline = time.monotonic() + timeout
        with httpx2.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = self._stderr.tail(2.0).strip()
                    self.process = None
                    raise RuntimeError(f"the served worker exited at start: {err[-2000:]}")
                try:
                    if http.get(self.base_url + "/api/health").status_code == 200:
                        if self.config.workers > 1 and len(self.worker_pids()) < self.config.workers:
                            raise httpx2.HTTPError("workers still starting")
                        return self.base_url
                except httpx2.HTTPError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the served worker did not answer on {self.base_url} within {timeout} s")

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def pause(self) -> None:
        """SIGSTOP the main process and its workers."""
        if self.process is not None and self.process.poll() is None:
            self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the main process and its workers."""
        if self.process is not None:
            self._signal_group(signal.SIGCONT)

    def kill(self, *, wait_workers: float = 15.0) -> list[int]:
        """kill -9 the main process only (as a crash would); wait until its workers are gone.

        Returns the worker pids still alive after `wait_workers` seconds (none, if they die with
        their parent as they should).
        """
        if self.process is None:
            return []
        workers = self.worker_pids()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        deadline = time.monotonic() + wait_workers
        alive = workers
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in alive if _alive(pid)]
        if self._stderr is not None:
            self._stderr.join(2.0)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None
        for pid in alive:  # do not leave them behind, whatever the check says
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return alive

    def stop(self) -> None:
        """Stop the server (SIGINT to its process group, then SIGKILL) and wait."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self._signal_group(signal.SIGCONT)
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        self._signal_group(signal.SIGKILL)  # a worker that outlived its main process
        if self._stderr is not None:
            self._stderr.join(2.0)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"
    except OSError:
        return False


if __name__ == "__main__":  # the child of ServerProcess
    serve(ServeConfig.from_json(os.environ[ENV_CONFIG]))

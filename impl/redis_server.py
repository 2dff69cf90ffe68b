"""Start and stop a throwaway `redis-server` on a free loopback port (tests, bench, stress, chaos).

Bound to 127.0.0.1 only, stopped (and waited for) on `stop()`, killed by the kernel if the
process that started it dies (`procs.child_preexec`). Its persistence is chosen by `persistence`:

    "aof"         --appendonly yes --appendfsync everysec (the default: what `serve` requires;
                  an acknowledged write survives kill -9 of redis-server, and at most ~1 s is
                  lost on a power loss or kernel crash)
    "aof-always"  --appendonly yes --appendfsync always (an fsync per write: survives power loss)
    "rdb"         snapshots only (Debian's default `save 3600 1 300 100 60 10000`)
    "none"        neither: a kill -9 loses everything

The data lives in `data_dir` (a temporary folder when not given, removed by `stop()`), so a
server killed with `kill()` and `start()`ed again on the same port recovers what it persisted.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .procs import PipeDrain, child_preexec

__all__ = ["RedisServer", "redis_server_binary", "free_port", "PERSISTENCE_MODES"]

PERSISTENCE_MODES = {
    "aof": ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
    "aof-always": ["--appendonly", "yes", "--appendfsync", "always", "--save", ""],
    "rdb": ["--appendonly", "no", "--save", "3600 1 300 100 60 10000"],
    "none": ["--appendonly", "no", "--save", ""],
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str | None:
    """The path of `redis-server`, or None if it is not installed."""
    return shutil.which("redis-server")


class RedisServer:
    """A `redis-server` child process; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        persistence: str = "aof",
        data_dir: str | None = None,
    ) -> None:
        self.binary = binary or redis_server_binary()
        if self.binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
        if persistence not in PERSISTENCE_MODES:
            raise ValueError(f"unknown persistence {persistence!r} (known: {', '.join(PERSISTENCE_MODES)})")
        self.port = port or free_port()
        self.persistence = persistence
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="kvheal-redis-")
        self.process: subprocess.Popen | None = None
        self._stderr: PipeDrain | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of database 0 on this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server (recovering what `data_dir` holds) and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.data_dir,
                *PERSISTENCE_MODES[self.persistence],
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=child_preexec,
        )
        self._stderr = PipeDrain(self.process.stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self._stderr.tail(1.0).strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port} within {timeout} s")

    def kill(self) -> None:
        """kill -9 the server (its data folder stays, for a `start()` that recovers it)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.resume()
                self.process.kill()
            self.process.wait()
            if self.process.stderr:
                self.process.stderr.close()
        self.process = None

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open and nothing answers."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the server."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server, wait for it to exit, and remove a data folder it made itself."""
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""Process hygiene for `serve`, `stress` and `chaos`: children die with their parent, pipes are
drained, and bad addresses or paths are found before any long work starts.

- `die_with_parent(parent_pid)`: on Linux, `prctl(PR_SET_PDEATHSIG, SIGTERM)` so the kernel
  signals this process when its parent dies (SIGKILL included); everywhere, a daemon thread that
  polls `getppid()` as a second line (and the only one off Linux). A process whose parent is
  already gone when it calls this exits at once.
- `child_preexec()`: a `preexec_fn` for `subprocess.Popen` doing the same for a child (the
  redis-server or the served worker of `stress`/`chaos`), so killing the runner with SIGKILL
  orphans nothing.
- `PipeDrain`: reads a child's stderr on a thread into a bounded tail, so the child never blocks
  on a full pipe (64 KB of warnings) and the tail is at hand for an error message.
- `check_port`, `check_parent_dir`, `check_new_file`: one-line `ConfigError`s for the CLI.
"""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import socket
import sys
import threading
import time

from .config import ConfigError

__all__ = [
    "die_with_parent",
    "child_preexec",
    "PipeDrain",
    "check_port",
    "check_parent_dir",
    "child_pids_of",
    "check_new_file",
    "PARENT_PID_ENV",
]

PARENT_PID_ENV = "KVHEAL_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def _prctl_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def child_preexec() -> None:
    """`preexec_fn` for Popen: the child gets SIGKILL when the process that started it dies."""
    _prctl_pdeathsig(signal.SIGKILL)


def die_with_parent(
    parent_pid: int | None = None, *, sig: int = signal.SIGTERM, poll_s: float = 0.5, grace_s: float = 10.0
) -> None:
    """Make this process exit when `parent_pid` (default: the current parent) dies.

    The kernel sends `sig` (SIGTERM: uvicorn shuts down gracefully); a watcher thread also polls
    the parent pid and sends `sig` itself, then SIGKILL after `grace_s` if still alive.
    """
    parent = parent_pid or os.getppid()
    _prctl_pdeathsig(sig)
    if os.getppid() != parent:  # the parent died before the prctl
        os.kill(os.getpid(), sig)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), sig)
        time.sleep(grace_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="kvheal-parent-watch", daemon=True).start()


class PipeDrain:
    """Read a pipe on a daemon thread until EOF, keeping its last `keep` bytes."""

    def __init__(self, pipe, *, keep: int = 16_384, echo=None) -> None:
        self._pipe = pipe
        self._keep = keep
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        self.total = 0
        self._echo = echo
        self._thread = threading.Thread(target=self._run, name="kvheal-drain", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                chunk = os.read(self._pipe.fileno(), 65536)
                if not chunk:
                    return
                if self._echo is not None:
                    self._echo(chunk)
                with self._lock:
                    self.total += len(chunk)
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    while self._size - len(self._chunks[0]) >= self._keep:
                        self._size -= len(self._chunks.popleft())
        except (OSError, ValueError):
            return

    def tail(self, timeout: float = 0.0) -> str:
        """What the pipe said last (at most `keep` bytes), after waiting up to `timeout` for EOF."""
        if timeout:
            self._thread.join(timeout)
        with self._lock:
            data = b"".join(self._chunks)[-self._keep :]
        return data.decode(errors="replace")

    def join(self, timeout: float | None = None) -> None:
        """Wait for EOF."""
        self._thread.join(timeout)


def check_port(port: int, host: str = "127.0.0.1", *, allow_zero: bool = False, bind: bool = True) -> None:
    """A one-line ConfigError unless `port` is a valid TCP port that `host` can bind now."""
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ConfigError(f"--port must be between {0 if allow_zero else 1} and 65535, got {port}")
    if not bind or port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve --host {host!r}: {exc.strerror or exc}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def check_parent_dir(path: str, option: str) -> None:
    """A one-line ConfigError unless the folder that would hold `path` exists and is writable."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: the folder {folder} is not writable")
    if os.path.isdir(path):
        raise ConfigError(f"{option} {path} is a folder")


def check_new_file(path: str, option: str, *, force: bool) -> None:
    """`check_parent_dir`, and refuse an existing file unless `force`."""
    check_parent_dir(path, option)
    if os.path.exists(path) and not force:
        raise ConfigError(f"{option} {path} exists; give --force to overwrite it")


def child_pids_of(pid: int, *, recursive: bool = False) -> list[int]:
    """The live children of `pid` (and their descendants with `recursive`), from Linux's /proc."""
    parents: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[0] != b"Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        if recursive:
            todo.extend(kids)
    return sorted(found)

"""The browser tab, as an async client: post, poll, check pending ids, heal.

The steps are separate methods so a test can drive them one at a time, and `run` loops over
them with the original's schedule:

    post(text)          POST /api/comments; on 200 records (id, heal token) in the pending store;
                        a post whose outcome was not learned (connection error, timeout, 503)
                        is sent again, the same body: the worker answers a repeat of a stored
                        message with its original acknowledgement, so a retry never duplicates
    poll_read()         GET /api/comments (page after page when the cache is larger
                        than one response); returns the cache snapshot it saw      PollRead
    poll_done(snap)     for each pending id: found -> leaves the list (unless
                        keep_verifying); missing -> a heal, at most one in flight   PollDone
                        per id per client (`heals_in_flight`; None with fire_and_forget)
    heal(id)            POST /api/admin/add-to-cache with the id's heal token; an id the worker
                        answers "not found" (404: the store lost it) or "outside the cache's
                        window" (older than a full cache) is given up with `give_up_hopeless`
                        (`abandoned`): never healed again, dropped at the next write-back

The as-built tab (SPEC §6), behind the registry's flags and off by default: with `tab_view`
the tab has a clock (`clock`, an injectable callable in ms, plus `skew_ms`), stamps its messages
with it, keeps a cursor (a poll shows only messages newer than it; after each poll it becomes the
clock minus `lag_ms`) and the set of messages its page has shown (`shown`: its own posts at once,
a poll's response when the poll is processed). With `found_in_response` a poll asks the worker
only for messages newer than the cursor (`GET /api/comments?after=<cursor>`) and a pending id
counts as found when it is in that response or in the page-load snapshot (`page_snapshot`: the
ids the browser's local store, `local_store`, held when the page loaded). `reload()` starts the
page over: the cursor restarts at the load time, the shown set is emptied, the snapshot is
retaken, the pending list (the store) survives, and an answer to a poll of the old page is
dropped. `full_poll` reads the whole cache without a cursor. A page on a channel (`channel`,
"human" or "ai", SPEC §6 `ai_channel`) shows only that channel's messages and with
`found_in_response` asks only for them (`?type=`). `lose_answer(id)` injects SPEC §6's
lost POST answer (`post_fails`): the tab drops the message as if the request had failed, and
`repost(id)` sends a failed POST again, the same id, text and timestamp (SPEC §6 `repost`).
`fire_and_forget` (SPEC §6): `heals_in_flight=None` sends a heal for every missing id on every
poll, without waiting for the answers to earlier ones (the deployed app); a number bounds the
heals of one id in flight (1, the default: wait for the answer; the model's bound is 2).

The pending store plays localStorage: it survives restarts (SQLite or JSON file), and several
clients may share one (`shared_pending`). Reading the list and writing it back are two
separate awaitable calls, so clients sharing a store can overwrite each other's updates, as
browser tabs do. A client never interleaves its own read-modify-writes (a tab's script is
single-threaded): each client holds its own lock around them, which is no lock between clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx2

__all__ = [
    "PendingEntry",
    "PendingStore",
    "MemoryPendingStore",
    "SqlitePendingStore",
    "JsonFilePendingStore",
    "PollSchedule",
    "Ack",
    "Snapshot",
    "PollResult",
    "Client",
    "ClientError",
]


class ClientError(Exception):
    """The worker refused a request or could not be reached; `status` is the HTTP status (or None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """One acknowledged message a tab is still checking: its id, heal token and posting tab."""

    id: str
    token: str
    tab: str


class PendingStore(ABC):
    """A persistent pending list, like `localStorage.pendingMessages`: read it, write it back."""

    @abstractmethod
    async def read(self) -> list[PendingEntry]:
        """The list as stored now."""

    @abstractmethod
    async def write(self, entries: list[PendingEntry]) -> None:
        """Replace the stored list."""

    async def aclose(self) -> None:
        """Release the store's resources."""


def _encode(entries: list[PendingEntry]) -> str:
    return json.dumps([asdict(entry) for entry in entries], separators=(",", ":"))


def _decode(raw: str | None) -> list[PendingEntry]:
    if not raw:
        return []
    try:
        return [PendingEntry(str(e["id"]), str(e["token"]), str(e["tab"])) for e in json.loads(raw)]
    except (ValueError, KeyError, TypeError):
        return []  # a corrupt list starts again empty, as a browser's JSON.parse fallback would


class MemoryPendingStore(PendingStore):
    """A pending list in this process (tests); share one object between clients for shared_pending."""

    def __init__(self) -> None:
        self._raw: str | None = None

    async def read(self) -> list[PendingEntry]:
        await asyncio.sleep(0)
        return _decode(self._raw)

    async def write(self, entries: list[PendingEntry]) -> None:
        await asyncio.sleep(0)
        self._raw = _encode(entries)

    def peek(self) -> list[PendingEntry]:
        """The stored list, read without yielding (tests, abstraction)."""
        return _decode(self._raw)


class SqlitePendingStore(PendingStore):
    """A pending list under one name in a SQLite file; several names (tabs) may share the file."""

    def __init__(self, path: str | os.PathLike, name: str = "pendingMessages") -> None:
        self.path = os.fspath(path)
        self.name = name
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS storage (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._conn = conn
        return self._conn

    # Reads and writes of a few hundred bytes take microseconds; running them inline keeps each
    # one a single step with no thread hop.
    async def read(self) -> list[PendingEntry]:
        await asyncio.sleep(0)
        row = self._connection().execute("SELECT value FROM storage WHERE name = ?", (self.name,)).fetchone()
        return _decode(row[0] if row else None)

    async def write(self, entries: list[PendingEntry]) -> None:
        await asyncio.sleep(0)
        self._connection().execute(
            "INSERT INTO storage (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (self.name, _encode(entries)),
        )

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class JsonFilePendingStore(PendingStore):
    """A pending list in a JSON file, replaced atomically (write to a temporary file, rename)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)

    async def read(self) -> list[PendingEntry]:
        await asyncio.sleep(0)
        try:
            with open(self.path, encoding="utf-8") as f:
                return _decode(f.read())
        except FileNotFoundError:
            return []

    async def write(self, entries: list[PendingEntry]) -> None:
        await asyncio.sleep(0)
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pending-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_encode(entries))
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _result(response: httpx2.Response) -> str | None:
    try:
        return response.json().get("result")
    except (ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class PollSchedule:
    """Delay before each poll: `first`, growing by `step` per poll, at most `maximum` (seconds)."""

    first: float = 5.0
    step: float = 2.0
    maximum: float = 300.0

    def delay(self, polls_done: int) -> float:
        """The wait before the next poll after `polls_done` polls."""
        return min(self.first + self.step * polls_done, self.maximum)


@dataclass(frozen=True, slots=True)
class Ack:
    """The worker's acknowledgement of a post: the stored message, its heal token, whether it was cached."""

    id: str
    token: str
    comment: dict
    cached: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one poll saw: the cache's ids oldest first (repeats kept) and the messages."""

    ids: tuple[str, ...]
    comments: tuple[dict, ...]
    #: the page (see `Client.reload`) that made the poll: a later page ignores the answer
    page: int = 0

    def __contains__(self, message_id: str) -> bool:
        return message_id in self.ids


@dataclass(frozen=True, slots=True)
class PollResult:
    """What `poll_done` did: ids found (and dropped unless keep_verifying), ids missing, heals started."""

    found: tuple[str, ...]
    missing: tuple[str, ...]
    heals: tuple[str, ...]


@dataclass
class Client:
    """One browser tab talking to one worker.

    `transport` may be any httpx2 async transport (e.g. `httpx2.ASGITransport(app=app)` to run
    the worker in-process); `http` may be a ready `httpx2.AsyncClient` instead. Every request
    carries an X-Request-Id (`t<tab>-<post|poll|heal>-<n>-<session>` unless the caller passes
    `request_id=`), which the worker's operation log records.
    """

    base_url: str
    tab: str
    store: PendingStore
    transport: httpx2.AsyncBaseTransport | None = None
    http: httpx2.AsyncClient | None = None
    keep_verifying: bool = False
    schedule: PollSchedule = field(default_factory=PollSchedule)
    poll_limit: int = 1000
    timeout: float = 30.0
    #: the connection pool and TLS verification of the HTTP client the tab makes (without `http`)
    limits: httpx2.Limits | None = None
    verify: Any = True
    #: times a post whose outcome is unknown is sent again, and the first wait (doubling) before
    post_retries: int = 3
    retry_delay: float = 0.2
    #: most pages one poll reads (a cache of poll_limit × max_pages entries)
    max_pages: int = 100
    #: stop healing ids no heal can bring back; `abandoned` maps each such id to the worker's
    #: answer. Off by default: the model's tabs heal for ever, and the lockstep tests (and their
    #: users' `make_client` hooks) build clients with the defaults
    give_up_hopeless: bool = False
    abandoned: dict[str, str] = field(default_factory=dict)
    #: ids this tab has displayed (its own posts at once, others when a poll returns them)
    shown: set[str] = field(default_factory=set)
    #: ids with a heal in flight from this tab
    healing: set[str] = field(default_factory=set)
    #: most heals of one id this tab has in flight at once: 1 waits for the answer before
    #: healing the id again; None sends one on every poll that misses it (SPEC §6
    #: fire_and_forget, the deployed app)
    heals_in_flight: int | None = 1
    heals_sent: int = 0
    post_retries_sent: int = 0
    polls: int = 0
    alive: bool = True
    # -- the as-built tab (SPEC §6; all off by default) --------------------------------------
    #: the tab's clock in ms (a callable: tests and replay control time); None: the wall clock
    clock: Callable[[], int] | None = None
    #: added to the clock (SPEC §6 clock_skew: a browser whose clock is behind)
    skew_ms: int = 0
    #: `tab_view`: timestamps from the tab's clock, a cursor, and `shown` updated per poll
    tab_view: bool = False
    #: `found_in_response`: polls ask for messages newer than the cursor; found = in the
    #: response or in the page-load snapshot
    found_in_response: bool = False
    #: `full_poll`: a poll reads (and shows) the whole cache, no cursor
    full_poll: bool = False
    #: the page's channel, "human" or "ai" (SPEC §6 `ai_channel`): its polls show only messages
    #: of that type, and with `found_in_response` ask the worker only for them (`?type=`);
    #: None shows every message
    channel: str | None = None
    #: after a poll the cursor becomes the clock minus this (the deployed app: 6 s)
    lag_ms: int = 6000
    #: the browser's local store of the messages it posted (IndexedDB; share one set between
    #: the tabs of one browser); the page-load snapshot is taken from it
    local_store: set[str] = field(default_factory=set)
    #: ids whose POST failed as this tab saw it (an error answer, or the answer lost)
    failed_posts: set[str] = field(default_factory=set)
    #: heals this tab has requested per id (SPEC §7 HealsTerminate counts them)
    heal_counts: Counter = field(default_factory=Counter)
    reloads: int = 0

    def __post_init__(self) -> None:
        self.tab = str(self.tab)
        self._page = 0
        self._lost_answers: set[str] = set()
        #: the text and timestamp of each post this tab sent and saw no acknowledgement of
        #: (`repost` sends one again)
        self._sent: dict[str, tuple[str, int | None]] = {}
        self.start_page()
        self._owns_http = self.http is None
        if self.http is None:
            pool = {} if self.limits is None else {"limits": self.limits}
            self.http = httpx2.AsyncClient(
                base_url=self.base_url,
                transport=self.transport,
                timeout=self.timeout,
                verify=self.verify,
                **pool,
            )
        self._lock = asyncio.Lock()
        self._heal_tasks: set[asyncio.Task] = set()
        #: heals in flight per id (`healing` holds the ids with at least one)
        self._in_flight: Counter = Counter()
        self._requests = 0
        self._session = uuid.uuid4().hex[:6]

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Wait for heals in flight, then close the HTTP client if this object made it."""
        await self.wait_heals()
        if self._owns_http:
            await self.http.aclose()

    def _request_id(self, kind: str) -> str:
        # Names the tab in the worker's operation log: t<tab>-<kind>-<n>-<client session>.
        self._requests += 1
        return f"t{self.tab}-{kind}-{self._requests}-{self._session}"

    async def _send(self, method: str, path: str, request_id: str | None, **kwargs) -> httpx2.Response:
        kind = {
            "/api/comments": "post" if method == "POST" else "poll",
            "/api/admin/add-to-cache": "heal",
        }.get(path, "req")
        headers = {"x-request-id": request_id or self._request_id(kind)}
        try:
            return await self.http.request(method, path, headers=headers, **kwargs)
        except httpx2.HTTPError as exc:
            raise ClientError(f"{method} {path}: {exc}") from exc

    def now_ms(self) -> int:
        """The tab's clock (ms), skew included."""
        now = self.clock() if self.clock is not None else int(time.time() * 1000)
        return int(now) + self.skew_ms

    def start_page(self) -> None:
        """Set the page's view up as at page load (call again after changing `clock`,
        `tab_view`, `full_poll`): the cursor and the page-load snapshot."""
        #: the cursor (ms): a poll shows messages with a timestamp above it; it starts just
        #: before the page's load time, so a message stamped at that very time is still shown
        self.cursor: int | None = self.now_ms() - 1 if self.tab_view and not self.full_poll else None
        #: the ids of `local_store` when the page loaded (found_in_response's frozen list)
        self.page_snapshot: frozenset[str] = frozenset(self.local_store)

    def reload(self) -> None:
        """The user reloads the page (SPEC §6 `reload`): the cursor restarts at the load time,
        the shown set starts over, the page-load snapshot is retaken from the local store; the
        pending list (the store) survives, and the old page's poll answer is dropped. Heals and
        posts already sent run on (the requests are the worker's)."""
        self._page += 1
        self.reloads += 1
        self.shown = set()
        self.start_page()

    def lose_answer(self, message_id: str) -> None:
        """Fault injection (SPEC §6 `post_fails`): the answer to the POST of `message_id` is lost;
        the tab, when it handles it, drops the message as after a failed request."""
        self._lost_answers.add(message_id)

    # -- the steps -------------------------------------------------------------------------------
    async def post(
        self, text: str, *, id: str | None = None, timestamp: int | None = None, request_id: str | None = None
    ) -> Ack:
        """POST a message; after the 200, record it as pending (one read and one write of the store)."""
        if not self.alive:
            raise ClientError(f"tab {self.tab} has crashed")
        if id is None:
            # the browser's own id (`<Date.now()>-<random>`, as the original), so that a retry
            # names the same message
            id = f"{int(time.time() * 1000)}-{secrets.token_hex(4)}"
        body: dict = {"text": text, "id": id}
        self.shown.add(id)  # optimistic display, as the original
        if timestamp is None and self.tab_view:
            timestamp = self.now_ms()  # the browser stamps its messages (SPEC §6)
        if timestamp is not None:
            body["timestamp"] = timestamp
        self.local_store.add(id)
        self._sent[id] = (text, timestamp)
        response = await self._post_with_retries(body, request_id)
        if response.status_code != 200:
            self.shown.discard(id)
            self.failed_posts.add(id)
            raise ClientError(f"post refused: {response.status_code} {response.text}", response.status_code)
        data = response.json()
        ack = Ack(data["comment"]["id"], data["healToken"], data["comment"], bool(data.get("cached")))
        await self.record_ack(ack)
        self._sent.pop(id, None)  # acknowledged: only a failed post is ever sent again
        return ack

    async def repost(self, message_id: str, *, request_id: str | None = None) -> Ack:
        """Send the POST of `message_id`, which failed as this tab saw it, again: the same id,
        text and timestamp (SPEC §6 `repost`; the page shows it again at once)."""
        if message_id not in self.failed_posts or message_id not in self._sent:
            raise ClientError(f"tab {self.tab} has no failed post {message_id} to send again")
        text, timestamp = self._sent[message_id]
        self.failed_posts.discard(message_id)
        return await self.post(text, id=message_id, timestamp=timestamp, request_id=request_id)

    async def _post_with_retries(self, body: dict, request_id: str | None) -> httpx2.Response:
        delay = self.retry_delay
        for attempt in range(self.post_retries + 1):
            last = attempt == self.post_retries
            try:
                response = await self._send(
                    "POST", "/api/comments", request_id if attempt == 0 else None, json=body
                )
            except ClientError:
                if last or not self.alive:
                    raise
            else:
                if response.status_code != 503 or last or not self.alive:
                    return response
            self.post_retries_sent += 1
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def record_ack(self, ack: Ack) -> None:
        """Add an acknowledged message to the pending list (PostAck, on the tab's side)."""
        if not self.alive:
            return
        if not self.tab_view:  # with the tab view the page showed it when it was posted
            self.shown.add(ack.id)
        async with self._lock:
            if ack.id in self._lost_answers:
                self._lost_answers.discard(ack.id)
                self.shown.discard(ack.id)
                self.failed_posts.add(ack.id)
                raise ClientError(f"the answer to the POST of {ack.id} was lost")
            entries = await self.store.read()
            if all(entry.id != ack.id for entry in entries):
                entries.append(PendingEntry(ack.id, ack.token, self.tab))
            await self.store.write(entries)

    async def poll_read(self, *, request_id: str | None = None) -> Snapshot:
        """GET the cache (PollRead); returns the snapshot, oldest first, and marks its ids shown."""
        newest_first: list[dict] = []
        page_no = self._page
        for page in range(self.max_pages):
            params = {"limit": self.poll_limit}
            if self.found_in_response and self.cursor is not None:
                params["after"] = max(self.cursor, 0)  # only what is newer than the cursor
            if self.found_in_response and self.channel is not None:
                params["type"] = self.channel  # only the page's channel
            if page:
                params["offset"] = len(newest_first)
            response = await self._send(
                "GET", "/api/comments", request_id if page == 0 else None, params=params
            )
            if response.status_code != 200:
                raise ClientError(
                    f"poll failed: {response.status_code} {response.text}", response.status_code
                )
            data = response.json()
            newest_first.extend(data["comments"])
            # `total` is what the cache held at this page's read; pages are separate reads, so a
            # write in between shifts the next page: an entry may be seen twice, or missed (a
            # pending id missed gets a heal, which answers "already present")
            if not data["comments"] or len(newest_first) >= data.get("total", 0):
                break
        comments = tuple(newest_first[::-1])
        snapshot = Snapshot(tuple(comment["id"] for comment in comments), comments, page_no)
        self.polls += 1
        if self.alive and not self.tab_view:  # with the tab view: when the poll is processed
            self.shown.update(snapshot.ids)
        return snapshot

    def response_of(self, snapshot: Snapshot) -> tuple[str, ...]:
        """The ids a poll's answer shows the page: with the tab view those of its channel newer
        than the cursor (the whole cache with full_poll), else all of it."""
        if self.cursor is None and self.channel is None:
            return snapshot.ids
        return tuple(
            c["id"]
            for c in snapshot.comments
            if (self.cursor is None or c["timestamp"] > self.cursor)
            and (self.channel is None or (c.get("type") or "human") == self.channel)
        )

    async def poll_done(self, snapshot: Snapshot, *, start_heals: bool = True) -> PollResult:
        """Check the pending list against `snapshot` (PollDone) and write the rest back.

        Found ids leave the list (unless keep_verifying); each missing id without a heal in
        flight from this client is marked `healing` and, with `start_heals`, healed in the
        background (else the caller calls `heal`); the heals start before the write-back.
        """
        if not self.alive or snapshot.page != self._page:
            return PollResult((), (), ())  # dead, or the answer of a page since reloaded
        async with self._lock:
            entries = await self.store.read()
            response = self.response_of(snapshot) if self.tab_view else snapshot.ids
            if self.found_in_response:
                present = set(response) | self.page_snapshot
            else:
                present = set(snapshot.ids)
            found = tuple(entry.id for entry in entries if entry.id in present)
            missing = [entry for entry in entries if entry.id not in present]
            keep = self.still_pending(entries, present)
            if self.abandoned:
                keep = [entry for entry in keep if entry.id not in self.abandoned]
            room = self.heals_in_flight
            heals = [
                entry
                for entry in missing
                if (room is None or self._in_flight[entry.id] < room) and entry.id not in self.abandoned
            ]
            self.healing.update(entry.id for entry in heals)
            self._in_flight.update(entry.id for entry in heals)
            self.heal_counts.update(entry.id for entry in heals)
            # Heals go out before the list is written back, as the original sent them (and as
            # the model's PollDone requests them): a tab that dies before its write-back has
            # still sent its heals.
            if start_heals:
                for entry in heals:
                    task = asyncio.get_running_loop().create_task(self.heal(entry.id, entry.token))
                    self._heal_tasks.add(task)
                    task.add_done_callback(self._heal_tasks.discard)
            if self.tab_view:  # the page shows the response; the cursor follows the clock
                self.shown.update(response)
                if self.cursor is not None:
                    self.cursor = self.now_ms() - self.lag_ms
            await self.store.write(keep)
        return PollResult(found, tuple(entry.id for entry in missing), tuple(entry.id for entry in heals))

    def still_pending(self, entries: list[PendingEntry], present: set[str]) -> list[PendingEntry]:
        """The entries `poll_done` writes back: those not in the snapshot (all, with keep_verifying).

        The hook for a client-side planted fault in tests (override it in a subclass).
        """
        if self.keep_verifying:
            return list(entries)
        return [entry for entry in entries if entry.id not in present]

    async def heal(self, message_id: str, token: str | None = None, *, request_id: str | None = None) -> int:
        """Ask the worker to add `message_id` to the cache; returns the HTTP status (200, 403, 404...)."""
        try:
            if token is None:
                token = next((e.token for e in await self.store.read() if e.id == message_id), None)
                if token is None:
                    raise ClientError(f"no heal token for {message_id} in the pending store")
            self.heals_sent += 1
            response = await self._send(
                "POST",
                "/api/admin/add-to-cache",
                request_id,
                json={"messageId": message_id, "healToken": token},
            )
            if self.give_up_hopeless:
                if response.status_code == 404:
                    self.abandoned[message_id] = "not found"
                elif response.status_code == 200 and _result(response) == "outside the cache's window":
                    self.abandoned[message_id] = "outside the cache's window"
            return response.status_code
        finally:
            left = self._in_flight[message_id] - 1
            if left > 0:
                self._in_flight[message_id] = left
            else:
                self._in_flight.pop(message_id, None)
                self.healing.discard(message_id)

    async def wait_heals(self) -> None:
        """Wait until every heal this client started in the background has finished."""
        while self._heal_tasks:
            await asyncio.gather(*list(self._heal_tasks), return_exceptions=True)

    async def poll_once(self) -> PollResult:
        """One poll: `poll_read`, then `poll_done` with background heals."""
        return await self.poll_done(await self.poll_read())

    async def pending_ids(self) -> list[str]:
        """The ids in the pending store now (all tabs' when the store is shared)."""
        return [entry.id for entry in await self.store.read()]

    def crash(self) -> None:
        """The tab dies: it never acts again; its pending list stays in the store, unused."""
        self.alive = False

    async def run(
        self,
        *,
        max_polls: int | None = None,
        until_drained: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> int:
        """Poll on the schedule until crashed, `max_polls` polls, or (with `until_drained`) an empty list."""
        done = 0
        while self.alive and (max_polls is None or done < max_polls):
            await sleep(self.schedule.delay(done))
            if not self.alive:
                break
            try:
                await self.poll_once()
            except ClientError:
                pass  # the next poll tries again, as the original's poll loop does
            done += 1
            if until_drained and not await self.pending_ids():
                break
        return done

"""`kvheal audit URL`: drive any deployed poll-and-heal worker over HTTP, record the history, check it.

Black box: nothing here imports the model or the implementation; the worker is reached only
through HTTP (httpx2), so it may be written in any language and run anywhere.

1. **Probe** (`probe`): two messages are posted (ids ``kvhp-<run>-a``/``-b``, one millisecond
   apart) and the cache is read, which tells the *dialect*: where the POST's answer puts the id
   (``comment.id`` or ``id``) and a heal token (``healToken``, sent back on heals when present),
   whether the read answers ``{comments: [...], hasMore}`` or a bare array, and whether it lists
   newest or oldest first. A `--dialect` file (JSON or TOML, keys of `Dialect`) fixes any of
   these and the paths; what it gives is not probed. An unreachable URL, or a worker that
   refuses the probe, is an `AuditError` (one line) before any long work starts.
2. **Drive** (`run_audit`): `tabs` tabs act in rounds that start at the same instant: each tab
   posts `per_tab` messages at once, reads the cache, heals what it is waiting for and did not
   see, and (unless turned off) heals one of its ids that the read did show (in every poll,
   also while healing: a tab acting on a stale read) and, one tab per posting round, reposts an
   id it already posted (same body: a retry). Tabs heal like the original app
   (``client="original"``: an id is forgotten once a read shows it) or keep verifying every id
   they posted (``client="keep-verifying"``). After the posting rounds (bounded by `rounds`,
   `duration` and `max_requests`), the tabs keep polling and healing until nothing is pending
   (at most `heal_rounds` rounds; twice `duration` and `max_requests` in all), then the audit
   reads the cache for up to `settle` seconds (time for a background reconciler) until every
   acknowledged id is there; its last read is the final read.
3. **Record**: every request's invocation and completion time (monotonic, seconds from the
   start), request and answer (`AuditRun.records`, `write_history`).
4. **Check**: `kvheal.conformance.history.check_history` on the decoded operations.

Everything in the cache that is not one of this run's ids (other users' messages, earlier
runs) is ignored. The run posts at most ``tabs * per_tab * rounds`` messages (plus two probes and
reposts): keep that below the cache's capacity, or eviction will look like loss.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import httpx2

from .history import HistoryCheck, Op, check_history

__all__ = [
    "AuditError",
    "Dialect",
    "AuditConfig",
    "AuditRun",
    "load_dialect",
    "probe",
    "run_audit",
    "audit",
    "write_history",
    "CLIENTS",
]

CLIENTS = ("original", "keep-verifying")


class AuditError(Exception):
    """A usage problem (bad dialect file, unreachable or refusing worker): one line for the user."""


@dataclass(frozen=True)
class Dialect:
    """How a worker speaks. Dotted paths (``comment.id``) point into JSON answers; "" means absent."""

    post_path: str = "/api/comments"
    read_path: str = "/api/comments"
    heal_path: str = "/api/admin/add-to-cache"
    #: query parameters of every read (the original caps unlisted reads at 50 messages)
    read_params: dict = field(default_factory=lambda: {"limit": "1000"})
    #: "object" ({comments: [...], hasMore}) or "array" (a bare list of messages)
    read_shape: str = "object"
    comments_field: str = "comments"
    has_more_field: str = "hasMore"
    #: "newest-first" or "oldest-first"
    order: str = "newest-first"
    #: where a read's message carries its id
    message_id_field: str = "id"
    #: where the POST's answer carries the id ("" = the id that was sent)
    id_field: str = "comment.id"
    #: where the POST's answer carries a heal token ("" = none: heals are sent without one)
    token_field: str = "healToken"
    #: fields of the POST and heal bodies
    post_id_param: str = "id"
    post_text_param: str = "text"
    post_timestamp_param: str = "timestamp"
    heal_id_param: str = "messageId"
    heal_token_param: str = "healToken"
    #: extra headers sent with every request (e.g. {"Authorization": "Bearer ..."})
    headers: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line: the paths, where the id and token are, the read's shape and order."""
        query = "&".join(f"{k}={v}" for k, v in self.read_params.items())
        shape = (
            f"{{{self.comments_field}: [...], {self.has_more_field}}}"
            if self.read_shape == "object"
            else "a bare array"
        )
        token = f"heal token at {self.token_field} (sent back)" if self.token_field else "no heal token"
        return (
            f"POST {self.post_path} (id at {self.id_field or 'the id sent'}, {token}); "
            f"GET {self.read_path}{'?' + query if query else ''} -> {shape}, {self.order}; "
            f"heal POST {self.heal_path}"
        )


_DIALECT_KEYS = {f.name for f in fields(Dialect)}


def load_dialect(path: str) -> dict:
    """The overrides in a dialect file (JSON, or TOML when the name ends in .toml); AuditError if bad."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise AuditError(f"cannot read dialect file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode()) if path.endswith(".toml") else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise AuditError(f"dialect file {path} is not valid {kind}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise AuditError(f"dialect file {path} must hold an object of settings")
    unknown = sorted(set(data) - _DIALECT_KEYS)
    if unknown:
        raise AuditError(
            f"unknown dialect setting {', '.join(unknown)} (known: {', '.join(sorted(_DIALECT_KEYS))})"
        )
    for key, value in data.items():
        expected = dict if key in ("read_params", "headers") else str
        if not isinstance(value, expected):
            raise AuditError(f"dialect setting {key} must be a{' table' if expected is dict else ' string'}")
    if data.get("read_shape", "object") not in ("object", "array"):
        raise AuditError("dialect setting read_shape must be 'object' or 'array'")
    if data.get("order", "newest-first") not in ("newest-first", "oldest-first"):
        raise AuditError("dialect setting order must be 'newest-first' or 'oldest-first'")
    data = dict(data)
    for key in ("read_params", "headers"):
        if key in data:
            data[key] = {str(k): str(v) for k, v in data[key].items()}
    return data


def _dig(data: Any, path: str) -> Any:
    for part in path.split(".") if path else ():
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


@dataclass(frozen=True)
class AuditConfig:
    """What the audit does: tabs, rounds, bounds, probes of present ids and reposts, client style."""

    tabs: int = 8
    per_tab: int = 2
    rounds: int = 5
    duration: float = 30.0
    max_requests: int = 5000
    client: str = "original"
    heal_present: bool = True
    repost: bool = True
    heal_rounds: int = 20
    #: seconds: the healing phase's tabs start each round after a random pause up to this
    heal_jitter: float = 0.05
    settle: float = 2.0
    timeout: float = 10.0
    reconciler: bool = False
    max_steps: int = 500_000
    max_check_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.tabs <= 256:
            raise AuditError(f"--tabs must be between 1 and 256, got {self.tabs}")
        if not 1 <= self.per_tab <= 16:
            raise AuditError(f"--per-tab must be between 1 and 16, got {self.per_tab}")
        if self.rounds < 1:
            raise AuditError(f"--rounds must be at least 1, got {self.rounds}")
        if self.duration <= 0 or self.timeout <= 0 or self.settle < 0:
            raise AuditError("--duration and --timeout must be positive, --settle not negative")
        if self.max_requests < 1:
            raise AuditError(f"--max-requests must be at least 1, got {self.max_requests}")
        if self.max_steps < 1 or self.max_check_seconds <= 0:
            raise AuditError("--max-steps and --check-seconds must be positive")
        if self.client not in CLIENTS:
            raise AuditError(f"unknown --client {self.client!r} (known: {', '.join(CLIENTS)})")


@dataclass
class AuditRun:
    """A finished audit: the dialect, what the probe found, the raw records, the ops and the verdicts."""

    url: str
    dialect: Dialect
    detected: list[str]
    config: AuditConfig
    run_id: str
    records: list[dict]
    ops: list[Op]
    drive_seconds: float
    check: HistoryCheck | None = None

    def to_json(self) -> dict:
        """The machine-readable report (without the records: see `write_history`)."""
        check = self.check
        props = {}
        for name, result in check.properties.items() if check else ():
            anomaly = None
            if result.anomaly is not None:
                a = result.anomaly
                anomaly = {
                    "summary": a.summary,
                    "focus": a.focus,
                    "steps": [
                        {
                            "index": op.index,
                            "client": op.client,
                            "kind": op.kind,
                            "id": op.id,
                            "ids": None if op.ids is None else list(op.ids),
                            "request": op.label(a.focus),
                            "invoke": op.invoke,
                            "complete": op.complete,
                            "shows": a.marks.get(op.index, ""),
                        }
                        for op in a.ops
                    ],
                }
            props[name] = {"status": result.status, "reason": result.reason, "anomaly": anomaly}
        return {
            "url": self.url,
            "run": self.run_id,
            "dialect": asdict(self.dialect),
            "detected": self.detected,
            "config": asdict(self.config),
            "drive_seconds": round(self.drive_seconds, 3),
            "requests_per_second": round(len(self.ops) / self.drive_seconds, 1)
            if self.drive_seconds
            else None,
            "stats": check.stats if check else {},
            "status": check.status if check else None,
            "properties": props,
        }


class _Recorder:
    """Sends requests and records them: invocation/completion (monotonic, from t0), request, answer."""

    def __init__(self, http: httpx2.AsyncClient, dialect: Dialect, prefix: str, t0: float) -> None:
        self.http, self.dialect, self.prefix, self.t0 = http, dialect, prefix, t0
        self.records: list[dict] = []
        self.ops: list[Op] = []
        self.last_retry_after: float | None = None

    async def send(
        self,
        client: str,
        kind: str,
        method: str,
        path: str,
        *,
        body: dict | None = None,
        params: dict | None = None,
        message_id: str | None = None,
    ) -> tuple[Op, Any]:
        index = len(self.records)
        record: dict = {
            "i": index,
            "client": client,
            "kind": kind,
            "request": {"method": method, "path": path, "params": params or {}, "body": body},
        }
        self.records.append(record)  # reserve the index in invocation order
        invoke = time.monotonic() - self.t0
        status, data, error = None, None, None
        try:
            response = await self.http.request(method, path, json=body, params=params)
            status = response.status_code
            if status == 429:
                try:
                    self.last_retry_after = float(response.headers.get("retry-after", ""))
                except ValueError:
                    self.last_retry_after = None
            try:
                data = response.json()
            except ValueError:
                data = response.text[:500]
            complete: float | None = time.monotonic() - self.t0
        except httpx2.HTTPError as exc:
            complete, error = None, f"{type(exc).__name__}: {exc}"[:300]
        record.update(
            invoke=invoke,
            complete=complete,
            response=None if status is None else {"status": status, "body": data},
            error=error,
        )
        op = self._decode(index, client, kind, invoke, complete, status, data, error, message_id)
        record["checked"] = {k: getattr(op, k) for k in Op.__slots__}
        self.ops.append(op)
        return op, data

    def _decode(self, index, client, kind, invoke, complete, status, data, error, message_id) -> Op:
        d = self.dialect
        base = dict(index=index, client=client, kind=kind, invoke=invoke, complete=complete)
        if status is None:
            return Op(**base, id=message_id, ok=None, note=error or "no answer")
        note = "" if 200 <= status < 300 else str(status)
        if kind == "read":
            if not 200 <= status < 300:
                return Op(**base, ok=False, note=note)
            items = data if d.read_shape == "array" else _dig(data, d.comments_field)
            if not isinstance(items, list):
                return Op(**base, ok=False, note="unreadable answer")
            ids = [_dig(item, d.message_id_field) for item in items]
            ids = [m for m in ids if isinstance(m, str) and m.startswith(self.prefix)]
            if d.order == "newest-first":
                ids.reverse()
            partial = d.read_shape == "object" and bool(_dig(data, d.has_more_field))
            return Op(**base, ids=tuple(ids), ok=True, partial=partial)
        if 500 <= status:
            return Op(**base, id=message_id, ok=None, note=note)
        if not 200 <= status < 300:
            return Op(**base, id=message_id, ok=False, note=note)
        answer = data if isinstance(data, dict) else {}
        if answer.get("success") is False:
            return Op(**base, id=message_id, ok=False, note="success: false")
        if kind == "heal":
            said = " ".join(str(answer.get(k, "")) for k in ("status", "result", "outcome")).lower()
            if "not found" in said or "not_found" in said:
                return Op(**base, id=message_id, ok=False, note="not found")
            added = answer.get("added")
            # "added: false" / "already present": the worker says it wrote nothing (its dedupe check)
            unchanged = added is False or "already" in said
            return Op(
                **base,
                id=message_id,
                ok=True,
                may_skip_write=unchanged,
                note=("already present" if unchanged else "added")
                if added is not None or said.strip()
                else "",
            )
        cached = answer.get("cached")
        return Op(
            **base,
            id=message_id,
            ok=True,
            may_skip_write=cached is False,
            note="cached: false" if cached is False else "",
        )


def _client(url: str, dialect: Dialect, timeout: float, connections: int) -> httpx2.AsyncClient:
    headers = {"Content-Type": "application/json", "Accept": "application/json"} | dict(dialect.headers)
    return httpx2.AsyncClient(
        base_url=url,
        headers=headers,
        timeout=timeout,
        trust_env=False,
        limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


async def probe(
    url: str, overrides: dict | None = None, *, timeout: float = 10.0, run_id: str | None = None
) -> tuple[Dialect, list[str]]:
    """The dialect of the worker at `url` (overrides fix settings) and sentences on what was found."""
    overrides = dict(overrides or {})
    dialect = Dialect(**overrides)
    run_id = run_id or secrets.token_hex(4)
    notes: list[str] = []
    t = _now_ms()
    a, b = f"kvhp-{run_id}-a", f"kvhp-{run_id}-b"
    async with _client(url, dialect, timeout, 4) as http:

        async def call(method: str, path: str, **kw) -> httpx2.Response:
            try:
                return await http.request(method, path, **kw)
            except httpx2.HTTPError as exc:
                raise AuditError(f"cannot reach {url}: {type(exc).__name__}: {exc}".rstrip(": ")) from None

        answers = []
        for message_id, ts in ((a, t - 1), (b, t)):
            body = {
                dialect.post_id_param: message_id,
                dialect.post_text_param: "kvheal audit probe",
                dialect.post_timestamp_param: ts,
            }
            r = await call("POST", dialect.post_path, json=body)
            if not 200 <= r.status_code < 300:
                raise AuditError(
                    f"the worker refused the probe POST {dialect.post_path}: {r.status_code} {r.text[:120]!r}"
                )
            try:
                answers.append(r.json())
            except ValueError:
                answers.append({})
        first = answers[0] if isinstance(answers[0], dict) else {}
        if "id_field" not in overrides:
            for path in ("comment.id", "id", "message.id", "data.id"):
                if _dig(first, path) == a:
                    dialect = replace(dialect, id_field=path)
                    break
            else:
                dialect = replace(dialect, id_field="")
        if "token_field" not in overrides:
            for path in ("healToken", "comment.healToken", "heal_token", "token"):
                if isinstance(_dig(first, path), str):
                    dialect = replace(dialect, token_field=path)
                    break
            else:
                dialect = replace(dialect, token_field="")
        notes.append(
            f"the POST answer carries the id at {dialect.id_field or '(nowhere: the id sent is used)'}"
            f" and {('a heal token at ' + dialect.token_field) if dialect.token_field else 'no heal token'}"
        )
        r = await call("GET", dialect.read_path, params=dialect.read_params)
        if r.status_code == 400 and dialect.read_params and "read_params" not in overrides:
            dialect = replace(dialect, read_params={})
            notes.append("the worker refused the read's parameters: reading without them")
            r = await call("GET", dialect.read_path)
        if not 200 <= r.status_code < 300:
            raise AuditError(
                f"the worker refused the probe GET {dialect.read_path}: {r.status_code} {r.text[:120]!r}"
            )
        try:
            data = r.json()
        except ValueError:
            raise AuditError(f"GET {dialect.read_path} did not answer JSON: {r.text[:80]!r}") from None
        if "read_shape" not in overrides:
            if isinstance(data, list):
                dialect = replace(dialect, read_shape="array")
            elif isinstance(data, dict):
                field_name = (
                    dialect.comments_field
                    if isinstance(data.get(dialect.comments_field), list)
                    else next((k for k, v in data.items() if isinstance(v, list)), None)
                )
                if field_name is None:
                    raise AuditError(f"GET {dialect.read_path} answered an object without a list of messages")
                dialect = replace(dialect, read_shape="object", comments_field=field_name)
            else:
                raise AuditError(f"GET {dialect.read_path} answered neither a list nor an object")
        items = data if dialect.read_shape == "array" else _dig(data, dialect.comments_field) or []
        ids = [_dig(item, dialect.message_id_field) for item in items]
        if "order" not in overrides:
            if a in ids and b in ids:
                dialect = replace(
                    dialect, order="oldest-first" if ids.index(a) < ids.index(b) else "newest-first"
                )
                notes.append(f"the read lists {dialect.order} (probe messages 1 ms apart)")
            else:
                notes.append(f"the probe messages were not both in the read: order assumed {dialect.order}")
        shape = (
            "a bare array" if dialect.read_shape == "array" else f"an object with {dialect.comments_field}"
        )
        notes.append(f"the read answers {shape}")
        token = _dig(first, dialect.token_field) if dialect.token_field else None
        heal_body = {dialect.heal_id_param: a} | ({dialect.heal_token_param: token} if token else {})
        r = await call("POST", dialect.heal_path, json=heal_body)
        if r.status_code in (404, 405):
            raise AuditError(f"the worker has no heal endpoint at POST {dialect.heal_path} ({r.status_code})")
        notes.append(f"a heal of a cached probe message answered {r.status_code} {r.text[:80]}")
    return dialect, notes


async def run_audit(
    url: str,
    config: AuditConfig = AuditConfig(),
    dialect: Dialect | None = None,
    *,
    overrides: dict | None = None,
    check: bool = True,
) -> AuditRun:
    """Probe (unless `dialect` is given), drive, record and check (unless `check` is False)."""
    run_id = secrets.token_hex(4)
    detected: list[str] = []
    if dialect is None:
        dialect, detected = await probe(url, overrides, timeout=config.timeout, run_id=run_id)
    prefix = f"kvh-{run_id}-"
    connections = max(8, config.tabs * (config.per_tab + 2) + 4)
    t0 = time.monotonic()
    async with _client(url, dialect, config.timeout, connections) as http:
        rec = _Recorder(http, dialect, prefix, t0)
        driver = _Driver(rec, dialect, config, prefix)
        await driver.run()
    drive_seconds = time.monotonic() - t0
    run = AuditRun(url, dialect, detected, config, run_id, rec.records, rec.ops, drive_seconds)
    if check:
        run.check = check_history(
            rec.ops,
            reconciler=config.reconciler,
            max_steps=config.max_steps,
            max_seconds=config.max_check_seconds,
        )
    return run


class _Driver:
    def __init__(self, rec: _Recorder, dialect: Dialect, config: AuditConfig, prefix: str) -> None:
        self.rec, self.d, self.c, self.prefix = rec, dialect, config, prefix
        self.tokens: dict[str, str | None] = {}
        self.bodies: dict[str, dict] = {}
        self.acked: dict[int, list[str]] = {t: [] for t in range(config.tabs)}
        self.pending: dict[int, list[str]] = {t: [] for t in range(config.tabs)}
        self.counter = 0
        self.throttled = 0
        self.rng = random.Random()
        self.base_ms = _now_ms()

    def _budget_left(self, started: float, factor: int = 1) -> bool:
        """Whether another round may start: requests and seconds under `factor` times the bounds."""
        return (
            len(self.rec.records) < factor * self.c.max_requests
            and time.monotonic() - started < factor * self.c.duration
        )

    async def post(self, tab: int, message_id: str | None = None) -> None:
        if message_id is None:
            self.counter += 1
            message_id = f"{self.prefix}t{tab}-{self.counter}"
            self.bodies[message_id] = {
                self.d.post_id_param: message_id,
                self.d.post_text_param: f"audit message {self.counter} of tab {tab}",
                self.d.post_timestamp_param: self.base_ms + self.counter,
            }
        op, data = await self.send_retrying(
            f"tab{tab}", "post", self.d.post_path, self.bodies[message_id], message_id
        )
        if op.ok is True:
            token = _dig(data, self.d.token_field) if self.d.token_field else None
            self.tokens.setdefault(message_id, token if isinstance(token, str) else None)
            if message_id not in self.acked[tab]:
                self.acked[tab].append(message_id)
                self.pending[tab].append(message_id)

    async def read(self, client: str) -> Op:
        op, _ = await self.rec.send(
            client, "read", "GET", self.d.read_path, params=self.d.read_params or None
        )
        return op

    async def heal(self, tab: int, message_id: str) -> None:
        token = self.tokens.get(message_id)
        body = {self.d.heal_id_param: message_id} | ({self.d.heal_token_param: token} if token else {})
        await self.send_retrying(f"tab{tab}", "heal", self.d.heal_path, body, message_id)

    async def send_retrying(self, client: str, kind: str, path: str, body: dict, message_id: str):
        """POST, and after a 429 wait (its Retry-After, at most 2 s) and try again (5 tries at most)."""
        for attempt in range(5):
            op, data = await self.rec.send(client, kind, "POST", path, body=body, message_id=message_id)
            if op.note != "429" or attempt == 4:
                return op, data
            self.throttled += 1
            await asyncio.sleep(min(2.0, self.rec.last_retry_after or 0.2 * (attempt + 1)))
        return op, data

    async def poll_and_heal(self, tab: int, round_no: int, repost: bool) -> None:
        op = await self.read(f"tab{tab}")
        if op.ok is not True:
            return
        seen = set(op.ids or ())
        if self.c.client == "original" and not op.partial:
            self.pending[tab] = [m for m in self.pending[tab] if m not in seen]
        elif self.c.client == "keep-verifying":
            self.pending[tab] = [m for m in self.acked[tab] if m not in seen]
        missing = [m for m in self.pending[tab] if m not in seen]
        jobs = [self.heal(tab, m) for m in missing]
        if self.c.heal_present:
            present = [m for m in self.acked[tab] if m in seen]
            if present:
                jobs.append(self.heal(tab, present[round_no % len(present)]))
        if repost and self.c.repost and self.acked[tab] and round_no % self.c.tabs == tab % self.c.tabs:
            jobs.append(self.post(tab, self.acked[tab][round_no % len(self.acked[tab])]))
        await asyncio.gather(*jobs)

    async def staggered(self, tab: int, round_no: int) -> None:
        """A poll and heal of the healing phase, after a random pause: real tabs poll on their own
        schedules, so their heals do not all race at the same instant."""
        await asyncio.sleep(self.rng.uniform(0, self.c.heal_jitter))
        await self.poll_and_heal(tab, round_no, repost=False)

    async def tab_round(self, tab: int, round_no: int, gate: asyncio.Event) -> None:
        await gate.wait()
        await asyncio.gather(*(self.post(tab) for _ in range(self.c.per_tab)))
        await self.poll_and_heal(tab, round_no, repost=True)

    async def run(self) -> None:
        started = time.monotonic()
        for round_no in range(self.c.rounds):
            if not self._budget_left(started):
                break
            gate = asyncio.Event()
            tasks = [asyncio.create_task(self.tab_round(t, round_no, gate)) for t in range(self.c.tabs)]
            await asyncio.sleep(0)  # every tab waits at the gate: they start at the same instant
            gate.set()
            await asyncio.gather(*tasks)
        everything = {m for ids in self.acked.values() for m in ids}
        for round_no in range(self.c.heal_rounds):
            # healing may use as much again as posting did, at most
            if not any(self.pending.values()) or not self._budget_left(started, factor=2):
                break
            await asyncio.gather(*(self.staggered(t, round_no) for t in range(self.c.tabs)))
            if self.c.client == "keep-verifying":
                # tabs that keep verifying stop once a read after a quiet moment has everything
                op = await self.read("audit")
                if op.ok is True and not op.partial and everything <= set(op.ids or ()):
                    break
        deadline = time.monotonic() + self.c.settle
        while True:
            op = await self.read("audit")
            if op.ok is True and not op.partial and everything <= set(op.ids or ()):
                break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def audit(url: str, config: AuditConfig = AuditConfig(), overrides: dict | None = None) -> AuditRun:
    """`run_audit` from synchronous code."""
    return asyncio.run(run_audit(url, config, overrides=overrides))


def write_history(run: AuditRun, path: str) -> None:
    """The run as JSON lines: a header object ({"audit": ...}), then one object per request."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            json.dumps(
                {
                    "audit": {
                        "url": run.url,
                        "run": run.run_id,
                        "dialect": asdict(run.dialect),
                        "config": asdict(run.config),
                    }
                }
            )
            + "\n"
        )
        for record in run.records:
            f.write(json.dumps(record, default=str) + "\n")

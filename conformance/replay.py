"""Replay a counterexample of `kvheal check` through the real system, call by call, and show the
same violation there.

The trace's actions are carried out with `InProcessSystem.perform` in its exact order (real
SQLite by default); after each step the abstraction of the real system must be the model's
state (where the implementation does two model steps in one call, the second is taken at once
and skipped when the trace reaches it: such a step changes only its own actor, so the order
does not matter). Then the violation is read off the real system, not the model:

* an invariant: in the last state (``NoDuplicates``: the id twice in the real cache's JSON;
  ``CacheFromStore``: an id in the cache with no ``comment:`` key; ``AckedIsStored``);
* a liveness lasso: the cycle is run `passes` times; on every pass the goal fails in some real
  state (``Converges``: an acknowledged message, among the C newest, absent from the real cache;
  ``PendingDrains``: a live tab's pending store not empty), and the cycle returns to the state
  where it started. A stutter loop (no action enabled) is the last state, for ever.

The as-built properties (SPEC §6-7), read off the real clients and the gates:

* ``EveryoneSees``: a live tab whose page (the client's shown set) lacks an acknowledged
  message among the C newest, on every pass of the loop;
* ``HealsTerminate``: a tab sent more heal requests for one message (counted at the gates: the
  requests that reached the worker) than the bound;
* ``HealOnlyMissing``: the invariant is about the step out of the trace's last state; the
  replay takes that step (the ``PollDone`` the model says sends the heal) and the evidence is
  the real heal request for an id the cache value its poll read holds.

    >>> from kvheal.model import Config, KVHealModel, check
    >>> from kvheal.conformance.replay import replay
    >>> config = Config.make(tabs=2)
    >>> result = check(KVHealModel(config))
    >>> r = replay(config, "NoDuplicates", result.properties["NoDuplicates"].trace, backend="memory")
    >>> r.reproduced, r.status
    (True, <Verdict.VIOLATED: 'violated'>)

Before touching the real system the trace is checked to be a counterexample in the model
(:func:`kvheal.model.trace.check_counterexample`): a trace that does not replay, or replays
but violates nothing (a truncated path, a loop that does not return or is not fair), raises
:class:`~kvheal.model.trace.TraceError` and is never reported "not reproduced".

The verdict (``status``, the shared :class:`~kvheal.model.results.Verdict`) is about the real
system along this trace: ``violated`` when it shows the violation, ``holds`` when it follows
the trace without showing it, ``unknown`` when it could not follow the trace.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvheal.model import Config, KVHealModel
from kvheal.model.definition import heal_bound
from kvheal.model.results import HOLDS, UNKNOWN, VIOLATED, Step, Trace, Verdict
from kvheal.model.trace import STUTTER, check_counterexample

from .abstraction import first_difference, flatten
from .lockstep import _actor_labels, _explain
from .system import Blocked, InProcessSystem

__all__ = ["ReplayStep", "ReplayResult", "replay", "real_violation"]


@dataclass
class ReplayStep:
    """One step of a replay: the trace's action, the real calls it made, the real cache after."""

    number: int
    action: str
    calls: list[str]
    cache: list[str]
    loop: bool = False
    pass_no: int = 0
    violation: str = ""


@dataclass
class ReplayResult:
    """What the replay showed: whether the real system has the violation, and the evidence."""

    property: str
    kind: str
    reproduced: bool
    evidence: str
    steps: list[ReplayStep] = field(default_factory=list)
    #: set when the real system left the model's path (the step, and the first field that differs)
    diverged: str = ""
    backend: str = "sqlite"
    ids: tuple[str, ...] = ()

    @property
    def status(self) -> Verdict:
        """The real system's verdict along the trace: violated (reproduced), unknown (the
        replay could not follow the trace), holds (followed it and showed no violation)."""
        if self.reproduced:
            return VIOLATED
        return UNKNOWN if self.diverged else HOLDS

    def as_json(self) -> dict[str, Any]:
        return {
            "property": self.property,
            "kind": self.kind,
            "status": str(self.status),
            "reproduced": self.reproduced,
            "evidence": self.evidence,
            "diverged": self.diverged or None,
            "backend": self.backend,
            "ids": list(self.ids),
            "steps": [
                {
                    "step": s.number,
                    "action": s.action,
                    "calls": s.calls,
                    "cache": s.cache,
                    "loop": s.loop,
                    "pass": s.pass_no,
                    "violation": s.violation or None,
                }
                for s in self.steps
            ],
        }


def real_violation(name: str, system: InProcessSystem, view: dict[str, Any]) -> str:
    """Why property `name` fails in the real system's current state ('' when it holds there).

    Read from the real KV and stores (through the abstraction's view of them); real ids shown."""
    ids = system.ids
    cache = system.cache_ids()
    stored = set(view["stored"])
    acked = [m for m, p in enumerate(view["post"]) if p == ("Acked",)]
    if name == "NoDuplicates":
        twice = sorted({i for i in cache if cache.count(i) > 1})
        return f"id {twice[0]} occurs {cache.count(twice[0])} times in the real cache" if twice else ""
    if name == "CacheFromStore":
        bad = [i for i in cache if i not in ids or ids.index(i) not in stored]
        return f"id {bad[0]} is in the real cache but comment:{bad[0]} does not exist" if bad else ""
    if name == "AckedIsStored":
        bad = [m for m in acked if m not in stored]
        return f"message {ids[bad[0]]} was acknowledged but its key is absent" if bad else ""
    if name == "Converges":
        newest = sorted(acked)[-system.config.cap :]
        missing = [ids[m] for m in newest if ids[m] not in cache]
        return (f"acknowledged {', '.join(missing)} absent from the real cache {cache}") if missing else ""
    if name == "EveryoneSees":
        newest = sorted(acked)[-system.config.cap :]
        for t, client in enumerate(system.clients):
            # a page on a channel (ai_channel) is due only that channel's messages
            lacks = [ids[m] for m in newest if ids[m] not in client.shown and system.due(t, m)]
            if view["alive"][t] and lacks:
                return (
                    f"live tab {t} has not shown {', '.join(lacks)} (its page shows {sorted(client.shown)})"
                )
        return ""
    if name == "HealsTerminate":
        bound = heal_bound(system.config)
        counts: dict[tuple[int, int], int] = {}
        for record in system.keeper.history:
            if record.key[0] == "heal" and record.key[2] is not None and record.key[1] != "bot":
                counts[record.key[1:3]] = counts.get(record.key[1:3], 0) + 1
        over = sorted((k, n) for k, n in counts.items() if n > bound)
        if over:
            (t, m), n = over[0]
            return f"tab {t} sent {n} heal requests for {ids[m]} (the bound is {bound})"
        return ""
    if name == "HealOnlyMissing":
        for t, real, read in system.heal_requests:
            if real in read:
                return (
                    f"tab {t} sent a heal request for {real}, which the cache its poll read holds "
                    f"({list(read)}; the real cache now: {cache})"
                )
        return ""
    if name == "PendingDrains":
        alive = view["alive"]
        if "shared_pending" in system.variants:
            left = view["pending"] if any(alive) else ()
            return f"the shared pending store still holds {[ids[m] for m in left]}" if left else ""
        for t, pend in enumerate(view["pending"]):
            if alive[t] and pend:
                return f"live tab {t}'s pending store still holds {[ids[m] for m in pend]}"
        return ""
    if name == "ClaimedOnce":
        twice = [m for m, n in enumerate(view.get("replies", ())) if n > 1]
        if twice:
            m = twice[0]
            return (
                f"both bot polls claimed {ids[m]}: {view['replies'][m]} claims of its status key "
                "succeeded (each poll replies)"
            )
        return ""
    if name == "StatusesConverge":
        return _open_copy(system)
    if name == "ScanWritesNothing":
        return _scan_wrote_nothing(system)
    raise ValueError(f"no real-system check for property {name!r}")


def _open_copy(system: InProcessSystem) -> str:
    """A real cache copy whose status is not final while its message's status key is."""
    from kvheal.impl.messages import CACHE_KEY
    from kvheal.impl.queue_api import FINAL, STATUS_PREFIX, decode_status

    kv = system.run(system._kv_contents())
    entries = json.loads(kv.get(CACHE_KEY) or "[]")
    for i, entry in enumerate(entries):
        key = (decode_status(kv.get(STATUS_PREFIX + entry["id"])) or {}).get("status")
        if key in FINAL and entry.get("status") not in FINAL:
            shown = [f"{e['id']}:{e.get('status', '-')}" for e in entries]
            return (
                f"status:{entry['id']} is {key} but copy {i + 1} of the real cache says "
                f"{entry.get('status', 'nothing')} ({shown})"
            )
    return ""


def _scan_wrote_nothing(system: InProcessSystem) -> str:
    """The bot's last pending scan put back exactly the array it read (nothing patched)."""
    from kvheal.impl.messages import CACHE_KEY

    if "bot_scan" not in system.variants:
        raise ValueError("no real-system check for ScanWritesNothing without bot_scan (the sweeper's)")
    scans = [r for r in system.keeper.history if r.key == ("scan",)]
    calls = scans[-1].kv_calls() if scans else []
    reads = [c for c in calls if c.op == "get" and c.key == CACHE_KEY]
    puts = [c for c in calls if c.op == "put" and c.key == CACHE_KEY]
    if reads and puts and json.loads(reads[-1].value or "[]") == json.loads(puts[-1].value):
        return (
            f"the bot's pending scan put back recent:comments unchanged ({puts[-1].value}, the array "
            "it read): a write with nothing to change"
        )
    return ""


#: invariants stated of the state before a step (SPEC §7): the replay takes that step
_STEP_PROPERTIES = frozenset({"HealOnlyMissing", "ScanWritesNothing"})


def _faulty_step(model: KVHealModel, state, name: str) -> Step | None:
    """The step out of `state` that `name` is about: a PollDone that requests a heal for an id
    the cache its poll read holds; for ``ScanWritesNothing``, the bot's ScanWrite (the sweeper's
    write of nothing is not replayed)."""
    if name == "ScanWritesNothing":
        writes = [a for a in model.actions(state) if a.name == "ScanWrite"]
        return Step.of("ScanWrite", {}) if writes else None
    before = model.view(state)
    for action in model.actions(state):
        if action.name != "PollDone":
            continue
        after = model.view(model.step(state, action))
        snap = before["poll"][action.args["t"]]
        for h, phase in after["heal"].items():
            m = h[1] if isinstance(h, tuple) else h
            sent = after.get("heals", {}).get(h, 0) > before.get("heals", {}).get(h, 0)
            if (sent or phase != before["heal"][h]) and m in snap[1]:
                return Step.of(action.name, action.args)
    return None


class _Driver:
    def __init__(self, model: KVHealModel, system: InProcessSystem) -> None:
        self.model = model
        self.system = system
        self.state = model.init_states()[0]
        self.ahead: list[str] = []

    def step(self, step: Step) -> list[str]:
        model = self.model
        action = model.action(step.action, step.args)
        if str(action) in self.ahead:
            self.ahead.remove(str(action))
            return ["(already done by the previous call)"]
        ran = self.system.perform(action)
        expected = model.step(self.state, action)
        impl = self.system.view()
        if model.view(expected) != impl:
            key = self.system.actor_of(action)
            found = _explain(model, expected, _actor_labels(model, key, action.args.get("t")), impl)
            if found:
                path, expected = found[0]
                self.ahead += [str(model.instances[lab]) for lab in path]
        self.state = expected
        return ran

    def difference(self) -> str | None:
        impl = self.system.view()
        want = self.model.view(self.state)
        if impl == want:
            return None
        key = first_difference(want, impl)
        return f"{key}: model {flatten(want)[key]}, real {flatten(impl).get(key)}"


def replay(
    config: Config,
    name: str,
    trace: Trace | Sequence[Mapping[str, Any]],
    *,
    backend: str = "sqlite",
    path: str | None = None,
    passes: int = 2,
) -> ReplayResult:
    """Drive the real system through `trace` (a counterexample to property `name`: a
    :class:`Trace` or its JSON) and say whether the real system shows the violation. Raises
    `TraceError` if the trace is not a counterexample in the model (a step does not replay,
    or it replays and violates nothing: `NotACounterexample`), ValueError for an unknown
    property."""
    model = KVHealModel(config)
    trace = Trace.of(trace)
    check_counterexample(model, name, trace)  # before any real call: raises naming the step
    kind = {p.name: p.kind for p in model.properties()}[name]
    loop = trace.loop_start
    tmp = None
    if backend == "sqlite" and path is None:
        tmp = tempfile.TemporaryDirectory(prefix="kvheal-replay-")
        path = os.path.join(tmp.name, "kv.sqlite3")
    system = InProcessSystem(config, backend=backend, path=path)
    driver = _Driver(model, system)
    result = ReplayResult(name, kind, False, "", backend=backend, ids=system.ids)
    try:
        stem = trace if loop is None else trace[:loop]
        cycle = [] if loop is None else trace[loop:]
        number = 0

        def run(step: Step, in_loop: bool, pass_no: int) -> bool:
            nonlocal number
            number += 1
            if step.action == STUTTER:
                calls = ["(nothing can move: stutters for ever)"]
                action = STUTTER
            else:
                action = str(step)
                try:
                    calls = driver.step(step)
                except Blocked as exc:
                    result.diverged = f"step {number}: {exc}"
                    return False
            view = system.view()
            result.steps.append(
                ReplayStep(
                    number,
                    action,
                    calls,
                    system.cache_ids(),
                    in_loop,
                    pass_no,
                    real_violation(name, system, view),
                )
            )
            diff = driver.difference()
            if diff is not None:
                result.diverged = f"step {number} ({action}): the real system left the model's path: {diff}"
                return False
            return True

        for step_json in stem:
            if not run(step_json, False, 0):
                result.evidence = "the replay could not follow the trace"
                return result
        if loop is None and name in _STEP_PROPERTIES:
            # the invariant is about the step out of the last state: take it
            witness = _faulty_step(model, driver.state, name)
            if witness is not None and not run(witness, False, 0):
                result.evidence = "the replay could not follow the trace"
                return result
        if loop is None:
            result.evidence = result.steps[-1].violation if result.steps else ""
            result.reproduced = bool(result.evidence)
            return result
        start_view = system.view()
        failing_passes = 0
        stutter = cycle[0].action == STUTTER
        for p in range(1, passes + 1 if not stutter else 2):
            bad_here = bool(real_violation(name, system, system.view()))
            for step_json in cycle:
                if not run(step_json, True, p):
                    result.evidence = "the replay could not follow the trace"
                    return result
                bad_here = bad_here or bool(result.steps[-1].violation)
            back = system.view() == start_view
            if bad_here and back:
                failing_passes += 1
        total = passes if not stutter else 1
        last = next((s.violation for s in reversed(result.steps) if s.violation), "")
        result.reproduced = failing_passes == total
        if stutter:
            result.evidence = f"nothing can move any more, and for ever: {last}" if last else ""
        else:
            result.evidence = (
                (f"on each of {total} passes around the loop, which returns to where it started: {last}")
                if result.reproduced
                else ""
            )
        return result
    finally:
        system.close()
        if tmp is not None:
            tmp.cleanup()

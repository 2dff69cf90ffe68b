"""Lockstep testing: a Hypothesis state machine that runs the model and the real system side by
side and fails, with a side-by-side table, the first time they disagree.

Each rule is a group of SPEC §4 actions: `start_post` (PostKey; PostAgain, a resend), `worker_step` (the worker's
PostRead/PostWrite/PostCache and Heal* steps: release its parked KV call), `poll` (PollRead),
`deliver_ack` (PostAck), `check_pending` (PollDone), `write_pending` (PendingWrite, with
shared_pending), `crash` (Crash, with tab_crash), `sweep` (Sweep*, with sweeper), and for the
as-built app (SPEC §6) `tick` (Tick: the injected clock advances one lag), `reload` (Reload) and
`fail` (the failing cache puts and PostFail, injected), `stale` (the reads served an older
value). A rule draws
one action of its group that both the model and the implementation can take now, performs it
on the real system (`InProcessSystem.perform`), steps the model, and compares the abstraction
of the real system with the model state. A further rule, `release_one`, lets one parked KV call
through in any order the implementation allows (for instance a compare-and-swap whose read is
stale), and the model must explain it as a stutter or as steps of that call's actor.

Where the implementation does in one call what the model does in two (with dedupe a writer that
finds its id skips the write, so the read is also the write; a crashed tab's answer is dropped
at once), the model takes the actor's following steps until the states agree (at most three).
After every step every action the model allows must be one the implementation can take, except
when the tab is in the middle of a pending-list task (a tab runs one at a time; the model lets
the other go first, the implementation queues it: the implementation allows fewer orders, which
is sound).

Check your own worker
---------------------
Subclass :class:`LockstepMachine` (or call :func:`lockstep_machine`) and override the hooks; the
test case is the subclass's ``TestCase``::

    from kvheal.conformance import LockstepMachine, lockstep_machine
    from kvheal.model import Config

    class MyWorkerMachine(LockstepMachine):
        config = Config.make(tabs=2, variants="dedupe")

        def make_app(self, kv, worker_config):
            return my_asgi_app(kv, dedupe=worker_config.dedupe)  # talks to the KV it is given

    TestMyWorker = MyWorkerMachine.TestCase

Hooks: ``make_app(kv, worker_config)`` (any ASGI app serving SPEC §8 over the KV it is given;
every KV call must go through ``kv``), ``wrap_kv(kv)`` (wrap the backend, e.g. to plant a fault),
``make_client(tab, store, transport, keep_verifying)`` (a :class:`kvheal.impl.client.Client`
or subclass), ``sweep_once(app)`` (one sweeper pass). ``backend`` is "memory" or "sqlite".
Run it with the profiles of :mod:`kvheal.conformance.profiles`.

A machine can also be driven by hand, for a scripted scenario or a regression test:
``machine = MyWorkerMachine(); machine.start(); machine.do("PostKey", m=0);
machine.release_call(0); ...; machine.teardown()``; each call raises `Divergence` with the
table as soon as the two sides disagree.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from kvheal.model import Action, Config, KVHealModel, State

from .abstraction import first_difference, flatten
from .system import Blocked, InProcessSystem

#: KV operations that only read (the rest write).
READ_OPS = frozenset({"get", "get_versioned", "list"})

__all__ = ["LockstepMachine", "lockstep_machine", "Divergence", "Step", "divergence_table", "RULE_GROUPS"]

#: rule name -> the SPEC §4 action names it performs
RULE_GROUPS: dict[str, tuple[str, ...]] = {
    "start_post": ("PostKey", "PostAgain"),
    "worker_step": (
        "PostRead",
        "PostWrite",
        "PostCache",
        "HealKey",
        "HealRead",
        "HealWrite",
        "HealCache",
        # the second heal of an id in flight (fire_and_forget)
        "HealKey2",
        "HealRead2",
        "HealWrite2",
        "HealCache2",
    ),
    "poll": ("PollRead",),
    "deliver_ack": ("PostAck",),
    "check_pending": ("PollDone",),
    "write_pending": ("PendingWrite",),
    "crash": ("Crash",),
    "sweep": ("SweepList", "SweepRead", "SweepWrite", "SweepCache"),
    # the as-built app (SPEC §6): the clock, reloads, and the injected failures
    "tick": ("Tick",),
    "reload": ("Reload",),
    "fail": (
        "PostWriteFail",
        "PostCacheFail",
        "HealWriteFail",
        "HealCacheFail",
        "HealWriteFail2",
        "HealCacheFail2",
        "PostFail",
    ),
    "stale": ("PostReadStale", "PollReadStale", "HealReadStale", "HealReadStale2", "BotVerifyStale"),
    # the bot (bot_scan, bot_claims, statuses): its pending scan, its two polls' claims, its
    # completions and the fixed scan's patch
    "bot": (
        "ScanRead",
        "ScanWrite",
        "ScanPatch",
        "Complete",
        "ClaimRead",
        "ClaimWrite",
        "ClaimCas",
        "ClaimRead2",
        "ClaimWrite2",
        "ClaimCas2",
        # bot_replies: its verification pass and its restart (the reply is posted by start_post)
        "BotVerify",
        "BotRestart",
    ),
}


class Divergence(AssertionError):
    """The implementation and the model disagree; the message is the side-by-side table."""


@dataclass
class Step:
    """One step of a lockstep run: what was done, which model actions explain it, both views."""

    number: int
    did: str
    actions: list[str]
    model: dict[str, Any]
    impl: dict[str, Any]


def _actor_labels(model: KVHealModel, key: tuple | None, tab: int | None = None) -> set[int]:
    """Labels of the model actions an actor may take (a crash: the tab's dropped answers)."""
    out = set()
    for a in model.instances:
        args = a.args
        if key is None:
            if a.name == "PostAck" and model.owner[args["m"]] == tab:
                out.add(a.label)
        elif key[0] == "post" and a.name.startswith("Post") and args.get("m") == key[1]:
            out.add(a.label)
        elif key[0] == "poll" and a.name in ("PollRead", "PollDone", "PendingWrite") and args["t"] == key[1]:
            out.add(a.label)
        elif (
            key[0] == "heal"
            and a.name.startswith("Heal")
            and args["m"] == key[2]
            and args.get("t", key[1]) == key[1]
        ):
            out.add(a.label)
        elif key[0] == "sweep" and a.name.startswith("Sweep"):
            out.add(a.label)
        elif key[0] == "scan" and a.name.startswith("Scan"):
            out.add(a.label)
        elif key[0] == "complete" and a.name == "Complete" and args["m"] == key[1]:
            out.add(a.label)
        elif key[0] == "verify" and a.name.startswith("BotVerify"):
            out.add(a.label)
        elif (
            key[0] == "claim"
            and a.name.startswith("Claim")
            and a.name.endswith("2") == (key[1] == 1)
            and args["m"] == key[2]
        ):
            out.add(a.label)
    if key is not None and key[0] == "post":
        t = model.owner[key[1]]
        out |= {a.label for a in model.instances if a.name == "PendingWrite" and a.args["t"] == t}
    return out


def _explain(
    model: KVHealModel, start: State, labels: set[int], target: dict[str, Any], depth: int = 3
) -> list[tuple[list[int], State]]:
    """Paths of at most `depth` steps with `labels` from `start` to a state whose view is `target`."""
    frontier = [([], start)]
    found = []
    seen = {start}
    for _ in range(depth + 1):
        nxt = []
        for path, s in frontier:
            if model.view(s) == target:
                found.append((path, s))
                continue
            for lab, n in model.successors(s):
                if lab in labels and n not in seen:
                    seen.add(n)
                    nxt.append((path + [lab], n))
        if found:
            return found
        frontier = nxt
    return found


def divergence_table(config: Config, steps: list[Step], failed: Step, reason: str) -> str:
    """The trace so far and the failing step, side by side, with the first differing field marked.

    One row per step: what was done (the action, or the KV call released, and the real calls
    it made) and the model actions that explain it; the fields the step changed in the model;
    the implementation's, or ``(same)`` when its state is the model's. Then the failing state,
    field by field."""
    rows = []
    prev_m: dict[str, str] = {}
    prev_i: dict[str, str] = {}
    for step in steps + [failed]:
        fm, fi = flatten(step.model), flatten(step.impl)
        changed_m = [f"{k}={v}" for k, v in fm.items() if prev_m.get(k) != v] if prev_m else ["initial"]
        changed_i = [f"{k}={v}" for k, v in fi.items() if prev_i.get(k) != v] if prev_i else ["initial"]
        action = " + ".join(step.actions) or "(stutter)"
        label = f"{step.did} → {action}" if step.did and step.did != action else action
        impl_text = "(same)" if fm == fi else " ".join(changed_i) + " ◀"
        rows.append((str(step.number), label, " ".join(changed_m), impl_text))
        prev_m, prev_i = fm, fi
    widths = [
        max(len(r[i]) for r in rows + [("step", "action", "model state (changed fields)", "")])
        for i in range(3)
    ]
    lines = [
        f"lockstep divergence (tabs={config.tabs} per_tab={config.per_tab} cap={config.cap} "
        f"variant={config.variant_label()}): {reason}",
        "",
    ]
    head = ("step", "action", "model state (changed fields)", "implementation state")
    lines.append(f"{head[0]:>{widths[0]}}  {head[1]:<{widths[1]}}  {head[2]:<{widths[2]}}  {head[3]}")
    for r in rows:
        lines.append(f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip())
    fm, fi = flatten(failed.model), flatten(failed.impl)
    first = first_difference(failed.model, failed.impl)
    w = max(len(v) for v in list(fm.values()) + ["model"])
    lines += ["", f"state after step {failed.number}:", f"  {'field':<12}  {'model':<{w}}  implementation"]
    for key in list(fm) + [k for k in fi if k not in fm]:
        a, b = fm.get(key, "-"), fi.get(key, "-")
        mark = "  ◀ first difference" if key == first else ("  ◀" if a != b else "")
        lines.append(f"  {key:<12}  {a:<{w}}  {b}{mark}")
    return "\n".join(lines)


class LockstepMachine(RuleBasedStateMachine):
    """The model and the real system in lockstep (see the module docstring for subclassing)."""

    #: the model configuration (tabs, per_tab, cap, variants); subclasses set it
    config: ClassVar[Config] = Config.make(tabs=2)
    #: "memory" (fast, the default) or "sqlite" (a real file per run)
    backend: ClassVar[str] = "memory"

    # -- hooks -------------------------------------------------------------------------------
    def make_app(self, kv, worker_config):
        """The ASGI worker over `kv` (default: kvheal's own)."""
        from kvheal.impl.worker import create_app

        return create_app(kv, worker_config)

    def wrap_kv(self, kv):
        """Wrap the KV backend (default: as it is)."""
        return kv

    def make_client(self, tab: int, store, transport, keep_verifying: bool):
        """Tab `tab`'s client (default: kvheal's own `Client`)."""
        from kvheal.impl.client import Client

        return Client(
            "http://worker", tab=str(tab), store=store, transport=transport, keep_verifying=keep_verifying
        )

    async def sweep_once(self, app) -> None:
        """One pass of the worker's sweeper."""
        await app.state.sweeper.run_once()

    # -- set-up ------------------------------------------------------------------------------
    def __init__(self) -> None:
        super().__init__()
        self.model = KVHealModel(self.config)
        self.state = self.model.init_states()[0]
        self._tmp = None
        path = None
        if self.backend == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="kvheal-lockstep-")
            path = os.path.join(self._tmp.name, "kv.sqlite3")
        self.system = InProcessSystem(
            self.config,
            backend=self.backend,
            path=path,
            wrap_kv=self.wrap_kv,
            make_app=self.make_app,
            make_client=self.make_client,
            sweep_once=self.sweep_once,
        )
        self.steps: list[Step] = []

    @initialize()
    def start(self) -> None:
        """The initial states agree."""
        self._compare(
            Step(0, "", ["initial"], self.model.view(self.state), self.system.view()),
            "the initial states differ",
        )

    def teardown(self) -> None:
        self.system.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- the bookkeeping ---------------------------------------------------------------------
    def _available(self, names: tuple[str, ...]) -> list[Action]:
        return [a for a in self.model.actions(self.state) if a.name in names and self.system.can_perform(a)]

    def _compare(self, step: Step, reason: str) -> None:
        if step.model != step.impl:
            field = first_difference(step.model, step.impl)
            raise Divergence(
                divergence_table(self.config, self.steps, step, f"{reason}; first difference: {field}")
            )
        self.steps.append(step)

    def _check_complete(self) -> None:
        for action in self.model.actions(self.state):
            if self.system.can_perform(action):
                continue
            args = action.args
            tab = args.get("t", self.model.owner[args["m"]] if "m" in args else None)
            if tab is not None and self.system.tab_busy(tab):
                continue
            if self.system.write_is_noop(action):  # a refused put of a write never made
                continue
            impl = self.system.view()
            step = Step(len(self.steps), "", [f"{action}?"], self.model.view(self.state), impl)
            raise Divergence(
                divergence_table(
                    self.config,
                    self.steps,
                    step,
                    f"the model can take {action} here, but the implementation cannot",
                )
            )

    def _do(self, action: Action) -> None:
        number = len(self.steps)
        try:
            ran = self.system.perform(action)
        except Blocked as exc:
            raise Divergence(f"lockstep: {exc}") from None
        expected = self.model.step(self.state, action)
        impl = self.system.view()
        did = f"{action}: {', '.join(ran)}"
        actions = [str(action)]
        if self.model.view(expected) != impl:
            key = self.system.actor_of(action)
            labels = _actor_labels(self.model, key, action.args.get("t"))
            found = _explain(self.model, expected, labels, impl)
            if found:
                path, expected = found[0]
                actions += [str(self.model.instances[lab]) for lab in path]
        self.state = expected
        self._compare(
            Step(number, did, actions, self.model.view(expected), impl),
            f"after {action} the implementation is not in the model's state",
        )
        self._check_complete()

    def _group(self, data, rule_name: str) -> None:
        options = self._available(RULE_GROUPS[rule_name])
        self._do(data.draw(st.sampled_from(options), label=rule_name))

    # -- rules -------------------------------------------------------------------------------
    @precondition(lambda self: self._available(RULE_GROUPS["start_post"]))
    @rule(data=st.data())
    def start_post(self, data) -> None:
        """A tab posts one of its messages (PostKey)."""
        self._group(data, "start_post")

    @precondition(lambda self: self._available(RULE_GROUPS["worker_step"]))
    @rule(data=st.data())
    def worker_step(self, data) -> None:
        """The worker takes one step of a post or a heal (its parked KV call proceeds)."""
        self._group(data, "worker_step")

    @precondition(lambda self: self._available(RULE_GROUPS["poll"]))
    @rule(data=st.data())
    def poll(self, data) -> None:
        """A tab reads the cache (PollRead)."""
        self._group(data, "poll")

    @precondition(lambda self: self._available(RULE_GROUPS["deliver_ack"]))
    @rule(data=st.data())
    def deliver_ack(self, data) -> None:
        """A tab records an acknowledged post as pending (PostAck)."""
        self._group(data, "deliver_ack")

    @precondition(lambda self: self._available(RULE_GROUPS["check_pending"]))
    @rule(data=st.data())
    def check_pending(self, data) -> None:
        """A tab checks its pending ids against its poll and asks for heals (PollDone)."""
        self._group(data, "check_pending")

    @precondition(lambda self: self._available(RULE_GROUPS["write_pending"]))
    @rule(data=st.data())
    def write_pending(self, data) -> None:
        """A tab writes the shared pending list back (PendingWrite)."""
        self._group(data, "write_pending")

    @precondition(lambda self: self._available(RULE_GROUPS["crash"]))
    @rule(data=st.data())
    def crash(self, data) -> None:
        """A tab dies (Crash)."""
        self._group(data, "crash")

    @precondition(lambda self: self._available(RULE_GROUPS["sweep"]))
    @rule(data=st.data())
    def sweep(self, data) -> None:
        """The sweeper takes a step."""
        self._group(data, "sweep")

    @precondition(lambda self: self._available(RULE_GROUPS["tick"]))
    @rule(data=st.data())
    def tick(self, data) -> None:
        """The clock advances one lag (Tick)."""
        self._group(data, "tick")

    @precondition(lambda self: self._available(RULE_GROUPS["reload"]))
    @rule(data=st.data())
    def reload(self, data) -> None:
        """A tab's page reloads (Reload)."""
        self._group(data, "reload")

    @precondition(lambda self: self._available(RULE_GROUPS["fail"]))
    @rule(data=st.data())
    def fail(self, data) -> None:
        """An injected failure: a cache put refused by the write limit, or a failed POST."""
        self._group(data, "fail")

    @precondition(lambda self: self._available(RULE_GROUPS["stale"]))
    @rule(data=st.data())
    def stale(self, data) -> None:
        """A read served the cache's value before its last write (stale_reads)."""
        self._group(data, "stale")

    @precondition(lambda self: self._available(RULE_GROUPS["bot"]))
    @rule(data=st.data())
    def bot(self, data) -> None:
        """The bot's pending scan (bot_scan) or one of its polls' claims (bot_claims)."""
        self._group(data, "bot")

    @precondition(lambda self: self.system.kv_gates())
    @rule(data=st.data())
    def release_one(self, data) -> None:
        """One parked KV call proceeds, in any order: the model must explain it."""
        gates = self.system.kv_gates()
        self.release_call(data.draw(st.integers(0, len(gates) - 1), label="release_one"))

    def _read_gates(self) -> list[int]:
        """Indices (in ``kv_gates`` order) of parked KV calls that only read."""
        return [i for i, g in enumerate(self.system.kv_gates()) if g.call.op in READ_OPS]

    @precondition(lambda self: len(self._read_gates()) >= 2)
    @rule()
    def release_reads(self) -> None:
        """Every parked read proceeds before any write: the schedule under which concurrent
        read-modify-writes race (each then writes from its own stale snapshot). One rule, so
        Hypothesis reaches lost updates without drawing the reads one by one."""
        for _ in range(64):  # each release moves one actor on; reads per actor are few
            reads = self._read_gates()
            if not reads:
                break
            self.release_call(reads[0])

    # -- scripted use ----------------------------------------------------------------------
    def do(self, name: str, **args: int) -> None:
        """Take SPEC §4 action `name(args)` in lockstep (for scripted tests); Divergence if the
        two sides disagree afterwards."""
        self._do(self.model.action(name, args))

    def release_call(self, index: int = 0) -> None:
        """Let the `index`-th parked KV call through (in `kv_gates` order) and check that the
        model explains it as a stutter or as steps of the call's actor."""
        gate = self.system.kv_gates()[index]
        number = len(self.steps)
        who = " ".join(map(str, gate.actor))
        call = self.system.describe(gate.call)
        self.system.release(gate)
        impl = self.system.view()
        found = _explain(self.model, self.state, _actor_labels(self.model, gate.actor), impl)
        actions: list[str] = []
        if found:
            path, self.state = found[0]
            actions = [str(self.model.instances[lab]) for lab in path]
        self._compare(
            Step(number, f"release {who}: {call}", actions, self.model.view(self.state), impl),
            f"no model step of {who} explains its {call}",
        )
        self._check_complete()

    @precondition(
        lambda self: (
            not any(self.system.can_perform(a) for a in self.model.actions(self.state))
            and not self.system.kv_gates()
        )
    )
    @rule()
    def stutter(self) -> None:
        """Nothing can move (every tab dead, nothing in flight): the states still agree."""
        self._compare(
            Step(len(self.steps), "stutter", [], self.model.view(self.state), self.system.view()),
            "the states differ at rest",
        )


def lockstep_machine(
    config: Config,
    *,
    base: type[LockstepMachine] = LockstepMachine,
    backend: str | None = None,
    name: str | None = None,
    **hooks: Any,
) -> type[LockstepMachine]:
    """A `LockstepMachine` subclass for `config` (and optional hook overrides as functions
    taking `self` first); its `TestCase` is a unittest test case."""
    attrs: dict[str, Any] = {"config": config, **hooks}
    if backend is not None:
        attrs["backend"] = backend
    label = config.variant_label().replace(",", "_")
    cls = type(name or f"Lockstep_{label}_t{config.tabs}", (base,), attrs)
    return cls

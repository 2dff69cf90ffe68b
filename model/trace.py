"""Traces: replaying SPEC §9 traces through the model, deciding whether one really is a
counterexample, and saying what each step changed.

A trace is a :class:`~kvheal.model.results.Trace` of steps (action name, arguments, a loop
flag; optionally the state each reaches); in JSON, a list of ``{"action": name, "args":
{...}}``. A lasso's steps from the start of its cycle carry ``"loop": true``, and a loop that
is a stutter (no action enabled) is the single pseudo-step ``{"action": "Stutter", "args": {},
"loop": true}``. Every function here takes a ``Trace`` or its JSON list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .core import KVHealModel, State
from .results import STUTTER, Step, Trace, TraceError

__all__ = [
    "STUTTER",
    "Step",
    "Trace",
    "TraceError",
    "NotACounterexample",
    "replay_trace",
    "check_counterexample",
    "with_states",
    "loop_start",
    "fmt_value",
    "flatten",
    "changes",
]


class NotACounterexample(TraceError):
    """A trace that replays through the model but does not violate the property it is said
    to: an invariant that still holds at its end (a truncated trace), a lasso whose loop does
    not return, is not fair, or never fails the goal."""


def replay_trace(model: KVHealModel, trace: Iterable[Mapping[str, Any]]) -> list[State]:
    """The states a trace visits, from the initial state; raises :class:`TraceError` at the
    first step that is unknown or not enabled. A stutter step repeats the last state."""
    s = model.init_states()[0]
    states = [s]
    for i, raw in enumerate(trace):
        step = raw if isinstance(raw, Step) else Step.from_json(raw, i + 1)
        if step.action == STUTTER:
            if model.successors(s):
                raise TraceError(f"step {i + 1}: Stutter while actions are enabled")
            states.append(s)
            continue
        try:
            action = model.action(step.action, step.args)
        except (KeyError, ValueError, TypeError):
            raise TraceError(f"step {i + 1}: no action {step.action}{step.args} in this model") from None
        try:
            s = model.step(s, action)
        except ValueError:
            raise TraceError(f"step {i + 1}: {action} is not enabled") from None
        states.append(s)
    return states


def with_states(model: KVHealModel, trace: Iterable[Mapping[str, Any]]) -> Trace:
    """The trace with the state (view) each step reaches, and the initial state's view."""
    trace = Trace.of(trace)
    states = replay_trace(model, trace)
    steps = tuple(Step(s.action, s.pairs, s.loop, model.view(st)) for s, st in zip(trace, states[1:]))
    return Trace(steps, initial=model.view(states[0]))


def _span(start: int, end: int) -> str:
    return f"step {start}" if start == end else f"steps {start}-{end}"


def check_counterexample(model: KVHealModel, name: str, trace: Iterable[Mapping[str, Any]]) -> list[State]:
    """The states of ``trace`` when it is a counterexample to property ``name`` in ``model``
    (SPEC §7): for an invariant, a path whose last state breaks it; for an eventually-always
    goal, a lasso whose loop returns to where it starts, is fair (every fair action instance
    enabled throughout it is taken in it) and passes a state where the goal is false.

    Raises :class:`TraceError` when a step does not replay, :class:`NotACounterexample`
    (naming the step) when the trace replays but violates nothing, ValueError when the
    property does not apply to the model."""
    props = {p.name: p for p in model.properties()}
    if name not in props:
        raise ValueError(f"property {name!r} does not apply to this design (it has: {', '.join(props)})")
    prop = props[name]
    trace = Trace.of(trace)
    loop = trace.loop_start
    if prop.kind == "invariant" and loop is not None:
        raise NotACounterexample(f"{name} is an invariant; its counterexample is a path, not a lasso")
    if prop.kind != "invariant" and loop is None:
        raise NotACounterexample(
            f'{name} is a liveness property; its counterexample must be a lasso (steps with "loop": true)'
        )
    states = replay_trace(model, trace)  # TraceError at the first step that does not replay
    n = len(trace)
    if loop is None:
        if prop.holds(states[-1]):
            if not n:
                raise NotACounterexample(f"{name} holds in the initial state and the trace is empty")
            raise NotACounterexample(f"{name} holds after step {n}, the last (is the trace truncated?)")
        return states
    gap = next((i for i in range(loop, n) if not trace[i].loop), None)
    if gap is not None:
        raise NotACounterexample(
            f'step {gap + 1} is in the loop (steps {loop + 1}-{n}) but has no "loop": true'
        )
    span = _span(loop + 1, n)
    if states[loop] != states[-1]:
        raise NotACounterexample(
            f"the loop ({span}) does not return to the state where it starts "
            f"(before step {loop + 1}): is the trace truncated?"
        )
    cycle = states[loop:-1]
    if all(prop.holds(s) for s in cycle):
        raise NotACounterexample(f"{name}'s goal holds in every state of the loop ({span})")
    taken = {model.action(s.action, s.args).label for s in trace.cycle if s.action != STUTTER}
    throughout = set.intersection(*({lab for lab, _ in model.successors(s)} for s in cycle))
    unfair = sorted(lab for lab in throughout if model.is_fair(lab) and lab not in taken)
    if unfair:
        raise NotACounterexample(
            f"the loop ({span}) is not fair: {model.instances[unfair[0]]} is "
            "enabled in every state of it and never taken"
        )
    return states


def loop_start(trace: Iterable[Mapping[str, Any]]) -> int | None:
    """Index of the first step of a lasso's cycle, or None for a finite trace."""
    for i, step in enumerate(trace):
        if step.get("loop"):
            return i
    return None


def fmt_value(value: Any) -> str:
    """Any value of a view as text: a phase ``("CacheRead", (0,))`` as ``CacheRead([0])``, ids
    ``(0, 2)`` as ``[0,2]``, booleans as ``true``/``false``. Values that are not phases (such
    as an abstraction's ``"?…"`` markers) print as they are."""
    if isinstance(value, tuple):
        if value and isinstance(value[0], str) and value[0][:1].isupper():
            name, *rest = value
            return name if not rest else f"{name}({', '.join(fmt_value(r) for r in rest)})"
        return "[" + ",".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def flatten(view: dict[str, Any]) -> dict[str, str]:
    """A view (``KVHealModel.view`` or an abstraction of the real system) as ``field -> text``
    in state-layout order: ``cache``, ``post[0]``, ``pending[1]``, ``heal[0,1]`` ..."""
    out = {"stored": fmt_value(view["stored"]), "cache": fmt_value(view["cache"])}
    for m, p in enumerate(view["post"]):
        out[f"post[{m}]"] = fmt_value(p)
    pending = view["pending"]
    if pending and isinstance(pending[0], tuple):
        for t, p in enumerate(pending):
            out[f"pending[{t}]"] = fmt_value(p)
    elif "lists" in view:
        out["pending"] = fmt_value(pending)
    else:
        for t in range(len(view["poll"])):
            out[f"pending[{t}]"] = "[]"
    for t, p in enumerate(view["poll"]):
        out[f"poll[{t}]"] = fmt_value(p)
    for var in ("heal", "heal2"):  # heal2: a second heal of the id in flight (fire_and_forget)
        for key, p in view.get(var, {}).items():
            name = f"{var}[{key[0]},{key[1]}]" if isinstance(key, tuple) else f"{var}[{key}]"
            out[name] = fmt_value(p)
    for t, a in enumerate(view["alive"]):
        out[f"alive[{t}]"] = fmt_value(a)
    out["sweep"] = fmt_value(view["sweep"])
    for t, p in enumerate(view.get("lists", ())):
        out[f"lists[{t}]"] = fmt_value(p)
    # SPEC §6's time and tab view (tab_view, reload), when the design has them
    if "clock" in view:
        out["clock"] = fmt_value(view["clock"])
    for key in ("ts", "cursor", "shown", "frozen", "reloaded"):
        for i, v in enumerate(view.get(key, ())):
            out[f"{key}[{i}]"] = fmt_value(v)
    # the faults' state and the ghost count of heals sent (SPEC §6-7), when the design has them
    for key in ("scan", "put_failed", "prev"):
        if key in view:
            out[key] = fmt_value(view[key])
    for key in ("claim", "claim2", "replies"):  # the bot's claims (bot_claims)
        for i, v in enumerate(view.get(key, ())):
            out[f"{key}[{i}]"] = fmt_value(v)
    # the claims' keys (bot_claims); the final status keys (statuses); the bot's list (bot_replies)
    for key in ("claimed", "done", "verify"):
        if key in view:
            out[key] = fmt_value(view[key])
    for key, p in view.get("heals", {}).items():
        out[f"heals[{key[0]},{key[1]}]" if isinstance(key, tuple) else f"heals[{key}]"] = fmt_value(p)
    return out


def changes(model: KVHealModel, before: State, after: State) -> list[str]:
    """What a step changed, as ``field: old → new`` strings in state-layout order."""
    a, b = flatten(model.view(before)), flatten(model.view(after))
    return [f"{k}: {a[k]} → {b[k]}" for k in a if a[k] != b[k]]

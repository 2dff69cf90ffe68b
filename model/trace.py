"""Traces: replaying SPEC §9 trace steps through the model and saying what each step changed.

A trace is a list of steps ``{"action": name, "args": {...}}``; a lasso's steps from the start
of its cycle carry ``"loop": true``, and a loop that is a stutter (no action enabled) is the
single pseudo-step ``{"action": "Stutter", "args": {}, "loop": true}``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .core import KVHealModel, State

STUTTER = "Stutter"


class TraceError(ValueError):
    """A trace that does not replay: a step names no action, or one that is not enabled."""


def replay_trace(model: KVHealModel, trace: Iterable[Mapping[str, Any]]) -> list[State]:
    """The states a trace visits, from the initial state; raises :class:`TraceError` at the
    first step that is unknown or not enabled. A stutter step repeats the last state."""
    s = model.init_states()[0]
    states = [s]
    for i, step in enumerate(trace):
        name = step.get("action")
        args = step.get("args", {})
        if name == STUTTER:
            if model.successors(s):
                raise TraceError(f"step {i + 1}: Stutter while actions are enabled")
            states.append(s)
            continue
        if not isinstance(name, str) or not isinstance(args, Mapping):
            raise TraceError(f"step {i + 1}: expected {{'action': str, 'args': {{...}}}}")
        try:
            action = model.action(name, {str(k): int(v) for k, v in args.items()})
        except (KeyError, ValueError, TypeError):
            raise TraceError(f"step {i + 1}: no action {name}{dict(args)} in this model") from None
        try:
            s = model.step(s, action)
        except ValueError:
            raise TraceError(f"step {i + 1}: {action} is not enabled") from None
        states.append(s)
    return states


def loop_start(trace: list[Mapping[str, Any]]) -> int | None:
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
    for key, p in view["heal"].items():
        name = f"heal[{key[0]},{key[1]}]" if isinstance(key, tuple) else f"heal[{key}]"
        out[name] = fmt_value(p)
    for t, a in enumerate(view["alive"]):
        out[f"alive[{t}]"] = fmt_value(a)
    out["sweep"] = fmt_value(view["sweep"])
    for t, p in enumerate(view.get("lists", ())):
        out[f"lists[{t}]"] = fmt_value(p)
    return out


def changes(model: KVHealModel, before: State, after: State) -> list[str]:
    """What a step changed, as ``field: old → new`` strings in state-layout order."""
    a, b = flatten(model.view(before)), flatten(model.view(after))
    return [f"{k}: {a[k]} → {b[k]}" for k in a if a[k] != b[k]]

"""Shared helpers for the model tests: checking a counterexample really is one."""

from __future__ import annotations

import functools

import pytest

from kvheal.model import CheckResult, Config, KVHealModel, check
from kvheal.model.trace import loop_start, replay_trace


@functools.cache
def checked(
    tabs: int, per_tab: int = 1, cap: int | None = None, variants: str = ""
) -> tuple[KVHealModel, CheckResult]:
    """One full check per configuration for the whole session (counts and verdicts share it)."""
    model = KVHealModel(Config.make(tabs=tabs, per_tab=per_tab, cap=cap, variants=variants))
    return model, check(model)


def assert_counterexample(model: KVHealModel, name: str, trace: list[dict]) -> None:
    """Replay ``trace`` step by step (each step enabled) and check it violates ``name``:
    an invariant fails in the last state; for a liveness goal the trace is a lasso whose
    loop returns to its start, is fair, and passes a state where the goal is false."""
    prop = {p.name: p for p in model.properties()}[name]
    states = replay_trace(model, trace)  # raises at the first step that is not enabled
    loop = loop_start(trace)
    if prop.kind == "invariant":
        assert loop is None
        assert not prop.holds(states[-1]), "the last state must violate the invariant"
        assert all(prop.holds(s) for s in states[:-1]), "a shortest path violates only at its end"
        return
    assert loop is not None, "a liveness counterexample is a lasso"
    assert all("loop" not in step for step in trace[:loop])
    assert all(step.get("loop") for step in trace[loop:])
    cycle_states = states[loop:-1] if trace[loop]["action"] != "Stutter" else [states[-1]]
    if trace[loop]["action"] == "Stutter":
        assert len(trace) == loop + 1
        assert model.successors(states[-1]) == [], "a stutter loop needs a state with no action"
    else:
        assert states[loop] == states[-1], "the loop must return to where it starts"
    assert any(not prop.holds(s) for s in cycle_states), "the goal must fail on the loop"
    taken = {
        model.action(step["action"], step["args"]).label
        for step in trace[loop:]
        if step["action"] != "Stutter"
    }
    enabled_throughout = set.intersection(*({lab for lab, _ in model.successors(s)} for s in cycle_states))
    unfair = {lab for lab in enabled_throughout if model.is_fair(lab) and lab not in taken}
    assert not unfair, f"loop is not fair: {[str(model.instances[l]) for l in unfair]} never taken"


@pytest.fixture
def check_counterexample():
    return assert_counterexample

"""Typed results: one verdict vocabulary for every engine, the Trace type, and what makes a
trace a counterexample in the model (SPEC §7, §9)."""

from __future__ import annotations

import json

import pytest

from kvheal.model import Config, KVHealModel, Step, Trace, TraceError, Verdict, check, engine, prove, results
from kvheal.model.trace import NotACounterexample, check_counterexample, with_states

from .conftest import checked


# ---------------------------------------------------------------- the one vocabulary
def test_verdict_is_exactly_three_words():
    assert [(v.name, v.value) for v in Verdict] == [
        ("HOLDS", "holds"),
        ("VIOLATED", "violated"),
        ("UNKNOWN", "unknown"),
    ]
    assert json.dumps([Verdict.HOLDS, Verdict.VIOLATED]) == '["holds", "violated"]'
    assert f"{Verdict.UNKNOWN}" == "unknown"
    with pytest.raises(ValueError):
        Verdict("proved")


def test_the_old_names_are_the_same_objects():
    # check's, prove's and the package's names all are the one Verdict's members
    assert engine.HOLDS is results.HOLDS is Verdict.HOLDS
    assert engine.VIOLATED is Verdict.VIOLATED and engine.UNKNOWN is Verdict.UNKNOWN
    assert prove.PROVED is Verdict.HOLDS
    assert prove.COUNTEREXAMPLE is Verdict.VIOLATED
    assert prove.UNKNOWN is Verdict.UNKNOWN
    from kvheal import model

    assert model.HOLDS is Verdict.HOLDS and model.Verdict is results.Verdict


def test_every_engine_returns_the_same_verdict_type():
    from kvheal.conformance.replay import replay
    from kvheal.conformance.validate import Validation

    cfg = Config.make(tabs=2)
    explicit = check(KVHealModel(cfg))
    assert {type(p.status) for p in explicit.properties.values()} == {Verdict}
    z3 = prove.prove(cfg, properties={"NoDuplicates", "AckedIsStored"}, depth=9)
    assert {n: p.status for n, p in z3.properties.items()} == {
        "AckedIsStored": Verdict.HOLDS,
        "NoDuplicates": Verdict.VIOLATED,
    }
    assert all(type(p.status) is Verdict for p in z3.properties.values())
    # "proved" is holds; how it was proved is the method, kept apart
    assert z3.properties["AckedIsStored"].method in ("1-induction", "induction with strengthening")
    assert z3.properties["NoDuplicates"].method == "bmc"
    real = replay(cfg, "NoDuplicates", explicit.properties["NoDuplicates"].trace, backend="memory")
    assert real.status is Verdict.VIOLATED and real.as_json()["status"] == "violated"
    assert [Validation(s, 0).verdict for s in ("ok", "illegal", "unknown")] == [
        Verdict.HOLDS,
        Verdict.VIOLATED,
        Verdict.UNKNOWN,
    ]
    assert Validation("illegal", 3).as_json()["verdict"] == "violated"


def test_a_status_set_late_is_still_a_verdict():
    pf = prove.PropertyProof("X", "invariant")
    assert pf.status is Verdict.UNKNOWN and pf.trace == Trace()
    pf.status = "holds"
    pf.trace = [{"action": "PostKey", "args": {"m": 0}}]
    assert pf.status is Verdict.HOLDS and isinstance(pf.trace, Trace) and pf.trace[0].action == "PostKey"
    with pytest.raises(ValueError):
        pf.status = "proved"


@pytest.mark.parametrize(
    "verdicts, overall, status",
    [
        ([], "holds", 0),
        (["holds", "holds"], "holds", 0),
        (["holds", "unknown"], "unknown", 3),
        (["unknown", "violated", "holds"], "violated", 1),
    ],
)
def test_overall_verdict_and_exit_status(verdicts, overall, status):
    assert results.overall(verdicts) is Verdict(overall)
    assert results.exit_status(Verdict(v) for v in verdicts) == status


# ---------------------------------------------------------------- the Trace type
LASSO_JSON = [
    {"action": "PostKey", "args": {"m": 0}},
    {"action": "HealKey", "args": {"t": 1, "m": 0}, "loop": True},
    {"action": "Stutter", "args": {}, "loop": True},
]


def test_trace_json_round_trip_and_fields():
    t = Trace.from_json(LASSO_JSON)
    assert t.as_json() == LASSO_JSON
    assert Trace.from_json(t.as_json()) == t
    assert len(t) == 3 and t.loop_start == 1 and t.is_lasso
    assert [s.action for s in t] == ["PostKey", "HealKey", "Stutter"]
    assert t[1].args == {"t": 1, "m": 0} and t[1].pairs == (("t", 1), ("m", 0))
    assert [s.loop for s in t] == [False, True, True] and t[2].is_stutter
    assert t.stem.as_json() == LASSO_JSON[:1] and t.cycle.as_json() == LASSO_JSON[1:]
    assert isinstance(t[1:], Trace) and str(t[1]) == "HealKey(t=1, m=0)"
    assert repr(t) == "Trace([PostKey(m=0), ↻ HealKey(t=1, m=0), Stutter()])"
    path = Trace.from_json(LASSO_JSON[:1])
    assert path.loop_start is None and not path.is_lasso and path.cycle == Trace()


def test_a_step_reads_as_its_json_mapping():
    step = Step.of("PostWrite", {"m": 1}, loop=True)
    assert step == {"action": "PostWrite", "args": {"m": 1}, "loop": True}
    assert step["action"] == "PostWrite" and step.get("loop") is True and "state" not in step
    assert Step.of("PostWrite", {"m": 1}) != step and "loop" not in Step.of("PostWrite", {"m": 1})
    assert dict(Step.of("PostWrite", {"m": 1})) == {"action": "PostWrite", "args": {"m": 1}}
    assert hash(step) == hash(Step.of("PostWrite", [("m", 1)], loop=True))
    assert Trace.from_json(LASSO_JSON) == LASSO_JSON  # a trace equals its JSON list


@pytest.mark.parametrize(
    "data, message",
    [
        ({"action": "PostKey"}, "a trace is a list"),
        ([{"action": "PostKey", "args": {"m": 0}}, "PostKey"], "step 2: expected"),
        ([{"args": {"m": 0}}], "step 1: expected"),
        ([{"action": "PostKey", "args": {"m": "zero"}}], "step 1: the arguments of PostKey must be integers"),
    ],
)
def test_bad_trace_json_names_the_step(data, message):
    with pytest.raises(TraceError, match=message):
        Trace.from_json(data)


def test_a_trace_can_carry_its_states():
    model, result = checked(2)
    trace = result.properties["NoDuplicates"].trace
    assert not trace.has_states
    full = with_states(model, trace)
    assert full.has_states and len(full) == len(trace)
    assert [(s.action, s.pairs, s.loop) for s in full] == [(s.action, s.pairs, s.loop) for s in trace]
    assert full != trace  # a step with its state is not the bare step (as their JSON differ)
    assert full.initial["cache"] == () and full[-1].state["cache"] == (0, 0)
    assert full[0].state["post"][0] == ("KeyWritten",)
    data = full.as_json()
    assert data[-1]["state"]["cache"] == [0, 0] and data[-1]["state"]["heal"] == {
        "0": ["Idle"],
        "1": ["Idle"],
    }
    json.dumps(data)  # plain JSON all the way down
    assert [{k: v for k, v in s.items() if k != "state"} for s in data] == trace.as_json()


# ---------------------------------------------------------------- counterexamples in the model
def _refusal(name: str, trace) -> str:
    model, _ = checked(2)
    with pytest.raises(NotACounterexample) as info:
        check_counterexample(model, name, trace)
    return str(info.value)


def test_the_checkers_traces_are_counterexamples():
    model, result = checked(2)
    for name, p in result.properties.items():
        if p.status == Verdict.VIOLATED:
            states = check_counterexample(model, name, p.trace)
            assert len(states) == len(p.trace) + 1


def test_a_truncated_path_is_refused_naming_its_last_step():
    _, result = checked(2)
    nodup = result.properties["NoDuplicates"].trace
    assert len(nodup) == 9
    assert _refusal("NoDuplicates", nodup[:-1]) == (
        "NoDuplicates holds after step 8, the last (is the trace truncated?)"
    )
    assert (
        _refusal("NoDuplicates", Trace()) == "NoDuplicates holds in the initial state and the trace is empty"
    )


def test_lassos_that_are_not_counterexamples_are_refused():
    _, result = checked(2)
    conv = result.properties["Converges"].trace
    assert (len(conv), conv.loop_start) == (16, 12)
    assert _refusal("Converges", conv[:-1]) == (
        "the loop (steps 13-15) does not return to the state where it starts (before step 13): "
        "is the trace truncated?"
    )
    unfair = Trace(
        conv.stem.steps + (Step.of("PollRead", {"t": 1}, loop=True), Step.of("PollDone", {"t": 1}, loop=True))
    )
    assert _refusal("Converges", unfair) == (
        "the loop (steps 13-14) is not fair: PollRead(t=0) is enabled in every state of it and never taken"
    )
    idle = Trace.from_json(
        [
            {"action": "PollRead", "args": {"t": 0}, "loop": True},
            {"action": "PollDone", "args": {"t": 0}, "loop": True},
        ]
    )
    assert _refusal("Converges", idle) == "Converges's goal holds in every state of the loop (steps 1-2)"
    gap = conv.as_json()
    del gap[-1]["loop"]
    assert _refusal("Converges", gap) == 'step 16 is in the loop (steps 13-16) but has no "loop": true'
    assert _refusal("NoDuplicates", conv) == (
        "NoDuplicates is an invariant; its counterexample is a path, not a lasso"
    )
    assert "must be a lasso" in _refusal("Converges", result.properties["NoDuplicates"].trace)


def test_a_trace_that_does_not_replay_is_a_trace_error_not_a_refusal():
    model, _ = checked(2)
    with pytest.raises(TraceError, match="step 1: PostRead\\(m=0\\) is not enabled") as info:
        check_counterexample(model, "NoDuplicates", [{"action": "PostRead", "args": {"m": 0}}])
    assert not isinstance(info.value, NotACounterexample)
    with pytest.raises(ValueError, match="property 'Nope' does not apply"):
        check_counterexample(model, "Nope", [])

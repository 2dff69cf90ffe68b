"""The checker engine is generic: toy models pin its weak-fairness semantics exactly."""

from __future__ import annotations

from dataclasses import dataclass

from kvheal.model.core import Action, Property
from kvheal.model.engine import check


@dataclass
class Toy:
    """States are ints; ``edges[s]`` lists (action name, next state); goal: eventually always
    in ``goal_states``. Actions named in ``unfair`` get no fairness (like SPEC's Crash)."""

    edges: dict[int, list[tuple[str, int]]]
    goal_states: set[int]
    unfair: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        names = sorted({n for out in self.edges.values() for n, _ in out})
        self.instances = [Action(n, (), i) for i, n in enumerate(names)]
        self._label = {n: i for i, n in enumerate(names)}

    def init_states(self):
        return [0]

    def successors(self, s):
        return sorted((self._label[n], t) for n, t in self.edges.get(s, []))

    def is_fair(self, label):
        return self.instances[label].name not in self.unfair

    def properties(self):
        return [
            Property("Small", "invariant", lambda s: s < 10, "below ten"),
            Property("Goal", "eventually_always", lambda s: s in self.goal_states, "goal"),
        ]


def test_action_enabled_everywhere_in_a_cycle_must_be_taken():
    # 0 <-> 1 with `exit` enabled in both: weak fairness forces exit, so the goal holds.
    toy = Toy({0: [("spin", 1), ("exit", 2)], 1: [("spin", 0), ("exit", 2)]}, {2})
    r = check(toy)
    assert (r.states, r.transitions) == (3, 4)
    assert r.properties["Goal"].status == "holds"
    assert r.properties["Small"].status == "holds"


def test_action_enabled_only_sometimes_need_not_be_taken():
    # exit enabled only in 0: the cycle 0 -> 1 -> 0 is weakly fair and never reaches 2.
    toy = Toy({0: [("spin", 1), ("exit", 2)], 1: [("spin", 0)]}, {2})
    goal = check(toy).properties["Goal"]
    assert goal.status == "violated"
    assert goal.trace == [
        {"action": "spin", "args": {}, "loop": True},
        {"action": "spin", "args": {}, "loop": True},
    ]


def test_unfair_actions_are_not_forced():
    toy = Toy(
        {0: [("spin", 1), ("crash", 2)], 1: [("spin", 0), ("crash", 2)]}, {2}, unfair=frozenset({"crash"})
    )
    assert check(toy).properties["Goal"].status == "violated"


def test_deadlock_stutters_for_ever():
    toy = Toy({0: [("go", 1)], 1: [("go", 2)]}, {0})
    r = check(toy)
    assert r.properties["Goal"].trace == [
        {"action": "go", "args": {}},
        {"action": "go", "args": {}},
        {"action": "Stutter", "args": {}, "loop": True},
    ]


def test_invariant_counterexample_is_shortest():
    # two routes to 10: 0-1-2-10 and 0-5-10; BFS reports the two-step one.
    toy = Toy({0: [("a", 1), ("b", 5)], 1: [("a", 2)], 2: [("a", 10)], 5: [("c", 10)]}, {10})
    small = check(toy).properties["Small"]
    assert small.status == "violated"
    assert [s["action"] for s in small.trace] == ["b", "c"]


def test_lasso_detours_to_take_what_the_cycle_keeps_enabled():
    # The goal fails at 0 only. The loop 0->1->0 keeps `side` enabled throughout (it is
    # enabled in 0 and 1, not in 3), so a fair loop must take `side` or pass state 3.
    toy = Toy({0: [("spin", 1), ("side", 3)], 1: [("spin", 0), ("side", 3)], 3: [("back", 0)]}, {1, 3})
    goal = check(toy).properties["Goal"]
    assert goal.status == "violated"
    names = [s["action"] for s in goal.trace]
    assert names == ["side", "back"] and all(s.get("loop") for s in goal.trace)


def test_results_are_typed_values_and_json_only_on_request():
    from kvheal.model import Step, Trace, Verdict

    toy = Toy({0: [("go", 1)], 1: [("go", 2)]}, {0})
    r = check(toy)
    goal, small = r.properties["Goal"], r.properties["Small"]
    assert goal.status is Verdict.VIOLATED and small.status is Verdict.HOLDS
    assert isinstance(goal.trace, Trace) and all(isinstance(s, Step) for s in goal.trace)
    assert [(s.action, s.loop) for s in goal.trace] == [("go", False), ("go", False), ("Stutter", True)]
    assert goal.trace.loop_start == 2 and small.trace == Trace()
    assert goal.as_json() == {
        "status": "violated",
        "trace": [
            {"action": "go", "args": {}},
            {"action": "go", "args": {}},
            {"action": "Stutter", "args": {}, "loop": True},
        ],
    }
    assert small.as_json() == {"status": "holds", "trace": []}
    out = r.as_json()
    assert set(out) == {"states", "transitions", "seconds", "complete", "depth", "engine", "properties"}
    assert out["depth"] == 2  # the toy model's longest shortest path
    assert (out["states"], out["transitions"], out["complete"], out["engine"]) == (3, 2, True, "python")
    assert out["properties"]["Goal"] == goal.as_json()

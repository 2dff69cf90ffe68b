"""The values every engine returns: one verdict vocabulary and one trace type.

:class:`Verdict` is the one definition of the three answers kvheal gives about a property,
whatever answered: the explicit checker (:mod:`kvheal.model.engine`), z3
(:mod:`kvheal.model.prove`, where "proved" is ``HOLDS`` and how it was proved is the
separate ``method``), a replay on the real system and an op-log validation
(:mod:`kvheal.conformance`). It is a ``StrEnum``, so a verdict is also its word:

    >>> Verdict.HOLDS == "holds", str(Verdict.VIOLATED), Verdict("unknown") is Verdict.UNKNOWN
    (True, 'violated', True)
    >>> overall([Verdict.HOLDS, Verdict.UNKNOWN]), overall([]), EXIT_STATUS[Verdict.VIOLATED]
    (<Verdict.UNKNOWN: 'unknown'>, <Verdict.HOLDS: 'holds'>, 1)

A :class:`Trace` is a sequence of :class:`Step` values (action name, arguments, loop flag,
and optionally the state reached, as a view). JSON is for the edge (the CLI): ``as_json``
gives SPEC §9's list of steps and ``from_json`` reads one back.

    >>> t = Trace.from_json([{"action": "PostKey", "args": {"m": 0}},
    ...                      {"action": "Stutter", "args": {}, "loop": True}])
    >>> t.loop_start, [s.action for s in t], t[0].args, t.as_json()[1]
    (1, ['PostKey', 'Stutter'], {'m': 0}, {'action': 'Stutter', 'args': {}, 'loop': True})

A step also reads as the SPEC §9 mapping it stands for (``step["action"]``,
``step.get("loop")``), and a trace equals the list of those mappings, so code written for
JSON steps keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, overload

__all__ = [
    "Verdict",
    "HOLDS",
    "VIOLATED",
    "UNKNOWN",
    "EXIT_STATUS",
    "overall",
    "exit_status",
    "STUTTER",
    "Step",
    "Trace",
    "TraceError",
    "jsonable",
]


class Verdict(StrEnum):
    """What kvheal says about a property: it holds, it is violated, or it is not known
    (a search or proof budget ran out, or the replay could not follow the trace)."""

    HOLDS = "holds"
    VIOLATED = "violated"
    UNKNOWN = "unknown"


HOLDS, VIOLATED, UNKNOWN = Verdict.HOLDS, Verdict.VIOLATED, Verdict.UNKNOWN

#: SPEC §9's exit status of a run whose overall verdict is the key (2 is a usage error).
EXIT_STATUS: dict[Verdict, int] = {HOLDS: 0, VIOLATED: 1, UNKNOWN: 3}


def overall(verdicts: Iterable[Any]) -> Verdict:
    """Violated if any is, else unknown if any is, else holds (never claim what is unknown).

    Takes verdicts, their words, or anything with a ``status`` that is one."""
    seen = {Verdict(getattr(v, "status", v)) for v in verdicts}
    if VIOLATED in seen:
        return VIOLATED
    return UNKNOWN if UNKNOWN in seen else HOLDS


def exit_status(verdicts: Iterable[Any]) -> int:
    """SPEC §9's exit status of these verdicts: 0 all hold, 1 one is violated, 3 otherwise."""
    return EXIT_STATUS[overall(verdicts)]


STUTTER = "Stutter"


class TraceError(ValueError):
    """A trace that is not one: malformed JSON steps, a step that names no action or one that
    is not enabled, or (:class:`kvheal.model.trace.NotACounterexample`) a trace that does not
    violate the property it is said to violate."""


def jsonable(value: Any) -> Any:
    """A view (or any value in one) as plain JSON: tuples as lists, tuple keys as ``"t,m"``."""
    if isinstance(value, Mapping):
        return {
            (",".join(str(k) for k in key) if isinstance(key, tuple) else str(key)): jsonable(v)
            for key, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True, eq=False, slots=True)
class Step(Mapping[str, Any]):
    """One step of a trace: an action instance (a SPEC §4 name and its arguments), whether it
    belongs to a lasso's loop, and optionally the state it reaches (a view)."""

    action: str
    pairs: tuple[tuple[str, int], ...] = ()
    loop: bool = False
    state: Any = None

    @classmethod
    def of(
        cls,
        action: str,
        args: Mapping[str, int] | Iterable[tuple[str, int]] = (),
        loop: bool = False,
        state: Any = None,
    ) -> Step:
        items = args.items() if isinstance(args, Mapping) else args
        return cls(action, tuple((str(k), int(v)) for k, v in items), bool(loop), state)

    @property
    def args(self) -> dict[str, int]:
        """The arguments as a dict, e.g. ``{"t": 1, "m": 0}``."""
        return dict(self.pairs)

    @property
    def is_stutter(self) -> bool:
        return self.action == STUTTER

    def as_json(self) -> dict[str, Any]:
        """SPEC §9's step: ``{"action", "args"}``, ``"loop": true`` in a loop, ``"state"`` when
        the step carries the state it reaches."""
        out: dict[str, Any] = {"action": self.action, "args": dict(self.pairs)}
        if self.loop:
            out["loop"] = True
        if self.state is not None:
            out["state"] = jsonable(self.state)
        return out

    @classmethod
    def from_json(cls, data: Any, number: int = 1) -> Step:
        """A step from its JSON; :class:`TraceError` naming step ``number`` if it is not one."""
        if not isinstance(data, Mapping):
            raise TraceError(f'step {number}: expected {{"action": str, "args": {{...}}}}, got {data!r}')
        name, args = data.get("action"), data.get("args", {})
        if not isinstance(name, str) or not isinstance(args, Mapping):
            raise TraceError(f'step {number}: expected {{"action": str, "args": {{...}}}}')
        try:
            pairs = tuple((str(k), int(v)) for k, v in args.items())
        except (TypeError, ValueError):
            raise TraceError(f"step {number}: the arguments of {name} must be integers") from None
        return cls(name, pairs, bool(data.get("loop", False)), data.get("state"))

    # -- the SPEC §9 mapping this step stands for (so JSON-style readers keep working)
    def _keys(self) -> tuple[str, ...]:
        return (
            ("action", "args")
            + (("loop",) if self.loop else ())
            + (("state",) if self.state is not None else ())
        )

    def __getitem__(self, key: str) -> Any:
        if key == "action":
            return self.action
        if key == "args":
            return dict(self.pairs)
        if key == "loop" and self.loop:
            return True
        if key == "state" and self.state is not None:
            return self.state
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash((self.action, self.pairs, self.loop))

    def __str__(self) -> str:
        return f"{self.action}({', '.join(f'{k}={v}' for k, v in self.pairs)})"

    def __repr__(self) -> str:
        return f"Step({self}{', loop' if self.loop else ''})"


@dataclass(frozen=True, eq=False)
class Trace(Sequence[Step]):
    """A counterexample: steps from the initial state; a lasso's steps from the start of its
    cycle have ``loop`` set. ``initial`` is the initial state's view when the steps carry
    states (:func:`kvheal.model.trace.with_states`)."""

    steps: tuple[Step, ...] = ()
    initial: Any = None

    def __post_init__(self) -> None:
        steps = tuple(
            s if isinstance(s, Step) else Step.from_json(s, i + 1) for i, s in enumerate(self.steps)
        )
        object.__setattr__(self, "steps", steps)

    @classmethod
    def of(cls, steps: Iterable[Step | Mapping[str, Any]]) -> Trace:
        """A trace of these steps (:class:`Step` values or their JSON); a trace is returned as is."""
        return steps if isinstance(steps, Trace) else cls(tuple(steps))

    @classmethod
    def from_json(cls, data: Any) -> Trace:
        """A trace from SPEC §9's JSON list of steps; :class:`TraceError` (naming the step)
        if it is not one."""
        if not isinstance(data, list):
            raise TraceError('a trace is a list of {"action", "args"} steps')
        return cls(tuple(Step.from_json(s, i + 1) for i, s in enumerate(data)))

    def as_json(self) -> list[dict[str, Any]]:
        """SPEC §9's list of steps."""
        return [s.as_json() for s in self.steps]

    @property
    def loop_start(self) -> int | None:
        """The index of the first step of the lasso's cycle; ``None`` for a path."""
        return next((i for i, s in enumerate(self.steps) if s.loop), None)

    @property
    def is_lasso(self) -> bool:
        return self.loop_start is not None

    @property
    def stem(self) -> Trace:
        """The steps before the loop (all of them for a path)."""
        start = self.loop_start
        return self if start is None else Trace(self.steps[:start])

    @property
    def cycle(self) -> Trace:
        """The loop's steps (none for a path)."""
        start = self.loop_start
        return Trace() if start is None else Trace(self.steps[start:])

    @property
    def has_states(self) -> bool:
        return bool(self.steps) and all(s.state is not None for s in self.steps)

    @overload
    def __getitem__(self, i: int) -> Step: ...
    @overload
    def __getitem__(self, i: slice) -> Trace: ...
    def __getitem__(self, i: int | slice) -> Step | Trace:
        if isinstance(i, slice):
            return Trace(self.steps[i])
        return self.steps[i]

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, bytes)) or not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self.steps, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [
            ("↻ " if s.loop and (i == 0 or not self.steps[i - 1].loop) else "") + str(s)
            for i, s in enumerate(self.steps)
        ]
        return f"Trace([{', '.join(parts)}])"

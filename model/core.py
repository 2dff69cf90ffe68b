"""The kvheal model for the explicit checker: :mod:`kvheal.model.definition` compiled.

``KVHealModel(config)`` is the checker's model protocol (``init_states``, ``successors``,
``instances``, ``is_fair``, ``properties``, ``failing``) over the kernel that
:mod:`kvheal.model.kernel` generates from the one definition, plus the readable API
(``actions``, ``step``, ``view``). Nothing here says what an action does: that is written
once, in the definition. Readings of SPEC where it leaves a choice are in SPEC §3-5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Config

State = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Action:
    """One action instance: a SPEC §4 name and its arguments (``m`` and/or ``t``)."""

    name: str
    pairs: tuple[tuple[str, int], ...] = ()
    label: int = field(default=-1, compare=False)

    @property
    def args(self) -> dict[str, int]:
        """The arguments as a dict, e.g. ``{"m": 0}``."""
        return dict(self.pairs)

    def as_json(self) -> dict[str, Any]:
        """The trace step of SPEC §9: ``{"action": name, "args": {...}}``."""
        return {"action": self.name, "args": dict(self.pairs)}

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.pairs)
        return f"{self.name}({inner})"


@dataclass(frozen=True, slots=True)
class Property:
    """A SPEC §7 property: an ``invariant`` or an ``eventually_always`` goal over states."""

    name: str
    kind: str
    holds: Callable[[State], bool]
    doc: str


class KVHealModel:
    """A definition (kvheal's by default) for one :class:`Config`: the checker's model protocol.

    >>> model = KVHealModel(Config.make(tabs=1, variants="atomic_cache,dedupe"))
    >>> [str(a) for a in model.actions(model.init_states()[0])]
    ['PostKey(m=0)', 'PollRead(t=0)']
    """

    def __init__(self, config: Config, definition: Any = None) -> None:
        from .definition import KVHEAL
        from .kernel import Kernel

        self.config = cfg = config
        self.definition = definition or config.design or KVHEAL
        self.kernel = k = Kernel(self.definition, cfg)
        self.T, self.M = cfg.tabs, cfg.messages
        self.cv = k.cv
        self.owner = [cfg.owner(m) for m in range(self.M)]
        self.width = k.width
        self.successors = k.successors
        self.failing = k.failing
        self._instances = k.instances
        self._label = k.label
        self.unfair_labels = k.unfair
        self._props = [Property(p.name, p.kind, fn, p.doc) for p, fn in zip(k.props, k.prop_fns)]

    def compiled(self) -> Any:
        """The compiled kernel of this configuration (:mod:`kvheal.model.fast`), built once;
        raises ``CompiledUnavailable`` where it cannot run."""
        ck = getattr(self, "_compiled", None)
        if ck is None:
            from .fast import CompiledKernel

            ck = self._compiled = CompiledKernel(self.kernel)
        return ck

    @property
    def instances(self) -> list[Action]:
        """Every action instance of this configuration, indexed by its label."""
        return self._instances

    def action(self, name: str, args: dict[str, int] | None = None) -> Action:
        """The action instance named ``name`` with ``args``; KeyError if there is none."""
        pairs = tuple(sorted((args or {}).items(), key=lambda kv: "tm".index(kv[0])))
        return self._instances[self._label[(name, pairs)]]

    def is_fair(self, label: int) -> bool:
        """Weak fairness applies to every action instance the definition marks fair (SPEC §7)."""
        return label not in self.unfair_labels

    def init_states(self) -> list[State]:
        """The one initial state of SPEC §3."""
        return [self.kernel.init_state]

    def actions(self, state: State) -> list[Action]:
        """The enabled action instances of ``state``, in a stable order."""
        return [self._instances[label] for label, _ in self.successors(state)]

    def step(self, state: State, action: Action) -> State:
        """The state after taking ``action`` (ValueError if it is not enabled)."""
        label = self._label.get((action.name, action.pairs), -1)
        for lab, nxt in self.successors(state):
            if lab == label:
                return nxt
        raise ValueError(f"{action} is not enabled")

    def properties(self) -> list[Property]:
        """The SPEC §7 properties that apply to this configuration, invariants first."""
        return list(self._props)

    def snapshot(self, code: int) -> tuple[int, ...]:
        """The cache value interned as ``code``."""
        return self.cv.values[code]

    def view(self, s: State) -> dict[str, Any]:
        """The state in SPEC §3's terms (phases as tuples, ids as sorted tuples), with the
        derived ``stored`` first and every variable the design lacks at its absent value."""
        return view_of(self.definition, self.config, self.kernel.decode(s), self.derived_view(s))

    def derived_view(self, s: State) -> dict[str, tuple[int, ...]]:
        """The derived id sets (``stored``, ...) of ``s``."""
        from .kernel import bits

        return {name: tuple(bits(fn(s))) for name, fn in self.kernel.derived_fns.items()}


def view_of(definition: Any, cfg: Config, values: dict[str, Any], derived: dict[str, Any]) -> dict[str, Any]:
    """A state's view: derived sets that are not internal, then the variables in declaration
    order, absent ones (``alive`` without tab_crash, ``sweep`` without sweeper) at their
    absent value. Shared by every engine, so views compare equal across them."""
    from .kernel import absent_view

    out: dict[str, Any] = {}
    for d in definition.derived:
        if d.view:
            out[d.name] = derived[d.name]
    seen = set()
    for v in definition.variables:
        if v.name in seen:
            continue
        if v.name in values:
            out[v.name] = values[v.name]
            seen.add(v.name)
        elif definition.variable(cfg, v.name) is None and v.absent is not None:
            out[v.name] = absent_view(definition, cfg, v)
            seen.add(v.name)
    return out

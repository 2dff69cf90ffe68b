"""The vocabulary a model is written in: typed state variables, actions, properties, flags.

A *definition* (:class:`Definition`) says once what the system is; the engines consume it:
:mod:`kvheal.model.kernel` compiles it to the explicit checker's successor function over
flat int tuples, :mod:`kvheal.model.symbolic` translates it to a z3 transition relation, and
conformance reads its actions and actors. ``kvheal.model.definition`` is kvheal's own.

Values. An action's guard and effects are ordinary Python functions over *backend values*:
the same function is run once per action instance by each engine, with values that are
source code (the explicit kernel) or z3 terms (the symbolic engine). So the function may
branch in Python only on the configuration and its parameters (``m``, ``t``), never on the
state; it combines state values with their methods and with :class:`Ops` (``x``):

* :class:`BoolV`: ``a & b``, ``a | b``, ``~a``; ``x.all(...)``, ``x.any(...)``.
* phase variables (an :class:`Enum`): ``v.is_("KeyWritten")``, ``v.of("CacheRead").snap``
  (the payload of a phase), and constructors ``POST.CacheRead(snap=...)``.
* id sets (:class:`IdsType`, of messages or tabs): ``has(i)``, ``with_(i)``, ``without(i)``,
  ``minus(other)``, ``union(other)``, ``is_empty()``, ``subset(other)``, ``eq(other)``,
  ``newest(k)`` (the ``k`` largest ids: the newest, since timestamps are ids).
* the cache value (:class:`CacheType`: a sorted tuple of ids, trimmed to the capacity):
  ``has(m)``, ``add(m)``, ``add_all(ids)``, ``ids()``, ``no_dup()``, ``eq(other)``; with the
  definition's ``cache_order``, ``add(m, late)`` and ``add_all(ids, late)`` order by timestamp
  then id, ``late`` the ids stamped at the later of two times (a full cache drops the first);
  with ``cache_statuses`` each copy's status is final or open (a new copy is open):
  ``patch_all(ids)`` makes every copy of the ids final, ``patch_first(ids)`` the first copy
  of each, ``open_first()`` is the ids whose first copy is open, ``open_ids()`` those with
  an open copy.
* bounded integers (:class:`IntType`: a clock, a cursor, a timestamp): ``a + k`` and
  ``a - k`` for a constant ``k`` (saturating at the type's bounds), ``a < b``, ``a <= b``,
  ``a > b``, ``a >= b`` and ``a.eq(b)`` against another integer or a constant.
* ``x.ite(cond, a, b)`` for a value that depends on the state; ``x.let(v)`` names a value
  that an effect uses several times (the kernel computes it once); ``x.ids(of, {i: cond})``
  the set of the elements whose condition holds (a set filtered per element).

An action returns ``(guard, effects)``, effects a dict from the variables it writes (the
values read from ``s``, e.g. ``s.post[m]``) to their new values; every other variable keeps
its value.

    >>> from kvheal.model.definition import KVHEAL
    >>> [a.name for a in KVHEAL.actions][:4]
    ['PostKey', 'PostRead', 'PostWrite', 'PostCache']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Phase",
    "Enum",
    "IdsType",
    "CacheType",
    "BoolType",
    "IntType",
    "Var",
    "Derived",
    "ActionDef",
    "PropertyDef",
    "FlagDef",
    "Definition",
    "PhaseValue",
    "DefinitionError",
]


class DefinitionError(ValueError):
    """A definition that cannot be compiled (a bad name, a write to a derived value, ...)."""


# ---------------------------------------------------------------------------- types
@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of an :class:`Enum`: a name and the payload fields it holds (name, type)."""

    name: str
    payload: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class PhaseValue:
    """A backend-neutral phase constant or constructor: ``enum``, ``phase``, payload values."""

    enum: Enum
    phase: str
    fields: tuple[tuple[str, Any], ...] = ()


class Enum:
    """A phase type: the values are its phases, some carrying a payload (a snapshot).

    ``code(name)`` is the phase's number, in declaration order: the one numbering every
    engine uses (the explicit kernel packs payloads beside it, z3 keeps the number as an Int).

    >>> POLL = Enum("Poll", Phase("Idle"), Phase("Read", (("snap", CacheType()),)))
    >>> POLL.code("Read"), POLL.Read(snap=()).phase
    (1, 'Read')
    """

    def __init__(self, name: str, *phases: Phase) -> None:
        self.name = name
        self.phases = phases
        self.index = {p.name: i for i, p in enumerate(phases)}
        if len(self.index) != len(phases):
            raise DefinitionError(f"enum {name} repeats a phase name")

    def code(self, phase: str) -> int:
        """The number of ``phase`` (its position in the declaration)."""
        try:
            return self.index[phase]
        except KeyError:
            raise DefinitionError(
                f"{self.name} has no phase {phase!r}; it has {', '.join(self.index)}"
            ) from None

    def phase(self, name: str) -> Phase:
        return self.phases[self.code(name)]

    def fields(self) -> list[tuple[str, Any]]:
        """Every payload field of every phase, once (phases may share a field by name)."""
        seen: dict[str, Any] = {}
        for p in self.phases:
            for f, t in p.payload:
                seen.setdefault(f, t)
        return list(seen.items())

    def __getattr__(self, phase: str) -> Callable[..., PhaseValue]:
        if phase.startswith("_") or phase not in self.__dict__.get("index", {}):
            raise AttributeError(phase)

        def make(**fields: Any) -> PhaseValue:
            want = {f for f, _ in self.phase(phase).payload}
            if set(fields) != want:
                raise DefinitionError(f"{self.name}.{phase} takes {sorted(want)}, got {sorted(fields)}")
            return PhaseValue(self, phase, tuple(sorted(fields.items())))

        return make

    def __repr__(self) -> str:
        return f"Enum({self.name})"


@dataclass(frozen=True, slots=True)
class BoolType:
    """A boolean variable."""


@dataclass(frozen=True, slots=True)
class IntType:
    """A bounded integer ``lo..hi`` (a clock, a cursor, a timestamp). The explicit kernel keeps
    it in one int slot (``value - lo``), z3 as an Int whose range :meth:`SymbolicModel.dom`
    states. Arithmetic is ``+``/``-`` of a constant, saturating at the bounds (the value never
    leaves the range); comparisons are with another integer or a constant.

    >>> IntType(0, 2).size
    3
    """

    lo: int = 0
    hi: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.lo, int) and isinstance(self.hi, int)) or self.hi < self.lo:
            raise DefinitionError(f"IntType needs integers lo <= hi, got {self.lo}..{self.hi}")

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1


@dataclass(frozen=True, slots=True)
class IdsType:
    """A set of messages (``of="m"``) or tabs (``of="t"``); ``universe(cfg, index)`` limits
    which elements a given variable can hold (a tab's pending list holds its own ids)."""

    of: str = "m"
    universe: Callable[[Any, Any], Iterable[int]] | None = None
    #: how views show it: "ids" (a sorted tuple) or "bools" (one bool per element)
    view: str = "ids"


@dataclass(frozen=True, slots=True)
class CacheType:
    """The cache's value: a tuple of ids sorted by timestamp, at most ``cap`` long."""


# ---------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Var:
    """A state variable: ``name``, ``type``, and ``scope``: ``"global"`` (one), ``"m"`` (one per
    message), ``"t"`` (per tab) or ``"heal"`` (per heal slot). ``when(cfg)`` says whether the
    configuration has it; ``absent`` is its view when it does not; ``init(cfg, index)`` its
    initial value (a phase name for an Enum, a set for Ids, a bool, an int for an
    :class:`IntType`; default: the zero, or ``lo``)."""

    name: str
    type: Any
    scope: str = "global"
    doc: str = ""
    when: Callable[[Any], bool] = lambda cfg: True
    absent: Any = None
    init: Callable[[Any, Any], Any] | None = None
    #: phases this configuration never uses (no code, no payload variables): ``cfg -> names``
    unused: Callable[[Any], Iterable[str]] = lambda cfg: ()


@dataclass(frozen=True)
class Derived:
    """A value computed from the state (``stored``), readable like a variable, never written."""

    name: str
    type: Any
    compute: Callable[..., Any]
    doc: str = ""
    #: shown in state views (``stored`` is; helpers such as ``acked`` are not)
    view: bool = True


@dataclass(frozen=True)
class ActionDef:
    """An action: its ``name`` (the one traces use), its parameters (``per``: ``"m"``, ``"t"``,
    ``"heal"`` or ``""``), the ``actor`` that runs it (``"tab"``, ``"request"``, ``"heal"``,
    ``"sweeper"``, ``"bot"``, ``"clock"``, ``"fault"``), whether weak fairness covers it, the flags it needs (``when``), and
    ``body(cfg, s, x, **args) -> (guard, effects)``."""

    name: str
    per: str
    actor: str
    body: Callable[..., tuple[Any, dict]]
    doc: str = ""
    fair: bool = True
    when: Callable[[Any], bool] = lambda cfg: True
    #: the KV call this step is, in the implementation (conformance's map), or "" for none
    kv: str = ""
    #: successor order: instances are listed by group, then index, then declaration
    group: int = 0


@dataclass(frozen=True)
class PropertyDef:
    """A property: ``kind`` is ``"invariant"`` or ``"eventually_always"``; ``holds(cfg, s, x)``
    is its state predicate; ``when(cfg)`` whether it applies."""

    name: str
    kind: str
    holds: Callable[..., Any]
    doc: str
    when: Callable[[Any], bool] = lambda cfg: True


@dataclass(frozen=True)
class FlagDef:
    """A design flag as data: which actions it adds, removes or changes, and which part of the
    real system it changes (``"worker"``, ``"client"`` or ``"fault"``)."""

    name: str
    doc: str
    part: str
    adds: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()


@dataclass
class Definition:
    """A whole model: variables, derived values, actions, properties, flags, and how the
    configuration's index sets are formed (``heal_slots(cfg)``)."""

    name: str
    variables: list[Var]
    derived: list[Derived]
    actions: list[ActionDef]
    properties: list[PropertyDef]
    flags: list[FlagDef]
    heal_slots: Callable[[Any], list[Any]] = lambda cfg: list(range(cfg.messages))
    #: which argument names an action of each ``per`` takes, for one index of that scope
    doc: str = ""
    #: raises ConfigError for a configuration the definition cannot honour (every engine asks)
    validate: Callable[[Any], None] = lambda cfg: None
    #: whether the cache orders by timestamp, then id (``add(m, late)``), not by id alone
    cache_order: Callable[[Any], bool] = lambda cfg: False
    #: whether each cache copy carries a final-or-open status (``patch_all``, ``patch_first``,
    #: ``open_first``, ``open_ids``)
    cache_statuses: Callable[[Any], bool] = lambda cfg: False
    _by_name: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        acts = [a.name for a in self.actions]
        if len(set(acts)) != len(acts):
            raise DefinitionError("two actions share a name")
        for f in self.flags:
            for a in f.adds + f.removes + f.changes:
                if a not in acts:
                    raise DefinitionError(f"flag {f.name} names an unknown action {a!r}")

    def flag_names(self) -> tuple[str, ...]:
        """The design flags a configuration of this definition may name."""
        return tuple(f.name for f in self.flags)

    def derive(
        self,
        name: str,
        *,
        replace: Iterable[ActionDef] = (),
        add: Iterable[ActionDef] = (),
        drop: Iterable[str] = (),
        properties: Iterable[PropertyDef] = (),
        variables: Iterable[Var] = (),
        flags: Iterable[FlagDef] | None = None,
    ) -> Definition:
        """A new definition from this one: actions replaced by name (in place), added (each
        right after the last action of its ``group``), dropped; properties replaced by name
        or added; variables added; flags replaced. The way a user writes a design that
        differs from kvheal's in a few actions (see docs/designs.md)."""
        swap = {a.name: a for a in replace}
        unknown = sorted(set(swap) - {a.name for a in self.actions})
        if unknown:
            raise DefinitionError(f"derive: no action {unknown[0]!r} to replace")
        acts = [swap.get(a.name, a) for a in self.actions if a.name not in set(drop)]
        for a in add:
            at = max((i for i, b in enumerate(acts) if b.group <= a.group), default=len(acts) - 1)
            acts.insert(at + 1, a)
        props = {p.name: p for p in self.properties}
        for p in properties:
            props[p.name] = p
        return Definition(
            name,
            [*self.variables, *variables],
            list(self.derived),
            acts,
            list(props.values()),
            list(self.flags if flags is None else flags),
            self.heal_slots,
            self.doc,
            self.validate,
            self.cache_order,
            self.cache_statuses,
        )

    def variables_of(self, cfg: Any) -> list[Var]:
        """The variables this configuration has, in declaration order (a name may be declared
        twice under exclusive conditions, e.g. a per-tab and a shared pending list)."""
        out = [v for v in self.variables if v.when(cfg)]
        names = [v.name for v in out] + [d.name for d in self.derived]
        if len(set(names)) != len(names):
            raise DefinitionError("two variables or derived values of one configuration share a name")
        return out

    def variable(self, cfg: Any, name: str) -> Var | None:
        """The variable ``name`` of ``cfg``, or None when the configuration lacks it."""
        for v in self.variables:
            if v.name == name and v.when(cfg):
                return v
        return None

    def actions_of(self, cfg: Any) -> list[ActionDef]:
        return [a for a in self.actions if a.when(cfg)]

    def properties_of(self, cfg: Any) -> list[PropertyDef]:
        return [p for p in self.properties if p.when(cfg)]

    def indices(self, cfg: Any, scope: str) -> list[Any]:
        """The indices of a scope: ``[None]`` for global, message ids, tab ids, heal slots."""
        if scope == "global":
            return [None]
        if scope == "m":
            return list(range(cfg.messages))
        if scope == "t":
            return list(range(cfg.tabs))
        if scope == "heal":
            return self.heal_slots(cfg)
        raise DefinitionError(f"unknown scope {scope!r}")

    def kv_calls(self, cfg: Any) -> dict[str, frozenset[str]]:
        """Per actor, the KV calls that are steps of this configuration's actions (``"get
        cache"``, ``"cas cache"``, ...): what conformance needs to map a real run's calls to
        actions. With ``atomic_cache`` the request's and heal's reads are no step of their
        own (``"get cache"`` is absent: the read and the swap are one ``...Cache`` step)."""
        out: dict[str, set[str]] = {}
        for a in self.actions_of(cfg):
            if a.kv:
                out.setdefault(a.actor, set()).add(a.kv)
        return {actor: frozenset(calls) for actor, calls in out.items()}

    @staticmethod
    def apply(action: ActionDef, cfg: Any, s: Any, x: Any, args: dict[str, int]) -> tuple[Any, dict]:
        """Run ``action``'s body for the instance with ``args``: ``(guard, effects)``."""
        if action.per == "":
            return action.body(cfg, s, x)
        return action.body(cfg, s, x, index_of(args, action.per))

    def instances(self, cfg: Any) -> list[tuple[ActionDef, dict[str, int]]]:
        """Every action instance of ``cfg`` with its arguments, in the order labels use:
        action by action, then by parameter."""
        out = []
        for a in self.actions_of(cfg):
            if a.per == "":
                out.append((a, {}))
                continue
            for idx in self.indices(cfg, a.per):
                out.append((a, args_of(a.per, idx)))
        return out


def args_of(per: str, idx: Any) -> dict[str, int]:
    """The argument dict of one index: ``{"m": 0}``, ``{"t": 1}``, ``{"t": 0, "m": 1}``."""
    if per == "m":
        return {"m": idx}
    if per == "t":
        return {"t": idx}
    if isinstance(idx, tuple):
        return {"t": idx[0], "m": idx[1]}
    return {"m": idx}


def index_of(args: dict[str, int], per: str) -> Any:
    """The inverse of :func:`args_of`."""
    if per == "t":
        return args["t"]
    if per in ("m",):
        return args["m"]
    if per == "heal":
        return (args["t"], args["m"]) if "t" in args else args["m"]
    return None

"""How an engine shows a definition's state to its action bodies: ``s.post[m]``, ``s.cache``.

Shared by the explicit kernel and the z3 engine: each supplies ``read(var, index)`` (a
variable's value), ``const(type, value)`` (a constant, for a variable the configuration
lacks) and the value algebra ``x``; derived values are computed once per state view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .dsl import Definition, DefinitionError


class Payload:
    """A phase's payload fields as attributes (``s.poll[t].of("Read").snap``)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)


@dataclass(frozen=True)
class Ite:
    """``x.ite(cond, a, b)`` over values an engine's algebra does not combine itself (phases
    with payloads, sets): resolved where it is written."""

    cond: Any
    a: Any
    b: Any


class _Indexed:
    __slots__ = ("_get",)

    def __init__(self, get) -> None:
        self._get = get

    def __getitem__(self, index: Any) -> Any:
        return self._get(index)


class StateReader:
    """Attribute access to one state's variables and derived values for action bodies."""

    def __init__(self, definition: Definition, cfg: Any, backend: Any) -> None:
        self._d, self._cfg, self._b = definition, cfg, backend
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        got = self._cache.get(name)
        if got is not None:
            return got
        d, cfg, b = self._d, self._cfg, self._b
        var = d.variable(cfg, name)
        if var is not None:
            got = (
                b.read(var, None)
                if var.scope == "global"
                else _Indexed(lambda idx, var=var: b.read(var, idx))
            )
        else:
            for der in d.derived:
                if der.name == name:
                    got = der.compute(cfg, self, b.ops)
                    break
            else:
                absent = [v for v in d.variables if v.name == name]
                if not absent:
                    raise DefinitionError(f"the definition has no variable {name!r}")
                var = absent[0]
                if var.absent is None:
                    raise DefinitionError(
                        f"{name} is read in a configuration without it "
                        f"({cfg.variant_label()}) and has no value when absent"
                    )
                value = var.absent(cfg)
                got = (
                    b.const(var, value)
                    if var.scope == "global"
                    else _Indexed(lambda idx, var=var, value=value: b.const(var, value))
                )
        self._cache[name] = got
        return got

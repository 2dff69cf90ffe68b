"""The explicit checker's kernel, compiled from a :class:`~kvheal.model.dsl.Definition`.

Every action body of the definition is run once per action instance with values that are
Python source code; the result is one generated function, ``successors(s)``, whose code is
a straight run of ``if guard: out.append((label, new_state))`` blocks over a state unpacked
into locals. The same compilation (:meth:`Kernel.blocks`) writes other syntaxes through a
:class:`Dialect`: numba's for :mod:`kvheal.model.fast`, Promela's for
:mod:`kvheal.model.promela`. The state is a flat tuple of small ints:

* a phase variable is one int: its phases numbered in declaration order, each payload phase
  taking a block of codes (``offset + payload``), so ``CacheRead(c)`` is ``offset + c``;
* a bounded integer (:class:`~kvheal.model.dsl.IntType` ``lo..hi``) is ``value - lo``;
* an id set is a bitmask; the cache (and every cache snapshot) is an interned int:
  :class:`CacheValues` enumerates the values ``add`` can make, with tables for ``add``,
  the ids a value holds, and duplicates.

Two states that differ only in a value no phase holds are one state by construction
(SPEC §3). ``python -c "from kvheal.model.kernel import Kernel; ..."`` and
``Kernel.source`` show the generated code.

    >>> from kvheal.model import Config
    >>> from kvheal.model.definition import KVHEAL
    >>> k = Kernel(KVHEAL, Config.make(tabs=1, variants="atomic_cache,dedupe"))
    >>> [k.instances[lab].name for lab, _ in k.successors(k.init_state)]
    ['PostKey', 'PollRead']
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .dsl import CacheType, Definition, DefinitionError, Enum, IdsType, IntType, PhaseValue, args_of
from .reader import Ite, Payload, StateReader


def bits(mask: int) -> Iterator[int]:
    """The positions of the set bits of ``mask``, ascending."""
    m = 0
    while mask:
        if mask & 1:
            yield m
        mask >>= 1
        m += 1


class CacheValues:
    """Interned cache values: sorted tuples of ids, length ≤ cap, closed under ``add``.

    Enumerated once, breadth-first from ``()``: ``add[c][m]`` is the code of ``add(c, m)``,
    ``ids[c]`` the bitmask of ids in ``c``, ``dup[c]`` whether an id occurs twice. With
    ``dedupe`` no writer adds an id its snapshot holds, so those entries are never used
    (and not enumerated: they keep ``c``).

    ``ordered``: the cache's order is by timestamp, then id, with two timestamps (SPEC §6's
    clock, HORIZON 1), not by id. A value is still the sorted tuple of its ids (its order
    follows from the timestamps, which never change once a message is stored), but which
    entry a full cache drops depends on which ids are *late* (stamped at the later time):
    ``add`` has one block of rows per late mask, row ``c + len(values) * late``. The tables
    keep their shapes (a row per code, a column per id), so every engine reads them as
    before; the extra rows are never a state's value.

    ``statuses``: each copy carries whether its status is final (SPEC §6 ``statuses``). An
    item is ``2*m`` for a final copy of m, ``2*m + 1`` for an open one; a value is the sorted
    tuple of its items, so within an id the final copies come first, as they do in the cache
    (a new copy is open and goes after the copies of its id; the writers make the first copy
    final, or all of them; the trim drops the first). Two more blocks of rows follow the late
    masks': ``union`` of block ``ALL`` makes every copy of the ids final, of block ``FIRST``
    the first copy of each; ``ids`` of block ``ALL`` is the ids whose first copy is open, of
    block ``FIRST`` those with an open copy.
    """

    def __init__(
        self, messages: int, cap: int, dedupe: bool, ordered: bool = False, statuses: bool = False
    ) -> None:
        self.cap, self.statuses = cap, statuses
        self.values: list[tuple[int, ...]] = [()]
        self.code: dict[tuple[int, ...], int] = {(): 0}
        masks = 1 << messages if ordered else 1
        #: the blocks of rows of the status operations (after the late masks')
        self.ALL, self.FIRST = masks, masks + 1
        rows: dict[tuple[int, int], int] = {}
        patched: dict[tuple[int, int, int], int] = {}
        i = 0
        while i < len(self.values):
            value = self.values[i]
            for late in range(masks):
                for m in range(messages):
                    if dedupe and m in self.id_set(value):
                        rows[(late, i * messages + m)] = i
                        continue
                    rows[(late, i * messages + m)] = self._intern(self.trim(value + (self.open(m),), late))
            if statuses:
                for m in range(messages):
                    patched[(self.ALL, i, m)] = self._intern(self._patch(value, m, every=True))
                    patched[(self.FIRST, i, m)] = self._intern(self._patch(value, m, every=False))
            i += 1
        n = len(self.values)
        self.add: list[list[int]] = [
            [rows[(late, i * messages + m)] for m in range(messages)]
            for late in range(masks)
            for i in range(n)
        ]
        self._patched = patched
        ids = [sum(1 << m for m in self.id_set(v)) for v in self.values]
        self.ids = ids * masks
        self.dup = [len(self.id_set(v)) != len(v) for v in self.values] * masks
        if statuses:
            self.add += self.add[:n] * 2  # never read: add takes a late block's row
            self.ids += [self._first_open(v) for v in self.values]
            self.ids += [sum(1 << m for m in {x >> 1 for x in v if x & 1}) for v in self.values]
            self.dup += self.dup[:n] * 2
        self._union: dict[tuple[int, int], int] = {}

    # -- items
    def open(self, m: int) -> int:
        """The item of a new copy of m: open, with statuses."""
        return 2 * m + 1 if self.statuses else m

    def id_set(self, value: tuple[int, ...]) -> set[int]:
        return {x >> 1 for x in value} if self.statuses else set(value)

    def view(self, code: int) -> tuple:
        """A value as views show it: its ids, a final copy (statuses) as ``"<id>*"``."""
        value = self.values[code]
        if not self.statuses:
            return value
        return tuple(x >> 1 if x & 1 else f"{x >> 1}*" for x in value)

    def _first_open(self, value: tuple[int, ...]) -> int:
        """The ids whose first copy is open (the items sort finals first within an id)."""
        out, seen = 0, set()
        for x in value:
            if x >> 1 not in seen:
                seen.add(x >> 1)
                out |= (x & 1) << (x >> 1)
        return out

    def _patch(self, value: tuple[int, ...], m: int, every: bool) -> tuple[int, ...]:
        """Every copy of m final, or the first (nothing if the first already is)."""
        if every:
            return tuple(sorted(x & ~1 if x >> 1 == m else x for x in value))
        out = list(value)
        for k, x in enumerate(out):
            if x >> 1 == m:
                out[k] = x & ~1
                break
        return tuple(sorted(out))

    def trim(self, value: tuple[int, ...], late: int = 0) -> tuple[int, ...]:
        """SPEC's ``add`` without the append: sort (stable) by timestamp, keep the last ``cap``
        (late ids after the others, then by id; within an id in the value's order), stored
        sorted by id."""
        shift = 1 if self.statuses else 0
        kept = sorted(value, key=lambda x: (late >> (x >> shift) & 1, x))[-self.cap :]
        return tuple(sorted(kept))

    def _intern(self, value: tuple[int, ...]) -> int:
        c = self.code.get(value)
        if c is None:
            c = self.code[value] = len(self.values)
            self.values.append(value)
        return c

    def union(self, c: int, missing: int) -> int:
        """``c`` plus each id of bitmask ``missing`` once, sorted, trimmed (the sweeper's
        write): equal to adding them one by one, since trimming keeps the largest entries.
        An ordered row ``c`` (see the class) adds them under its late mask; a row of the
        status blocks patches the ids instead."""
        key = (c, missing)
        got = self._union.get(key)
        if got is None:
            n = len(self.values)
            block, got = divmod(c, n)
            for m in bits(missing):
                if self.statuses and block in (self.ALL, self.FIRST):
                    got = self._patched[(block, got, m)]
                else:
                    got = self.add[block * n + got][m]
            self._union[key] = got
        return got

    def __len__(self) -> int:
        return len(self.add)


# ---------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "cache" | "ids"
    of: str
    size: int
    stride: int


@dataclass(frozen=True)
class PhaseCode:
    name: str
    offset: int
    size: int
    fields: tuple[Field, ...]


class EnumLayout:
    """The codes of one phase variable: each used phase's offset and payload packing."""

    def __init__(self, enum: Enum, unused: set[str], sizes: dict[str, int]) -> None:
        self.enum = enum
        self.phases: dict[str, PhaseCode] = {}
        offset = 0
        for p in enum.phases:
            if p.name in unused:
                continue
            if any(isinstance(t, IntType) for _, t in p.payload):
                raise DefinitionError(
                    f"{enum.name}.{p.name}: a payload holds caches or id sets, not integers"
                )
            kinds = [
                (f, "cache" if isinstance(t, CacheType) else "ids", getattr(t, "of", "m"))
                for f, t in p.payload
            ]
            field_sizes = [sizes[k if k == "cache" else f"ids_{of}"] for _, k, of in kinds]
            fields, stride = [], 1
            for (f, k, of), size in reversed(list(zip(kinds, field_sizes))):
                fields.append(Field(f, k, of, size, stride))
                stride *= size
            self.phases[p.name] = PhaseCode(p.name, offset, stride, tuple(reversed(fields)))
            offset += stride
        self.limit = offset
        self.last = max(self.phases.values(), key=lambda pc: pc.offset)

    def code(self, phase: str) -> PhaseCode:
        try:
            return self.phases[phase]
        except KeyError:
            raise DefinitionError(
                f"phase {self.enum.name}.{phase} is not used in this configuration"
            ) from None

    def decode(self, code: int) -> tuple[str, list[int]]:
        """The phase name and payload field values of ``code``."""
        for pc in self.phases.values():
            if pc.offset <= code < pc.offset + pc.size:
                rest = code - pc.offset
                return pc.name, [rest // f.stride % f.size for f in pc.fields]
        raise ValueError(f"{code} is no code of {self.enum.name}")


# ---------------------------------------------------------------------------- dialects
@dataclass(frozen=True)
class Dialect:
    """How the value algebra writes an expression: format strings over named operands.

    The defaults are Python's (the explicit kernel's ``successors``); :data:`NUMBA` is the
    compiled kernel's (:mod:`kvheal.model.fast`: its tables are 2-D arrays) and
    :mod:`kvheal.model.promela` has Promela's. ``tables`` reads a table with its indices as
    ``{0}``, ``{1}`` (and ``{messages}``, ``{masks}``: the message count and ``2**messages``),
    the text starting with the name of the table it reads."""

    true: str = "True"
    false: str = "False"
    and_: str = " and "
    or_: str = " or "
    not_: str = "(not {x})"
    zero: str = "(not {x})"  # a 0/1 table entry is 0
    bit: str = "({x} >> {i} & 1)"  # bit i of x, as 0/1
    bool_int: str = "{x}"  # a condition as the 0/1 a slot holds
    shift: str = "({x}) << {i}"  # a 0/1 moved to bit i
    clear: str = "({x} & {not_bit})"  # x without bit (not_bit is ~bit)
    minus: str = "({x} & ~{y})"
    subset: str = "({x} & ~{y} == 0)"
    cond: str = "({a} if {c} else {b})"
    inc: str = "min({x} + {k}, {hi})"  # saturating at hi
    dec: str = "max({x} - {k}, {lo})"  # saturating at lo
    within: str = "({lo} <= {x} < {hi})"
    div: str = "({x} // {n})"
    scale: str = "{x} * {n}"
    tables: dict[str, str] = field(
        default_factory=lambda: {
            "ADD": "ADD[{0}][{1}]",
            "UNION": "UNION({0}, {1})",
            "NEWEST": "NEWEST({0}, {1})",
            "IDS": "IDS[{0}]",
            "DUP": "DUP[{0}]",
        }
    )


#: The explicit kernel's dialect.
PYTHON = Dialect()
#: The compiled kernel's: the same Python, with ``ADD``, ``UNION`` and ``NEWEST`` as tables
#: indexed by (cache, id), (cache, mask) and (mask, count).
NUMBA = replace(
    PYTHON,
    tables={
        **PYTHON.tables,
        "ADD": "ADD[{0}, {1}]",
        "UNION": "UNION[{0}, {1}]",
        "NEWEST": "NEWEST[{0}, {1}]",
    },
)


@functools.cache
def newest(mask: int, count: int) -> int:
    """The ``count`` largest ids of ``mask``, as a bitmask (the ``NEWEST`` table)."""
    keep, m = 0, mask.bit_length() - 1
    while m >= 0 and keep.bit_count() < count:
        if mask >> m & 1:
            keep |= 1 << m
        m -= 1
    return keep


# ---------------------------------------------------------------------------- code values
class Val:
    """A value as source code in the compiler's dialect: ``kind`` is bool, ids, cache, phase
    or int (whose ``lay`` is its type's ``(lo, hi)``, for saturating arithmetic)."""

    __slots__ = ("kind", "code", "const", "ref", "elt", "elems", "lay", "k")

    def __init__(
        self,
        k: _Compiler,
        kind: str,
        code: str,
        *,
        const: Any = None,
        ref: Any = None,
        of: str = "m",
        elems: dict[int, Val] | None = None,
        lay: EnumLayout | None = None,
    ):
        self.k, self.kind, self.code, self.const, self.ref = k, kind, code, const, ref
        self.elt, self.elems, self.lay = of, elems, lay

    def __hash__(self) -> int:
        if self.ref is None:
            raise DefinitionError("only a state variable read from s can be written")
        return hash(self.ref)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Val) and self.ref is not None and self.ref == other.ref

    def _b(self, code: str) -> Val:
        return Val(self.k, "bool", code)

    # -- bool
    def __and__(self, other: Val) -> Val:
        return self.k.all([self, other])

    def __or__(self, other: Val) -> Val:
        return self.k.any([self, other])

    def __invert__(self) -> Val:
        if self.const is not None:
            return self.k.boolc(not self.const)
        return self._b(self.k.dialect.not_.format(x=self.code))

    # -- ids
    def has(self, i: int) -> Val:
        if self.kind == "cache":
            return self._b(self.k.dialect.bit.format(x=self.k.lookup("IDS", self.code), i=i))
        if self.elems is not None:
            return self.elems.get(i, self.k.boolc(False))
        if self.const is not None:
            return self.k.boolc(bool(self.const >> i & 1))
        return self._b(self.k.dialect.bit.format(x=self.code, i=i))

    def _ids(self, code: str) -> Val:
        return Val(self.k, "ids", code, of=self.elt)

    def with_(self, i: int) -> Val:
        return self._ids(f"({self.code} | {1 << i})")

    def without(self, i: int) -> Val:
        return self._ids(self.k.dialect.clear.format(x=self.code, bit=1 << i, not_bit=~(1 << i)))

    def minus(self, other: Val) -> Val:
        return self._ids(self.k.dialect.minus.format(x=self.code, y=other.code))

    def union(self, other: Val) -> Val:
        return self._ids(f"({self.code} | {other.code})")

    def is_empty(self) -> Val:
        if self.const is not None:
            return self.k.boolc(self.const == 0)
        return self._b(f"({self.code} == 0)")

    def subset(self, other: Val) -> Val:
        return self._b(self.k.dialect.subset.format(x=self.code, y=other.code))

    def eq(self, other: Val | int) -> Val:
        # one code per cache value (interned) and per id set (a bitmask); ints are values
        return self._b(f"({self.code} == {_code(other)})")

    # -- bounded integers
    def _cmp(self, op: str, other: Val | int) -> Val:
        if self.kind != "int":
            raise DefinitionError(f"{op} compares integers, not {self.kind} values")
        return self._b(f"({self.code} {op} {_code(other)})")

    def __lt__(self, other: Val | int) -> Val:
        return self._cmp("<", other)

    def __le__(self, other: Val | int) -> Val:
        return self._cmp("<=", other)

    def __gt__(self, other: Val | int) -> Val:
        return self._cmp(">", other)

    def __ge__(self, other: Val | int) -> Val:
        return self._cmp(">=", other)

    def __add__(self, k: int) -> Val:
        if self.kind != "int" or isinstance(k, bool) or not isinstance(k, int):
            raise DefinitionError("only an integer plus a constant is defined")
        if k == 0:
            return self
        lo, hi = self.lay
        d = self.k.dialect
        code = d.inc.format(x=self.code, k=k, hi=hi) if k > 0 else d.dec.format(x=self.code, k=-k, lo=lo)
        return Val(self.k, "int", code, lay=self.lay)

    def __sub__(self, k: int) -> Val:
        if isinstance(k, bool) or not isinstance(k, int):
            raise DefinitionError("only an integer minus a constant is defined")
        return self + (-k)

    def newest(self, count: int) -> Val:
        return self._ids(self.k.lookup("NEWEST", self.code, count))

    # -- cache
    def add(self, m: int, late: Val | None = None) -> Val:
        return Val(self.k, "cache", self.k.lookup("ADD", self._row(late), m))

    def add_all(self, ids: Val, late: Val | None = None) -> Val:
        return Val(self.k, "cache", self.k.lookup("UNION", self._row(late), ids.code))

    def _row(self, late: Val | None) -> str:
        """The table row of this cache value added to with the ids of ``late`` stamped at the
        later time (:class:`CacheValues`' ordered rows)."""
        if late is None:
            return self.code
        cv = self.k.lay.cv
        if len(cv) == len(cv.values):
            raise DefinitionError("an add ordered by timestamp needs the definition's cache_order")
        if late.const == 0:
            return self.code
        return f"({self.code} + {self.k.dialect.scale.format(x=late.code, n=len(cv.values))})"

    def ids(self) -> Val:
        return Val(self.k, "ids", self.k.lookup("IDS", self.code))

    # -- statuses (CacheValues' status blocks)
    def _block(self, name: str) -> str:
        cv = self.k.lay.cv
        if not cv.statuses:
            raise DefinitionError("a copy's status needs the definition's cache_statuses")
        return f"({self.code} + {len(cv.values) * getattr(cv, name)})"

    def patch_all(self, ids: Val) -> Val:
        return Val(self.k, "cache", self.k.lookup("UNION", self._block("ALL"), ids.code))

    def patch_first(self, ids: Val) -> Val:
        return Val(self.k, "cache", self.k.lookup("UNION", self._block("FIRST"), ids.code))

    def open_first(self) -> Val:
        return Val(self.k, "ids", self.k.lookup("IDS", self._block("ALL")))

    def open_ids(self) -> Val:
        return Val(self.k, "ids", self.k.lookup("IDS", self._block("FIRST")))

    def no_dup(self) -> Val:
        return self._b(self.k.dialect.zero.format(x=self.k.lookup("DUP", self.code)))

    # -- phase
    def is_(self, phase: str) -> Val:
        pc = self.lay.code(phase)
        if pc.size == 1:
            return self._b(f"({self.code} == {pc.offset})")
        if pc is self.lay.last:
            return self._b(f"({self.code} >= {pc.offset})")
        return self._b(self.k.dialect.within.format(lo=pc.offset, x=self.code, hi=pc.offset + pc.size))

    def of(self, phase: str) -> Any:
        pc = self.lay.code(phase)
        rest = f"({self.code} - {pc.offset})" if pc.offset else self.code
        out = {}
        for f in pc.fields:
            code = rest
            if f.stride != 1:
                code = self.k.dialect.div.format(x=code, n=f.stride)
            if f.stride * f.size != pc.size:
                code = f"({code} % {f.size})"
            out[f.name] = Val(self.k, f.kind, code, of=f.of)
        return Payload(out)


def _code(v: Val | int) -> str:
    if isinstance(v, Val):
        return v.code
    if isinstance(v, bool) or not isinstance(v, int):
        raise DefinitionError(f"cannot compare with {v!r}")
    return str(v)


class _Compiler:
    """The value algebra ``x`` of a kernel's code, and the reader's backend: over ``layout``'s
    slots, read as ``names`` (``v0``, ``v1``, ...), written in ``dialect``. ``uses`` collects
    the tables the code reads."""

    def __init__(
        self,
        definition: Definition,
        cfg: Any,
        layout: Kernel,
        dialect: Dialect = PYTHON,
        names: Sequence[str] | None = None,
        uses: set[str] | None = None,
    ) -> None:
        self.d, self.cfg, self.lay, self.dialect = definition, cfg, layout, dialect
        self.names = names or [f"v{i}" for i in range(layout.width)]
        self.ops = self
        self.uses: set[str] = set() if uses is None else uses
        self.lets: list[tuple[str, str]] = []

    def lookup(self, table: str, *index: Any) -> str:
        """The dialect's text reading ``table`` at ``index``; the table counts as used."""
        messages = self.cfg.messages
        text = self.dialect.tables[table].format(*index, messages=messages, masks=1 << messages)
        self.uses.add(re.match(r"\w+", text).group())
        return text

    # -- reader backend
    def read(self, var, index) -> Val:
        slot = self.lay.slot[(var.name, index)]
        return self._typed(var, self.names[slot], ref=slot)

    def const(self, var, value) -> Val:
        if isinstance(var.type, IntType):
            return Val(self, "int", str(value), const=value, lay=(var.type.lo, var.type.hi))
        return self._typed(var, self.lay.encode_const(var, value), const_value=value)

    def _typed(self, var, code: str, *, ref=None, const_value=None) -> Val:
        t = var.type
        if isinstance(t, Enum):
            return Val(self, "phase", code, ref=ref, lay=self.lay.enums[var.name])
        if isinstance(t, CacheType):
            return Val(self, "cache", code, ref=ref)
        if isinstance(t, IntType):
            return Val(self, "int", f"({code} + {t.lo})" if t.lo else code, ref=ref, lay=(t.lo, t.hi))
        if isinstance(t, IdsType):
            const = int(code) if const_value is not None else None
            return Val(self, "ids", code, ref=ref, of=t.of, const=const)
        return Val(self, "bool", code, ref=ref, const=const_value)

    # -- algebra
    def boolc(self, value: bool) -> Val:
        return Val(self, "bool", self.dialect.true if value else self.dialect.false, const=bool(value))

    def all(self, items) -> Val:
        return self._join(items, self.dialect.and_, decides=False)

    def any(self, items) -> Val:
        return self._join(items, self.dialect.or_, decides=True)

    def _join(self, items, op: str, *, decides: bool) -> Val:
        """``items`` joined by ``op``, constants folded: one that ``decides`` is the result,
        the other drops out."""
        parts = []
        for v in items:
            if v.const is decides:
                return self.boolc(decides)
            if v.const is not (not decides):
                parts.append(v.code)
        if not parts:
            return self.boolc(not decides)
        return Val(self, "bool", parts[0] if len(parts) == 1 else "(" + op.join(parts) + ")")

    def ite(self, cond: Val, a: Any, b: Any) -> Any:
        if cond.const is not None:
            return a if cond.const else b
        if isinstance(a, Val) and isinstance(b, Val):
            code = self.dialect.cond.format(c=cond.code, a=a.code, b=b.code)
            return Val(self, a.kind, code, of=a.elt, lay=a.lay)
        return Ite(cond, a, b)

    def let(self, v: Val) -> Val:
        name = f"_t{len(self.lets)}"
        self.lets.append((name, v.code))
        return Val(self, v.kind, name, of=v.elt, lay=v.lay)

    def ids(self, of: str, elems: dict[int, Val]) -> Val:
        parts = [
            self.dialect.shift.format(x=self.as_int(b), i=i) for i, b in elems.items() if b.const is not False
        ]
        return Val(self, "ids", "(" + (" | ".join(parts) or "0") + ")", of=of, elems=dict(elems))

    def as_int(self, b: Val) -> str:
        """A condition as the 0/1 a slot or an id set's bit holds."""
        if b.const is not None:
            return "1" if b.const else "0"
        return self.dialect.bool_int.format(x=b.code)

    # -- effects
    def code_for(self, value: Any, slot: int) -> str:
        """Source code of ``value`` written to ``slot`` (-1: a payload field)."""
        var = self.lay.slot_var[slot][0] if slot >= 0 else None
        if var is not None and isinstance(var.type, IntType):
            lo = var.type.lo
            if isinstance(value, Val):
                if value.kind != "int":
                    raise DefinitionError(f"cannot write a {value.kind} value to the integer {var.name}")
                return f"({value.code} - {lo})" if lo else value.code
            if isinstance(value, int) and not isinstance(value, bool):
                if not var.type.lo <= value <= var.type.hi:
                    raise DefinitionError(f"{value} is outside {var.name}'s range {lo}..{var.type.hi}")
                return str(value - lo)
        if isinstance(value, Val):
            return self.as_int(value) if value.kind == "bool" else value.code
        if isinstance(value, Ite):
            a, b = self.code_for(value.a, slot), self.code_for(value.b, slot)
            return self.dialect.cond.format(c=value.cond.code, a=a, b=b)
        if isinstance(value, PhaseValue):
            lay = self.lay.slot_enum[slot]
            pc = lay.code(value.phase)
            parts = [str(pc.offset)] if pc.offset or not pc.fields else []
            fields = dict(value.fields)
            for f in pc.fields:
                code = self.code_for(fields[f.name], -1)
                parts.append(code if f.stride == 1 else self.dialect.scale.format(x=code, n=f.stride))
            return "(" + " + ".join(parts) + ")" if len(parts) > 1 else parts[0]
        if isinstance(value, (set, frozenset)):
            return str(sum(1 << i for i in value))
        if isinstance(value, bool):
            return "1" if value else "0"
        raise DefinitionError(f"cannot write {value!r}")


class Kernel:
    """A definition compiled for one configuration: layout, instances, successors, properties."""

    def __init__(self, definition: Definition, cfg: Any) -> None:
        from .core import Action  # the trace step type; core imports this module lazily

        self.definition, self.config = definition, cfg
        definition.validate(cfg)
        self.cv = CacheValues(
            cfg.messages,
            cfg.cap,
            cfg.has("dedupe"),
            definition.cache_order(cfg),
            definition.cache_statuses(cfg),
        )
        sizes = {"cache": len(self.cv.values), "ids_m": 1 << cfg.messages, "ids_t": 1 << cfg.tabs}
        self.vars = definition.variables_of(cfg)
        self.slot: dict[tuple[str, Any], int] = {}
        self.slot_var: list[tuple[Any, Any]] = []
        self.enums: dict[str, EnumLayout] = {}
        self.slot_enum: dict[int, EnumLayout] = {}
        for v in self.vars:
            if isinstance(v.type, Enum):
                self.enums[v.name] = EnumLayout(v.type, set(v.unused(cfg)), sizes)
            for idx in definition.indices(cfg, v.scope):
                self.slot[(v.name, idx)] = len(self.slot_var)
                if v.name in self.enums:
                    self.slot_enum[len(self.slot_var)] = self.enums[v.name]
                self.slot_var.append((v, idx))
        self.width = len(self.slot_var)

        self.instances: list[Any] = []
        self.defs: list[tuple[Any, dict[str, int]]] = definition.instances(cfg)
        self.label: dict[tuple[str, tuple[tuple[str, int], ...]], int] = {}
        for label, (a, args) in enumerate(self.defs):
            pairs = tuple(sorted(args.items(), key=lambda kv: "tm".index(kv[0])))
            self.instances.append(Action(a.name, pairs, label))
            self.label[(a.name, pairs)] = label
        self.unfair = frozenset(i for i, (a, _) in enumerate(self.defs) if not a.fair)
        self.props = definition.properties_of(cfg)
        self.init_state = self._init()
        self.source = self._generate()
        env: dict[str, Any] = {
            "ADD": self.cv.add,
            "IDS": self.cv.ids,
            "DUP": self.cv.dup,
            "UNION": self.cv.union,
            **self._env,
        }
        exec(compile(self.source, f"<kernel {cfg.variant_label()}>", "exec"), env)  # noqa: S102
        self.successors = env["successors"]
        self.failing = env["failing"]
        self.prop_fns = [env[f"prop_{i}"] for i in range(len(self.props))]
        self.derived_fns = {d.name: env[f"derived_{d.name}"] for d in definition.derived}

    # -- encoding
    def encode_const(self, var, value) -> str:
        if isinstance(var.type, IntType):
            return str(value - var.type.lo)
        if isinstance(var.type, Enum):
            return str(self.enums[var.name].code(value).offset)
        if isinstance(var.type, IdsType):
            return str(sum(1 << i for i in value))
        if isinstance(var.type, CacheType):
            return str(self.cv.code[tuple(value)])
        return "1" if value else "0"

    def _init(self) -> tuple[int, ...]:
        out = []
        for v, idx in self.slot_var:
            value = v.init(self.config, idx) if v.init else None
            if isinstance(v.type, IntType) and value is not None and not v.type.lo <= value <= v.type.hi:
                raise DefinitionError(f"{v.name}'s initial value {value} is outside {v.type.lo}..{v.type.hi}")
            out.append(0 if value is None else int(self.encode_const(v, value)))
        return tuple(out)

    # -- code generation
    def blocks(
        self,
        dialect: Dialect = PYTHON,
        names: Sequence[str] | None = None,
        *,
        props: Sequence[Any] | None = None,
        derived: Sequence[Any] | None = None,
    ) -> KernelCode:
        """The definition compiled to expressions in ``dialect`` over the slots read as
        ``names`` (locals ``v0..`` by default): per action instance (in the kernel's order) its
        guard, named temporaries and writes; per property (``props``, by default all) and
        derived value (``derived``, by default all) its temporaries and expression."""
        cfg, d = self.config, self.definition
        uses: set[str] = set()

        def compiler() -> _Compiler:
            return _Compiler(d, cfg, self, dialect, names, uses)

        order = sorted(
            range(len(self.defs)),
            key=lambda lab: (
                self.defs[lab][0].group,
                _index_key(self.defs[lab][1]),
                d.actions.index(self.defs[lab][0]),
            ),
        )
        actions: list[ActionCode] = []
        for label in order:
            a, args = self.defs[label]
            comp = compiler()
            guard, effects = d.apply(a, cfg, StateReader(d, cfg, comp), comp, args)
            if guard.const is False:
                continue
            writes: dict[int, str] = {}
            for target, value in effects.items():
                if not isinstance(target, Val) or target.ref is None:
                    raise DefinitionError(f"{a.name} writes something that is not a state variable")
                writes[target.ref] = comp.code_for(value, target.ref)
            if any(re.search(rf"\b{name}\b", guard.code) for name, _ in comp.lets):
                raise DefinitionError(f"{a.name}'s guard uses a value named with x.let")
            code = dialect.true if guard.const is True else guard.code
            actions.append(ActionCode(label, str(self.instances[label]), code, tuple(comp.lets), writes))
        prop_code: list[tuple[tuple[tuple[str, str], ...], str]] = []
        for p in self.props if props is None else props:
            comp = compiler()
            holds = p.holds(cfg, StateReader(d, cfg, comp), comp)
            prop_code.append((tuple(comp.lets), holds.code))
        derived_code: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {}
        for der in d.derived if derived is None else derived:
            comp = compiler()
            value = der.compute(cfg, StateReader(d, cfg, comp), comp)
            derived_code[der.name] = (tuple(comp.lets), value.code)
        env = {"NEWEST": newest} if "NEWEST" in uses else {}
        return KernelCode(actions, prop_code, derived_code, env, uses)

    def _generate(self) -> str:
        code = self.blocks()
        self._env = code.env
        unpack = ", ".join(f"v{i}" for i in range(self.width)) + ("," if self.width == 1 else "")
        lines = ["def successors(s):", f"    {unpack} = s", "    out = []", "    app = out.append"]
        for a in code.actions:
            new = [a.writes.get(i, f"v{i}") for i in range(self.width)]
            lines.append(f"    # {a.name}")
            lines.append(f"    if {a.guard}:")
            lines += [f"        {name} = {expr}" for name, expr in a.lets]
            tup = ", ".join(new) + ("," if self.width == 1 else "")
            lines.append(f"        app(({a.label}, ({tup})))")
        lines.append("    return out")
        lines.append("")
        fail = ["def failing(s):", f"    {unpack} = s", "    bad = 0"]
        for i, (lets, holds) in enumerate(code.props):
            body = [f"    {name} = {expr}" for name, expr in lets]
            lines += [f"def prop_{i}(s):", f"    {unpack} = s", *body, f"    return bool({holds})", ""]
            fail += body + [f"    if not ({holds}):", f"        bad |= {1 << i}"]
        fail.append("    return bad")
        for name, (lets, value) in code.derived.items():
            body = [f"    {n} = {expr}" for n, expr in lets]
            lines += [f"def derived_{name}(s):", f"    {unpack} = s", *body, f"    return {value}", ""]
        return "\n".join(lines + fail) + "\n"

    # -- decoding
    def decode(self, s: tuple[int, ...]) -> dict[str, Any]:
        """Each variable's value in the definition's terms: phases as ``(name, *payload)``,
        id sets as sorted tuples (or bools per element), the cache as a tuple."""
        out: dict[str, Any] = {}
        for (v, idx), code in zip(self.slot_var, s):
            value = self._decode_value(v, code)
            if v.scope == "global":
                out[v.name] = value
            elif v.scope == "heal":
                out.setdefault(v.name, {})[idx] = value
            else:
                out.setdefault(v.name, []).append(value)
        return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}

    def _decode_value(self, v, code: int) -> Any:
        t = v.type
        if isinstance(t, Enum):
            name, payload = self.enums[v.name].decode(code)
            pc = self.enums[v.name].phases[name]
            return (name, *(self._payload(f, x) for f, x in zip(pc.fields, payload)))
        if isinstance(t, CacheType):
            return self.cv.view(code)
        if isinstance(t, IntType):
            return code + t.lo
        if isinstance(t, IdsType):
            if t.view == "bools":
                n = self.config.tabs if t.of == "t" else self.config.messages
                return tuple(bool(code >> i & 1) for i in range(n))
            return tuple(bits(code))
        return bool(code)

    def _payload(self, f: Field, x: int) -> Any:
        return self.cv.view(x) if f.kind == "cache" else tuple(bits(x))


@dataclass(frozen=True)
class ActionCode:
    """One action instance compiled: its label and name, guard, temporaries, writes by slot."""

    label: int
    name: str
    guard: str
    lets: tuple[tuple[str, str], ...]
    writes: dict[int, str]


@dataclass
class KernelCode:
    """What :meth:`Kernel.blocks` compiles: actions, properties, derived values, the helpers
    their code calls beyond the cache tables (``NEWEST``) and the tables it reads."""

    actions: list[ActionCode]
    props: list[tuple[tuple[tuple[str, str], ...], str]]
    derived: dict[str, tuple[tuple[tuple[str, str], ...], str]]
    env: dict[str, Any]
    uses: set[str]


def absent_view(definition: Definition, cfg: Any, var: Any) -> Any:
    """The view of a variable the configuration lacks, from its ``absent`` value."""
    value = var.absent(cfg)
    t = var.type
    if isinstance(t, Enum):
        return (value,)
    if isinstance(t, IdsType):
        if t.view == "bools":
            n = cfg.tabs if t.of == "t" else cfg.messages
            return tuple(i in value for i in range(n))
        return tuple(sorted(value))
    return value


def _index_key(args: dict[str, int]) -> tuple[int, ...]:
    return tuple(args[k] for k in ("t", "m") if k in args)


__all__ = ["Kernel", "CacheValues", "EnumLayout", "bits", "args_of"]

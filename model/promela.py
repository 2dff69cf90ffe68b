"""The definition as a Promela program, for SPIN: an independent cross-check of the state space.

Every action body of :mod:`kvheal.model.definition` (or a user's design) is run once per
action instance with values whose code is Promela expression text, exactly as
:mod:`kvheal.model.kernel` runs them with Python code; the encoding is the kernel's (its
:class:`~kvheal.model.kernel.Kernel` supplies the layout): one global per state slot, phases
as ``offset + payload`` codes, id sets as bitmasks, cache values interned with the kernel's
tables ``ADD``, ``IDS``, ``DUP`` (and ``UNION``, ``NEWEST_k`` when used).

The program is one process (``init``): a prelude ``d_step`` that fills the tables (plain
assignments; past :data:`PRELUDE_STATEMENTS` entries one ``c_code`` copy from C constant
arrays, which SPIN's own simulator does not run, but pan does), then

    end: do
    :: d_step { guard -> effects }   /* one per action instance */
    ...
    od

The tables and the temporaries an action uses are ``hidden`` globals (outside SPIN's state
vector), so a stored state is the model's state plus the process's program counter, which
is the loop's head in every state but the first. SPIN therefore stores exactly the model's
reachable states plus one, :data:`PRELUDE_STATES`: the state before the prelude has run; and
pan's "transitions (= stored+matched)" counts every stored state as reached by one, the
initial state too, so it is the kernel's transition count plus two (the prelude, and the
initial state). :func:`run_spin` subtracts both.

With ``invariants=True`` each invariant of SPEC §7 is an ``assert`` on every state (in the
prelude for the initial state, at the end of every ``d_step``); liveness is not exported.

    >>> from kvheal.model import Config
    >>> from kvheal.model.definition import KVHEAL
    >>> text = promela(KVHEAL, Config.make(tabs=1, variants="atomic_cache,dedupe"))
    >>> text.count("d_step {") - 1   # one per action instance, after the prelude
    7
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dsl import CacheType, Definition, DefinitionError, Enum, IdsType, IntType, PhaseValue
from .kernel import Kernel, _index_key
from .reader import StateReader

__all__ = [
    "promela",
    "PromelaExport",
    "export",
    "run_spin",
    "SpinResult",
    "SpinError",
    "PRELUDE_STATES",
    "spin_missing",
]

#: States SPIN stores beyond the model's: the one before the table prelude has run.
PRELUDE_STATES = 1
#: The most table entries the prelude fills (compiled into pan.c).
MAX_TABLE_ENTRIES = 1_000_000
#: Past this many non-zero entries the prelude copies the tables from C arrays (``c_code``).
PRELUDE_STATEMENTS = 1000
#: Table entries per C array of such a prelude.
C_CHUNK = 4096


# ---------------------------------------------------------------------------- values
class PVal:
    """A value as Promela expression text (the kernel's ``Val``, in Promela's syntax: every
    operation is fully parenthesised, since C's ``==`` binds tighter than ``&``)."""

    __slots__ = ("kind", "code", "const", "ref", "elt", "elems", "lay", "k")

    def __init__(
        self,
        k: _PromelaCompiler,
        kind: str,
        code: str,
        *,
        const: Any = None,
        ref: Any = None,
        of: str = "m",
        elems: dict[int, PVal] | None = None,
        lay: Any = None,
    ):
        self.k, self.kind, self.code, self.const, self.ref = k, kind, code, const, ref
        self.elt, self.elems, self.lay = of, elems, lay

    def __hash__(self) -> int:
        if self.ref is None:
            raise DefinitionError("only a state variable read from s can be written")
        return hash(self.ref)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PVal) and self.ref is not None and self.ref == other.ref

    def _b(self, code: str) -> PVal:
        return PVal(self.k, "bool", code)

    # -- bool
    def __and__(self, other: PVal) -> PVal:
        return self.k.all([self, other])

    def __or__(self, other: PVal) -> PVal:
        return self.k.any([self, other])

    def __invert__(self) -> PVal:
        if self.const is not None:
            return self.k.boolc(not self.const)
        return self._b(f"(!{self.code})")

    # -- ids
    def has(self, i: int) -> PVal:
        if self.kind == "cache":
            self.k.use("IDS")
            return self._b(f"((IDS[{self.code}] >> {i}) & 1)")
        if self.elems is not None:
            return self.elems.get(i, self.k.boolc(False))
        if self.const is not None:
            return self.k.boolc(bool(self.const >> i & 1))
        return self._b(f"(({self.code} >> {i}) & 1)")

    def _ids(self, code: str) -> PVal:
        return PVal(self.k, "ids", code, of=self.elt)

    def with_(self, i: int) -> PVal:
        return self._ids(f"({self.code} | {1 << i})")

    def without(self, i: int) -> PVal:
        return self._ids(f"({self.code} & (~{1 << i}))")

    def minus(self, other: PVal) -> PVal:
        return self._ids(f"({self.code} & (~{other.code}))")

    def union(self, other: PVal) -> PVal:
        return self._ids(f"({self.code} | {other.code})")

    def is_empty(self) -> PVal:
        if self.const is not None:
            return self.k.boolc(self.const == 0)
        return self._b(f"({self.code} == 0)")

    def subset(self, other: PVal) -> PVal:
        return self._b(f"(({self.code} & (~{other.code})) == 0)")

    def eq(self, other: PVal | int) -> PVal:
        return self._b(f"({self.code} == {_code(other)})")

    # -- bounded integers
    def _cmp(self, op: str, other: PVal | int) -> PVal:
        if self.kind != "int":
            raise DefinitionError(f"{op} compares integers, not {self.kind} values")
        return self._b(f"({self.code} {op} {_code(other)})")

    def __lt__(self, other: PVal | int) -> PVal:
        return self._cmp("<", other)

    def __le__(self, other: PVal | int) -> PVal:
        return self._cmp("<=", other)

    def __gt__(self, other: PVal | int) -> PVal:
        return self._cmp(">", other)

    def __ge__(self, other: PVal | int) -> PVal:
        return self._cmp(">=", other)

    def __add__(self, k: int) -> PVal:
        if self.kind != "int" or isinstance(k, bool) or not isinstance(k, int):
            raise DefinitionError("only an integer plus a constant is defined")
        if k == 0:
            return self
        lo, hi = self.lay
        if k > 0:
            code = f"(({self.code} + {k}) < {hi} -> ({self.code} + {k}) : {hi})"
        else:
            code = f"(({self.code} - {-k}) > {lo} -> ({self.code} - {-k}) : {lo})"
        return PVal(self.k, "int", code, lay=self.lay)

    def __sub__(self, k: int) -> PVal:
        if isinstance(k, bool) or not isinstance(k, int):
            raise DefinitionError("only an integer minus a constant is defined")
        return self + (-k)

    def newest(self, count: int) -> PVal:
        name = self.k.use(f"NEWEST_{count}")
        return self._ids(f"{name}[{self.code}]")

    # -- cache
    def add(self, m: int) -> PVal:
        self.k.use("ADD")
        M = self.k.cfg.messages
        return PVal(self.k, "cache", f"ADD[({self.code}) * {M} + {m}]")

    def add_all(self, ids: PVal) -> PVal:
        self.k.use("UNION")
        return PVal(self.k, "cache", f"UNION[({self.code}) * {1 << self.k.cfg.messages} + {ids.code}]")

    def ids(self) -> PVal:
        self.k.use("IDS")
        return PVal(self.k, "ids", f"IDS[{self.code}]")

    def no_dup(self) -> PVal:
        self.k.use("DUP")
        return self._b(f"(DUP[{self.code}] == 0)")

    # -- phase
    def is_(self, phase: str) -> PVal:
        pc = self.lay.code(phase)
        if pc.size == 1:
            return self._b(f"({self.code} == {pc.offset})")
        if pc is self.lay.last:
            return self._b(f"({self.code} >= {pc.offset})")
        return self._b(f"(({pc.offset} <= {self.code}) && ({self.code} < {pc.offset + pc.size}))")

    def of(self, phase: str) -> Any:
        pc = self.lay.code(phase)
        rest = f"({self.code} - {pc.offset})" if pc.offset else self.code
        out = {}
        for f in pc.fields:
            code = rest
            if f.stride != 1:
                code = f"({code} / {f.stride})"
            if f.stride * f.size != pc.size:
                code = f"({code} % {f.size})"
            out[f.name] = PVal(self.k, f.kind, code, of=f.of)
        return _Payload(out)


def _code(v: PVal | int) -> str:
    if isinstance(v, PVal):
        return v.code
    if isinstance(v, bool) or not isinstance(v, int):
        raise DefinitionError(f"cannot compare with {v!r}")
    return str(v)


class _Payload:
    def __init__(self, fields: dict[str, PVal]) -> None:
        self.__dict__.update(fields)


@dataclass(frozen=True)
class _Ite:
    cond: PVal
    a: Any
    b: Any


class _PromelaCompiler:
    """The value algebra ``x`` producing Promela text, and the reader's backend, over the
    kernel's layout (``names[slot]`` is a slot's global)."""

    def __init__(self, exp: PromelaExport) -> None:
        self.exp, self.kern, self.cfg = exp, exp.kernel, exp.kernel.config
        self.ops = self
        self.lets: list[tuple[str, str]] = []

    def use(self, table: str) -> str:
        self.exp.tables.add(table)
        return table

    # -- reader backend
    def read(self, var, index) -> PVal:
        slot = self.kern.slot[(var.name, index)]
        return self._typed(var, self.exp.names[slot], ref=slot)

    def const(self, var, value) -> PVal:
        if isinstance(var.type, IntType):
            return PVal(self, "int", str(value), const=value, lay=(var.type.lo, var.type.hi))
        return self._typed(var, self.kern.encode_const(var, value), const_value=value)

    def _typed(self, var, code: str, *, ref=None, const_value=None) -> PVal:
        t = var.type
        if isinstance(t, Enum):
            return PVal(self, "phase", code, ref=ref, lay=self.kern.enums[var.name])
        if isinstance(t, CacheType):
            return PVal(self, "cache", code, ref=ref)
        if isinstance(t, IntType):
            return PVal(self, "int", f"({code} + {t.lo})" if t.lo else code, ref=ref, lay=(t.lo, t.hi))
        if isinstance(t, IdsType):
            const = int(code) if const_value is not None else None
            return PVal(self, "ids", code, ref=ref, of=t.of, const=const)
        return PVal(self, "bool", code, ref=ref, const=const_value)

    # -- algebra
    def boolc(self, value: bool) -> PVal:
        return PVal(self, "bool", "true" if value else "false", const=bool(value))

    def all(self, items) -> PVal:
        parts = []
        for v in items:
            if v.const is False:
                return self.boolc(False)
            if v.const is not True:
                parts.append(v.code)
        if not parts:
            return self.boolc(True)
        return PVal(self, "bool", parts[0] if len(parts) == 1 else "(" + " && ".join(parts) + ")")

    def any(self, items) -> PVal:
        parts = []
        for v in items:
            if v.const is True:
                return self.boolc(True)
            if v.const is not False:
                parts.append(v.code)
        if not parts:
            return self.boolc(False)
        return PVal(self, "bool", parts[0] if len(parts) == 1 else "(" + " || ".join(parts) + ")")

    def ite(self, cond: PVal, a: Any, b: Any) -> Any:
        if cond.const is not None:
            return a if cond.const else b
        if isinstance(a, PVal) and isinstance(b, PVal):
            return PVal(self, a.kind, f"({cond.code} -> {a.code} : {b.code})", of=a.elt, lay=a.lay)
        return _Ite(cond, a, b)

    def let(self, v: PVal) -> PVal:
        name = f"_t{len(self.lets)}"
        self.lets.append((name, v.code))
        return PVal(self, v.kind, name, of=v.elt, lay=v.lay)

    def ids(self, of: str, elems: dict[int, PVal]) -> PVal:
        parts = [f"({_as_bit(b)} << {i})" for i, b in elems.items() if b.const is not False]
        code = "(" + " | ".join(parts) + ")" if parts else "0"
        return PVal(self, "ids", code, of=of, elems=dict(elems))

    # -- effects
    def code_for(self, value: Any, slot: int) -> str:
        """Promela text of ``value`` written to ``slot`` (-1: a payload field)."""
        var = self.kern.slot_var[slot][0] if slot >= 0 else None
        if var is not None and isinstance(var.type, IntType):
            lo = var.type.lo
            if isinstance(value, PVal):
                if value.kind != "int":
                    raise DefinitionError(f"cannot write a {value.kind} value to the integer {var.name}")
                return f"({value.code} - {lo})" if lo else value.code
            if isinstance(value, int) and not isinstance(value, bool):
                if not var.type.lo <= value <= var.type.hi:
                    raise DefinitionError(f"{value} is outside {var.name}'s range {lo}..{var.type.hi}")
                return str(value - lo)
        if isinstance(value, PVal):
            return _as_bit(value) if value.kind == "bool" else value.code
        if isinstance(value, _Ite):
            a, b = self.code_for(value.a, slot), self.code_for(value.b, slot)
            return f"({value.cond.code} -> {a} : {b})"
        if isinstance(value, PhaseValue):
            lay = self.kern.slot_enum[slot]
            pc = lay.code(value.phase)
            parts = [str(pc.offset)] if pc.offset or not pc.fields else []
            fields = dict(value.fields)
            for f in pc.fields:
                code = self.code_for(fields[f.name], -1)
                parts.append(code if f.stride == 1 else f"({code}) * {f.stride}")
            return "(" + " + ".join(parts) + ")" if len(parts) > 1 else parts[0]
        if isinstance(value, (set, frozenset)):
            return str(sum(1 << i for i in value))
        if isinstance(value, bool):
            return "1" if value else "0"
        raise DefinitionError(f"cannot write {value!r}")


def _as_bit(b: PVal) -> str:
    """A boolean as 0/1 (a condition such as ``(x >> 2) & 1`` already is one)."""
    if b.const is not None:
        return "1" if b.const else "0"
    return f"({b.code} -> 1 : 0)"


# ---------------------------------------------------------------------------- the program
def _ctype(limit: int) -> str:
    """The smallest Promela integer type holding ``0..limit-1``."""
    if limit <= 2:
        return "bit"
    if limit <= 256:
        return "byte"
    if limit <= 1 << 15:
        return "short"
    return "int"


def _slot_name(var: Any, idx: Any) -> str:
    if idx is None:
        return var.name
    if isinstance(idx, tuple):
        return f"{var.name}_{'_'.join(map(str, idx))}"
    return f"{var.name}_{idx}"


class PromelaExport:
    """One configuration of a definition, as Promela text (:attr:`text`)."""

    def __init__(self, definition: Definition, cfg: Any, *, invariants: bool = True) -> None:
        self.definition, self.config = definition, cfg
        self.kernel = k = Kernel(definition, cfg)
        self.names = [_slot_name(v, idx) for v, idx in k.slot_var]
        if len(set(self.names)) != len(self.names):
            raise DefinitionError("two state slots share a Promela name")
        self.tables: set[str] = set()
        self.invariants = [p for p in k.props if p.kind == "invariant"] if invariants else []
        self.text = self._generate()

    # -- sizes
    def _limit(self, slot: int) -> int:
        var = self.kernel.slot_var[slot][0]
        t = var.type
        if isinstance(t, Enum):
            return self.kernel.enums[var.name].limit
        if isinstance(t, CacheType):
            return len(self.kernel.cv)
        if isinstance(t, IntType):
            return t.size
        if isinstance(t, IdsType):
            return 1 << (self.config.tabs if t.of == "t" else self.config.messages)
        return 2

    def state_bytes(self) -> int:
        """Bytes of the model's variables in SPIN's state vector (before its own fields)."""
        size = {"bit": 1, "byte": 1, "short": 2, "int": 4}
        return sum(size[_ctype(self._limit(i))] for i in range(self.kernel.width))

    # -- generation
    def _generate(self) -> str:
        k, d, cfg = self.kernel, self.definition, self.config
        blocks: list[str] = []
        n_tmp = n_new = 0
        order = sorted(
            range(len(k.defs)),
            key=lambda lab: (
                k.defs[lab][0].group,
                _index_key(k.defs[lab][1]),
                d.actions.index(k.defs[lab][0]),
            ),
        )
        inv_macros = self._invariants()
        check = " && ".join(name for name, _ in inv_macros)
        for label in order:
            a, args = k.defs[label]
            comp = _PromelaCompiler(self)
            guard, effects = d.apply(a, cfg, StateReader(d, cfg, comp), comp, args)
            if guard.const is False:
                continue
            writes: list[tuple[int, str]] = []
            for target, value in effects.items():
                if not isinstance(target, PVal) or target.ref is None:
                    raise DefinitionError(f"{a.name} writes something that is not a state variable")
                writes.append((target.ref, comp.code_for(value, target.ref)))
            if any(re.search(rf"\b{name}\b", guard.code) for name, _ in comp.lets):
                raise DefinitionError(f"{a.name}'s guard uses a value named with x.let")
            n_tmp = max(n_tmp, len(comp.lets))
            body = [f"{name} = {code}" for name, code in comp.lets]
            # the effects are simultaneous: a write whose value reads a slot written before it
            # goes through a temporary
            direct, late, written = [], [], []
            for slot, code in writes:
                if code == self.names[slot]:
                    continue
                if any(re.search(rf"\b{w}\b", code) for w in written):
                    late.append((slot, f"_n{len(late)}", code))
                else:
                    direct.append(f"{self.names[slot]} = {code}")
                written.append(self.names[slot])
            n_new = max(n_new, len(late))
            body = (
                body
                + [f"{tmp} = {code}" for _, tmp, code in late]
                + direct
                + [f"{self.names[slot]} = {tmp}" for slot, tmp, _ in late]
            )
            if check:
                body.append(f"assert({check})")
            g = guard.code if guard.const is not True else "true"
            stmts = ";\n       ".join(body) if body else "skip"
            blocks.append(f"  :: /* {k.instances[label]} */\n     d_step {{ {g} ->\n       {stmts}\n     }}")
        out = [self._header()]
        out += [f"{_ctype(self._limit(i))} {self.names[i]} = {k.init_state[i]};" for i in range(k.width)]
        out.append("")
        out += self._table_decls()
        out += [f"hidden int _t{i};" for i in range(n_tmp)]
        out += [f"hidden int _n{i};" for i in range(n_new)]
        out.append("")
        for name, code in inv_macros:
            out.append(f"#define {name} {code}")
        if inv_macros:
            out.append("")
        prelude, c_decls = self._table_init()
        if c_decls:
            out += [*c_decls, ""]
        out.append("init {")
        if check:
            prelude.append(f"assert({check})")
        out.append("  d_step {\n    " + (";\n    ".join(prelude) if prelude else "skip") + "\n  };")
        out.append("end:")
        out.append("  do")
        out += blocks
        out.append("  od")
        out.append("}")
        return "\n".join(out) + "\n"

    def _invariants(self) -> list[tuple[str, str]]:
        d, cfg = self.definition, self.config
        out = []
        for p in self.invariants:
            comp = _PromelaCompiler(self)
            holds = p.holds(cfg, StateReader(d, cfg, comp), comp)
            if comp.lets:  # a macro cannot hold assignments: substitute each let's text
                code = holds.code
                for name, text in reversed(comp.lets):
                    code = re.sub(rf"\b{name}\b", f"({text})", code)
            else:
                code = holds.code
            out.append((p.name, "true" if holds.const is True else "false" if holds.const is False else code))
        return out

    def _header(self) -> str:
        cfg = self.config
        return (
            f"/* kvheal's model ({self.definition.name}) for SPIN, generated by kvheal export "
            f"--promela\n"
            f"   tabs={cfg.tabs} per_tab={cfg.per_tab} cap={cfg.cap} "
            f"variant={cfg.variant_label()}\n"
            f"   One d_step per action instance; the tables and temporaries are hidden (not in\n"
            f"   the state vector). SPIN stores the model's reachable states plus "
            f"{PRELUDE_STATES} (the state\n"
            f"   before the table prelude); pan's transitions (stored+matched) are kvheal check's + 2.\n"
            f"   spin -a -o2 (keep write-only variables in the state vector; SPIN hides them otherwise)\n"
            f"   gcc -O2 -DSAFETY -DNOREDUCE -o pan pan.c && ./pan -m<depth> -c0 */\n"
        )

    def _tables(self) -> dict[str, list[int]]:
        cv, M = self.kernel.cv, self.config.messages
        out: dict[str, list[int]] = {}
        for name in sorted(self.tables):
            if name == "ADD":
                out[name] = [x for row in cv.add for x in row]
            elif name == "IDS":
                out[name] = list(cv.ids)
            elif name == "DUP":
                out[name] = [int(x) for x in cv.dup]
            elif name == "UNION":
                out[name] = [cv.union(c, miss) for c in range(len(cv)) for miss in range(1 << M)]
            elif name.startswith("NEWEST_"):
                count = int(name.split("_")[1])
                out[name] = [_newest(mask, count) for mask in range(1 << M)]
        return out

    def _checked_tables(self) -> dict[str, list[int]]:
        sizes = {
            "ADD": len(self.kernel.cv) * self.config.messages,
            "UNION": len(self.kernel.cv) << self.config.messages,
        }
        total = sum(sizes.get(name, 0) for name in self.tables)
        if total > MAX_TABLE_ENTRIES:
            raise DefinitionError(
                f"the cache tables would have {total:,} entries, beyond the Promela "
                f"export's limit of {MAX_TABLE_ENTRIES:,}; lower --cap, --tabs or "
                f"--per-tab"
            )
        return self._tables()

    def _table_decls(self) -> list[str]:
        return [
            f"hidden {_ctype(max(max(vals) + 1, 3))} {name}[{len(vals)}];"  # no hidden bits
            for name, vals in self._checked_tables().items()
        ]

    def _table_init(self) -> tuple[list[str], list[str]]:
        """The prelude's statements, and C declarations for it. Up to :data:`PRELUDE_STATEMENTS`
        entries, one Promela assignment each; beyond (SPIN refuses a d_step of more than about
        2,000 statements), one ``c_code`` statement copying C constant arrays into the hidden
        tables (pan keeps hidden globals as plain C variables of the same name)."""
        tables = self._tables()
        if sum(1 for vals in tables.values() for v in vals if v) <= PRELUDE_STATEMENTS:
            return [
                f"{name}[{i}] = {v}" for name, vals in tables.items() for i, v in enumerate(vals) if v
            ], []
        ctype = {"byte": "unsigned char", "short": "short", "int": "int"}
        decls, copies = [], []
        for name, vals in tables.items():
            c = ctype[_ctype(max(max(vals) + 1, 3))]
            for at in range(0, len(vals), C_CHUNK):  # SPIN takes at most 64 KiB of text per block
                part = vals[at : at + C_CHUNK]
                rows = [", ".join(map(str, part[i : i + 32])) for i in range(0, len(part), 32)]
                body = ",\n    ".join(rows)
                decls += [
                    "c_decl {",
                    f"  static const {c} {name}_{at}[{len(part)}] = {{\n    {body}\n  }};",
                    "}",
                ]
                copies.append(f"memcpy(&{name}[{at}], {name}_{at}, sizeof {name}_{at});")
        return ["c_code { " + " ".join(copies) + " }"], decls


def _newest(mask: int, count: int) -> int:
    """The ``count`` largest ids of ``mask`` (the kernel's ``NEWEST``)."""
    keep, m = 0, mask.bit_length() - 1
    while m >= 0 and keep.bit_count() < count:
        if mask >> m & 1:
            keep |= 1 << m
        m -= 1
    return keep


def export(definition: Definition, cfg: Any, *, invariants: bool = True) -> PromelaExport:
    return PromelaExport(definition, cfg, invariants=invariants)


def promela(definition: Definition, cfg: Any, *, invariants: bool = True) -> str:
    """The Promela program of ``definition`` at ``cfg``."""
    return PromelaExport(definition, cfg, invariants=invariants).text


# ---------------------------------------------------------------------------- running SPIN
class SpinError(RuntimeError):
    """SPIN or the C compiler failed, or pan's output could not be read (one line)."""


def spin_missing() -> str | None:
    """Why SPIN cannot run here (``spin`` or ``gcc`` not on PATH), or None."""
    for tool in ("spin", "gcc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install -y spin gcc)"
    return None


@dataclass
class SpinResult:
    """pan's figures for one run, the model's counts (SPIN's minus the prelude's) beside."""

    states: int  # the model's reachable states: SPIN's stored states - PRELUDE_STATES
    transitions: int  # pan's stored+matched - PRELUDE_STATES - 1 (see above)
    spin_states: int
    spin_transitions: int
    depth: int
    errors: int
    vector_bytes: int
    memory_mib: float  # pan's "total actual memory usage"
    peak_rss_mib: float  # pan's peak resident set (wait4's, in a small wrapper process)
    spin_seconds: float  # spin -a
    compile_seconds: float  # gcc
    run_seconds: float  # ./pan
    complete: bool  # no depth truncation, no memory stop
    stop: str  # why not complete ("" when complete)
    output: str
    exact: bool = True  # both counts printed exactly (pan rounds to 8 digits from 10^8 on)
    printed: tuple[str, str] = ("", "")  # pan's stored and transitions figures as printed

    def matches(self, states: int, transitions: int) -> bool:
        """Whether pan's figures are those of a model with ``states`` and ``transitions``
        (compared as pan prints them, so rounded ones compare too)."""
        want = (states + PRELUDE_STATES, transitions + PRELUDE_STATES + 1)
        return all(float(p) == float(f"{w:.8g}") for p, w in zip(self.printed, want))

    @property
    def total_seconds(self) -> float:
        return self.spin_seconds + self.compile_seconds + self.run_seconds


#: Runs argv[2:] and writes its peak RSS (KiB, from wait4) and wall seconds to argv[1]. A child forked from this
#: process's interpreter would report at least the interpreter's RSS (Linux keeps a process's
#: high-water mark across fork and exec), so the measured program is forked from a fresh,
#: small interpreter instead: its figure is exact above ~10 MiB.
_MEASURE = (
    "import os, sys, time\n"
    "t0 = time.perf_counter()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {time.perf_counter() - t0}')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _run(cmd: list[str], cwd: str, timeout: float | None, ok: Any = None) -> tuple[str, float, float]:
    """Run ``cmd``; its output, wall seconds and peak RSS in MiB (measured by a small wrapper
    process, see ``_MEASURE``). A non-zero exit is a :class:`SpinError` unless ``ok(output)``
    says the output is usable."""
    rss_file = os.path.join(cwd, "rss.txt")
    exe = os.path.join(cwd, cmd[0][2:]) if cmd[0].startswith("./") else shutil.which(cmd[0]) or cmd[0]
    t0 = time.perf_counter()
    with open(os.path.join(cwd, "out.txt"), "w+b") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MEASURE, rss_file, exe, *cmd[1:]],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the wrapper and the program it runs
            proc.wait()
            raise SpinError(f"{cmd[0]} did not finish in {timeout:.0f} s") from None
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0 and not (ok and ok(text)):
        last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["(no output)"]
        raise SpinError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}): {last[0].strip()}")
    try:  # the program's own figures, without the wrapper's start
        kib, secs = Path(rss_file).read_text().split()
        rss_kib, wall = int(kib), float(secs)
    except (OSError, ValueError):
        rss_kib = 0
    return text, wall, rss_kib / 1024


def _figure(pattern: str, text: str, cast=int) -> Any:
    m = re.search(pattern, text)
    if m is None:
        raise SpinError(f"pan's output lacks {pattern!r}")
    return cast(m.group(1).replace(",", ""))


def run_spin(
    text: str,
    *,
    depth: int = 100_000,
    memlim_mib: int | None = None,
    hash_bits: int | None = None,
    workdir: str | None = None,
    timeout: float | None = None,
    extra_cflags: tuple[str, ...] = (),
) -> SpinResult:
    """``spin -a -o2``, ``gcc -O2 -DSAFETY -DNOREDUCE`` and ``./pan -m<depth> -c0`` on ``text``
    (exact state storage, no partial-order reduction, every error counted, none stopping the
    search); the figures, with the model's counts. ``-o2`` keeps write-only variables in the
    state vector: SPIN otherwise hides them (a timestamp no poll reads, with ``full_poll``),
    merging states the model tells apart."""
    missing = spin_missing()
    if missing:
        raise SpinError(missing)
    own = workdir is None
    work = tempfile.mkdtemp(prefix="kvheal-spin-") if own else workdir
    try:
        Path(work, "model.pml").write_text(text)
        _, t_spin, _ = _run(["spin", "-a", "-o2", "model.pml"], work, timeout)
        flags = ["-O2", "-DSAFETY", "-DNOREDUCE", "-DVECTORSZ=4096"]
        if memlim_mib:
            flags.append(f"-DMEMLIM={memlim_mib}")
        _, t_cc, _ = _run(["gcc", *flags, *extra_cflags, "-o", "pan", "pan.c"], work, timeout)
        args = ["./pan", f"-m{depth}", "-c0"]
        if hash_bits:
            args.append(f"-w{hash_bits}")
        out, t_run, rss = _run(args, work, timeout, ok=lambda o: "states, stored" in o)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    # pan prints counts with printf("%9.8g"): exact below 10^8, rounded to 8 digits beyond
    stored_text = _figure(r"(\S+) states, stored", out, str)
    trans_text = _figure(r"(\S+) transitions \(= stored\+matched\)", out, str)
    stored, trans = round(float(stored_text)), round(float(trans_text))
    stop = ""
    for needle, why in (
        ("max search depth too small", f"depth beyond -m{depth}"),
        ("reached -DMEMLIM bound", f"memory beyond -DMEMLIM={memlim_mib}"),
        ("out of memory", "out of memory"),
    ):
        if needle in out:
            stop = why
    return SpinResult(
        states=stored - PRELUDE_STATES,
        transitions=trans - PRELUDE_STATES - 1,
        spin_states=stored,
        spin_transitions=trans,
        depth=_figure(r"depth reached (\d+)", out),
        errors=_figure(r"errors: (\d+)", out),
        vector_bytes=_figure(r"State-vector (\d+) byte", out),
        memory_mib=_figure(r"([\d.]+)\s+total actual memory usage", out, float),
        peak_rss_mib=round(rss, 1),
        spin_seconds=round(t_spin, 2),
        compile_seconds=round(t_cc, 2),
        run_seconds=round(t_run, 2),
        complete=not stop,
        stop=stop,
        output=out,
        exact="e" not in stored_text + trans_text,
        printed=(stored_text, trans_text),
    )

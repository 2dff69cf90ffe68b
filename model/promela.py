"""The definition as a Promela program, for SPIN: an independent cross-check of the state space.

Every action body of :mod:`kvheal.model.definition` (or a user's design) is compiled by the
kernel's own value algebra (:meth:`~kvheal.model.kernel.Kernel.blocks`) in the
:data:`PROMELA` dialect: the same code as the explicit checker's, in Promela's syntax; the
encoding is the kernel's (its :class:`~kvheal.model.kernel.Kernel` supplies the layout):
one global per state slot, phases as ``offset + payload`` codes, id sets as bitmasks, cache
values interned with the kernel's tables ``ADD``, ``IDS``, ``DUP`` (and ``UNION``,
``NEWEST_k`` when used).

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

from .dsl import CacheType, Definition, DefinitionError, Enum, IdsType, IntType
from .kernel import Dialect, Kernel, newest

__all__ = [
    "promela",
    "PromelaExport",
    "export",
    "run_spin",
    "SpinResult",
    "SpinError",
    "PRELUDE_STATES",
    "PROMELA",
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


# ---------------------------------------------------------------------------- syntax
#: The kernel's value algebra in Promela's syntax: every operation fully parenthesised (C's
#: ``==`` binds tighter than ``&``), booleans written to a slot as 0/1, the tables flat arrays
#: (``NEWEST_k`` one per count).
PROMELA = Dialect(
    true="true",
    false="false",
    and_=" && ",
    or_=" || ",
    not_="(!{x})",
    zero="({x} == 0)",
    bit="(({x} >> {i}) & 1)",
    bool_int="({x} -> 1 : 0)",
    shift="({x} << {i})",
    clear="({x} & (~{bit}))",
    minus="({x} & (~{y}))",
    subset="(({x} & (~{y})) == 0)",
    cond="({c} -> {a} : {b})",
    inc="(({x} + {k}) < {hi} -> ({x} + {k}) : {hi})",
    dec="(({x} - {k}) > {lo} -> ({x} - {k}) : {lo})",
    within="(({lo} <= {x}) && ({x} < {hi}))",
    div="({x} / {n})",
    scale="({x}) * {n}",
    tables={
        "ADD": "ADD[({0}) * {messages} + {1}]",
        "UNION": "UNION[({0}) * {masks} + {1}]",
        "NEWEST": "NEWEST_{1}[{0}]",
        "IDS": "IDS[{0}]",
        "DUP": "DUP[{0}]",
    },
)


# ---------------------------------------------------------------------------- the program
def _inline(lets: tuple[tuple[str, str], ...], code: str) -> str:
    """An expression with its temporaries substituted (a macro cannot hold assignments)."""
    for name, text in reversed(lets):
        code = re.sub(rf"\b{name}\b", f"({text})", code)
    return code


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
        self.invariants = [p for p in k.props if p.kind == "invariant"] if invariants else []
        self.code = k.blocks(PROMELA, self.names, props=self.invariants, derived=())
        self.tables: set[str] = self.code.uses
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
        k, code = self.kernel, self.code
        inv_macros = [(p.name, _inline(*pc)) for p, pc in zip(self.invariants, code.props)]
        check = " && ".join(name for name, _ in inv_macros)
        blocks: list[str] = []
        n_tmp = n_new = 0
        for a in code.actions:
            n_tmp = max(n_tmp, len(a.lets))
            body = [f"{name} = {text}" for name, text in a.lets]
            # the effects are simultaneous: a write whose value reads a slot written before it
            # goes through a temporary
            direct, late, written = [], [], []
            for slot, text in a.writes.items():
                if text == self.names[slot]:
                    continue
                if any(re.search(rf"\b{w}\b", text) for w in written):
                    late.append((slot, f"_n{len(late)}", text))
                else:
                    direct.append(f"{self.names[slot]} = {text}")
                written.append(self.names[slot])
            n_new = max(n_new, len(late))
            body = (
                body
                + [f"{tmp} = {text}" for _, tmp, text in late]
                + direct
                + [f"{self.names[slot]} = {tmp}" for slot, tmp, _ in late]
            )
            if check:
                body.append(f"assert({check})")
            stmts = ";\n       ".join(body) if body else "skip"
            blocks.append(f"  :: /* {a.name} */\n     d_step {{ {a.guard} ->\n       {stmts}\n     }}")
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
                out[name] = [newest(mask, count) for mask in range(1 << M)]
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

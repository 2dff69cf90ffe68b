"""Every z3 query of a proof as an SMT-LIB 2 file a reader can re-run with any solver.

:func:`capture` records each ``Solver.check`` made inside it as a stand-alone SMT-LIB
benchmark (declarations, assertions, the check's assumptions asserted, ``(check-sat)``) with
z3's answer. :func:`qualified_enums` makes the parameterized proofs' enumeration sorts print
unambiguously: z3 lets two sorts share a constructor name (``Idle``), SMT-LIB does not, so
inside it each constructor is named ``Sort.Value`` (in a sort named ``Sort_``). :func:`paired` names the captured calls by
the proof's own query log; :func:`smt2_file` writes one with its expected answer in a comment;
:func:`recheck` re-runs one.

No files are read or written here (the CLI does that); the context managers patch z3's
Python API for their duration only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import z3

#: Qualified enumeration sorts, made once per process (z3 refuses a second declaration).
_QUALIFIED: dict[str, Any] = {}


@contextlib.contextmanager
def qualified_enums() -> Iterator[None]:
    """Within: :mod:`kvheal.model.param`'s enumeration sorts have constructors ``Sort.Value``."""
    from . import param

    saved, orig = param._ENUMS, z3.EnumSort

    def enum_sort(name: str, values: list[str], ctx: Any = None) -> Any:
        # A name of its own: z3 refuses to declare ``name`` twice, and the proofs' own
        # (unqualified) sort may be declared in this process before or after.
        return orig(f"{name}_", [f"{name}.{v}" for v in values], ctx)

    param._ENUMS = _QUALIFIED
    z3.EnumSort = enum_sort
    try:
        yield
    finally:
        param._ENUMS = saved
        z3.EnumSort = orig


@contextlib.contextmanager
def capture(vacuity: bool = True, timeout_ms: int = 20_000) -> Iterator[list[tuple[str, str, str | None]]]:
    """Within: every ``z3.Solver.check`` is recorded as ``(SMT-LIB text, answer, premises)``.

    ``premises`` is the vacuity check of an ``unsat`` answer: z3's answer for the same facts
    without the last one (the negated conclusion, as the proofs order them). ``sat`` means the
    premises can hold, so the query says something; ``unsat`` means it is vacuous (for instance
    a step that cannot happen under the hypotheses); None when not checked."""
    calls: list[tuple[str, str, str | None]] = []
    orig = z3.Solver.check

    def check(self: z3.Solver, *assumptions: Any) -> Any:
        answer = orig(self, *assumptions)
        facts = [*self.assertions(), *assumptions]
        bench = z3.Solver(ctx=self.ctx)
        bench.add(facts)
        premises = None
        if vacuity and str(answer) == "unsat" and len(facts) >= 2:
            pre = z3.Solver(ctx=self.ctx)
            pre.set("timeout", timeout_ms)
            pre.add(facts[:-1])
            premises = str(orig(pre))
        calls.append((sanitize(bench.to_smt2()), str(answer), premises))
        return answer

    z3.Solver.check = check
    try:
        yield calls
    finally:
        z3.Solver.check = orig


#: A symbol z3 prints bare although SMT-LIB needs it quoted: a primed name such as ``post'``.
_PRIMED = re.compile(r"(?<![\w.|'])([A-Za-z_][\w.]*'+)")


def sanitize(text: str) -> str:
    """z3's benchmark text made valid SMT-LIB: primed names (next-state variables) quoted."""
    return _PRIMED.sub(r"|\1|", text)


def proof_queries(result: Any) -> list[Any]:
    """A proof result's query log, each query once, in the order it was asked."""
    out, seen = [], set()
    for p in result.properties.values():
        for q in p.queries:
            if id(q) not in seen:
                seen.add(id(q))
                out.append(q)
    return out


def paired(result: Any, calls: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """The captured calls named by the proof's queries (name, purpose, readable formula,
    expected answer). Pairing is by order and checked by the answers; when it does not hold
    (a proof that asks z3 more than it logs) the calls stay unnamed, expecting what z3 said."""
    queries = proof_queries(result)
    if len(queries) == len(calls) and all(q.answer == c[1] for q, c in zip(queries, calls)):
        return [
            {
                "name": q.name,
                "purpose": q.purpose,
                "formula": q.formula,
                "expect": q.expect,
                "answer": a,
                "premises": pre,
                "smt2": text,
            }
            for q, (text, a, pre) in zip(queries, calls)
        ]
    return [
        {
            "name": f"call {i + 1}",
            "purpose": "",
            "formula": "",
            "expect": a,
            "answer": a,
            "premises": pre,
            "smt2": text,
        }
        for i, (text, a, pre) in enumerate(calls)
    ]


def _comment(label: str, text: str) -> list[str]:
    lines = text.splitlines() or [""]
    return [f"; {label}: {lines[0]}"] + [f";   {line}" for line in lines[1:]]


def smt2_file(q: dict[str, Any], design: str = "") -> str:
    """One query as an SMT-LIB 2 file: comments naming it, its purpose, its formula as the
    proof writes it, the answer the argument needs (``; expect: unsat``) and the one z3 gave."""
    head = [f"; kvheal query: {q['name']}"]
    if design:
        head.append(f"; design: {design}, every number of tabs (kvheal prove --all-tabs)")
    if q.get("purpose"):
        head += _comment("purpose", q["purpose"])
    if q.get("formula"):
        head += _comment("formula", q["formula"])
    head.append(f"; expect: {q['expect']}")
    head.append(f"; z3 answered: {q['answer']}")
    if q.get("premises"):
        note = {
            "sat": "satisfiable: not vacuous",
            "unsat": "unsatisfiable: VACUOUS (true because the hypotheses cannot hold together)",
        }.get(q["premises"], q["premises"])
        head.append(f"; vacuity: the facts without the last assertion are {note}")
    return "\n".join(head) + "\n" + q["smt2"]


_EXPECT = re.compile(r"^; expect: (sat|unsat|unknown)\s*$", re.M)


def expected(text: str) -> str | None:
    """The answer an SMT-LIB file written by :func:`smt2_file` expects, or None."""
    m = _EXPECT.search(text)
    return m.group(1) if m else None


def recheck(text: str, timeout_ms: int = 60_000) -> str:
    """z3's answer to an SMT-LIB file now: ``sat``, ``unsat``, ``unknown``, or ``error: ...``."""
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    try:
        solver.from_string(text)
    except z3.Z3Exception as e:
        msg = e.value.decode() if isinstance(e.value, bytes) else str(e.value)
        return "error: " + msg.strip().splitlines()[0]
    return str(solver.check())

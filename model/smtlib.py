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
    without the last assertion (the negated conclusion, as the proofs order them; a check's
    assumption literals, which switch hypotheses on, are kept). ``sat`` means the premises can
    hold, so the query says something; ``unsat`` means it is vacuous (for instance a step that
    cannot happen under the hypotheses); None when not checked."""
    calls: list[tuple[str, str, str | None]] = []
    orig = z3.Solver.check

    def check(self: z3.Solver, *assumptions: Any) -> Any:
        answer = orig(self, *assumptions)
        asserted = list(self.assertions())
        facts = [*asserted, *assumptions]
        bench = z3.Solver(ctx=self.ctx)
        bench.add(facts)
        premises = None
        if vacuity and str(answer) == "unsat" and len(facts) >= 2 and asserted:
            pre = z3.Solver(ctx=self.ctx)
            pre.set("timeout", timeout_ms)
            pre.add(asserted[:-1] + list(assumptions))
            premises = str(orig(pre))
        calls.append((sanitize(bench.to_smt2()), str(answer), premises))
        return answer

    z3.Solver.check = check
    try:
        yield calls
    finally:
        z3.Solver.check = orig


#: A symbol z3 prints bare although SMT-LIB needs it quoted: a primed name such as ``post'``.
#: A symbol z3 already quoted (``|post[0]@h'|``) is left alone: its prime is inside the bars.
_PRIMED = re.compile(r"(\|[^|]*\|)|(?<![\w.|'])([A-Za-z_][\w.]*'+)")


def sanitize(text: str) -> str:
    """z3's benchmark text made valid SMT-LIB: primed names (next-state variables) quoted,
    symbols already quoted kept as they are.

    >>> sanitize("(= |post[0]@h'| x') (f y)")
    "(= |post[0]@h'| |x'|) (f y)"
    """
    return _PRIMED.sub(lambda m: m.group(1) or f"|{m.group(2)}|", text)


def proof_queries(result: Any) -> list[Any]:
    """A proof result's query log, each query once, in the order it was asked."""
    out, seen = [], set()
    for p in result.properties.values():
        for q in p.queries:
            if id(q) not in seen:
                seen.add(id(q))
                out.append(q)
    return out


def _aggregate(answers: list[str]) -> str:
    """The answer of a query that stands for several checks (one per step): unsat when every
    check is, sat when one is, else unknown (as :mod:`kvheal.model.prove` folds them)."""
    if all(a == "unsat" for a in answers):
        return "unsat"
    return "sat" if "sat" in answers else "unknown"


def _pair(queries: list[Any], calls: list[tuple[str, str, str | None]]) -> list[dict[str, Any]] | None:
    """Each query with the calls it stands for (``calls`` of them, default one), or None when
    the log and the calls do not line up (counts, or a recorded answer that differs)."""
    out, i = [], 0
    for q in queries:
        n = getattr(q, "calls", 1)
        mine = calls[i : i + n]
        i += n
        if len(mine) != n or _aggregate([c[1] for c in mine]) != q.answer:
            return None
        for j, (text, a, pre) in enumerate(mine):
            entry = {
                "name": q.name if n == 1 else f"{q.name}.step{j + 1:02d}",
                "purpose": q.purpose
                if n == 1
                else f"{q.purpose} [check {j + 1} of {n}: step instance {j + 1}]",
                "formula": q.formula,
                "expect": q.expect,
                "answer": a,
                "premises": pre,
                "smt2": text,
            }
            out.append(entry)
    return out if i == len(calls) else None


def paired(result: Any, calls: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """The captured calls named by the proof's queries (name, purpose, readable formula, the
    answer the argument needs). Pairing is by order (a query that stands for several checks,
    ``Query.calls``, takes that many, each named ``<query>.stepNN``) and checked by the
    answers; when it does not hold (a proof that asks z3 more than it logs) the calls stay
    unnamed, expecting what z3 said."""
    named = _pair(proof_queries(result), calls)
    if named is not None:
        return named
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


def replay_answer(q: dict[str, Any]) -> str:
    """The answer a re-run of the query must give: z3's answer when the proof ran (sat or
    unsat), else the one the argument needs."""
    return q["answer"] if q["answer"] in ("sat", "unsat") else q["expect"]


def smt2_file(q: dict[str, Any], design: str = "", scope: str = "") -> str:
    """One query as an SMT-LIB 2 file: comments naming it, its purpose, its formula as the
    proof writes it, the answer a re-run must give (``; expect: unsat``, what z3 answered when
    the proof ran) and, when that is not the answer the argument needed (plain induction that
    failed before the strengthened query, a candidate invariant dropped), a line saying so.
    ``scope`` says for which sizes the proof was (default: every number of tabs)."""
    head = [f"; kvheal query: {q['name']}"]
    if design:
        head.append(f"; design: {design}, {scope or 'every number of tabs (kvheal prove --all-tabs)'}")
    if q.get("purpose"):
        head += _comment("purpose", q["purpose"])
    if q.get("formula"):
        head += _comment("formula", q["formula"])
    want = replay_answer(q)
    head.append(f"; expect: {want}")
    head.append(f"; z3 answered: {q['answer']}")
    if want != q["expect"]:
        head += _comment(
            "note",
            f"the argument asked for {q['expect']} here and z3 answered {q['answer']}, so a re-run\n"
            f"must answer {q['answer']} too. No proved verdict rests on such a query: it is a plain\n"
            "induction step that was then strengthened, or a candidate invariant that was dropped.",
        )
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

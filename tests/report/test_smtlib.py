"""The all-tabs proofs' queries as SMT-LIB files: valid, named, and re-run to the same answers."""

from __future__ import annotations

import re

import pytest
import z3

from kvheal.model.param import prove_all_tabs
from kvheal.model.smtlib import capture, expected, paired, qualified_enums, recheck, sanitize, smt2_file

from .conftest import kvheal, kvheal_here


@pytest.fixture(scope="module")
def queries():
    out = {}
    for design in ("atomic_cache,dedupe", "dedupe,keep_verifying"):
        with qualified_enums(), capture() as calls:
            proof = prove_all_tabs(set(design.split(",")))
        out[design] = (proof, paired(proof, calls))
    return out


def test_every_query_is_captured_and_named(queries):
    for proof, qs in queries.values():
        logged = {id(q) for p in proof.properties.values() for q in p.queries}
        assert len(qs) == len(logged) > 5
        assert not any(q["name"].startswith("call ") for q in qs), "pairing with the query log failed"
        assert all(q["answer"] == q["expect"] == "unsat" for q in qs)
        assert qs[0]["name"] == "init" and "Init(s)" in qs[0]["formula"]


def test_files_are_valid_smtlib_and_recheck(queries, tmp_path):
    for design, (_, qs) in queries.items():
        for i, q in enumerate(qs):
            text = smt2_file(q, design)
            assert expected(text) == q["expect"]
            assert text.rstrip().endswith("(check-sat)")
            body = "\n".join(line for line in text.splitlines() if not line.startswith(";"))
            assert not re.search(r"[\s(]Idle[\s)]", body), "an unqualified, ambiguous constructor"
            assert not re.search(r"(?<![|\w])[A-Za-z_]\w*'(?!\|)", body), "a primed symbol left bare"
            assert recheck(text) == q["expect"], (design, q["name"])
            (tmp_path / f"{design.replace(',', '+')}-{i:03d}.smt2").write_text(text)
    # a fresh process (a new z3 context, as a reader would run it) gives the same answers
    proc = kvheal("recheck", str(tmp_path), "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"{len(list(tmp_path.iterdir()))} of ")
    victim = sorted(tmp_path.iterdir())[1]
    victim.write_text(victim.read_text().replace("; expect: unsat", "; expect: sat"))
    proc = kvheal_here("recheck", str(tmp_path), "-q")
    assert proc.returncode == 1
    assert "1 differ" in proc.stdout


def test_sanitize_and_errors(tmp_path):
    assert (
        sanitize("(declare-fun post' (Msg) Post)\n(= (post' m) x'')")
        == "(declare-fun |post'| (Msg) Post)\n(= (|post'| m) |x''|)"
    )
    assert sanitize("(= |a'| b)") == "(= |a'| b)"
    assert recheck("(assert (= x 1))(check-sat)").startswith("error: ")
    assert expected("; nothing here\n(check-sat)") is None
    proc = kvheal_here("recheck", str(tmp_path))
    assert proc.returncode == 2 and "no .smt2 files" in proc.stderr


def test_vacuity_check():
    x = z3.Int("x")
    with capture() as calls:
        s = z3.Solver()
        s.add(x > 1, x < 0, x == 5)  # unsat, and so are its premises: vacuous
        s.check()
        s = z3.Solver()
        s.add(x > 1, x < 0 + 0 * x + -10)  # unsat, premise x > 1 alone is satisfiable
        s.check()
        s = z3.Solver()
        s.add(x > 1)  # sat: nothing to check
        s.check()
    assert [(a, p) for _, a, p in calls] == [("unsat", "unsat"), ("unsat", "sat"), ("sat", None)]


def test_vacuity_of_the_proofs(queries):
    _, qs = queries["atomic_cache,dedupe"]
    assert all(q["premises"] == "sat" for q in qs)
    _, qs = queries["dedupe,keep_verifying"]
    vacuous = {q["name"] for q in qs if q["premises"] == "unsat"}
    # once every message is acknowledged no post step can happen: those premises are empty
    assert "ghost-PostKey(m1)" in vacuous
    assert all("Post" in name for name in vacuous)
    assert "; vacuity: the facts without the last assertion are unsatisfiable" in smt2_file(
        next(q for q in qs if q["name"] == "ghost-PostKey(m1)")
    )

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


# -- the fixed-size proofs (kvheal prove --tabs 2), which the report runs where every property holds


@pytest.fixture(scope="module")
def fixed():
    from kvheal.model import Config
    from kvheal.model.prove import prove

    out = {}
    for design in ("dedupe,keep_verifying", "atomic_cache,dedupe"):
        with capture() as calls:
            proof = prove(Config.make(tabs=2, variants=design))
        out[design] = (proof, paired(proof, calls))
    return out


def test_fixed_size_queries_are_captured_and_named(fixed):
    counts = {d: len(qs) for d, (_, qs) in fixed.items()}
    assert counts == {"dedupe,keep_verifying": 84, "atomic_cache,dedupe": 285}
    for design, (proof, qs) in fixed.items():
        assert proof.ok, design
        assert not any(q["name"].startswith("call ") for q in qs), "pairing with the query log failed"
        assert qs[0]["name"] == "init-AckedIsStored" and "Init(s)" in qs[0]["formula"]
    # a premise that stands for one check per step is one file per check
    _, qs = fixed["atomic_cache,dedupe"]
    stays = [q["name"] for q in qs if q["name"].startswith("helpful-stays-PostKey(m=0).")]
    assert stays == [f"helpful-stays-PostKey(m=0).step{i:02d}" for i in range(1, 15)]
    # where plain induction fails, the strengthened step is asked next; the proof does not rest on the first
    differ = {d: [q["name"] for q in qs if q["answer"] != q["expect"]] for d, (_, qs) in fixed.items()}
    assert differ == {
        "dedupe,keep_verifying": ["step-CacheFromStore", "step-NoDuplicates"],
        "atomic_cache,dedupe": ["step-CacheFromStore"],
    }


def test_fixed_size_files_recheck(fixed, tmp_path):
    n = 0
    for design, (_, qs) in fixed.items():
        for i, q in enumerate(qs):
            text = smt2_file(q, design, "tabs 2 (kvheal prove --tabs 2)")
            assert text.startswith(
                f"; kvheal query: {q['name']}\n; design: {design}, tabs 2 (kvheal prove --tabs 2)\n"
            )
            body = "\n".join(line for line in text.splitlines() if not line.startswith(";"))
            assert not re.search(r"\|[^|\s]*\|[^|\s]*'\|", body), "a primed name quoted twice"
            if q["answer"] != q["expect"]:
                assert expected(text) == "sat" and q["answer"] == "sat"
                assert "; note: the argument asked for unsat here and z3 answered sat" in text
            else:
                assert expected(text) == q["expect"] and "; note:" not in text
            (tmp_path / f"{design.replace(',', '+')}-{i:03d}.smt2").write_text(text)
            n += 1
    # every file in a fresh process (a new z3 context, as a reader would run them)
    proc = kvheal("recheck", str(tmp_path), "-q", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"{n} of {n} queries answered as expected")


def test_sanitize_leaves_quoted_symbols_alone():
    # z3 quotes a symbol with a prime inside it itself; quoting the prime again broke the file
    assert sanitize("(declare-fun |post[0]@h'| () Int)") == "(declare-fun |post[0]@h'| () Int)"
    assert sanitize("(= |a@h'| b') (c |d|)") == "(= |a@h'| |b'|) (c |d|)"


def test_the_report_writes_the_fixed_size_queries(fixed):
    from kvheal.model.report import assemble

    from .test_report import META, small_records

    records = small_records()
    records[1]["z3_queries"] = fixed["atomic_cache,dedupe"][1]
    files = assemble(records, META)
    names = sorted(k for k in files if k.startswith("smt/tabs-2/"))
    assert len(names) == 285
    assert names[0] == "smt/tabs-2/atomic_cache+dedupe/001-init-AckedIsStored.smt2"
    assert expected(files[names[0]]) == "unsat"
    md = files["report.md"]
    row = next(line for line in md.splitlines() if line.startswith("| atomic_cache,dedupe | 285 |"))
    assert "| 284 of 285 (not: step-CacheFromStore) |" in row
    assert "[smt/tabs-2/atomic_cache+dedupe/](smt/tabs-2/atomic_cache+dedupe/)" in row
    assert "z3_queries" not in files["verdicts.json"]

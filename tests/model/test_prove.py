"""z3 verdicts: BMC lengths equal BFS's, induction proofs, convergence proofs, and `kvheal prove`."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from kvheal.cli import main
from kvheal.model import Config, KVHealModel, check
from kvheal.model.prove import COUNTEREXAMPLE, PROVED, bmc, find_lasso, prove
from kvheal.model.symbolic import SymbolicModel
from kvheal.model.trace import replay_trace

# Every design at tabs 2 (each flag alone and with dedupe, and one pair): the length of the
# shortest NoDuplicates counterexample (BFS, `kvheal check`; None: it holds). AckedIsStored and
# CacheFromStore hold everywhere. Depth 10 is past the longest of them.
NO_DUP = {
    "": 9,
    "dedupe": None,
    "keep_verifying": 9,
    "atomic_cache": 7,
    "sweeper": 6,
    "tab_crash": 9,
    "shared_pending": 10,
    "dedupe,keep_verifying": None,
    "dedupe,atomic_cache": None,
    "dedupe,sweeper": None,
    "dedupe,tab_crash": None,
    "dedupe,shared_pending": None,
    "atomic_cache,sweeper": 4,
}


# the longest (3-8 s each) run under -m slow (the default run must stay under ten minutes);
# tests/model/test_agreement_bmc.py's slow cases check BMC against BFS on every pinned design too
BMC_SLOW = {
    "dedupe,sweeper",
    "dedupe,shared_pending",
    "sweeper",
    "dedupe,keep_verifying",
    "shared_pending",
    "dedupe,tab_crash",
    "dedupe",
}


@pytest.mark.parametrize(
    "variant",
    [pytest.param(v, marks=pytest.mark.slow) if v in BMC_SLOW else v for v in NO_DUP],
    ids=lambda v: v or "seed",
)
def test_bmc_finds_the_bfs_shortest_counterexample(variant: str) -> None:
    from .test_verdicts import TABLE

    cfg = Config.make(tabs=2, variants=variant)
    sym = SymbolicModel(cfg)
    found = bmc(sym, sym.invariants(), 10)
    length = NO_DUP[variant]
    assert {n: r[0] for n, r in found.items()} == {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": length,
    }
    if variant in TABLE:  # BFS's verdicts and lengths, pinned there
        assert TABLE[variant]["NoDuplicates"] == length
    if length is not None:
        model = KVHealModel(cfg)
        if variant != "shared_pending":  # 6.2M states: its BFS length is pinned by a slow test
            bfs = check(model, only={"NoDuplicates"}).properties["NoDuplicates"]
            assert len(bfs.trace) == length
        last = replay_trace(model, found["NoDuplicates"][1])[-1]
        assert not next(p for p in model.properties() if p.name == "NoDuplicates").holds(last)


def test_bmc_finds_none_at_tabs_3_where_bfs_finds_none() -> None:
    sym = SymbolicModel(Config.make(tabs=3, variants="dedupe,atomic_cache"))
    assert {n: r[0] for n, r in bmc(sym, sym.invariants(), 10).items()} == {
        "AckedIsStored": None,
        "CacheFromStore": None,
        "NoDuplicates": None,
    }


def test_bmc_at_tabs_3() -> None:
    sym = SymbolicModel(Config.make(tabs=3, variants="atomic_cache"))
    assert bmc(sym, {"NoDuplicates": sym.no_duplicates}, 7)["NoDuplicates"][0] == 7


@pytest.mark.parametrize("variant", ["atomic_cache,dedupe", "dedupe,keep_verifying"])
def test_converging_designs_are_proved(variant: str) -> None:
    result = prove(Config.make(tabs=2, variants=variant), lasso_depth=0)
    assert {n: p.status for n, p in result.properties.items()} == {n: PROVED for n in result.properties}
    conv = result.properties["Converges"]
    assert conv.method.startswith("inductive invariant + heal-ranking")
    assert all(q.holds for q in conv.queries)
    assert result.ok and not result.violated


def test_convergence_at_tabs_3_is_proved() -> None:
    result = prove(Config.make(tabs=3, variants="dedupe,keep_verifying"), properties={"Converges"})
    assert result.properties["Converges"].status == PROVED


def test_convergence_beyond_the_explicit_checker() -> None:
    """tabs 5 (bench: ~3 s): the designated-helper premises, one query per instance each."""
    result = prove(
        Config.make(tabs=5, variants="dedupe,keep_verifying"), properties={"Converges"}, lasso_depth=0
    )
    conv = result.properties["Converges"]
    assert conv.status == PROVED and all(q.holds for q in conv.queries)
    kinds = Counter(
        q.name[: q.name.rindex("-", 0, q.name.index("("))] if "(" in q.name else q.name for q in conv.queries
    )
    # 45 instances, one query of each premise per instance (every step here writes a variable
    # some designation reads, so none of premise 5's queries is skipped by the frame).
    assert (
        kinds["rank-no-increase"],
        kinds["helper-helps"],
        kinds["helper-stays"],
        kinds["helper-exists"],
    ) == (45, 45, 45, 1)


def test_the_heal_argument_is_not_vacuous() -> None:
    """Forced onto plain dedupe (tabs drop acknowledged ids, Converges fails), premises fail."""
    from kvheal.model.prove import heal_argument, houdini, prove_eventually

    sym = SymbolicModel(Config.make(tabs=2, variants="dedupe"))
    sym.keep_verifying = True
    arg = heal_argument(sym)
    sym.keep_verifying = False
    inv, _ = houdini(sym)
    ok, qs = prove_eventually(sym, sym.converges_goal, arg, inv)
    assert not ok
    assert sorted(q.name for q in qs if not q.holds) == [
        "helper-helps-PollDone(t=0)",
        "helper-helps-PollDone(t=1)",
        "rank-no-increase-PollDone(t=0)",
        "rank-no-increase-PollDone(t=1)",
    ]


def test_invariant_not_inductive_alone_reports_its_cti() -> None:
    result = prove(Config.make(tabs=2, variants="dedupe"), properties={"CacheFromStore"})
    pf = result.properties["CacheFromStore"]
    assert pf.status == PROVED and pf.method == "induction with strengthening"
    assert pf.cti is not None and set(pf.cti) == {"state", "step", "next"}
    assert "ValuesFromStore" in pf.invariants


def test_seed_invariants() -> None:
    result = prove(Config.make(tabs=2), properties={"AckedIsStored", "CacheFromStore", "NoDuplicates"})
    got = {
        n: (p.status, p.depth if p.status == COUNTEREXAMPLE else None) for n, p in result.properties.items()
    }
    assert got == {
        "AckedIsStored": (PROVED, None),
        "CacheFromStore": (PROVED, None),
        "NoDuplicates": (COUNTEREXAMPLE, 9),
    }


def test_no_ranking_argument_means_unknown_not_proved() -> None:
    result = prove(Config.make(tabs=2, variants="dedupe,tab_crash"), properties={"Converges"}, lasso_depth=0)
    assert result.properties["Converges"].status == "unknown"


def test_sweeper_repairs_even_when_tabs_crash() -> None:
    """With the sweeper, a dead tab's heals are not needed (`kvheal check`: Converges holds
    for dedupe,sweeper,tab_crash); a message whose tab died before posting it is never owed."""
    result = prove(
        Config.make(tabs=2, variants="dedupe,sweeper,tab_crash"), properties={"Converges"}, lasso_depth=0
    )
    assert result.properties["Converges"].status == PROVED


@pytest.mark.parametrize("tabs,per_tab", [(2, 1), (1, 2), (3, 1)])
def test_sweeper_converges_by_its_own_loop(tabs: int, per_tab: int) -> None:
    """dedupe,sweeper (`kvheal check`: Converges holds at tabs 2): the sweeper is one more
    writer slot in Φ and its loop is the chain."""
    result = prove(
        Config.make(tabs=tabs, per_tab=per_tab, variants="dedupe,sweeper"),
        properties={"Converges", "PendingDrains"},
        lasso_depth=0,
    )
    conv = result.properties["Converges"]
    assert conv.status == PROVED and "sweeper" in conv.note
    drains = result.properties["PendingDrains"]  # the cache converges, then polls clear the lists
    assert drains.status == PROVED and drains.method.startswith("inductive invariant + drain-ranking")


@pytest.mark.slow
def test_seed_convergence_lasso() -> None:
    sym = SymbolicModel(Config.make(tabs=2))
    trace, _ = find_lasso(sym, sym.converges_goal, 16)
    assert len(trace) == 16 and any(s.get("loop") for s in trace)
    replay_trace(KVHealModel(Config.make(tabs=2)), trace)


def test_cli_exit_codes_and_json(tmp_path) -> None:
    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "prove",
            "--tabs",
            "2",
            "--variant",
            "atomic_cache,dedupe",
            "--json",
            "--report",
            str(tmp_path / "r.md"),
        ],
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["properties"]["Converges"]["status"] == "holds"  # proved: the shared verdict
    assert data["properties"]["Converges"]["method"].startswith("inductive invariant +")
    text = (tmp_path / "r.md").read_text()
    assert "## Assumptions" in text and "Weak fairness" in text and "| unsat |" in text
    r = runner.invoke(main, ["prove", "--tabs", "2", "--property", "NoDuplicates", "--depth", "9"])
    assert r.exit_code == 1
    r = runner.invoke(main, ["prove", "--tabs", "0"])
    assert r.exit_code == 2 and "tabs must be at least 1" in r.output
    r = runner.invoke(main, ["prove", "--variant", "bogus"])
    assert r.exit_code == 2 and "Traceback" not in r.output


@pytest.mark.parametrize(
    "args,status",
    [
        (["--variant", "atomic_cache,dedupe"], 0),  # all proved
        (["--property", "NoDuplicates", "--depth", "9"], 1),  # a counterexample
        (["--variant", "dedupe,tab_crash", "--property", "Converges", "--lasso-depth", "0"], 3),  # unknown
        (["--property", "Bogus"], 2),  # usage
        (["--all-tabs", "--property", "PendingDrains"], 2),  # no such all-tabs proof
        (["--all-tabs", "--cap", "1"], 2),  # all-tabs assumes cap >= messages
        (["--all-tabs", "--variant", "dedupe,keep_verifying"], 0),  # proved for every size
        (["--all-tabs", "--variant", "dedupe"], 3),  # no all-tabs argument
    ],
)
def test_cli_exit_status_is_checks(args: list[str], status: int) -> None:
    """`kvheal prove` exits as `kvheal check` does (SPEC §9): 0, 1, 2 (one line), 3 unknown."""
    r = CliRunner().invoke(main, ["prove", "--tabs", "2", *args])
    assert r.exit_code == status, r.output
    if status == 2:
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_prove_status_maps_onto_check_exit_status() -> None:
    from kvheal.model.prove import UNKNOWN, PropertyProof, ProveResult
    from kvheal.prove_cmd import prove_status

    def result(*statuses: str) -> ProveResult:
        return ProveResult(
            Config.make(tabs=2),
            {f"p{i}": PropertyProof(f"p{i}", "invariant", s) for i, s in enumerate(statuses)},
            0.0,
        )

    assert prove_status(result(PROVED, PROVED)) == 0
    assert prove_status(result(PROVED, UNKNOWN, COUNTEREXAMPLE)) == 1
    assert prove_status(result(PROVED, UNKNOWN)) == 3


def test_z3_verdicts_never_contradict_the_explicit_table() -> None:
    """Every design of the explicit verdict table at tabs 2 (no lasso search): z3 proves only
    what BFS finds to hold, refutes only what it finds violated; the rest is unknown."""
    from .test_verdicts import TABLE

    proved_liveness = {
        "dedupe,keep_verifying": {"Converges"},
        "dedupe,atomic_cache": {"Converges", "PendingDrains"},
        "dedupe,sweeper": {"Converges", "PendingDrains"},
        "dedupe,atomic_cache,sweeper,tab_crash": {"Converges"},
    }
    for variants, expected in TABLE.items():
        result = prove(Config.make(tabs=2, variants=variants), lasso_depth=0)
        for name, pf in result.properties.items():
            if expected[name] is None:  # holds: never refuted; invariants and the argued goals proved
                want = (
                    PROVED
                    if pf.kind == "invariant" or name in proved_liveness.get(variants, ())
                    else "unknown"
                )
            else:  # violated: invariants by a BFS-length counterexample, goals unknown without lassos
                want = COUNTEREXAMPLE if pf.kind == "invariant" else "unknown"
            assert pf.status == want, (variants, name, pf.status)
            if pf.status == COUNTEREXAMPLE:
                assert len(pf.trace) == expected[name]


def test_prove_says_what_it_asks_z3_next() -> None:
    """The progress callback hears each stage, in order (the CLI shows it as a spinner)."""
    heard: list[str] = []
    prove(Config.make(tabs=2, variants="dedupe,atomic_cache"), lasso_depth=0, progress=heard.append)
    assert heard[0] == "strengthening invariants (Houdini)"
    assert "NoDuplicates: induction" in heard
    assert any(h.startswith("Converges: ranking argument") for h in heard)


def test_ctrl_c_stops_prove_at_once_with_one_line_and_exit_130() -> None:
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "kvheal", "prove", "--tabs", "7", "--variant", "dedupe,keep_verifying"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 20  # z3 checks its cancel flag often, not at every step
    assert err.strip().splitlines()[-1] == "kvheal: interrupted (Ctrl-C): no verdict"
    assert "Traceback" not in err and out == ""

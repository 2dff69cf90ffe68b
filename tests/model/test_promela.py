"""`kvheal export --promela` cross-checked by SPIN: an independent model checker, run on the
exported program, stores exactly the pinned state counts (plus the prelude's one state) and
finds an assertion violation exactly where kvheal finds an invariant violated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from kvheal.model import Config, KVHealModel, check
from kvheal.model.definition import KVHEAL
from kvheal.model.promela import PRELUDE_STATES, export, run_spin

from .test_counts import PINNED
from .test_verdicts import TABLE


@pytest.fixture(scope="session")
def spin() -> None:
    """SPIN and a C compiler, installed from Debian's packages when missing and we are root."""
    if shutil.which("spin") is None or shutil.which("gcc") is None:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip(
                "spin/gcc are not installed and installing them needs root "
                "(apt-get install spin gcc; `make spin`)"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "spin", "gcc"], env=env, capture_output=True, timeout=900
        )
        if shutil.which("spin") is None or shutil.which("gcc") is None:
            pytest.skip("apt-get could not install spin and gcc")


PINNED_BY_CONFIG = {(t, k, c, v): (s, n) for t, k, c, v, s, n in PINNED}

#: configurations SPIN runs (each costs a gcc -O2 of pan.c, ~4 s): every table the export
#: uses (ADD, IDS, DUP, UNION), every scope (per message, per tab, per heal slot, global),
#: a capacity below the message count, the fused steps, faults and the shared list
CASES = [
    (2, 1, None, ""),
    (2, 1, None, "dedupe"),
    (2, 1, None, "dedupe,atomic_cache"),
    (2, 1, None, "heal_atomic"),
    (2, 1, None, "sweeper"),
    (2, 1, None, "tab_crash"),
    (2, 1, 1, ""),
    (1, 2, None, "shared_pending"),
]


@pytest.mark.parametrize(
    "tabs,per_tab,cap,variants", CASES, ids=lambda v: v if isinstance(v, str) and v else None
)
def test_spin_stores_exactly_the_pinned_states(spin, tabs, per_tab, cap, variants):
    cfg = Config.make(tabs=tabs, per_tab=per_tab, cap=cap, variants=variants)
    r = run_spin(export(KVHEAL, cfg).text, timeout=120)
    assert r.complete, r.output
    assert r.spin_states == r.states + PRELUDE_STATES
    assert (r.states, r.transitions) == PINNED_BY_CONFIG[(tabs, per_tab, cap, variants)]
    assert r.exact and r.matches(r.states, r.transitions) and not r.matches(r.states + 1, r.transitions)
    if (tabs, per_tab, cap) == (2, 1, None):
        # the invariants are asserts: SPIN finds a violation iff kvheal's verdict table has one
        table = TABLE[variants]
        violated = [n for n in ("AckedIsStored", "CacheFromStore", "NoDuplicates") if table[n]]
        assert (r.errors > 0) == bool(violated), (violated, r.errors)


#: SPEC §6's flags (issue 10) through SPIN: the export needs nothing beyond the DSL's values,
#: so every flag exports; SPIN stores kvheal's states (pinned here as check counts them) and
#: finds an assertion violation iff kvheal finds an invariant violated (HealOnlyMissing,
#: HealsTerminate, ScanWritesNothing among them)
AS_BUILT_CASES = {
    (1, 1, "as_built_fixed,fire_and_forget,repost"): (720, 2172, []),
    (1, 1, "as_built,fire_and_forget,repost,stale_reads"): (
        17676,
        78692,
        ["HealOnlyMissing", "HealsTerminate"],
    ),
    (1, 2, "tab_view,sweeper"): (809257, 2839995, ["NoDuplicates", "HealsTerminate", "ScanWritesNothing"]),
    (2, 1, "dedupe,post_fails,repost,fire_and_forget"): (16572, 75566, []),
    (2, 1, "dedupe,keep_verifying,bot_scan"): (14026, 64856, []),
    (2, 1, "atomic_cache,dedupe,bot_claims"): (59136, 338728, ["ClaimedOnce"]),
    (2, 1, "atomic_cache,dedupe,bot_claims,claim_cas"): (9936, 52688, []),
    (1, 2, "tab_view,full_poll,ai_channel,atomic_cache,dedupe"): (580, 1594, []),
    # the cache ordered by timestamp, then id: a late id keeps its place when a duplicate trims
    (2, 1, "tab_view,clock_skew"): (183123, 617552, ["NoDuplicates", "HealsTerminate"]),
    # statuses: each cache copy final or open (the kernel's patch blocks of UNION and IDS)
    (2, 1, "statuses"): (164178, 626954, ["NoDuplicates"]),
    (2, 1, "dedupe,atomic_cache,statuses"): (5925, 23812, []),
    (2, 1, "tab_view,found_in_response,ai_channel"): (
        210857,
        708961,
        ["NoDuplicates", "HealOnlyMissing", "HealsTerminate"],
    ),
}


#: past this many states a case runs under -m slow (3-5 s each; the default run must stay under
#: ten minutes on 2 cores)
SPIN_DEFAULT_STATES = 150_000


@pytest.mark.parametrize(
    "tabs,per_tab,variants",
    [
        pytest.param(*case, marks=pytest.mark.slow) if states > SPIN_DEFAULT_STATES else case
        for case, (states, _, _) in AS_BUILT_CASES.items()
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_spin_on_the_as_built_flags(spin, tabs, per_tab, variants):
    cfg = Config.make(tabs=tabs, per_tab=per_tab, variants=variants)
    states, transitions, violated = AS_BUILT_CASES[(tabs, per_tab, variants)]
    model = KVHealModel(cfg)
    result = check(model)
    invariants = {p.name for p in model.properties() if p.kind == "invariant"}
    got = [n for n, p in result.properties.items() if p.status == "violated" and n in invariants]
    assert (result.states, result.transitions, got) == (states, transitions, violated)
    r = run_spin(export(KVHEAL, cfg).text, timeout=300)
    assert r.complete, r.output
    assert (r.states, r.transitions) == (states, transitions)
    assert (r.errors > 0) == bool(violated), (violated, r.errors)


def test_write_only_variables_stay_in_the_state_vector(spin):
    """SPIN's optimiser hides a variable no statement reads unless told not to (-o2), merging
    states the model tells apart (kvheal's tab_view,full_poll had such timestamps until the
    definition dropped them: 37,340 states in SPIN, 92,738 in kvheal). A design whose PostKey
    also records, write-only, the last message posted: SPIN must count what the kernel does."""
    from kvheal.model.definition import PostKey
    from kvheal.model.dsl import ActionDef, IntType, Var

    def post_key(cfg, s, x, m):
        guard, effects = PostKey(cfg, s, x, m)
        return guard, {**effects, s.last: m}

    old = next(a for a in KVHEAL.actions if a.name == "PostKey")
    design = KVHEAL.derive(
        "last_posted",
        variables=[Var("last", IntType(0, 1), doc="write-only")],
        replace=[ActionDef("PostKey", "m", "request", post_key, when=old.when, kv=old.kv)],
    )
    cfg = Config.make(tabs=2, variants="dedupe", design=design)
    result = check(KVHealModel(cfg), only=set())
    r = run_spin(export(design, cfg, invariants=False).text, timeout=120)
    assert (r.states, r.transitions) == (result.states, result.transitions)
    assert r.states > PINNED_BY_CONFIG[(2, 1, None, "dedupe")][0]  # last tells states apart


def test_large_tables_are_copied_from_c_arrays(spin, monkeypatch):
    """Past PRELUDE_STATEMENTS entries (SPIN refuses a d_step of ~2,000 statements) the prelude
    is one c_code copy from C arrays of at most C_CHUNK entries (SPIN takes 64 KiB per block):
    forced here on a small model, with chunks that split every table."""
    import kvheal.model.promela as promela

    monkeypatch.setattr(promela, "PRELUDE_STATEMENTS", 0)
    monkeypatch.setattr(promela, "C_CHUNK", 5)
    text = export(KVHEAL, Config.make(tabs=2, variants="sweeper")).text
    assert "c_code { memcpy(&ADD[0], ADD_0, sizeof ADD_0);" in text and "UNION_20[" in text
    r = run_spin(text, timeout=120)
    assert (r.states, r.transitions) == PINNED_BY_CONFIG[(2, 1, None, "sweeper")]
    assert r.errors > 0  # NoDuplicates, as kvheal says


def test_export_is_generated_per_instance():
    """One d_step per action instance (after the prelude's), the cache tables hidden."""
    cfg = Config.make(tabs=2, variants="sweeper")
    e = export(KVHEAL, cfg)
    instances = KVHEAL.instances(cfg)
    assert e.text.count("d_step {") == len(instances) + 1
    for name in ("ADD", "IDS", "DUP", "UNION"):
        assert f"hidden byte {name}[" in e.text
    assert "assert(AckedIsStored && CacheFromStore && NoDuplicates)" in e.text
    assert "assert(" not in export(KVHEAL, cfg, invariants=False).text


def kvheal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kvheal", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_writes_the_file(tmp_path):
    out = tmp_path / "m.pml"
    proc = kvheal("export", "--promela", "--tabs", "2", "--variant", "dedupe", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == export(KVHEAL, Config.make(tabs=2, variants="dedupe")).text
    stdout = kvheal("export", "--promela", "--tabs", "1")
    assert stdout.returncode == 0 and stdout.stdout.startswith("/* kvheal's model")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tabs", "1"], "choose a format: --promela"),
        (["--promela", "-o", "/nonexistent-dir/m.pml"], "cannot write /nonexistent-dir/m.pml"),
        (["--promela", "-o", "/"], "cannot write /"),
        (["--promela", "--variant", "bogus"], "unknown variant 'bogus'"),
        (["--promela", "--tabs", "0"], "tabs must be at least 1"),
    ],
)
def test_cli_errors_are_one_line_exit_2(args, message):
    proc = kvheal("export", *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"kvheal: error: {message}")
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_bench_spin_side_by_side(spin):
    proc = kvheal("bench", "--tabs", "2", "--variant", "dedupe,atomic_cache", "--spin", "--json")
    assert proc.returncode == 0, proc.stderr
    f = json.loads(proc.stdout)
    s = f["spin"]
    assert (f["states"], s["states"], s["transitions"]) == (780, 780, 2692)
    assert s["same_counts"] and s["complete"] and s["assert_errors"] == 0
    assert s["seconds"] >= s["compile_seconds"] > 0 and s["peak_rss_mib"] > 0
    assert s["ratio_kvheal_to_spin"] == round(f["seconds"] / s["seconds"], 2)

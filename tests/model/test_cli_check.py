"""`kvheal check` as a user runs it: SPEC §9's JSON, exit codes, readable output, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kvheal.model import Config, KVHealModel
from kvheal.model.trace import replay_trace


def kvheal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kvheal", *args], capture_output=True, text=True, timeout=120
    )


def test_json_seed_tabs_2():
    proc = kvheal("check", "--tabs", "2", "--json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert (out["states"], out["transitions"]) == (7070, 23756)
    assert isinstance(out["seconds"], float)
    assert {n: p["status"] for n, p in out["properties"].items()} == {
        "AckedIsStored": "holds",
        "CacheFromStore": "holds",
        "NoDuplicates": "violated",
        "Converges": "violated",
        "PendingDrains": "violated",
    }
    conv = out["properties"]["Converges"]["trace"]
    assert all(set(step) >= {"action", "args"} for step in conv)
    loop = [i for i, s in enumerate(conv) if s.get("loop")]
    assert loop and loop == list(range(loop[0], len(conv)))
    # the JSON trace replays through the model
    replay_trace(KVHealModel(Config.make(tabs=2)), conv)


def test_json_holds_exit_0():
    proc = kvheal("check", "--tabs", "2", "--variant", "atomic_cache,dedupe", "--json", "--no-reduction")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["states"], out["transitions"]) == (780, 2692)
    assert all(p["status"] == "holds" and p["trace"] == [] for p in out["properties"].values())


def test_human_output_has_verdicts_and_a_step_table():
    proc = kvheal("check", "--tabs", "2", "--variant", "dedupe")
    assert proc.returncode == 1
    assert "Converges" in proc.stdout and "violated" in proc.stdout
    assert "counterexample (lasso of 16 steps)" in proc.stdout
    assert "loop starts" in proc.stdout
    assert "PostWrite(m=1)" in proc.stdout and "cache: [0] → [1]" in proc.stdout


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--tabs", "0"], "tabs must be at least 1"),
        (["--variant", "dedupe,bogus"], "unknown variant 'bogus'"),
        (["--tabs", "x"], "'x' is not a valid integer"),
        (["--cap", "0"], "cap must be at least 1"),
        (["--property", "Nope"], "property 'Nope' does not apply"),
        (["--variant", "keep_verifying", "--property", "PendingDrains"], "does not apply"),
        (["--max-states", "0"], "--max-states"),
        (["--frobnicate"], "No such option"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, fragment):
    proc = kvheal("check", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_max_states_unknown_exit_3():
    proc = kvheal("check", "--tabs", "3", "--variant", "dedupe", "--max-states", "1000", "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 3  # inconclusive: neither "all hold" (0) nor "violated" (1)
    assert out["states"] == 1000 and out["complete"] is False
    assert {p["status"] for p in out["properties"].values()} == {"unknown"}


def test_bench_prints_figures():
    proc = kvheal("bench", "--tabs", "2", "--variant", "dedupe", "--json")
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["states"] == 3329 and figures["peak_rss_mib"] > 0
    assert figures["verdicts"]["Converges"] == "violated"


def test_check_and_prove_json_share_one_layout():
    """SPEC §9: prove --json is check --json's object with prove's fields beside."""
    from kvheal.model.trace import check_counterexample

    chk = kvheal("check", "--tabs", "2", "--json", "-q", "--property", "NoDuplicates")
    prv = kvheal("prove", "--tabs", "2", "--json", "--property", "NoDuplicates", "--depth", "9")
    assert (chk.returncode, prv.returncode) == (1, 1), prv.stderr
    c, p = json.loads(chk.stdout), json.loads(prv.stdout)
    assert set(c) == {
        "states",
        "transitions",
        "seconds",
        "complete",
        "depth",
        "engine",
        "config",
        "reduction",
        "properties",
    }
    assert c["engine"] == "python"  # 7,070 states: 'auto' does not compile for so few
    assert c["depth"] == 33  # the seed design's longest shortest path at tabs 2
    assert set(p) == {
        "states",
        "transitions",
        "seconds",
        "complete",
        "config",
        "properties",
        "engine",
        "invariant",
        "assumptions",
    }
    assert (p["states"], p["transitions"], p["complete"], p["engine"]) == (None, None, True, "z3")
    assert c["config"] == p["config"] == {"tabs": 2, "per_tab": 1, "cap": 2, "variant": []}
    cn, pn = c["properties"]["NoDuplicates"], p["properties"]["NoDuplicates"]
    assert set(cn) == {"status", "trace"} and set(pn) >= {"status", "trace", "method", "queries"}
    assert cn["status"] == pn["status"] == "violated" and pn["method"] == "bmc"
    assert len(cn["trace"]) == len(pn["trace"]) == 9
    model = KVHealModel(Config.make(tabs=2))
    for trace in (cn["trace"], pn["trace"]):
        check_counterexample(model, "NoDuplicates", trace)


def test_prove_all_tabs_json_has_the_layout_too():
    proc = kvheal("prove", "--all-tabs", "--variant", "dedupe,keep_verifying", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["config"] == {
        "tabs": "all",
        "per_tab": "any",
        "cap": None,
        "variant": ["dedupe", "keep_verifying"],
    }
    assert out["complete"] is True and out["states"] is None
    assert {n: (p["status"], p["trace"]) for n, p in out["properties"].items()} == {
        n: ("holds", []) for n in ("AckedIsStored", "CacheFromStore", "NoDuplicates", "Converges")
    }


def test_a_memory_budget_stops_the_search_with_unknown_and_exit_3():
    """Past --memory the search stops: 'unknown', exit 3, one line saying how far it got."""
    proc = kvheal("check", "--tabs", "3", "--variant", "dedupe", "--memory", "1M", "--json", "-q")
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["complete"] is False and "memory budget (1 MiB)" in out["stopped"]
    assert {p["status"] for p in out["properties"].values()} == {"unknown"}
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("kvheal: stopped early: the memory budget (1 MiB) was reached, after ")
    assert "Try a smaller --tabs" in proc.stderr


def test_a_bad_memory_size_is_a_usage_error():
    proc = kvheal("check", "--tabs", "2", "--memory", "lots")
    assert proc.returncode == 2
    assert proc.stderr == "kvheal: error: --memory: not a size: 'lots' (try 4G, 512M or a number of bytes)\n"


def test_the_engine_never_lets_a_memory_error_escape():
    """A MemoryError in the middle of the search is an 'unknown' verdict, not a traceback."""
    from kvheal.model import check

    model = KVHealModel(Config.make(tabs=2))
    real, calls = model.successors, [0]

    def failing_successors(s):
        calls[0] += 1
        if calls[0] == 500:
            raise MemoryError
        return real(s)

    model.successors = failing_successors
    result = check(model, engine="python")
    assert result.complete is False and result.stop_reason == "the process ran out of memory"
    assert result.states >= 499
    assert all(p.status in ("unknown", "violated") for p in result.properties.values())
    assert result.properties["Converges"].status == "unknown"


def test_the_compiled_search_never_lets_a_memory_error_escape(monkeypatch):
    """The compiled search grows its arrays between chunks; a MemoryError there is an
    'unknown' verdict, and the states found so far are kept."""
    from kvheal.model import check, fast

    def no_room(a, size):
        raise MemoryError

    monkeypatch.setattr(fast, "_grow", no_room)
    result = check(KVHealModel(Config.make(tabs=3, variants="dedupe")), engine="compiled")
    assert (result.complete, result.stop_reason, result.engine) == (
        False,
        "the process ran out of memory",
        "compiled",
    )
    # the first arrays hold 65,536 states; growing them is refused
    assert 65_536 - 27 <= result.states <= 65_536
    assert result.properties["Converges"].status == "unknown"

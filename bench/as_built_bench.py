"""Benchmark of the app as deployed (issue 10's targets), each as a user runs it:

1. `kvheal check --tabs 2 --variant as_built`: a full verdict within 10 minutes on 2 cores,
   EveryoneSees and Converges violated (each with its counterexample's length);
2. `kvheal check --tabs 2 --variant as_built_fixed`: every property holds, exit 0;
3. `kvheal replay` of every as-built counterexample of (1) on the real system (SQLite): each
   shows the same violation;
4. z3 beyond the checker: BMC finds as_built's NoDuplicates counterexample at tabs 3 and 4,
   and `kvheal prove --all-tabs --variant as_built_fixed` proves the fix for every number of
   tabs.

    python -m bench.as_built_bench            # everything (about 3-5 minutes)
    python -m bench.as_built_bench --no-replay

Each command runs in a child process; the table gives its wall time, its peak memory and
whether the target is met. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

#: the pinned figures (tests/model/test_as_built.py): states at tabs 2
AS_BUILT_STATES = 11_474_320
FIXED_STATES = 157_128
BUDGET_S = 600.0


def kvheal(*args: str, timeout: float = 1800) -> tuple[int, dict, float, float]:
    """Run `kvheal ARGS --json`: (exit status, its JSON, wall seconds, peak RSS GiB of it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "kvheal", *args, "--json"], capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    # ru_maxrss of the children is the largest so far: a smaller run reports no new peak
    return proc.returncode, data, wall, (peak if peak > before else 0) / 2**20


def verdicts(data: dict) -> dict[str, tuple[str, int | None]]:
    """property -> (status, counterexample length) of a `check --json` or `prove --json`."""
    out = {}
    for name, p in (data.get("properties") or {}).items():
        trace = p.get("trace") or []
        out[name] = (p.get("status", "?"), len(trace) if trace else None)
    return out


def line(what: str, target: str, got: str, met: bool, wall: float, gib: float) -> bool:
    mem = f"{gib:5.2f} GiB" if gib else "    -    "
    print(f"{what:<44} {wall:7.1f} s  {mem}  {'met   ' if met else 'MISSED'}  {target}: {got}", flush=True)
    return met


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-replay", action="store_true", help="skip replaying on the real system")
    a = ap.parse_args()
    ok = True
    print(f"{'command':<44} {'wall':>9}  {'peak':>9}  target", flush=True)
    work = tempfile.mkdtemp(prefix="kvheal-as-built-")

    rc, data, wall, gib = kvheal("check", "--tabs", "2", "--variant", "as_built")
    v = verdicts(data)
    violated = {n: k for n, (s, k) in v.items() if s == "violated"}
    got = f"exit {rc}, {data.get('states', 0):,} states; violated " + ", ".join(
        f"{n} ({k} steps)" for n, k in violated.items()
    )
    ok &= line(
        "check --tabs 2 --variant as_built",
        "full verdict < 10 min, EveryoneSees and Converges violated",
        got,
        rc == 1
        and wall <= BUDGET_S
        and data.get("states") == AS_BUILT_STATES
        and {"EveryoneSees", "Converges"} <= set(violated),
        wall,
        gib,
    )
    trace_file = os.path.join(work, "as_built.json")
    with open(trace_file, "w", encoding="utf-8") as f:
        json.dump(data, f)

    rc, data, wall, gib = kvheal("check", "--tabs", "2", "--variant", "as_built_fixed")
    holds = [n for n, (s, _) in verdicts(data).items() if s == "holds"]
    ok &= line(
        "check --tabs 2 --variant as_built_fixed",
        "every property holds, exit 0",
        f"exit {rc}, {data.get('states', 0):,} states, {len(holds)} of {len(verdicts(data))} hold",
        rc == 0 and data.get("states") == FIXED_STATES and len(holds) == len(verdicts(data)) > 0,
        wall,
        gib,
    )

    if not a.no_replay:
        for name in violated:
            rc, data, wall, gib = kvheal("replay", trace_file, "--property", name)
            ok &= line(
                f"replay as_built's {name}",
                "the real system shows it",
                f"exit {rc}" + (f" ({data['error']})" if "error" in data else ""),
                rc == 1,
                wall,
                gib,
            )

    for tabs in (3, 4):
        rc, data, wall, gib = kvheal(
            "prove", "--tabs", str(tabs), "--variant", "as_built", "--property", "NoDuplicates"
        )
        (status, length), *_ = verdicts(data).values() or [("?", None)]
        ok &= line(
            f"prove --tabs {tabs} --variant as_built (BMC)",
            "NoDuplicates refuted beyond the checker's tabs 2",
            f"exit {rc}, {status}" + (f" in {length} steps" if length else ""),
            rc == 1 and status == "violated",
            wall,
            gib,
        )

    rc, data, wall, gib = kvheal("prove", "--all-tabs", "--variant", "as_built_fixed")
    proved = [n for n, (s, _) in verdicts(data).items() if s == "holds"]
    ok &= line(
        "prove --all-tabs --variant as_built_fixed",
        "the fix for every number of tabs",
        f"exit {rc}, {len(proved)} of {len(verdicts(data))} properties proved",
        rc == 0 and len(proved) == len(verdicts(data)) > 0,
        wall,
        gib,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

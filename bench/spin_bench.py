"""kvheal beside SPIN on the same state space (issue 9's targets), in one run.

    python -m bench.spin_bench            # tabs 3 dedupe; tabs 4 atomic_cache,dedupe if memory allows
    python -m bench.spin_bench --quick    # a small configuration, for a smoke run

Each configuration runs once, in a fresh process, through `kvheal bench --spin`: kvheal's full
verdict (every property, liveness included) timed, then SPIN on `kvheal export --promela` of
the same configuration (spin -a -o2, gcc -O2 -DSAFETY -DNOREDUCE, pan: safety only, exact
state storage, no partial-order reduction, one core). Both counts are compared with the
pinned ones. The 1-minute load average is printed with each row: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

# (tabs, variants, expected states, expected transitions or None, GiB the run needs)
TARGETS = [
    (3, "dedupe", 2194874, 11514840, 3),
    (4, "atomic_cache,dedupe", 8100048, 54936104, 9),  # transitions: kvheal and SPIN agreed
    (3, "", 54786123, 270745021, 12),  # the seed design: kvheal 4.9 GiB, SPIN 4.4 GiB
]
QUICK = [(2, "sweeper", 307038, 1378217, 1)]


def available_gib() -> float:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("inf")


def run(tabs: int, variants: str) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvheal",
            "bench",
            "--tabs",
            str(tabs),
            "--variant",
            variants,
            "--spin",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"kvheal bench failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def warm_library() -> None:
    """Compile kvheal's own numba functions once (cached per machine, as SPIN's own binary is
    built once), so the first row's cold compile is the model's kernel alone: on a fresh
    machine, or after kvheal's source changed, the library adds about 3 s to that row."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "kvheal", "check", "--tabs", "2", "--variant", "dedupe", "--workers", "2"],
        capture_output=True,
        check=False,
    )
    print(f"(kvheal's library compiled or found cached in {time.perf_counter() - t0:.1f} s; not counted)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--no-memory-limit",
        action="store_true",
        help="skip the runs under a 4 GiB address-space limit (a few minutes)",
    )
    args = parser.parse_args()
    if shutil.which("spin") is None or shutil.which("gcc") is None:
        print("skipped: spin and gcc are not installed (make spin)")
        return 0
    failures = 0
    warm_library()
    head = (
        f"{'configuration':32s} {'states':>10s} {'kvheal s':>8s} {'SPIN s':>7s} {'ratio':>5s} "
        f"{'kvheal st/s':>11s} {'pan st/s':>10s} {'B/state kv':>10s} {'B/state SPIN':>12s} "
        f"{'peak MiB kv':>11s} {'peak MiB SPIN':>13s} {'load':>9s}  counts"
    )
    print(head)
    met: list[str] = []
    for tabs, variants, states, transitions, need_gib in QUICK if args.quick else TARGETS:
        name = f"tabs {tabs} {variants}"
        free = available_gib()
        if free < need_gib:
            print(f"{name:32s} skipped: needs about {need_gib} GiB, {free:.1f} GiB available")
            continue
        f = run(tabs, variants)
        s = f["spin"]
        if "error" in s:
            print(f"{name:32s} SPIN failed: {s['error']}")
            failures += 1
            continue
        want = (states, transitions if transitions is not None else f["transitions"])
        ok = (f["states"], f["transitions"]) == want and s["same_counts"] and s["complete"]
        failures += not ok
        kv_bytes = round(f["peak_rss_mib"] * 2**20 / f["states"])
        load = f"{s['load_avg_1min'][0]:.1f}-{os.getloadavg()[0]:.1f}"
        print(
            f"{name:32s} {f['states']:>10,} {f['seconds']:>8.1f} {s['seconds']:>7.1f} "
            f"{s['ratio_kvheal_to_spin']:>5.2f} {f['states_per_s_exploring']:>11,} "
            f"{s['states_per_s']:>10,} {kv_bytes:>10,} {s['bytes_per_state']:>12,} "
            f"{f['peak_rss_mib']:>11,} {s['peak_rss_mib']:>13,} {load:>9s}  "
            f"{'as pinned, SPIN agrees' if ok else 'MISMATCH'}"
        )
        print(
            f"{'':32s} SPIN: spin -a {s['spin_a_seconds']} s, gcc {s['compile_seconds']} s, "
            f"pan {s['run_seconds']} s; transitions {f['transitions']:,}; verdicts {f['verdicts']}"
        )
        print(
            f"{'':32s} kvheal: compile {f.get('compile_seconds', 0)} s (cold), explore "
            f"{f['explore_seconds']} s on {f.get('workers', 1)} worker(s), visited set "
            f"{f.get('visited_bytes_per_state', '?')} B/state, graph {f.get('graph_bytes_per_state', '?')} B/state"
        )
        met += targets(tabs, variants, f, s)
    if not args.quick and not args.no_memory_limit:
        met += memory_limit_rows()
    if met:
        print("\nissue 9's targets:")
        for line in met:
            print(f"  {line}")
    return 1 if failures else 0


def targets(tabs: int, variants: str, f: dict, s: dict) -> list[str]:
    """Issue 9's targets that this row decides, each with its figures and met/missed."""
    out = []
    if (tabs, variants) in ((3, "dedupe"), (4, "atomic_cache,dedupe")):
        r = s["ratio_kvheal_to_spin"]
        out.append(f"tabs {tabs} {variants}: kvheal/SPIN {r:.2f} <= 1.0: {'met' if r <= 1.0 else 'missed'}")
    if (tabs, variants) == (3, ""):
        gib = f["peak_rss_mib"] / 1024
        ok = f["seconds"] <= s["seconds"] and gib <= 8
        out.append(
            f"seed tabs 3: full verdict {f['seconds']:.0f} s vs SPIN safety {s['seconds']:.0f} s, "
            f"peak {gib:.1f} GiB <= 8: {'met' if ok else 'missed'}"
        )
    vb = f.get("visited_bytes_per_state")
    if vb is not None:
        out.append(
            f"tabs {tabs} {variants or 'seed'}: visited set {vb} bytes/state (states, table; no "
            f"parent links) <= 16: {'met' if vb <= 16 else 'missed'}"
        )
    rate = f["states_per_s_exploring"]
    if f["states"] >= 1_000_000 and f.get("workers", 1) >= 2:
        out.append(
            f"tabs {tabs} {variants or 'seed'}: {rate:,} states/s exploring on {f['workers']} workers "
            f">= 2,000,000: {'met' if rate >= 2_000_000 else 'missed'}"
        )
    return out


def memory_limit_rows() -> list[str]:
    """``kvheal check --tabs 4`` (the seed design: billions of states) under a 4 GiB
    address-space limit, as `ulimit -v 4194304` sets it: it must end with a one-line
    message and no traceback: exit 3 when nothing was found violated before the budget,
    1 when a counterexample was (a verdict, the CLI's contract); and the same for one
    liveness goal alone, which nothing decides before the budget (exit 3)."""
    import resource
    import time

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    out = []
    for extra in ([], ["--property", "Converges"]):
        cmd = [sys.executable, "-m", "kvheal", "check", "--tabs", "4", "-q", "--json", *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit)
        secs = time.perf_counter() - t0
        err = proc.stderr.strip().splitlines()
        clean = "Traceback" not in proc.stderr and len(err) == 1
        try:
            res = json.loads(proc.stdout)
            statuses = {n: p["status"] for n, p in res["properties"].items()}
        except (ValueError, KeyError):
            statuses = {}
        violated = any(v == "violated" for v in statuses.values())
        ok = clean and proc.returncode == (1 if violated else 3)
        label = "kvheal check --tabs 4" + (" " + " ".join(extra) if extra else "")
        out.append(
            f"{label} under a 4 GiB address-space limit: exit {proc.returncode} after {secs:.0f} s, "
            f"{'one-line message' if clean else 'NOT one clean line'}: {err[-1] if err else '(none)'}; "
            f"verdicts {statuses}: {'met' if ok else 'missed'}"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())

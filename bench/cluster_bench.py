"""Benchmark of `kvheal check --cluster local:N` (model/cluster.py): time, states/s and bytes
sent between workers per state, on 1 and 2 local workers.

    python -m bench.cluster_bench            # tabs 3 dedupe (issue 14's target)
    python -m bench.cluster_bench --quick    # tabs 2, the seed design
    python -m bench.cluster_bench --workers 1,2,4

Each worker count runs in a fresh process that starts its own local Ray cluster (the start is
printed apart: a real cluster is started once). Counts and verdicts are compared with the
pinned ones (the single-process check's). Bytes: *search* is what workers send each other
during the BFS (packed words, once per state and non-owner, and the owners' int32 numbers
for them when the graph is kept; a second run decides the invariants only, without a graph,
and prints its bytes too); *gather* is what the driver collects at the end for the
liveness analysis (rows, int32 targets and int16 labels of every edge, property bits).
Needs the cluster extra (pip install 'kvheal[cluster]').
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

# (tabs, variants, states, transitions, depth, verdicts as status/trace length)
TARGET = (
    3,
    "dedupe",
    2194874,
    11514840,
    44,
    {
        "AckedIsStored": "holds",
        "CacheFromStore": "holds",
        "NoDuplicates": "holds",
        "Converges": "violated/24",
        "PendingDrains": "holds",
    },
)
QUICK = (
    2,
    "",
    7070,
    23756,
    33,
    {
        "AckedIsStored": "holds",
        "CacheFromStore": "holds",
        "NoDuplicates": "violated/9",
        "Converges": "violated/16",
        "PendingDrains": "violated/22",
    },
)


def one(workers: int, tabs: int, variants: str) -> dict:
    """One run on a fresh local cluster of ``workers`` (in this process)."""
    from kvheal.model import Config, KVHealModel, cluster

    model = KVHealModel(Config.make(tabs=tabs, variants=variants))
    model.compiled()
    t0 = time.perf_counter()
    with cluster.Cluster(f"local:{workers}") as cl:
        started = time.perf_counter() - t0
        r, st = cluster.run(model, cl)
        # invariants only: no graph, so no numbers come back and nothing is gathered
        invariants = {p.name for p in model.properties() if p.kind == "invariant"}
        ri, si = cluster.run(model, cl, only=invariants)
        assert (ri.states, ri.transitions) == (r.states, r.transitions)
    words = model.compiled().packing.words
    return {
        "workers": workers,
        "cluster_start_s": round(started, 2),
        "states": r.states,
        "transitions": r.transitions,
        "depth": r.depth,
        "seconds": round(r.seconds, 2),
        "workers_start_s": round(st.start_seconds, 2),
        "search_s": round(st.search_seconds, 2),
        "gather_s": round(st.gather_seconds, 2),
        "busy_s": st.busy_seconds,
        "states_per_s": round(r.states / st.search_seconds),
        "packed_bytes": 8 * words,
        "search_bytes_per_state": round(st.search_bytes / r.states, 2),
        "gather_bytes_per_state": round(st.gather_bytes / r.states, 2),
        "invariants_only_search_s": round(si.search_seconds, 2),
        "invariants_only_bytes_per_state": round(si.search_bytes / r.states, 2),
        "verdicts": {
            n: str(p.status) + (f"/{len(p.trace)}" if len(p.trace) else "") for n, p in r.properties.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    tabs, variants, states, transitions, depth, verdicts = QUICK if args.quick else TARGET
    if args.one is not None:
        print(json.dumps(one(args.one, tabs, variants)))
        return 0
    try:
        import ray  # noqa: F401
    except ImportError:
        print("cluster_bench: needs Ray: pip install 'kvheal[cluster]'", file=sys.stderr)
        return 1
    failures = 0
    print(f"configuration: tabs={tabs} variant={variants or 'seed'} (expect {states:,} states)")
    print(
        f"{'workers':>7s} {'start s':>7s} {'check s':>7s} {'search s':>8s} {'states/s':>9s} "
        f"{'busy s':>12s} {'gather s':>8s} {'B/state sent':>12s} {'packed':>6s} {'B/state gathered':>16s}  counts"
    )
    for n in [int(x) for x in args.workers.split(",")]:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.cluster_bench", "--one", str(n)]
            + (["--quick"] if args.quick else []),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            failures += 1
            continue
        f = json.loads(proc.stdout.strip().splitlines()[-1])
        ok = (f["states"], f["transitions"], f["depth"], f["verdicts"]) == (
            states,
            transitions,
            depth,
            verdicts,
        )
        failures += not ok
        busy = "/".join(f"{b:.1f}" for b in f["busy_s"])
        print(
            f"{n:>7d} {f['cluster_start_s']:>7.1f} {f['seconds']:>7.1f} {f['search_s']:>8.2f} "
            f"{f['states_per_s']:>9,} {busy:>12s} {f['gather_s']:>8.2f} {f['search_bytes_per_state']:>12.2f} "
            f"{f['packed_bytes']:>6d} {f['gather_bytes_per_state']:>16.2f}  {'as pinned' if ok else 'MISMATCH'}"
        )
        print(
            f"{'':>7s} invariants only: search {f['invariants_only_search_s']:.2f} s, "
            f"{f['invariants_only_bytes_per_state']:.2f} bytes sent per state, nothing gathered"
        )
        if not ok:
            print(f"        got {f['states']:,} states, {f['transitions']:,} transitions, {f['verdicts']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

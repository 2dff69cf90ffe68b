"""Benchmark of the explicit-state checker: full verdicts, timed, with peak memory.

    python -m bench.check_bench            # the issue's target and the largest tabs-2 design
    python -m bench.check_bench --quick    # a smaller configuration, for a smoke run

Each configuration runs in a fresh process (peak memory is per run) through `kvheal bench`,
and its state and transition counts are compared with the values pinned in the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

# (tabs, variants, expected states, expected transitions)
TARGETS = [
    (3, "dedupe", 2194874, 11514840),  # target: < 60 s, < 2 GiB, >= 100k states/s
    (2, "shared_pending", 6225349, 32932409),  # the largest tabs-2 design (slow tests skip it)
]
QUICK = [(3, "dedupe,keep_verifying", 426612, 2260704)]


def run(tabs: int, variants: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "kvheal", "bench", "--tabs", str(tabs), "--variant", variants, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    failures = 0
    print(
        f"{'configuration':42s} {'states':>10s} {'trans.':>11s} {'time s':>7s} "
        f"{'states/s':>9s} {'trans/s':>10s} {'peak MiB':>9s}  counts"
    )
    for tabs, variants, states, transitions in QUICK if args.quick else TARGETS:
        f = run(tabs, variants)
        ok = (f["states"], f["transitions"]) == (states, transitions)
        failures += not ok
        print(
            f"{f['config']:42s} {f['states']:>10,} {f['transitions']:>11,} {f['seconds']:>7.1f} "
            f"{f['states_per_s_exploring']:>9,} {f['transitions_per_s_exploring']:>10,} "
            f"{f['peak_rss_mib']:>9,}  {'as pinned' if ok else 'MISMATCH'}"
        )
        print(f"{'':42s} verdicts: {f['verdicts']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

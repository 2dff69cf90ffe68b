"""Run every benchmark in turn (`make bench`); each prints its own figures."""

from __future__ import annotations

import subprocess
import sys

BENCHES = [
    "bench.check_bench",
    "bench.cluster_bench",
    "bench.spin_bench",
    "bench.prove_bench",
    "bench.as_built_bench",
    "bench.impl_bench",
    "bench.audit_bench",
    "bench.chaos_bench",
]


def main() -> int:
    failed = []
    for name in BENCHES:
        print(f"\n== {name}", flush=True)
        if subprocess.run([sys.executable, "-m", name]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

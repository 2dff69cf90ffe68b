"""Benchmark: z3 convergence proof time per number of tabs (issue 3's target: ≤ 60 s each for
tabs ≤ 6) for tabs 2 to 8, the all-tabs (parameterized) proof of each design, and one lasso
search at tabs 2. Run: ``.venv/bin/python -m bench.prove_bench``.

Each proof runs in a child process with a time limit (``--limit``, default 120 s): a row that
exceeds it prints "timeout" instead of hanging the table. The time is the whole ``prove`` call
for ``Converges`` (Houdini included), in the child process."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def _one(tabs: int, variant: str, queue: mp.Queue) -> None:
    from kvheal.model import Config
    from kvheal.model.prove import prove

    t0 = time.perf_counter()
    r = prove(Config.make(tabs=tabs, variants=variant), properties={"Converges"}, lasso_depth=0)
    p = r.properties["Converges"]
    queue.put((p.status, len(p.queries), time.perf_counter() - t0))


def _all_tabs(variant: str, queue: mp.Queue) -> None:
    from kvheal.model import Config
    from kvheal.model.param import prove_all_tabs

    t0 = time.perf_counter()
    flags = Config.make(tabs=1, variants=variant).variants  # a preset names its flags
    p = prove_all_tabs(flags, properties={"Converges"}).properties["Converges"]
    queue.put((p.status, len(p.queries), time.perf_counter() - t0))


def _lasso(queue: mp.Queue) -> None:
    from kvheal.model import Config
    from kvheal.model.prove import find_lasso
    from kvheal.model.symbolic import SymbolicModel

    sym = SymbolicModel(Config.make(tabs=2))
    t0 = time.perf_counter()
    trace, qs = find_lasso(sym, sym.converges_goal, 16)
    queue.put((f"lasso {len(trace)} steps", len(qs), time.perf_counter() - t0))


def run(target, args, limit: float) -> tuple[str, int, float]:
    queue: mp.Queue = mp.Queue()
    proc = mp.Process(target=target, args=(*args, queue))
    t0 = time.perf_counter()
    proc.start()
    proc.join(limit)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return ("timeout", 0, time.perf_counter() - t0)
    return queue.get() if not queue.empty() else ("error", 0, time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=float, default=120.0)
    ap.add_argument("--tabs", default="2-8")
    ap.add_argument(
        "--variants", default="atomic_cache,dedupe;dedupe,keep_verifying;dedupe,sweeper;as_built_fixed"
    )
    ap.add_argument("--no-lasso", action="store_true")
    a = ap.parse_args()
    lo, _, hi = a.tabs.partition("-")
    print(f"{'variant':<24} {'tabs':>4} {'status':<10} {'queries':>7} {'seconds':>8}", flush=True)
    for variant in a.variants.split(";"):
        for tabs in range(int(lo), int(hi or lo) + 1):
            status, n, secs = run(_one, (tabs, variant), a.limit)
            print(f"{variant:<24} {tabs:>4} {status:<10} {n:>7} {secs:>8.2f}", flush=True)
    for variant in a.variants.split(";"):
        status, n, secs = run(_all_tabs, (variant,), a.limit)
        print(f"{variant:<24} {'all':>4} {status:<10} {n:>7} {secs:>8.2f}", flush=True)
    if not a.no_lasso:
        status, n, secs = run(_lasso, (), a.limit)
        print(f"{'seed (Converges lasso)':<24} {2:>4} {status:<10} {n:>7} {secs:>8.2f}", flush=True)


if __name__ == "__main__":
    main()

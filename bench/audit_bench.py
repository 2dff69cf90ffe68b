"""Benchmark of `kvheal audit`: how fast it drives a worker, and how long the checker takes.

    python -m bench.audit_bench            # audits of kvheal serve (2 processes, SQLite) + checker on large histories
    python -m bench.audit_bench --quick    # smaller, for a smoke run

Drive: `kvheal audit` against a served worker in the seed design and in atomic_cache,dedupe
(uvicorn in a child process on 127.0.0.1): requests/s over the whole run (probe excluded), the
requests, and the checker's time on that history. The driver shares the machine's CPUs with
the server, so requests/s is a floor.

Checker: synthetic histories of a racy read-modify-write cache (simulated: every post and heal
captures the register at a random instant of its interval and writes the snapshot plus its id
at a later one, tabs poll and heal what they miss), of growing size: consistency search steps
and seconds (budget 30 s each). The histories are consistent by construction, so the verdict
must be `holds` or, when the search gives up, `unknown`; the benchmark exits 1 on `violated`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time

from kvheal.conformance.audit import AuditConfig, run_audit
from kvheal.conformance.history import VIOLATED, Op, check_history
from kvheal.impl.server import ServeConfig, ServerProcess


def synthetic_history(tabs: int, rounds: int, per_tab: int, seed: int = 1) -> list[Op]:
    """A history of tabs racing read-modify-writes on one register, then polling and healing."""
    rng = random.Random(seed)
    ops: list[Op] = []
    pending: list[dict] = []
    value: list[str] = []
    clock = 0.0
    counter = 0

    def add(kind, client, t0, t1, **kw):
        ops.append(Op(index=len(ops), client=client, kind=kind, invoke=t0, complete=t1, **kw))
        return len(ops) - 1

    def simulate(batch):
        """Run the events of `batch` (op index, kind, id, invoke, snapshot, write, complete) in time order."""
        nonlocal value
        timeline = []
        for b in batch:
            if b["kind"] == "read":
                timeline.append((b["at"], 1, b))
            else:
                timeline.append((b["snap"], 0, b))
                timeline.append((b["write"], 2, b))
        snaps = {}
        for _, what, b in sorted(timeline, key=lambda e: (e[0], e[1])):
            if what == 0:
                snaps[id(b)] = list(value)
            elif what == 2:
                value = sorted(snaps[id(b)] + [b["id"]])
            else:
                b["ids"] = tuple(value)

    for round_no in range(rounds + 3):
        batch = []
        for tab in range(tabs):
            t = clock + rng.uniform(0, 0.002)
            mine = []
            if round_no < rounds:
                for _ in range(per_tab):
                    counter += 1
                    m = f"m{counter}"
                    t0 = t + rng.uniform(0, 0.001)
                    snap = t0 + rng.uniform(0, 0.03)
                    write = snap + rng.uniform(0, 0.01)
                    batch.append(
                        {
                            "kind": "post",
                            "id": m,
                            "t0": t0,
                            "snap": snap,
                            "write": write,
                            "t1": write + rng.uniform(0, 0.005),
                            "client": f"tab{tab}",
                        }
                    )
                    mine.append(m)
            t_read = max([b["t1"] for b in batch if b["client"] == f"tab{tab}"] or [t]) + 0.0005
            batch.append(
                {"kind": "read", "t0": t_read, "at": t_read + rng.uniform(0, 0.005), "client": f"tab{tab}"}
            )
            batch[-1]["t1"] = batch[-1]["at"] + rng.uniform(0, 0.003)
        simulate(batch)
        heals = []
        reads_done = max(b["t1"] for b in batch)  # heals start once this round's polls are answered
        for b in batch:
            if b["kind"] == "read":
                missing = [p for p in pending if p["client"] == b["client"] and p["id"] not in b["ids"]]
                for p in missing:
                    t0 = reads_done + rng.uniform(0, 0.002)
                    snap = t0 + rng.uniform(0, 0.02)
                    write = snap + rng.uniform(0, 0.01)
                    heals.append(
                        {
                            "kind": "heal",
                            "id": p["id"],
                            "t0": t0,
                            "snap": snap,
                            "write": write,
                            "t1": write + rng.uniform(0, 0.005),
                            "client": b["client"],
                        }
                    )
        simulate(heals)
        for b in sorted(batch + heals, key=lambda b: b["t0"]):
            if b["kind"] == "read":
                add("read", b["client"], b["t0"], b["t1"], ids=b["ids"])
            else:
                add(b["kind"], b["client"], b["t0"], b["t1"], id=b["id"])
                if b["kind"] == "post":
                    pending.append(b)
        seen = {m for b in batch if b["kind"] == "read" for m in b["ids"]}
        pending = [p for p in pending if p["id"] not in seen]
        clock = max(b["t1"] for b in batch + heals) + 0.01
    return ops


def drive(variants: str, tabs: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        config = ServeConfig(backend="sqlite", variants=variants, workers=2, db=f"{d}/kv.sqlite3")
        with ServerProcess(config) as url:
            run = asyncio.run(run_audit(url, AuditConfig(tabs=tabs, rounds=rounds, settle=0.3)))
    s = run.check.stats
    return {
        "design": variants or "seed",
        "requests": s["requests"],
        "seconds": round(run.drive_seconds, 2),
        "requests_per_s": round(s["requests"] / run.drive_seconds),
        "check_s": s["check_seconds"],
        "verdicts": {k: v.status for k, v in run.check.properties.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    failed = False
    print("drive: kvheal serve, SQLite, 2 processes")
    for variants in ("", "atomic_cache,dedupe"):
        r = drive(variants, tabs=8, rounds=2 if args.quick else 5)
        print(
            f"  {r['design']:<20} {r['requests']:>5} requests in {r['seconds']:>5.2f} s: {r['requests_per_s']:>4} "
            f"requests/s; checked in {r['check_s']:.2f} s; {r['verdicts']}",
            flush=True,
        )
    print("checker: synthetic racy read-modify-write histories")
    sizes = (
        [(8, 5, 2), (8, 10, 2)]
        if args.quick
        else [(8, 5, 2), (8, 10, 2), (8, 25, 2), (12, 10, 2), (16, 10, 2)]
    )
    for tabs, rounds, per_tab in sizes:
        ops = synthetic_history(tabs, rounds, per_tab)
        started = time.perf_counter()
        result = check_history(ops, max_seconds=30, max_steps=5_000_000)
        seconds = time.perf_counter() - started
        verdicts = {k: v.status for k, v in result.properties.items()}
        ok = verdicts["Consistency"] != VIOLATED
        failed |= not ok
        print(
            f"  {tabs:>2} tabs x {rounds:>2} rounds: {len(ops):>5} ops ({result.stats['missing_after_ack']} lost "
            f"after ack) checked in {seconds:6.2f} s, {result.stats['search_steps']} search steps; "
            f"consistency {verdicts['Consistency']}"
            + ("" if ok else "  <-- wrong: consistent by construction"),
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

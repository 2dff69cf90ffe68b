"""`kvheal export --promela`: the model as a Promela program, for SPIN (kvheal.model.promela)."""

from __future__ import annotations

import sys

import click

from .options import config_options, current_design, make_config


@click.command()
@config_options
@click.option(
    "--promela",
    is_flag=True,
    help="Write Promela (the one format today): one d_step per action instance, so SPIN "
    "stores exactly the model's reachable states, plus one (the table prelude).",
)
@click.option(
    "--no-invariants",
    is_flag=True,
    help="Leave out the asserts of SPEC §7's invariants (state counts are the same).",
)
@click.option(
    "-o", "--output", "output", default=None, metavar="FILE", help="Write to FILE instead of standard output."
)
def export(
    tabs: int,
    per_tab: int,
    cap: int | None,
    variant: str,
    promela: bool,
    no_invariants: bool,
    output: str | None,
) -> int:
    """Write the model of one configuration for another tool.

    SPIN: spin -a -o2 FILE && gcc -O2 -DSAFETY -DNOREDUCE -o pan pan.c && ./pan -m100000 -c0;
    pan's "states, stored" is kvheal check's state count plus one (the state before the
    prelude that fills the cache tables), its transitions kvheal check's plus two.
    """
    if not promela:
        raise click.UsageError("choose a format: --promela")
    from kvheal.model.definition import KVHEAL
    from kvheal.model.dsl import DefinitionError
    from kvheal.model.promela import promela as to_promela

    cfg = make_config(tabs, per_tab, cap, variant)
    try:
        text = to_promela(current_design() or KVHEAL, cfg, invariants=not no_invariants)
    except DefinitionError as e:
        raise click.UsageError(f"cannot export this design: {e}") from None
    if output is None or output == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise click.UsageError(f"cannot write {output}: {e.strerror}") from None
    return 0


# ---------------------------------------------------------------------------- kvheal bench --spin
def spin_figures(cfg, kvheal: dict, *, timeout: float | None = None) -> dict:
    """SPIN on ``cfg``'s export (safety only: exact storage, no partial-order reduction,
    invariants asserted, every error counted), with the figures ``kvheal bench`` prints beside
    kvheal's (``kvheal``: its figures; ``states`` sizes pan's hash table, as a SPIN user would)."""
    import os

    from kvheal.model.definition import KVHEAL
    from kvheal.model.promela import SpinError, run_spin
    from kvheal.model.promela import promela as to_promela

    load = os.getloadavg()[0]
    text = to_promela(cfg.design or KVHEAL, cfg)
    bits = min(max(kvheal["states"].bit_length() + 1, 18), 28)
    try:
        r = run_spin(text, depth=100_000, hash_bits=bits, memlim_mib=_memlim_mib(), timeout=timeout)
    except SpinError as e:
        return {"error": str(e)}
    total = round(r.spin_seconds + r.compile_seconds + r.run_seconds, 2)
    return {
        "states": r.states,
        "transitions": r.transitions,
        "same_counts": r.matches(kvheal["states"], kvheal["transitions"]),
        "exact_counts": r.exact,
        "complete": r.complete,
        "stop": r.stop,
        "assert_errors": r.errors,
        "spin_a_seconds": r.spin_seconds,
        "compile_seconds": r.compile_seconds,
        "run_seconds": r.run_seconds,
        "seconds": total,
        "states_per_s": round(r.states / r.run_seconds) if r.run_seconds else None,
        "bytes_per_state": round(r.peak_rss_mib * 2**20 / max(r.states, 1)),
        "peak_rss_mib": round(r.peak_rss_mib),
        "pan_memory_mib": r.memory_mib,
        "state_vector_bytes": r.vector_bytes,
        "depth": r.depth,
        "hash_bits": bits,
        "ratio_kvheal_to_spin": round(kvheal["seconds"] / total, 2) if total else None,
        "load_avg_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


def _memlim_mib() -> int | None:
    """3/4 of the memory available now, for pan's -DMEMLIM (it stops there instead of dying)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 3 // 4 // 1024
    except OSError:
        pass
    return None


def side_by_side(figures: dict) -> str:
    """kvheal's and SPIN's figures as a small table (``figures["spin"]`` is SPIN's)."""
    s = figures["spin"]
    if "error" in s:
        return f"SPIN failed: {s['error']}"
    kv_rate = f"{figures['states_per_s_exploring']:,} (exploring)"
    kv_bytes = round(figures["peak_rss_mib"] * 2**20 / max(figures["states"], 1))
    rows = [
        ("", "kvheal (full verdict)", "SPIN (safety only)"),
        (
            "states",
            f"{figures['states']:,}",
            f"{s['states']:,}" + ("" if s["same_counts"] else "  DIFFERENT"),
        ),
        ("transitions", f"{figures['transitions']:,}", f"{s['transitions']:,}"),
        (
            "time s",
            f"{figures['seconds']:.1f}"
            + (
                f" (compile {figures['compile_seconds']:.1f}, explore {figures['explore_seconds']:.1f})"
                if figures.get("engine") == "compiled"
                else ""
            ),
            f"{s['seconds']:.1f} (spin -a {s['spin_a_seconds']:.1f}, gcc {s['compile_seconds']:.1f}, "
            f"pan {s['run_seconds']:.1f})",
        ),
        ("distinct states/s", kv_rate, f"{s['states_per_s']:,} (pan)"),
        ("bytes per state (peak RSS)", f"{kv_bytes:,}", f"{s['bytes_per_state']:,}"),
        *(
            [("bytes per state, visited set", f"{figures['visited_bytes_per_state']:,}", "")]
            if "visited_bytes_per_state" in figures
            else []
        ),
        ("peak memory MiB", f"{figures['peak_rss_mib']:,}", f"{s['peak_rss_mib']:,}"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:{w0}s}  {b:>{w1}s}  {c}" for a, b, c in rows]
    lines.append(
        f"kvheal/SPIN time ratio: {s['ratio_kvheal_to_spin']}  (SPIN: state vector "
        f"{s['state_vector_bytes']} bytes, -w{s['hash_bits']}, depth {s['depth']}; "
        f"1-min load average {s['load_avg_1min'][0]} -> {s['load_avg_1min'][1]})"
    )
    if not s["complete"]:
        lines.append(f"SPIN stopped early: {s['stop']}")
    return "\n".join(lines)

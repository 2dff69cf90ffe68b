"""Shared helpers for the report tests: small checked configurations, the CLI, random walks."""

from __future__ import annotations

import functools
import random
import subprocess
import sys

from kvheal.model import Config, KVHealModel, check


@functools.cache
def checked(variants: str = "", tabs: int = 2, per_tab: int = 1):
    """One check per configuration for the session."""
    model = KVHealModel(Config.make(tabs=tabs, per_tab=per_tab, variants=variants))
    return model, check(model)


def violated(variants: str = "", tabs: int = 2):
    """``(model, name, trace)`` of every counterexample of a configuration."""
    model, result = checked(variants, tabs)
    return [(model, n, p.trace) for n, p in result.properties.items() if p.status == "violated"]


def walk(model, steps: int, seed: int = 0) -> list[dict]:
    """A random trace from the initial state (any trace, not a counterexample)."""
    rng = random.Random(seed)
    s = model.init_states()[0]
    out = []
    for _ in range(steps):
        succ = model.successors(s)
        if not succ:
            break
        label, s = rng.choice(succ)
        out.append(model.instances[label].as_json())
    return out


def kvheal(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed command in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "kvheal", *args], capture_output=True, text=True, timeout=timeout
    )


def kvheal_here(*args: str) -> subprocess.CompletedProcess:
    """The same command line run in this process (click's runner): exit code, stdout, stderr."""
    from click.testing import CliRunner

    from kvheal.cli import main

    r = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)

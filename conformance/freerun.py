"""Free runs for trace validation: the real served worker (several uvicorn processes, real
SQLite or Redis), many concurrent tabs, no gates; every KV call logged, then validated.

    >>> from kvheal.conformance.freerun import free_run
    >>> run = free_run("/tmp/ops.jsonl", tabs=8, backend="sqlite")   # doctest: +SKIP
    >>> run.validation.status                                          # doctest: +SKIP
    'ok'

The run is `kvheal stress` with one run and its operation log on; the log is then checked by
`kvheal.conformance.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kvheal.impl.stress import StressConfig, StressReport, run_stress

from .validate import Validation, validate_log

__all__ = ["FreeRun", "free_run"]


@dataclass
class FreeRun:
    """A free run's stress report and the verdict on its log."""

    report: StressReport
    validation: Validation
    log: str


def free_run(
    log: str,
    *,
    tabs: int = 8,
    per_tab: int = 1,
    variants: str = "",
    backend: str = "sqlite",
    workers: int = 3,
    runs: int = 1,
    **stress: Any,
) -> FreeRun:
    """Race `tabs` tabs against a served worker, log every KV call to `log`, validate the log."""
    config = StressConfig(
        tabs=tabs,
        per_tab=per_tab,
        variants=variants,
        backend=backend,
        workers=workers,
        runs=runs,
        op_log=log,
        **stress,
    )
    report = run_stress(config)
    validation = validate_log(log, tabs=tabs, cap=config.cap, variants=config.variants)
    return FreeRun(report, validation, log)

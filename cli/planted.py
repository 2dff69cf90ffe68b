"""The planted bugs of the conformance layer, hunted for `kvheal report --stress`.

Each planted bug (:data:`kvheal.conformance.faults.FAULTS`: a deliberate fault in a subclass
of the real worker, client or backend) is run against the model in the lockstep machine
(:func:`kvheal.conformance.lockstep.lockstep_machine`) under the conformance tests' ``ci``
Hypothesis profile (fixed seed, 50 examples of up to 30 steps), as
``tests/conformance/test_planted_bugs.py`` does: the machine must find each one. The result
says whether it did, after how many examples, and the first difference it reported.
"""

from __future__ import annotations

import time
from typing import Any


def names() -> list[str]:
    """The planted bugs, in the conformance layer's order."""
    from kvheal.conformance.faults import FAULTS

    return list(FAULTS)


def hunt(name: str) -> dict[str, Any]:
    """Run the lockstep machine with planted bug ``name``: ``{"fault", "doc", "design", "tabs",
    "found", "examples", "seconds", "first_difference", "reason"}``, the first difference as
    ``{"field", "model", "impl"}`` (the values after the step where they part). Hypothesis'
    own report is not printed; its example database is off, so nothing is written."""
    from hypothesis import settings
    from hypothesis.reporting import with_reporter
    from hypothesis.stateful import run_state_machine_as_test

    from kvheal.conformance.faults import FAULTS
    from kvheal.conformance.lockstep import Divergence, lockstep_machine
    from kvheal.conformance.profiles import PROFILES
    from kvheal.model import Config

    fault = FAULTS[name]
    base = lockstep_machine(
        Config.make(tabs=fault.tabs, variants=fault.variants), name=f"Planted_{name}", **fault.hooks
    )
    runs = {"n": 0, "first": None}

    class Counting(base):  # the examples started until the first divergence (before shrinking)
        def __init__(self) -> None:
            runs["n"] += 1
            super().__init__()

        def _compare(self, step: Any, reason: str) -> None:
            try:
                super()._compare(step, reason)
            except Divergence:
                runs["first"] = runs["first"] or runs["n"]
                raise

    out: dict[str, Any] = {
        "fault": name,
        "doc": fault.doc,
        "design": fault.variants or "seed",
        "tabs": fault.tabs,
        "found": False,
        "examples": None,
        "first_difference": None,
        "reason": "",
    }
    t0 = time.perf_counter()
    try:
        with with_reporter(lambda _text: None):
            run_state_machine_as_test(Counting, settings=settings(database=None, **PROFILES["ci"]))
    except Divergence as e:
        text = str(e)
        out["found"] = True
        out["examples"] = runs["first"]
        out["reason"] = text.splitlines()[0].split("): ", 1)[-1][:300]
        line = next((line for line in text.splitlines() if "◀ first difference" in line), "")
        parts = line.split("◀")[0].split()
        if len(parts) == 3:  # the state table's row: field, model's value, implementation's value
            out["first_difference"] = dict(zip(("field", "model", "impl"), parts))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out

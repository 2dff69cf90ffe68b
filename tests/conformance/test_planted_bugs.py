"""Does the lockstep machine really find bugs? Each planted fault must be caught under the
default (CI) profile, and the report must be the side-by-side table. (The same designs without
the faults pass in test_lockstep.)"""

from __future__ import annotations

import pytest
from hypothesis.stateful import run_state_machine_as_test

from kvheal.conformance.faults import FAULTS
from kvheal.conformance.lockstep import Divergence, lockstep_machine
from kvheal.model import Config


def counting(cls):
    """`cls` with a count of the runs (examples) started before the first divergence."""

    class Counting(cls):
        runs = 0
        first_failure = None

        def __init__(self):
            type(self).runs += 1
            super().__init__()

        def _compare(self, step, reason):
            try:
                super()._compare(step, reason)
            except Divergence:
                if type(self).first_failure is None:
                    type(self).first_failure = type(self).runs
                raise

    Counting.__name__ = cls.__name__
    return Counting


# two faults take the machine 20-80 s to find and shrink: they run under -m slow (and in
# `kvheal report --stress`, whose planted section runs every fault through this machine)
SLOW = {"pending_dropped", "dedupe_wrong_field"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in FAULTS]
)
def test_planted_bug_is_found(name):
    fault = FAULTS[name]
    machine = counting(
        lockstep_machine(
            Config.make(tabs=fault.tabs, variants=fault.variants), name=f"Planted_{name}", **fault.hooks
        )
    )
    with pytest.raises(Divergence) as info:
        run_state_machine_as_test(machine)
    text = str(info.value)
    assert text.startswith(f"lockstep divergence (tabs={fault.tabs}")
    assert "◀ first difference" in text
    print(f"{name}: found in example {machine.first_failure} of {machine.runs} runs (with shrinking)")
    print(text)

"""kvheal.conformance: the real implementation checked against the model.

The one place that imports both `kvheal.model` and `kvheal.impl`:

* `gates`: a KV and a pending store whose every call parks until the test releases it;
* `abstraction`: a snapshot of the real system → a model state (`KVHealModel.view`'s shape);
* `system`: the worker and its tabs in-process, under the gates, one event loop;
* `lockstep`: the Hypothesis state machine (subclass it to check your own worker);
* `faults`: planted bugs the machine must find;
* `replay`: a counterexample of `kvheal check` driven through the real system;
* `validate`: a log of KV operations from a free run checked against the model;
* `profiles`: the Hypothesis profiles (``ci``, ``explore``).
"""

from .abstraction import SystemSnapshot, abstract
from .faults import FAULTS
from .lockstep import Divergence, LockstepMachine, lockstep_machine
from .replay import ReplayResult
from .replay import replay as replay_counterexample
from .system import InProcessSystem
from .validate import Validation, validate_log, validate_records

__all__ = [
    "SystemSnapshot",
    "abstract",
    "FAULTS",
    "Divergence",
    "LockstepMachine",
    "lockstep_machine",
    "ReplayResult",
    "replay_counterexample",
    "InProcessSystem",
    "Validation",
    "validate_log",
    "validate_records",
]

"""kvheal.model: the formal model of SPEC §2-7 and the engines that check it.

    >>> from kvheal.model import Config, KVHealModel, check
    >>> result = check(KVHealModel(Config.make(tabs=2, variants="atomic_cache,dedupe")))
    >>> result.properties["Converges"].status
    <Verdict.HOLDS: 'holds'>

The model is pure: no I/O, and no imports of kvheal.impl.
"""

from .config import VARIANTS, Config, ConfigError, parse_variants
from .core import Action, KVHealModel, Property, State
from .engine import CheckResult, Progress, PropertyResult, check, replay
from .results import HOLDS, UNKNOWN, VIOLATED, Step, Trace, TraceError, Verdict

__all__ = [
    "VARIANTS",
    "Config",
    "ConfigError",
    "parse_variants",
    "Action",
    "KVHealModel",
    "Property",
    "State",
    "CheckResult",
    "Progress",
    "PropertyResult",
    "check",
    "replay",
    "Verdict",
    "HOLDS",
    "UNKNOWN",
    "VIOLATED",
    "Step",
    "Trace",
    "TraceError",
]

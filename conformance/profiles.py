"""Hypothesis profiles for the conformance tests: ``ci`` (the default: fast, and still finds
every planted bug) and ``explore`` (long runs).

    KVHEAL_HYPOTHESIS_PROFILE=explore .venv/bin/python -m pytest tests/conformance

`register_profiles()` registers both and loads the one the environment names (``ci`` when
unset); the conformance tests' conftest calls it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

__all__ = ["ENV_PROFILE", "PROFILES", "register_profiles"]

#: the environment variable that selects a profile
ENV_PROFILE = "KVHEAL_HYPOTHESIS_PROFILE"

#: name -> settings keyword arguments
PROFILES: dict[str, dict] = {
    # CI: a fixed seed (derandomize) so a run is repeatable and its time predictable.
    "ci": dict(
        max_examples=50,
        stateful_step_count=30,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    ),
    # Long runs: many more and longer examples, a fresh seed each time, the example database on.
    "explore": dict(
        max_examples=2_000,
        stateful_step_count=120,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    ),
}


def register_profiles(default: str = "ci") -> str:
    """Register the profiles and load the one named by $KVHEAL_HYPOTHESIS_PROFILE (else
    `default`); returns the name loaded. An unknown name raises ValueError naming the known ones."""
    for name, kwargs in PROFILES.items():
        settings.register_profile(f"kvheal-{name}", **kwargs)
    name = os.environ.get(ENV_PROFILE, "") or default
    if name not in PROFILES:
        raise ValueError(f"${ENV_PROFILE}={name!r} is not a profile; known: {', '.join(PROFILES)}")
    settings.load_profile(f"kvheal-{name}")
    return name

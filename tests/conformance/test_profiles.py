"""The Hypothesis profiles: ``ci`` by default, ``explore`` on request, a clear error otherwise."""

from __future__ import annotations

import pytest
from hypothesis import settings

from kvheal.conformance.profiles import ENV_PROFILE, PROFILES, register_profiles

from .conftest import PROFILE


def test_loaded_profile_is_the_one_the_environment_names():
    assert settings.default.max_examples == PROFILES[PROFILE]["max_examples"]
    assert settings.default.stateful_step_count == PROFILES[PROFILE]["stateful_step_count"]


def test_pinned_figures():
    assert (PROFILES["ci"]["max_examples"], PROFILES["ci"]["stateful_step_count"]) == (50, 30)
    assert PROFILES["ci"]["derandomize"] is True
    assert (PROFILES["explore"]["max_examples"], PROFILES["explore"]["stateful_step_count"]) == (2000, 120)


def test_unknown_profile(monkeypatch):
    monkeypatch.setenv(ENV_PROFILE, "turbo")
    with pytest.raises(ValueError, match="'turbo' is not a profile; known: ci, explore"):
        register_profiles()
    monkeypatch.setenv(ENV_PROFILE, PROFILE)
    assert register_profiles() == PROFILE

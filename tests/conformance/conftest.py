"""Conformance tests: Hypothesis profiles (``ci`` unless $KVHEAL_HYPOTHESIS_PROFILE says otherwise)."""

from __future__ import annotations

from kvheal.conformance.profiles import register_profiles

PROFILE = register_profiles()

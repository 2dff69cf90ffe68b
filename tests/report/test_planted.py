"""Conformance in the report: the planted bugs the lockstep machine must find."""

from __future__ import annotations

from kvheal.model.report import assemble
from kvheal.planted import hunt, names

from .test_report import META, small_records


def test_planted_bugs_are_listed():
    assert names() == [
        "cache_before_key",
        "dedupe_wrong_field",
        "pending_dropped",
        "cas_ignores_version",
        "ack_before_cache",
    ]


def test_a_planted_bug_is_hunted_on_the_real_worker():
    """The worker writes the cache before the message's key: right after the post's first
    step the model has the key stored and the real system does not."""
    r = hunt("cache_before_key")
    assert (r["fault"], r["design"], r["tabs"], r["found"]) == ("cache_before_key", "seed", 2, True)
    assert 1 <= r["examples"] <= 50
    assert r["first_difference"] == {"field": "stored", "model": "[0]", "impl": "[]"}
    assert (
        r["reason"]
        == "after PostKey(m=0) the implementation is not in the model's state; first difference: stored"
    )


def test_planted_section():
    planted = [
        {
            "fault": "cache_before_key",
            "doc": "the worker adds the message to the cache before writing its key",
            "design": "seed",
            "tabs": 2,
            "found": True,
            "examples": 6,
            "first_difference": {"field": "stored", "model": "[0]", "impl": "[]"},
            "reason": "after PostKey(m=0) ...",
            "seconds": 1.07,
        },
        {
            "fault": "cas_ignores_version",
            "doc": "compare-and-swap writes whatever the version",
            "design": "atomic_cache",
            "tabs": 3,
            "found": False,
            "examples": None,
            "first_difference": None,
            "reason": "",
            "seconds": 12.98,
        },
    ]
    md = assemble(small_records(), META, None, None, planted)["report.md"]
    assert "### Planted bugs" in md and ": 1 of 2 found." in md
    assert (
        "| `cache_before_key` | the worker adds the message to the cache before writing its key | seed, tabs 2 "
        "| found in example 6 | stored: model [0], implementation [] | after PostKey(m=0) ... | 1.1 s |"
    ) in md
    assert (
        "| `cas_ignores_version` | compare-and-swap writes whatever the version | atomic_cache, tabs 3 | NOT FOUND |"
        in md
    )
    assert "### Planted bugs" not in assemble(small_records(), META)["report.md"]

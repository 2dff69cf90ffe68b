"""The claims ledger: quoted verbatim, decided by computed verdicts only."""

from __future__ import annotations

from pathlib import Path

from kvheal.model import Config, KVHealModel
from kvheal.model.claims import (
    CLAIMS,
    CONFIRMED,
    DEPLOYED,
    NOT_APPLICABLE,
    NOT_MODELLED,
    REFUTED,
    UNDECIDED,
    decide,
)

POST_MORTEM = (Path(__file__).resolve().parents[2] / "docs" / "post-mortem.md").read_text(encoding="utf-8")


def test_quotes_are_the_post_mortems_words():
    assert len(CLAIMS) == 8 and len({c.id for c in CLAIMS}) == 8
    for claim in CLAIMS:
        assert claim.pieces, claim.id
        for piece in claim.pieces:
            assert piece in POST_MORTEM, piece
            assert piece in claim.quote, piece


def test_every_claim_says_how_it_is_decided():
    names = {p.name for p in KVHealModel(Config.make(tabs=1)).properties()}
    for claim in CLAIMS:
        assert claim.checks or claim.measured or claim.not_modelled, claim.id
        for check in claim.checks:
            assert check.prop in names and check.true_if in ("holds", "violated")


def test_verdicts_follow_the_data():
    success = next(c for c in CLAIMS if c.id == "success-100")
    assert decide(success, {("seed", "Converges"): "violated"})["post_mortem"]["verdict"] == REFUTED
    assert decide(success, {("seed", "Converges"): "holds"})["post_mortem"]["verdict"] == CONFIRMED
    assert decide(success, {})["post_mortem"]["verdict"] == UNDECIDED
    assert decide(success, {("seed", "Converges"): "unknown"})["post_mortem"]["verdict"] == UNDECIDED
    dec = decide(
        success,
        {(DEPLOYED, "Converges"): "violated", ("x", "Converges"): "holds", ("y", "Converges"): "violated"},
        designs=["x", "y"],
    )
    assert dec["deployed"]["verdict"] == REFUTED and dec["true_of"] == ["x"]


def test_a_property_that_does_not_apply_says_nothing():
    lost = next(c for c in CLAIMS if c.id == "no-lost-messages")
    v = {
        ("kv", "Converges"): "holds",
        ("kv", "PendingDrains"): NOT_APPLICABLE,
        ("seed", "Converges"): "holds",
        ("seed", "PendingDrains"): "violated",
    }
    dec = decide(lost, v, designs=["kv", "seed"])
    assert dec["true_of"] == ["kv"]
    assert dec["post_mortem"]["verdict"] == REFUTED
    assert [b["property"] for b in dec["post_mortem"]["by"]] == ["PendingDrains"]


def test_the_locking_claim_is_about_the_atomic_design():
    lock = next(c for c in CLAIMS if c.id == "locking-not-100")
    dec = decide(lock, {("atomic_cache,dedupe", "Converges"): "holds", ("seed", "Converges"): "violated"})
    assert dec["post_mortem"] == {
        "design": "atomic_cache,dedupe",
        "verdict": REFUTED,
        "by": [
            {
                "design": "atomic_cache,dedupe",
                "property": "Converges",
                "status": "holds",
                "true_if": "violated",
            }
        ],
    }
    assert "deployed" not in dec


def test_claims_without_checks():
    kinds = {c.id: decide(c, {})["post_mortem"]["verdict"] for c in CLAIMS if not c.checks}
    assert kinds == {"survives-refresh": NOT_MODELLED, "no-backoff": NOT_MODELLED}

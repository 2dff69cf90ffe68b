"""The claims ledger: quoted verbatim, decided by computed verdicts only."""

from __future__ import annotations

from pathlib import Path

from kvheal.model import Config, KVHealModel
from kvheal.model.claims import (
    CLAIMS,
    CONFIRMED,
    DEPLOYED,
    FIXED,
    MEASURED,
    NOT_APPLICABLE,
    NOT_MODELLED,
    REFRESH,
    REFRESH_CONTROL,
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
    names = {p.name for p in KVHealModel(Config.make(tabs=1, variants="as_built")).properties()}
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


def test_claims_the_post_mortem_design_does_not_decide():
    """Claims about what only the tabs' view models (reloads, a bound on heals) are not
    modelled on the post-mortem design, whatever its verdicts."""
    v = {("seed", p): "violated" for p in ("Converges", "PendingDrains", "EveryoneSees", "HealsTerminate")}
    kinds = {c.id: decide(c, v)["post_mortem"]["verdict"] for c in CLAIMS}
    assert {k for k, verdict in kinds.items() if verdict == NOT_MODELLED} == {
        "survives-refresh",
        "no-backoff",
    }


def test_no_backoff_is_decided_by_the_bound_on_heals():
    backoff = next(c for c in CLAIMS if c.id == "no-backoff")
    v = {(DEPLOYED, "HealsTerminate"): "violated", (FIXED, "HealsTerminate"): "holds"}
    dec = decide(backoff, v, [FIXED])
    assert dec["deployed"]["verdict"] == REFUTED
    assert [b["property"] for b in dec["deployed"]["by"]] == ["HealsTerminate"]
    assert dec["fixed"]["verdict"] == MEASURED  # bounded heals, but KV's write rate is not modelled
    assert dec["true_of"] == [] and dec["in_part"] == [FIXED]


def test_claims_decided_for_the_app_as_deployed_and_its_fix():
    """Each claim with checks has a verdict for as_built and for as_built_fixed, from the
    verdicts of those designs only."""
    assert (DEPLOYED, FIXED) == ("as_built", "as_built_fixed")
    success = next(c for c in CLAIMS if c.id == "success-100")
    dec = decide(success, {(DEPLOYED, "Converges"): "violated", (FIXED, "Converges"): "holds"}, [FIXED])
    assert dec["deployed"]["verdict"] == REFUTED and dec["deployed"]["design"] == "as_built"
    assert dec["fixed"]["verdict"] == CONFIRMED and dec["true_of"] == ["as_built_fixed"]
    # EveryoneSees decides "bot and all users see message" where the design has the tab view
    sees = next(c for c in CLAIMS if c.id == "everyone-sees")
    v = {
        ("seed", "Converges"): "violated",
        ("seed", "EveryoneSees"): NOT_APPLICABLE,
        (DEPLOYED, "Converges"): "violated",
        (DEPLOYED, "EveryoneSees"): "violated",
        (FIXED, "Converges"): "holds",
        (FIXED, "EveryoneSees"): "holds",
    }
    dec = decide(sees, v)
    assert [b["property"] for b in dec["post_mortem"]["by"]] == ["Converges"]
    assert [b["property"] for b in dec["deployed"]["by"]] == ["Converges", "EveryoneSees"]
    assert dec["fixed"]["verdict"] == CONFIRMED
    v[(FIXED, "EveryoneSees")] = "violated"
    assert decide(sees, v)["fixed"]["verdict"] == REFUTED


def test_survives_refresh_is_decided_where_a_reload_is_the_only_difference():
    refresh = next(c for c in CLAIMS if c.id == "survives-refresh")
    assert (refresh.deployed_on, refresh.control) == (REFRESH, REFRESH_CONTROL)
    # the two designs differ by the reload flag alone, whatever flags the preset gains
    flags = lambda d: Config.make(tabs=1, variants=d).variants  # noqa: E731
    assert flags(REFRESH) - flags(REFRESH_CONTROL) == {"reload"} and flags(REFRESH_CONTROL) < flags(REFRESH)
    assert flags(REFRESH) == flags("as_built") | {"atomic_cache", "dedupe", "full_poll"}
    v = {
        (d, p): "holds"
        for d in (REFRESH, REFRESH_CONTROL, FIXED)
        for p in ("Converges", "PendingDrains", "EveryoneSees")
    }
    v[(REFRESH, "Converges")] = "violated"
    dec = decide(refresh, v, designs=[REFRESH, REFRESH_CONTROL, FIXED, "seed"])
    assert dec["post_mortem"]["verdict"] == NOT_MODELLED  # the post-mortem design has no reloads
    assert dec["deployed"]["verdict"] == REFUTED and dec["deployed"]["design"] == REFRESH
    assert [b["property"] for b in dec["deployed"]["by"]] == ["Converges"]
    assert dec["control"]["verdict"] == CONFIRMED  # the same design without reloads: all hold
    assert dec["fixed"]["verdict"] == CONFIRMED
    assert dec["true_of"] == [FIXED]


def test_a_bound_the_model_does_not_check_is_not_confirmed():
    cycle = next(c for c in CLAIMS if c.id == "one-poll-cycle")
    v = {
        (FIXED, "Converges"): "holds",
        (FIXED, "HealsTerminate"): "holds",
        ("seed", "Converges"): "violated",
        ("seed", "HealsTerminate"): NOT_APPLICABLE,
        (DEPLOYED, "Converges"): "holds",
        (DEPLOYED, "HealsTerminate"): "violated",
    }
    dec = decide(cycle, v)
    assert dec["post_mortem"]["verdict"] == REFUTED  # never healed is not healed in one cycle
    assert [b["property"] for b in dec["post_mortem"]["by"]] == ["Converges"]
    assert dec["deployed"]["verdict"] == REFUTED  # heals that never stop
    assert [b["property"] for b in dec["deployed"]["by"]] == ["HealsTerminate"]
    assert dec["fixed"]["verdict"] == MEASURED  # healed, with bounded heals; the time is measured only

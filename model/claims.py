"""The post-mortem's claims (docs/post-mortem.md), as data, and how each is decided.

A claim is quoted briefly in the post-mortem's words. It names the checks that decide it: a
property of a design and the verdict that would make the claim true (most claims are true when
a property holds; "optimistic locking is still not 100%" is true only if the atomic design's
``Converges`` were violated). The verdict is never written here: :func:`decide` computes it from
the verdicts a run found. Claims the model cannot decide say why (what is measured instead,
or which part of SPEC §6 is not modelled yet).

"The post-mortem design" is the seed design; "the app as deployed" adds the shared pending
list the real tabs used (``shared_pending``, SPEC §5).

    >>> [c.id for c in CLAIMS][:3]
    ['before-after', 'success-100', 'one-poll-cycle']
    >>> decide(CLAIMS[1], {("seed", "Converges"): "violated"})["post_mortem"]["verdict"]
    'refuted'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The design the post-mortem describes and the app as its tabs really ran (SPEC §5).
POST_MORTEM = "seed"
DEPLOYED = "shared_pending"

#: What a claim's verdict can be.
CONFIRMED, REFUTED, MEASURED, NOT_MODELLED, UNDECIDED = (
    "confirmed",
    "refuted",
    "measured",
    "not modelled",
    "not run",
)
#: The status of a property a design does not decide (PendingDrains with keep_verifying).
NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class Check:
    """The claim is true of ``design`` iff ``prop``'s verdict there is ``true_if``."""

    prop: str
    true_if: str = "holds"


@dataclass(frozen=True)
class Claim:
    """One claim of the post-mortem (``quote`` is its wording, shortened, each quoted piece
    verbatim from docs/post-mortem.md's table)."""

    id: str
    quote: str
    checks: tuple[Check, ...] = ()
    measured: str = ""
    command: str = ""
    not_modelled: str = ""
    note: str = ""
    #: quoted pieces, each found verbatim in docs/post-mortem.md (a test keeps them there)
    pieces: tuple[str, ...] = field(default=())


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "before-after",
        'Before the fix, "7/8 messages succeeded, 1/8 failed silently"; after it, "8/8 visible after self-heal"',
        checks=(Check("Converges"),),
        measured="the race is real: 22 of 40 acknowledged messages missing from the cache right after "
        "posting, over 5 runs of 8 tabs (the real worker, SQLite, 4 processes)",
        command="kvheal stress --tabs 8 --runs 5",
        note='"8/8 after" is convergence: every acknowledged message ends up in the cache for good.',
        pieces=("7/8 messages succeeded, 1/8 failed silently", "8/8 visible after self-heal"),
    ),
    Claim(
        "success-100",
        '"Success rate: 100%", "100% effective"',
        checks=(Check("Converges"),),
        command="kvheal check --tabs 2 --property Converges",
        pieces=("Success rate: 100%", "100% effective"),
    ),
    Claim(
        "one-poll-cycle",
        '"heals within one poll cycle (~5-7 seconds)"',
        checks=(Check("Converges"),),
        measured="every missing message healed within 3 polls at 8 tabs (stress runs); no bound is "
        "guaranteed: a heal is itself a racing read-modify-write",
        command="kvheal check --tabs 2 --property Converges",
        note="A message that is never healed is not healed within one cycle; the model has no "
        "clock, so a bound in seconds is measured, not checked.",
        pieces=("heals within one poll cycle (~5-7 seconds)",),
    ),
    Claim(
        "everyone-sees",
        '"Fixes for everyone - cache updated, bot and all users see message"',
        checks=(Check("Converges"),),
        not_modelled="the tabs' lagging cursor (SPEC §6): a message healed late is never shown to a "
        "tab that polled past it",
        command="kvheal check --tabs 2 --property Converges",
        note="The bot reads the whole cache, so it sees a message iff the cache converges.",
        pieces=("Fixes for everyone - cache updated, bot and all users see message",),
    ),
    Claim(
        "survives-refresh",
        '"Survives refresh - localStorage persists pending list"',
        not_modelled="reloads and the IndexedDB list an id is checked against after one (SPEC §6)",
        pieces=("Survives refresh - localStorage persists pending list",),
    ),
    Claim(
        "no-lost-messages",
        '"No lost messages"',
        checks=(Check("Converges"), Check("PendingDrains")),
        command="kvheal check --tabs 2",
        note="Lost for good from the cache (Converges), or dropped from the pending lists while "
        "missing (PendingDrains).",
        pieces=("No lost messages",),
    ),
    Claim(
        "no-backoff",
        '"No backoff needed - poll interval IS the rate limiting"',
        measured="every poll of every tab heals every missing id, unlimited; Workers KV accepts one "
        "write per second per key (the author's later audit found constant extra cache "
        "reads and writes)",
        not_modelled="time and KV rate limits",
        pieces=("No backoff needed - poll interval IS the rate limiting",),
    ),
    Claim(
        "locking-not-100",
        'Optimistic locking would be "Complex", "Slower under load", "Still not 100% (tiny race window)"',
        checks=(Check("Converges", true_if="violated"),),
        command="kvheal check --tabs 2 --variant atomic_cache,dedupe; "
        "kvheal prove --all-tabs --variant atomic_cache,dedupe",
        note="Decided on the atomic design with dedupe, the one optimistic locking gives: the claim "
        "is true only if it fails to converge.",
        pieces=("Still not 100% (tiny race window)",),
    ),
)

#: For the locking claim the design under test is the fix, not the post-mortem's.
DESIGN_OF: dict[str, str] = {"locking-not-100": "atomic_cache,dedupe"}


def _decide_on(claim: Claim, design: str, verdicts: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    """The claim's verdict on one design from ``(design, property) -> status``."""
    if not claim.checks:
        verdict = NOT_MODELLED if claim.not_modelled else MEASURED
        return {"design": design, "verdict": verdict, "by": []}
    by = []
    for c in claim.checks:
        status = verdicts.get((design, c.prop))
        if status == NOT_APPLICABLE:  # e.g. PendingDrains with keep_verifying: says nothing
            continue
        by.append(
            {
                "design": design,
                "property": c.prop,
                "status": None if status is None else str(status),
                "true_if": c.true_if,
            }
        )
    bad = [b for b in by if b["status"] in ("holds", "violated") and b["status"] != b["true_if"]]
    if bad:
        return {"design": design, "verdict": REFUTED, "by": bad}
    if not by or any(b["status"] not in ("holds", "violated") for b in by):
        return {"design": design, "verdict": UNDECIDED, "by": by}
    return {"design": design, "verdict": CONFIRMED, "by": by}


def decide(
    claim: Claim, verdicts: Mapping[tuple[str, str], str], designs: Iterable[str] = ()
) -> dict[str, Any]:
    """The claim's verdict for the post-mortem design and for the app as deployed, and the
    designs among ``designs`` (those run) of which it is true, all from ``verdicts``
    (``(design label, property) -> "holds"|"violated"|"unknown"``, labels as
    ``Config.variant_label`` writes them)."""
    design = DESIGN_OF.get(claim.id, POST_MORTEM)
    out = {"id": claim.id, "post_mortem": _decide_on(claim, design, verdicts)}
    if claim.id not in DESIGN_OF:
        out["deployed"] = _decide_on(claim, DEPLOYED, verdicts)
    true_of = []
    if claim.checks and claim.id not in DESIGN_OF:
        for d in designs:
            if _decide_on(claim, d, verdicts)["verdict"] == CONFIRMED:
                true_of.append(d)
    out["true_of"] = true_of
    return out

"""The post-mortem's claims (docs/post-mortem.md), as data, and how each is decided.

A claim is quoted briefly in the post-mortem's words. It names the checks that decide it: a
property of a design and the verdict that would make the claim true (most claims are true when
a property holds; "optimistic locking is still not 100%" is true only if the atomic design's
``Converges`` were violated). The verdict is never written here: :func:`decide` computes it from
the verdicts a run found. Claims the model cannot decide say why (what is measured instead,
or which part of SPEC §6 is not modelled yet).

"The post-mortem design" is the seed design; "the app as deployed" is SPEC §6's preset
``as_built`` (the tabs' clock, lagging cursor and shown sets, what counts as found, one reload
per tab, one failed cache put), and "the fix" is ``as_built_fixed``, the smallest change found
that makes every property hold. A claim about one part of the app can name the design that
isolates that part (``deployed_on``) and a control: the same design without the part, which
should satisfy the claim (``control``).

    >>> [c.id for c in CLAIMS][:3]
    ['before-after', 'success-100', 'one-poll-cycle']
    >>> decide(CLAIMS[1], {("seed", "Converges"): "violated"})["post_mortem"]["verdict"]
    'refuted'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kvheal.flags import PRESETS, variant_label

#: The design the post-mortem describes, the app as deployed (SPEC §6's preset; the shared
#: pending list, ``shared_pending``, is left out of it at tabs 2, see SPEC §6) and its fix.
POST_MORTEM = "seed"
DEPLOYED = "as_built"
FIXED = "as_built_fixed"
#: The as-deployed app with its cache races fixed (full_poll, atomic_cache, dedupe), so that only
#: the page-load check of a reload is at stake; and the same without reloads.
REFRESH = "as_built,atomic_cache,dedupe,full_poll"
REFRESH_CONTROL = variant_label((PRESETS[DEPLOYED] | {"atomic_cache", "dedupe", "full_poll"}) - {"reload"})

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
    #: a flag the claim is about: a design without it does not decide the claim (not modelled)
    needs: str = ""
    #: the design the "as deployed" verdict is decided on, when not :data:`DEPLOYED`
    deployed_on: str = ""
    #: the same design without the part the claim is about: it should satisfy the claim
    control: str = ""
    #: what the checks do not say when they hold (the claim is then only measured)
    beyond: str = ""
    #: quoted pieces, each found verbatim in docs/post-mortem.md (a test keeps them there)
    pieces: tuple[str, ...] = field(default=())


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "before-after",
        'Before the fix, "7/8 messages succeeded, 1/8 failed silently"; after it, "8/8 visible after self-heal"',
        checks=(Check("Converges"), Check("EveryoneSees")),
        measured="the race is real: 22 of 40 acknowledged messages missing from the cache right after "
        "posting, over 5 runs of 8 tabs (the real worker, SQLite, 4 processes)",
        command="kvheal stress --tabs 8 --runs 5",
        note='"8/8 after" is convergence: every acknowledged message ends up in the cache for good '
        "(Converges) and, where the model has the tabs' view, on every tab's page (EveryoneSees).",
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
        checks=(Check("Converges"), Check("HealsTerminate")),
        measured="every missing message healed within 3 polls at 8 tabs (stress runs); no bound is "
        "guaranteed: a heal is itself a racing read-modify-write",
        command="kvheal check --tabs 2 --property Converges; "
        "kvheal check --tabs 2 --variant as_built --property HealsTerminate",
        note="A message that is never healed is not healed within one cycle. Where the model has "
        "the tabs' view, HealsTerminate (SPEC §7) bounds what healing costs: a tab sends at most "
        "two heals for one message. The model has no poll schedule, so a bound in seconds is "
        "measured, not checked.",
        beyond="every message is healed (and, with the tabs' view, with at most two heals per tab and "
        "message), but no bound in seconds or poll cycles is checked",
        pieces=("heals within one poll cycle (~5-7 seconds)",),
    ),
    Claim(
        "everyone-sees",
        '"Fixes for everyone - cache updated, bot and all users see message"',
        checks=(Check("Converges"), Check("EveryoneSees")),
        command="kvheal check --tabs 2 --variant as_built --property EveryoneSees",
        note="The bot reads the whole cache, so it sees a message iff the cache converges "
        "(Converges); the users see it iff every tab's page is eventually shown it (EveryoneSees, "
        "decided where the model has the tabs' lagging cursor, SPEC §6).",
        pieces=("Fixes for everyone - cache updated, bot and all users see message",),
    ),
    Claim(
        "survives-refresh",
        '"Survives refresh - localStorage persists pending list"',
        checks=(Check("Converges"), Check("PendingDrains"), Check("EveryoneSees")),
        not_modelled="reloads (the post-mortem design has none; the reload flag, SPEC §6)",
        needs="reload",
        deployed_on=REFRESH,
        control=REFRESH_CONTROL,
        command=f"kvheal check --tabs 2 --variant {REFRESH}",
        note="Decided on the app as deployed with its cache races fixed, so that a failure is the "
        "refresh's: after a reload a pending id counts as found when the page-load list from "
        "IndexedDB has it, which is not the cache. The control is the same design without "
        "reloads.",
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
        checks=(Check("HealsTerminate"),),
        measured="every poll of every tab heals every missing id, unlimited; Workers KV accepts one "
        "write per second per key (the author's later audit found constant extra cache "
        "reads and writes)",
        not_modelled="time and KV rate limits; a bound on heals needs the tabs' view (SPEC §6)",
        needs="tab_view",
        command="kvheal check --tabs 2 --variant as_built --property HealsTerminate",
        note="HealsTerminate (SPEC §7): a tab sends at most two heals for one message. Where it "
        "fails, a tab heals one message for ever, once per poll: the poll interval bounds the "
        "rate of heals, not their number.",
        beyond="heals stop after at most two per tab and message without any backoff, but KV's "
        "write rate limit is not modelled",
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


def _flags(design: str) -> frozenset[str]:
    from .config import Config

    return Config.make(tabs=1, variants="" if design == "seed" else design).variants


def _decide_on(
    claim: Claim, design: str, verdicts: Mapping[tuple[str, str], str], needs: bool = True
) -> dict[str, Any]:
    """The claim's verdict on one design from ``(design, property) -> status`` (with
    ``needs`` false, also on a design without the flag the claim is about: a control)."""
    if not claim.checks or (needs and claim.needs and claim.needs not in _flags(design)):
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
    if claim.beyond:  # the checks hold, but they do not say all the claim says
        return {"design": design, "verdict": MEASURED if claim.measured else NOT_MODELLED, "by": by}
    return {"design": design, "verdict": CONFIRMED, "by": by}


def decide(
    claim: Claim, verdicts: Mapping[tuple[str, str], str], designs: Iterable[str] = ()
) -> dict[str, Any]:
    """The claim's verdict for the post-mortem design, for the app as deployed (on the claim's
    ``deployed_on`` design when it names one, with its ``control`` beside it) and for the fix
    (:data:`FIXED`), and the designs among ``designs`` (those run) of which it is true, all
    from ``verdicts`` (``(design label, property) -> "holds"|"violated"|"unknown"``, labels
    as the report names designs)."""
    design = DESIGN_OF.get(claim.id, POST_MORTEM)
    out = {"id": claim.id, "post_mortem": _decide_on(claim, design, verdicts)}
    if claim.id not in DESIGN_OF:
        out["deployed"] = _decide_on(claim, claim.deployed_on or DEPLOYED, verdicts)
        out["fixed"] = _decide_on(claim, FIXED, verdicts)
        if claim.control:
            out["control"] = _decide_on(claim, claim.control, verdicts, needs=False)
    true_of, in_part = [], []
    if claim.checks and claim.id not in DESIGN_OF:
        for d in designs:
            dec = _decide_on(claim, d, verdicts)
            if dec["verdict"] == CONFIRMED:
                true_of.append(d)
            elif claim.beyond and dec["by"] and all(b["status"] == b["true_if"] for b in dec["by"]):
                in_part.append(d)  # the checks hold; what they do not say is measured only
    out["true_of"] = true_of
    if in_part:
        out["in_part"] = in_part
    return out

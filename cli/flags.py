"""The design flags: one registry for the model, the implementation and the command line.

Each flag is a name, the part of the real system it changes (``worker``, ``client``, or
``fault``: something tests inject), and one sentence. The model's definition says which
actions each flag adds, removes or changes (``kvheal.model.definition.FLAGS``); the worker
and the client read ``part`` to know which flags are theirs; every command parses flag lists
with :func:`parse_variants` and reports a bad one with :class:`ConfigError`. This module
imports nothing of kvheal, so the model and the implementation can both use it and still
never see each other.

Some flags model the app as it was deployed (SPEC §6). A flag the worker and the client do
not implement yet would be marked ``modelled_only``: it would not be in
``WORKER_VARIANTS``/``CLIENT_VARIANTS``/``FAULT_VARIANTS`` and conformance would leave it out
(``IMPL_VARIANTS``). Today the real system has every flag (``MODELLED_ONLY`` is empty). A *preset* names a set of flags (``PRESETS``): ``as_built`` is the app as
deployed, ``as_built_fixed`` the smallest change found that makes every property hold;
:func:`parse_variants` expands them.

    >>> sorted(parse_variants("dedupe, atomic_cache"))
    ['atomic_cache', 'dedupe']
    >>> parse_variants("seed")
    frozenset()
    >>> parse_variants("dedupe,bogus")
    Traceback (most recent call last):
    ...
    kvheal.flags.ConfigError: unknown variant 'bogus'; known variants: dedupe, keep_verifying, atomic_cache, heal_atomic, sweeper, tab_crash, shared_pending, tab_view, found_in_response, reload, full_poll, put_fails, stale_reads, clock_skew, post_fails, repost, bot_scan, ai_channel, bot_claims, claim_cas, fire_and_forget, statuses, bot_replies (presets: as_built, as_built_fixed)
    >>> variant_label(parse_variants("as_built"))
    'tab_view,found_in_response,reload,put_fails,post_fails'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Flag",
    "FLAGS",
    "VARIANTS",
    "WORKER_VARIANTS",
    "CLIENT_VARIANTS",
    "FAULT_VARIANTS",
    "IMPL_VARIANTS",
    "MODELLED_ONLY",
    "PRESETS",
    "REQUIRES",
    "ConfigError",
    "parse_variants",
    "valid_combinations",
    "variant_label",
]


class ConfigError(ValueError):
    """An invalid configuration (model or real system); the message is one line naming the
    problem and, where there is one, the fix."""


@dataclass(frozen=True, slots=True)
class Flag:
    """A design flag: its ``name``, the ``part`` it changes, and what it does;
    ``modelled_only``: the implementation does not have it (yet)."""

    name: str
    part: str
    doc: str
    modelled_only: bool = False


#: Every design flag, in the order traces, reports and tables list them (SPEC §5).
FLAGS: tuple[Flag, ...] = (
    Flag("dedupe", "worker", "every cache writer skips an id already in its snapshot"),
    Flag("keep_verifying", "client", "a tab never drops a pending id: it keeps checking and healing"),
    Flag("atomic_cache", "worker", "every cache update is one atomic step (compare-and-swap loop)"),
    Flag("heal_atomic", "worker", "only the heal's cache update is atomic; posts still read-modify-write"),
    Flag("sweeper", "worker", "a server-side reconciler re-adds stored ids the cache lacks"),
    Flag("tab_crash", "fault", "a tab may die at any time (injected by tests)"),
    Flag("shared_pending", "client", "one pending list for all tabs of a browser, read-modify-written"),
    # SPEC §6, the app as deployed (the real system has every one of them)
    Flag(
        "tab_view",
        "client",
        "time and the tab's view: a clock, message timestamps, a lagging cursor "
        "per tab, the set of messages each tab has shown",
    ),
    Flag(
        "found_in_response",
        "client",
        "a pending id counts as found if it is in the poll's response "
        "or in the page-load snapshot, not in the cache",
    ),
    Flag(
        "reload",
        "client",
        "a tab may reload once: the cursor restarts at the load time, the shown "
        "set starts over, the page-load snapshot is retaken",
    ),
    Flag(
        "full_poll",
        "client",
        "a poll returns the whole cache (no cursor), as the bot reads it",
    ),
    Flag(
        "put_fails",
        "fault",
        "one cache put may fail (KV's write limit) while the request still answers success",
    ),
    Flag(
        "stale_reads",
        "fault",
        "a cache read elsewhere may be served the value before the last write, until the clock ticks",
    ),
    Flag(
        "clock_skew",
        "fault",
        "the last tab's clock is one lag behind the others (its timestamps and its cursor)",
    ),
    Flag(
        "post_fails",
        "fault",
        "a POST may fail after put comment:<id> (the message is stored, the client drops it)",
    ),
    Flag(
        "repost",
        "fault",
        "a client posts an id that already exists (it resends a failed POST with the same id)",
    ),
    Flag(
        "bot_scan",
        "worker",
        "the bot's pending scan reads the cache and writes back the array it read (statuses patched)",
    ),
    Flag(
        "ai_channel",
        "client",
        "the last tab's page shows the AI channel: its polls ask for AI messages only (tabs post human ones)",
    ),
    Flag(
        "bot_claims",
        "worker",
        "two overlapping bot polls claim each cached message with a plain get then put of its key",
    ),
    Flag(
        "claim_cas",
        "worker",
        "a claim is one compare-and-swap of the message's key (the fix of bot_claims)",
    ),
    Flag(
        "fire_and_forget",
        "client",
        "heals are sent without waiting for the previous one: two heals of one id may be in flight",
    ),
    Flag(
        "statuses",
        "worker",
        "a status per message in its key and in each cache copy; the bot completes messages, its scan patches copies",
    ),
    Flag(
        "bot_replies",
        "worker",
        "the bot posts an AI reply, keeps it in an in-memory list to verify against the whole cache "
        "(healing it if missing), and may restart, forgetting the list",
    ),
)

VARIANTS: tuple[str, ...] = tuple(f.name for f in FLAGS)
#: the flags only the model has (SPEC §6); conformance tests leave them out
MODELLED_ONLY = frozenset(f.name for f in FLAGS if f.modelled_only)
#: the flags the implementation (worker, client, fault injection) has
IMPL_VARIANTS: tuple[str, ...] = tuple(f.name for f in FLAGS if not f.modelled_only)
WORKER_VARIANTS = frozenset(f.name for f in FLAGS if f.part == "worker" and not f.modelled_only)
CLIENT_VARIANTS = frozenset(f.name for f in FLAGS if f.part == "client" and not f.modelled_only)
FAULT_VARIANTS = frozenset(f.name for f in FLAGS if f.part == "fault" and not f.modelled_only)

#: Named sets of flags a variant list may use (SPEC §6): the app as deployed, as far as the
#: model has it, and the smallest change found that makes every §7 property hold.
PRESETS: dict[str, frozenset[str]] = {
    "as_built": frozenset({"tab_view", "found_in_response", "reload", "put_fails", "post_fails"}),
    # the whole cache polled, an atomic deduplicating update, and no page-load snapshot in the
    # pending check (found_in_response off: with full_poll the response is the cache)
    "as_built_fixed": frozenset(
        {"tab_view", "reload", "put_fails", "post_fails", "full_poll", "atomic_cache", "dedupe"}
    ),
}

#: Combinations that make no sense, each with the reason (checked by :func:`parse_variants`).
CONFLICTS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"atomic_cache", "heal_atomic"}), "heal_atomic is implied by atomic_cache; give one of them"),
)

#: Flags that need another flag (the tab's view of SPEC §6), checked by :func:`parse_variants`.
REQUIRES: dict[str, str] = {
    "found_in_response": "tab_view",
    "reload": "tab_view",
    "full_poll": "tab_view",
    "stale_reads": "tab_view",
    "clock_skew": "tab_view",
    "repost": "post_fails",
    "ai_channel": "tab_view",
    "claim_cas": "bot_claims",
}


def parse_variants(spec: str | Iterable[str] | None, known: Iterable[str] = VARIANTS) -> frozenset[str]:
    """The flags of a comma-separated list (empty, ``seed`` or None: the seed design) or of an
    iterable; :class:`ConfigError` for an unknown flag, an empty entry, or a conflict."""
    if spec is None:
        return frozenset()
    if isinstance(spec, str):
        text = spec.strip()
        if text in ("", "seed"):
            return frozenset()
        items = [p.strip() for p in text.split(",")]
        if any(p == "" for p in items):
            raise ConfigError(f"empty flag in variant list {spec!r}")
    else:
        items = [str(p).strip() for p in spec]
    flags = frozenset(items)
    known = tuple(known)
    presets = {n: p for n, p in PRESETS.items() if p <= set(known)}
    flags = frozenset().union(*(presets.get(f, {f}) for f in flags))
    unknown = sorted(flags - set(known))
    if unknown:
        more = f" (presets: {', '.join(presets)})" if presets else ""
        raise ConfigError(f"unknown variant {unknown[0]!r}; known variants: {', '.join(known)}{more}")
    for combo, why in CONFLICTS:
        if combo <= flags:
            raise ConfigError(why)
    for flag, needs in REQUIRES.items():
        if flag in flags and needs in known and needs not in flags:
            raise ConfigError(f"{flag} needs {needs}; add it to the variant list")
    return flags


def valid_combinations(known: Iterable[str] = VARIANTS) -> list[frozenset[str]]:
    """Every combination of flags that :func:`parse_variants` accepts, smallest first."""
    from itertools import combinations

    known = tuple(known)
    out = []
    for r in range(len(known) + 1):
        for combo in combinations(known, r):
            flags = frozenset(combo)
            if not any(c <= flags for c, _ in CONFLICTS) and all(
                f not in flags or n not in known or n in flags for f, n in REQUIRES.items()
            ):
                out.append(flags)
    return out


def variant_label(flags: Iterable[str], known: Iterable[str] = VARIANTS) -> str:
    """The flags in registry order joined by commas, or ``seed`` for none."""
    flags = set(flags)
    return ",".join(v for v in known if v in flags) or "seed"

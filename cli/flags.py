"""The design flags: one registry for the model, the implementation and the command line.

Each flag is a name, the part of the real system it changes (``worker``, ``client``, or
``fault``: something tests inject), and one sentence. The model's definition says which
actions each flag adds, removes or changes (``kvheal.model.definition.FLAGS``); the worker
and the client read ``part`` to know which flags are theirs; every command parses flag lists
with :func:`parse_variants` and reports a bad one with :class:`ConfigError`. This module
imports nothing of kvheal, so the model and the implementation can both use it and still
never see each other.

    >>> sorted(parse_variants("dedupe, atomic_cache"))
    ['atomic_cache', 'dedupe']
    >>> parse_variants("seed")
    frozenset()
    >>> parse_variants("dedupe,bogus")
    Traceback (most recent call last):
    ...
    kvheal.flags.ConfigError: unknown variant 'bogus'; known variants: dedupe, keep_verifying, atomic_cache, heal_atomic, sweeper, tab_crash, shared_pending
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Flag", "FLAGS", "VARIANTS", "WORKER_VARIANTS", "CLIENT_VARIANTS", "FAULT_VARIANTS",
           "ConfigError", "parse_variants", "valid_combinations", "variant_label"]


class ConfigError(ValueError):
    """An invalid configuration (model or real system); the message is one line naming the
    problem and, where there is one, the fix."""


@dataclass(frozen=True, slots=True)
class Flag:
    """A design flag: its ``name``, the ``part`` it changes, and what it does."""

    name: str
    part: str
    doc: str


#: Every design flag, in the order traces, reports and tables list them (SPEC §5).
FLAGS: tuple[Flag, ...] = (
    Flag("dedupe", "worker", "every cache writer skips an id already in its snapshot"),
    Flag("keep_verifying", "client", "a tab never drops a pending id: it keeps checking and healing"),
    Flag("atomic_cache", "worker", "every cache update is one atomic step (compare-and-swap loop)"),
    Flag("heal_atomic", "worker", "only the heal's cache update is atomic; posts still read-modify-write"),
    Flag("sweeper", "worker", "a server-side reconciler re-adds stored ids the cache lacks"),
    Flag("tab_crash", "fault", "a tab may die at any time (injected by tests)"),
    Flag("shared_pending", "client", "one pending list for all tabs of a browser, read-modify-written"),
)

VARIANTS: tuple[str, ...] = tuple(f.name for f in FLAGS)
WORKER_VARIANTS = frozenset(f.name for f in FLAGS if f.part == "worker")
CLIENT_VARIANTS = frozenset(f.name for f in FLAGS if f.part == "client")
FAULT_VARIANTS = frozenset(f.name for f in FLAGS if f.part == "fault")

#: Combinations that make no sense, each with the reason (checked by :func:`parse_variants`).
CONFLICTS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"atomic_cache", "heal_atomic"}), "heal_atomic is implied by atomic_cache; give one of them"),
)


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
    unknown = sorted(flags - set(known))
    if unknown:
        raise ConfigError(f"unknown variant {unknown[0]!r}; known variants: {', '.join(known)}")
    for combo, why in CONFLICTS:
        if combo <= flags:
            raise ConfigError(why)
    return flags


def valid_combinations(known: Iterable[str] = VARIANTS) -> list[frozenset[str]]:
    """Every combination of flags that :func:`parse_variants` accepts, smallest first."""
    from itertools import combinations

    known = tuple(known)
    out = []
    for r in range(len(known) + 1):
        for combo in combinations(known, r):
            flags = frozenset(combo)
            if not any(c <= flags for c, _ in CONFLICTS):
                out.append(flags)
    return out


def variant_label(flags: Iterable[str], known: Iterable[str] = VARIANTS) -> str:
    """The flags in registry order joined by commas, or ``seed`` for none."""
    flags = set(flags)
    return ",".join(v for v in known if v in flags) or "seed"

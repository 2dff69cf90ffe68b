"""Named strengthening invariants: facts about every reachable state that make SPEC §7's
invariants (and the convergence arguments) inductive.

Each one is a :class:`Strengthening`: a name, one sentence saying why it is true, the
configurations it is stated for, and its formula over a :class:`SymbolicModel` state.
The prover keeps the largest inductive subset of the candidates that apply (Houdini), so a
candidate that is wrong for some variant is dropped there, never assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import z3

from .config import Config
from .definition import heal_bound
from .symbolic import (
    ACKED,
    CACHE_WRITTEN,
    HEAL_CACHE_READ,
    IDLE,
    KEY_READ,
    POST_CACHE_READ,
    SWEEP_IDLE,
    SWEEP_READ,
    UNSENT,
    State,
    SymbolicModel,
    compile_terms,
)


@dataclass(frozen=True, slots=True)
class Strengthening:
    """A candidate invariant: ``name``, one sentence ``why``, and ``formula(sym, s)``."""

    name: str
    why: str
    formula: Callable[[SymbolicModel, State], z3.BoolRef]
    applies: Callable[[SymbolicModel], bool] = lambda sym: True


def _snapshots(sym: SymbolicModel, s: State) -> list[tuple[z3.BoolRef, list[z3.ArithRef]]]:
    """Every snapshot slot with the condition under which its phase holds it."""
    out = []
    M = sym.M
    if not sym.atomic:
        for m in range(M):
            out.append((s[f"post[{m}]"] == POST_CACHE_READ, sym.snap(s, f"postsnap[{m}]")))
    if not (sym.atomic or sym.config.has("heal_atomic")):  # a heal holds a snapshot
        for h in sym.heal_keys:
            k = sym.hk(h)
            out.append((s[f"heal[{k}]"] == HEAL_CACHE_READ, sym.snap(s, f"healsnap[{k}]")))
    if not sym.atomic:
        if sym.sweeper:
            out.append((s["sweep"] == SWEEP_READ, sym.snap(s, "sweepsnap")))
    for t in range(sym.T):
        out.append((s[f"poll[{t}]"], sym.snap(s, f"pollsnap[{t}]")))
    return out


def _all_values(sym: SymbolicModel, s: State) -> list[list[z3.ArithRef]]:
    return [sym.cache(s)] + [snap for _, snap in _snapshots(sym, s)]


def stored_is_posted(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And([s[f"stored[{m}]"] == (s[f"post[{m}]"] != UNSENT) for m in range(sym.M)])


def snapshots_cleared(sym: SymbolicModel, s: State) -> z3.BoolRef:
    parts = [z3.Implies(z3.Not(held), z3.And([c == 0 for c in snap])) for held, snap in _snapshots(sym, s)]
    if sym.sweeper:
        parts += [z3.Implies(s["sweep"] == SWEEP_IDLE, z3.Not(s[f"sweeplist[{j}]"])) for j in range(sym.M)]
    if sym.shared:
        parts += [
            z3.Implies(z3.Not(s[f"lists[{t}]"]), z3.Not(s[f"listsset[{t}][{m}]"]))
            for t in range(sym.T)
            for m in range(sym.M)
        ]
    return z3.And(parts)


def values_fit(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And([z3.Sum(v) <= sym.C for v in _all_values(sym, s)])


def values_from_store(sym: SymbolicModel, s: State) -> z3.BoolRef:
    parts = [z3.Implies(v[j] >= 1, s[f"stored[{j}]"]) for v in _all_values(sym, s) for j in range(sym.M)]
    if sym.sweeper:
        parts += [z3.Implies(s[f"sweeplist[{j}]"], s[f"stored[{j}]"]) for j in range(sym.M)]
    return z3.And(parts)


def values_no_duplicates(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And([c <= 1 for v in _all_values(sym, s) for c in v])


def pending_is_acked(sym: SymbolicModel, s: State) -> z3.BoolRef:
    if sym.shared:
        parts = [z3.Implies(s[f"pending[{m}]"], sym.acked(s, m)) for m in range(sym.M)]
        parts += [
            z3.Implies(s[f"listsset[{t}][{m}]"], sym.acked(s, m)) for t in range(sym.T) for m in range(sym.M)
        ]
        return z3.And(parts)
    return z3.And(
        [z3.Implies(s[f"pending[{t}][{m}]"], sym.acked(s, m)) for t in range(sym.T) for m in sym.own[t]]
    )


def _slots(sym: SymbolicModel) -> tuple[str, ...]:
    """The heal variables: ``heal``, and ``heal2`` (a second heal in flight) with fire_and_forget."""
    return ("heal", "heal2") if sym.config.has("fire_and_forget") else ("heal",)


def heals_are_acked(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And(
        [
            z3.Implies(s[f"{v}[{sym.hk(h)}]"] != IDLE, sym.acked(s, sym.heal_msg(h)))
            for h in sym.heal_keys
            for v in _slots(sym)
        ]
    )


def written_is_cached(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And(
        [
            z3.Implies(z3.Or(s[f"post[{m}]"] == CACHE_WRITTEN, s[f"post[{m}]"] == ACKED), sym.in_cache(s, m))
            for m in range(sym.M)
        ]
    )


def _tabs_messages(sym: SymbolicModel) -> range:
    """The messages a tab posts and tracks: all but the bot's reply (``bot_replies``)."""
    return range(sym.config.tab_messages)


def acked_is_pending(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And(
        [
            z3.Implies(
                z3.And(sym.acked(s, m), sym.alive(s, sym.owner[m])), s[f"pending[{sym.owner[m]}][{m}]"]
            )
            for m in _tabs_messages(sym)
        ]
    )


def key_read_is_stored(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And(
        [
            z3.Implies(s[f"{v}[{sym.hk(h)}]"] >= KEY_READ, s[f"stored[{sym.heal_msg(h)}]"])
            for h in sym.heal_keys
            for v in _slots(sym)
        ]
    )


# ------------------------------------------------ the as-built fix (tab_view, atomic_cache, dedupe)
def _counted(sym: SymbolicModel) -> bool:
    """The ghost counter ``heals`` exists (SPEC §7 HealsTerminate): with the tab's view."""
    return sym.config.has("tab_view")


def _grows(sym: SymbolicModel) -> bool:
    """The cache only grows: one atomic deduplicating update, room for every message, no
    writer that puts back an older value (the bot's scan or the sweeper), no stale read, one
    pending list per tab (the designs the counting candidates are written for)."""
    cfg = sym.config
    return (
        sym.atomic
        and sym.dedupe
        and sym.C >= sym.M
        and not sym.shared
        and not sym.sweeper
        and not cfg.has("stale_reads")
    )


def _put_failed(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return s["put_failed"] if sym.config.has("put_fails") else z3.BoolVal(False)


def _heals(sym: SymbolicModel, s: State, h: object) -> z3.ArithRef:
    return s[f"heals[{sym.hk(h)}]"]


def uncached_write_is_failed_put(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And(
        [
            z3.Implies(
                z3.And(
                    z3.Or(s[f"post[{m}]"] == CACHE_WRITTEN, s[f"post[{m}]"] == ACKED),
                    z3.Not(sym.in_cache(s, m)),
                ),
                _put_failed(sym, s),
            )
            for m in range(sym.M)
        ]
    )


def _busy(sym: SymbolicModel, s: State, h: object) -> z3.ArithRef:
    """How many heals of slot ``h`` are in flight."""
    return z3.Sum([z3.If(s[f"{v}[{sym.hk(h)}]"] != IDLE, 1, 0) for v in _slots(sym)])


def healed_is_cached(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And(
        [
            z3.Implies(_heals(sym, s, h) > _busy(sym, s, h), sym.in_cache(s, sym.heal_msg(h)))
            for h in sym.heal_keys
        ]
    )


def last_heal_polls_see(sym: SymbolicModel, s: State) -> z3.BoolRef:
    bound = heal_bound(sym.config)
    parts = []
    for h in sym.heal_keys:
        m = sym.heal_msg(h)
        if m == sym.config.reply:  # the bot's heals are not counted (heals stays 0)
            continue
        o = sym.owner[m]
        parts.append(
            z3.Implies(z3.And(_heals(sym, s, h) >= bound, s[f"poll[{o}]"]), s[f"pollsnap[{o}][{m}]"] >= 1)
        )
    return z3.And(parts)


def polls_read_the_cache(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And(
        [
            z3.Implies(s[f"pollsnap[{t}][{j}]"] >= 1, sym.in_cache(s, j))
            for t in range(sym.T)
            for j in range(sym.M)
        ]
    )


def verify_is_acked(sym: SymbolicModel, s: State) -> z3.BoolRef:
    r = sym.config.reply
    return z3.Implies(s[f"verify[{r}]"], sym.acked(s, r))


def uncached_ack_is_pending(sym: SymbolicModel, s: State) -> z3.BoolRef:
    return z3.And(
        [
            z3.Implies(
                z3.And(sym.acked(s, m), z3.Not(sym.in_cache(s, m))), s[f"pending[{sym.owner[m]}][{m}]"]
            )
            for m in _tabs_messages(sym)
        ]
    )


#: The candidates, in the order reports list them.
CANDIDATES: tuple[Strengthening, ...] = (
    Strengthening(
        "StoredIsPosted",
        "only PostKey adds to stored and it moves post[m] off Unsent for good, so "
        "stored[m] holds exactly when post[m] is past Unsent.",
        stored_is_posted,
    ),
    Strengthening(
        "SnapshotsCleared",
        "every step that leaves a phase holding a snapshot (or a list) clears it, so a "
        "snapshot variable is empty unless its phase holds it.",
        snapshots_cleared,
    ),
    Strengthening(
        "ValuesFit",
        "add and the sweeper trim to C entries and every snapshot is a copy of the "
        "cache, so the cache and every snapshot hold at most C entries.",
        values_fit,
    ),
    Strengthening(
        "ValuesFromStore",
        "ids enter a cache value only from a stored key (PostWrite after PostKey, a heal "
        "after reading the key, the sweeper from its listing of stored keys), and "
        "snapshots are copies of cache values, so every id in the cache, a snapshot or "
        "the sweeper's listing is stored.",
        values_from_store,
    ),
    Strengthening(
        "ValuesNoDuplicates",
        "with dedupe a writer adds an id only when its snapshot lacks it, and snapshots "
        "are copies of the cache, so no cache value anywhere repeats an id.",
        values_no_duplicates,
        lambda sym: sym.dedupe,
    ),
    Strengthening(
        "PendingIsAcked",
        "ids enter a pending list (or a list being written back) only at PostAck, so "
        "every pending id is acknowledged.",
        pending_is_acked,
    ),
    Strengthening(
        "HealsAreAcked",
        "a heal is requested only for a pending id, which is acknowledged, so every "
        "busy heal is for an acknowledged message.",
        heals_are_acked,
    ),
    Strengthening(
        "KeyReadIsStored",
        "HealKey moves past Requested only when the key is stored, and stored never shrinks.",
        key_read_is_stored,
    ),
    Strengthening(
        "WrittenIsCached",
        "with an atomic, deduplicating cache update and room for every message, the "
        "cache only grows, so a message whose post wrote the cache stays in it.",
        written_is_cached,
        # a failed cache put (put_fails) leaves a written message out of the cache
        lambda sym: sym.atomic and sym.dedupe and sym.C >= sym.M and not sym.config.has("put_fails"),
    ),
    Strengthening(
        "AckedIsPending",
        "with keep_verifying a tab never drops an id, so an acknowledged message of a "
        "live tab is in its pending list.",
        acked_is_pending,
        lambda sym: sym.keep_verifying and not sym.shared,
    ),
    Strengthening(
        "UncachedWriteIsFailedPut",
        "a message past its cache update (CacheWritten or Acked) went through PostCache (its id "
        "is in the cache, which only grows) or PostCacheFail (which set put_failed for good), so "
        "such an id missing from the cache means the one failed put has happened.",
        uncached_write_is_failed_put,
        lambda sym: _counted(sym) and _grows(sym),
    ),
    Strengthening(
        "HealedIsCached",
        "a heal counted and no longer in flight has ended; a counted heal is for a pending, so "
        "acknowledged and stored, id: HealKey finds its key, and the heal ends by writing its id "
        "(HealCache) or by failing its put, which it can only do while put_failed is false, when "
        "the id is already cached (UncachedWriteIsFailedPut); the cache only grows. So a message "
        "with more heals counted than in flight is cached.",
        healed_is_cached,
        lambda sym: _counted(sym) and _grows(sym),
    ),
    Strengthening(
        "LastHealPollsSee",
        "the heal that brings the count to the bound (2; 3 with fire_and_forget) is counted when "
        "the slots hold fewer heals than that, so one has ended and the id is cached "
        "(HealedIsCached); the poll that counted it has ended, and every later poll reads a cache "
        "holding the id, so no poll of the owner holds a value without it: a heal past the bound "
        "is never sent (HealsTerminate).",
        last_heal_polls_see,
        lambda sym: _counted(sym) and _grows(sym),
    ),
    Strengthening(
        "PollsReadTheCache",
        "a poll's snapshot is the cache it read, and the cache only grows, so every id in a poll "
        "snapshot is in the cache.",
        polls_read_the_cache,
        lambda sym: _counted(sym) and _grows(sym),
    ),
    Strengthening(
        "UncachedAckIsPending",
        "PostAck puts the id in its owner's pending list (no tab dies), and PollDone drops only "
        "ids in its snapshot, which are cached for good (PollsReadTheCache), so an acknowledged "
        "id missing from the cache is still pending.",
        uncached_ack_is_pending,
        lambda sym: _counted(sym) and _grows(sym) and not sym.tab_crash,
    ),
    Strengthening(
        "VerifyIsAcked",
        "the bot's reply joins its list to verify only at its PostAck (bot_replies), so a reply "
        "on the list is acknowledged (and a heal the bot requests, HealsAreAcked, is for one).",
        verify_is_acked,
        lambda sym: sym.config.reply is not None,
    ),
)


def candidates_for(sym: SymbolicModel) -> list[Strengthening]:
    """The candidates stated for this configuration."""
    return [c for c in CANDIDATES if c.applies(sym)]


def failing_on_reachable(config: Config, cands: list[Strengthening] | None = None) -> dict[str, dict | None]:
    """For each candidate (default: those stated for ``config``), the first reachable state of
    the explicit model (breadth-first) that falsifies it, as a view, or None when every
    reachable state satisfies it: the check to make before handing a new candidate to z3.

    The formulas are evaluated compiled (:func:`~kvheal.model.symbolic.compile_terms`) on each
    state's z3 encoding; the encoding of each of the kernel's slots is computed once per code.
    """
    from .core import KVHealModel  # the explicit model: only this check needs it

    model = KVHealModel(config)
    sym = SymbolicModel(config)
    cands = candidates_for(sym) if cands is None else cands
    names = [tuple(sym.variable_names(var, idx)) for var, idx in model.kernel.slot_var]
    s = sym.fresh("reach")
    fn = compile_terms({c.name: c.formula(sym, s) for c in cands}, {n: s[n] for n in sym.var_names})
    groups: list[dict[int, tuple]] = [{} for _ in names]
    out: dict[str, dict | None] = {c.name: None for c in cands}
    (s0,) = model.init_states()
    seen, queue = {s0}, [s0]
    for st in queue:
        for _, nxt in model.successors(st):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
        vals: dict[str, int | bool] = {}
        if all(code in groups[slot] for slot, code in enumerate(st)):
            for slot, code in enumerate(st):
                vals.update(zip(names[slot], groups[slot][code]))
        else:
            vals = sym.values_of(model.view(st))
            for slot, code in enumerate(st):
                groups[slot][code] = tuple(vals[n] for n in names[slot])
        for name, ok in fn(vals).items():
            if not ok and out[name] is None:
                out[name] = model.view(st)
    return out

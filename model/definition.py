"""kvheal's model, written once: SPEC §3's state, §4's actions, §5's flags, §7's properties.

Every engine reads this module: the explicit checker compiles it (:mod:`kvheal.model.kernel`),
the z3 engines translate it (:mod:`kvheal.model.symbolic`), conformance maps the real
system's KV calls to its actions. Each action is a few lines: a guard and the variables it
writes; ``x`` is the engine's value algebra (:mod:`kvheal.model.dsl` lists what it offers).

Readings of SPEC where it leaves a choice are in SPEC §3-5 (docs/spec.md); in short:
``stored`` is derived from ``post``; the atomic steps are ``PostCache``, ``HealCache``,
``SweepCache``; a sweeper write with nothing missing writes nothing; ``shared_pending`` has
one list and a per-tab list slot ``lists[t]`` written back by ``PendingWrite(t)``.

The app as deployed (SPEC §6) adds time and the tab's view (``tab_view``: ``clock``, ``ts[m]``,
``cursor[t]``, ``shown[t]``, ``Tick``), the as-built pending check (``found_in_response``), one
reload per tab (``reload``: ``Reload(t)``, ``frozen[t]``), one failed cache put
(``put_fails``: ``PostWriteFail``, ``HealWriteFail``, ...), reads served the previous value
(``stale_reads``: ``prev``, ``PollReadStale``, ...), the fix's whole-cache poll
(``full_poll``), a POST failing after its key (``post_fails``: the phase ``Failed``,
``PostFail``), a resend of the same id (``repost``: ``PostAgain``) and a second heal of an id in
flight (``fire_and_forget``: ``heal2``, ``HealKey2``, ...) and the bot's pending scan as a cache
writer (``bot_scan``: ``scan``, ``ScanRead``, ``ScanWrite``) and a tab on the AI channel
(``ai_channel``), the bot's claims (``bot_claims``: two overlapping polls, ``claim``,
``claim2``, ``claimed``, the ghost ``replies``; ``claim_cas``) and statuses (``statuses``: ``done``,
a final-or-open status per cache copy, ``Complete``, ``ScanPatch``, the as-built scan's key
reads ``ScanKeys`` and its put patching the first copy of each id; ``StatusesConverge``) and the
bot's reply (``bot_replies``: one more message, id T·K, posted by the bot through the post
actions, ``verify``, ``BotVerify``, ``BotRestart``); their
readings are in SPEC §6. With the tab's view three more properties are decided (SPEC §7): ``HealOnlyMissing``,
``HealsTerminate`` (over the ghost count ``heals``) and, with the sweeper, ``ScanWritesNothing``;
with ``bot_claims``, ``ClaimedOnce``.
"""

from __future__ import annotations

from kvheal.flags import ConfigError

from .dsl import (
    ActionDef,
    BoolType,
    CacheType,
    Definition,
    Derived,
    Enum,
    FlagDef,
    IdsType,
    IntType,
    Phase,
    PropertyDef,
    Var,
)

CACHE = CacheType()
MSGS = IdsType("m")

#: SPEC §6's time domain: the clock runs 0..HORIZON (then stays), a poll moves the cursor to
#: ``clock - LAG + 1`` (a poll returns timestamps >= cursor, i.e. > clock - LAG). One tick is
#: the lag (6 s in the app): the smallest domain in which a cursor can pass a message.
HORIZON = 1
LAG = 1
TIME = IntType(0, HORIZON)
#: SPEC §7's HealsTerminate: a tab sends at most this many heals for one message (one more
#: with ``fire_and_forget``: see :func:`heal_bound`). The ghost counter ``heals`` stops one
#: above the bound, so the state space stays finite.
HEAL_BOUND = 2

POST = Enum(
    "Post",
    Phase("Unsent"),
    Phase("KeyWritten"),
    Phase("CacheRead", (("snap", CACHE),)),
    Phase("CacheWritten"),
    Phase("Acked"),
    Phase("Failed"),
)
HEAL = Enum(
    "Heal", Phase("Idle"), Phase("Requested"), Phase("KeyRead"), Phase("CacheRead", (("snap", CACHE),))
)
POLL = Enum("Poll", Phase("Idle"), Phase("Read", (("snap", CACHE),)))
SWEEP = Enum(
    "Sweep",
    Phase("Idle"),
    Phase("Listed", (("list", MSGS),)),
    Phase("Read", (("list", MSGS), ("snap", CACHE))),
)
LIST = Enum("List", Phase("Idle"), Phase("Write", (("set", MSGS),)))
#: the pending scan: read the cache; with ``statuses`` then read the keys it will patch from
#: (``found``: the ids whose first copy it read open and whose key it read final)
SCAN = Enum(
    "Scan",
    Phase("Idle"),
    Phase("Read", (("snap", CACHE),)),
    Phase("Keyed", (("snap", CACHE), ("found", MSGS))),
)
#: one bot poll's claim of a message: not yet, read the key and found it unclaimed, finished
CLAIM = Enum("Claim", Phase("Idle"), Phase("Free"), Phase("Done"))


def _has(flag: str):
    return lambda cfg: cfg.has(flag)


def _lacks(flag: str):
    return lambda cfg: not cfg.has(flag)


def _both(a, b):
    return lambda cfg: a(cfg) and b(cfg)


def _heal_is_atomic(cfg):
    """The heal's cache update is one step with atomic_cache, and with heal_atomic alone."""
    return cfg.has("atomic_cache") or cfg.has("heal_atomic")


def _own(cfg, t):
    return [m for m in range(cfg.messages) if cfg.owner(m) == t]


def _heal_slots(cfg):
    M = cfg.messages
    if cfg.has("shared_pending"):
        return [(t, m) for t in range(cfg.tabs) for m in range(M)]
    return list(range(M))


def _view(cfg):
    return cfg.has("tab_view")


def _cursor(cfg):
    return cfg.has("tab_view") and not cfg.has("full_poll")


def _ordered(cfg):
    """Whether the cache's order is by timestamp, then id (SPEC §6), rather than by id: with the
    tab's view timestamps come from the clock, and a full cache drops its oldest entry. The
    order decides something only when a duplicate makes a cache of cap >= M overflow, so only
    without ``dedupe``; there the timestamps are kept even with ``full_poll``."""
    return cfg.has("tab_view") and not cfg.has("dedupe")


def _stamped(cfg):
    """Whether a message's timestamp is state (``ts``): read by the cursor or by the order."""
    return _cursor(cfg) or _ordered(cfg)


def _late(cfg, s, x):
    """The ids stamped at the later time (the clock has two values, HORIZON 1), which a full
    cache keeps over the others (``add(m, late)``); None when the order is by id."""
    if not _ordered(cfg):
        return None
    return x.let(x.ids("m", {m: s.ts[m] >= HORIZON for m in range(cfg.messages)}))


def _statuses(cfg):
    """Whether messages have statuses (SPEC §6 ``statuses``): the key's and each cache copy's."""
    return cfg.has("statuses")


def _frozen(cfg):
    return cfg.has("found_in_response") and cfg.has("reload")


def heal_bound(cfg):
    """HealsTerminate's bound: a first heal, and one sent by a poll that read the cache before
    the first heal landed; with ``fire_and_forget`` one more (two heals of an id in flight)."""
    return HEAL_BOUND + (1 if cfg.has("fire_and_forget") else 0)


def _counted(cfg):
    """The ghost counter of heals sent (``heals``), read by HealsTerminate: with the tab's view."""
    return cfg.has("tab_view")


def _post_unused(cfg):
    """Post phases this configuration never reaches: the separate read with an atomic update,
    the failed POST without ``post_fails``."""
    return (("CacheRead",) if cfg.has("atomic_cache") else ()) + (
        () if cfg.has("post_fails") else ("Failed",)
    )


def _heal_unused(cfg):
    return ("CacheRead",) if _heal_is_atomic(cfg) else ()


def _heal_vars(cfg):
    """The heal variables of one slot: ``heal``, and ``heal2`` (a second heal of the same id in
    flight) with ``fire_and_forget``."""
    return ("heal", "heal2") if cfg.has("fire_and_forget") else ("heal",)


def _browser(cfg, t):
    """The messages tab t's browser posts: its own, or every tab's when the tabs share one
    browser (``shared_pending``: one localStorage, one IndexedDB)."""
    return range(cfg.messages) if cfg.has("shared_pending") else _own(cfg, t)


def channel(cfg, t) -> list[int]:
    """The messages of tab t's channel, which its polls may return and EveryoneSees asks it to
    show: its channel's type. The tabs' messages are human ones, the bot's reply
    (``bot_replies``) an AI one. With ``ai_channel`` the last tab shows the AI channel (the
    reply, or no message without ``bot_replies``) and the others the human one; without it
    every page shows every channel (the implementation's page without a channel)."""
    if not cfg.has("ai_channel"):
        return list(range(cfg.messages))
    if t == cfg.tabs - 1:
        return [] if cfg.reply is None else [cfg.reply]
    return list(range(cfg.tab_messages))


def _replies(cfg):
    """Whether the bot posts a reply and verifies it (SPEC §6 ``bot_replies``)."""
    return cfg.has("bot_replies")


def _is_reply(cfg, m):
    """Whether message m is the bot's reply (no tab posts it, no tab tracks it)."""
    return m == cfg.reply


def _never(x):
    """The guard of an action instance that does not exist for its argument (the bot's reply
    is never completed, claimed or resent)."""
    return x.any([])


def _local_clock(cfg, s, t):
    """Tab t's clock: the clock, or with ``clock_skew`` one lag behind for the last tab."""
    if cfg.has("clock_skew") and t == cfg.tabs - 1:
        return s.clock - 1
    return s.clock


def validate(cfg):
    """Configurations the definition cannot honour: :class:`ConfigError`, one line."""
    if cfg.has("statuses") and cfg.has("bot_scan") and cfg.has("atomic_cache"):
        raise ConfigError(
            "statuses with bot_scan needs the scan's put (no atomic_cache): the as-built scan's "
            "compare-and-swap of the patched array is not modelled"
        )
    if cfg.has("bot_replies") and cfg.has("shared_pending"):
        raise ConfigError(
            "bot_replies with shared_pending is not modelled (the shared list's heal slots are per "
            "tab and message; the bot's reply has no tab)"
        )
    if cfg.has("bot_replies") and cfg.cap < cfg.messages:
        raise ConfigError(
            f"bot_replies needs cap >= tabs*per_tab + 1 = {cfg.messages} (a reply trimmed out of "
            f"the cache, which the bot gives up on, is not modelled); got cap {cfg.cap}"
        )
    if cfg.has("tab_view") and cfg.cap < cfg.messages:
        raise ConfigError(
            f"tab_view needs cap >= tabs*per_tab = {cfg.messages} (Converges and EveryoneSees "
            f"take the newest ids as the newest messages); got cap {cfg.cap}"
        )


def msg_of(h):
    """The message a heal slot is for (slots are ``m``, or ``(t, m)`` with shared_pending)."""
    return h[1] if isinstance(h, tuple) else h


# ---------------------------------------------------------------------------- state (SPEC §3)
# The tables read as tables (one declaration a line or two), not as the formatter would lay them out.
# fmt: off
VARIABLES = [
    Var("cache", CACHE, doc="the value of recent:comments"),
    Var("post", POST, "m", "the worker's handling of the POST of m", unused=_post_unused),
    Var("pending", IdsType("m", universe=_own), "t", "tab t's pending list", when=_lacks("shared_pending")),
    Var("pending", MSGS, doc="the one pending list all tabs share", when=_has("shared_pending")),
    Var("poll", POLL, "t", "tab t's poll: the cache value its GET returned, not yet processed"),
    Var("heal", HEAL, "heal", "the heal request for m (per (t, m) with shared_pending)", unused=_heal_unused),
    Var("heal2", HEAL, "heal", "a second heal request for m in flight (fire_and_forget)",
        when=_has("fire_and_forget"), unused=_heal_unused),
    Var("alive", IdsType("t", view="bools"), doc="the live tabs", when=_has("tab_crash"),
        absent=lambda cfg: frozenset(range(cfg.tabs)), init=lambda cfg, _: frozenset(range(cfg.tabs))),
    Var("sweep", SWEEP, doc="the sweeper's pass", when=_has("sweeper"), absent=lambda cfg: "Idle",
        unused=lambda cfg: ("Read",) if cfg.has("atomic_cache") else ()),
    Var("lists", LIST, "t", "the list value tab t has read-modified and will write back",
        when=_has("shared_pending")),
    Var("clock", TIME, doc="the time, in lags (0..HORIZON)", when=_view),
    Var("ts", TIME, "m",
        "m's timestamp: the poster's clock at PostKey (0 before); read by the cursor and by the "
        "cache's order, so it exists with either (not with full_poll and dedupe)",
        when=_stamped),
    Var("cursor", TIME, "t", "tab t's cursor: a poll returns the messages with timestamp >= it",
        when=_cursor),
    Var("shown", MSGS, "t", "the messages tab t's page has shown since it was loaded", when=_view),
    Var("frozen", IdsType("m", universe=_browser), "t",
        "the page-load snapshot: the ids tab t's browser had posted when the page loaded", when=_frozen),
    Var("reloaded", IdsType("t", view="bools"), doc="the tabs that have reloaded (once each)",
        when=_has("reload")),
    Var("put_failed", BoolType(), doc="a cache put has failed (the write limit; at most once)",
        when=_has("put_fails")),
    Var("scan", SCAN, doc="the bot's pending scan: the cache value it read and will write back",
        when=_both(_has("bot_scan"), _lacks("atomic_cache")),
        unused=lambda cfg: () if _statuses(cfg) else ("Keyed",)),
    Var("claim", CLAIM, "m", "one bot poll's claim of m (get, then put comment:<id>)",
        when=_has("bot_claims"), unused=lambda cfg: ("Free",) if cfg.has("claim_cas") else ()),
    Var("claim2", CLAIM, "m", "an overlapping bot poll's claim of m", when=_has("bot_claims"),
        unused=lambda cfg: ("Free",) if cfg.has("claim_cas") else ()),
    Var("claimed", MSGS, doc="the messages whose key says claimed", when=_has("bot_claims")),
    Var("done", MSGS, doc="the messages whose status key is final (the bot completed them)", when=_statuses),
    Var("verify", IdsType("m", universe=lambda cfg, _: [cfg.reply]),
        doc="the bot's in-memory list of replies to verify (its reply joins at the POST's 200)",
        when=_replies),
    Var("replies", IntType(0, 2), "m", "ghost: the claims of m that succeeded (the bot replies to each)",
        when=_has("bot_claims")),
    Var("heals", IntType(0, HEAL_BOUND + 2), "heal",
        "ghost: the heals sent for m (by tab t with shared_pending), stopping at heal_bound + 1",
        when=_counted),
    Var("prev", CACHE,
        doc="the cache value before its last write, still served elsewhere until the next tick",
        when=_has("stale_reads")),
]
# fmt: on


def _stored(cfg, s, x):
    return x.ids("m", {m: ~s.post[m].is_("Unsent") for m in range(cfg.messages)})


def _acked(cfg, s, x):
    return x.ids("m", {m: s.post[m].is_("Acked") for m in range(cfg.messages)})


# The tables read as tables (one declaration a line or two), not as the formatter would lay them out.
# fmt: off
DERIVED = [
    Derived("stored", MSGS, _stored, "ids whose comment:<id> key exists: only PostKey adds to it"),
    Derived("acked", MSGS, _acked, "the acknowledged ids", view=False),
]
# fmt: on


# ---------------------------------------------------------------------------- actions (SPEC §4)
def cache_write(cfg, s, x, snap, m):
    """What a writer that read ``snap`` puts: ``add(snap, m)``; with ``dedupe``, nothing new
    (the cache keeps its current value) when ``m`` is already in ``snap``. With the tab's view
    the cache orders by timestamp, then id (:func:`_ordered`)."""
    if cfg.has("dedupe"):
        return x.ite(snap.has(m), s.cache, snap.add(m))
    late = _late(cfg, s, x)
    return snap.add(m) if late is None else snap.add(m, late)


def _aged(cfg, s, x, effects):
    """A cache write's effects; with ``stale_reads`` the value it replaces becomes the one a
    read elsewhere may still be served (``prev``), unless the write changes nothing."""
    if cfg.has("stale_reads"):
        new = x.let(effects[s.cache])
        effects[s.cache] = new
        effects[s.prev] = x.ite(new.eq(s.cache), s.prev, s.cache)
    return effects


def PostKey(cfg, s, x, m):
    if _is_reply(cfg, m):  # the bot replies to message 0 once its scan lists it (in the cache)
        effects = {s.post[m]: POST.KeyWritten()}
        if _stamped(cfg):  # stamped with the bot's clock (the worker's time, never skewed)
            effects[s.ts[m]] = s.clock
        return s.post[m].is_("Unsent") & s.cache.has(0), effects
    effects = {s.post[m]: POST.KeyWritten()}
    if cfg.has("tab_view"):  # stamped with the poster's clock; the page shows it at once
        owner = cfg.owner(m)
        if _stamped(cfg):
            effects[s.ts[m]] = _local_clock(cfg, s, owner)
        effects[s.shown[owner]] = s.shown[owner].with_(m)
    return s.post[m].is_("Unsent") & s.alive.has(cfg.owner(m)), effects


def PostRead(cfg, s, x, m):
    return s.post[m].is_("KeyWritten"), {s.post[m]: POST.CacheRead(snap=s.cache)}


def PostWrite(cfg, s, x, m):
    snap = s.post[m].of("CacheRead").snap
    return s.post[m].is_("CacheRead"), _aged(
        cfg, s, x, {s.cache: cache_write(cfg, s, x, snap, m), s.post[m]: POST.CacheWritten()}
    )


def PostCache(cfg, s, x, m):
    return s.post[m].is_("KeyWritten"), _aged(
        cfg, s, x, {s.cache: cache_write(cfg, s, x, s.cache, m), s.post[m]: POST.CacheWritten()}
    )


def PostAck(cfg, s, x, m):
    if _is_reply(cfg, m):  # the bot's reply joins its list of replies to verify
        return s.post[m].is_("CacheWritten"), {s.post[m]: POST.Acked(), s.verify: s.verify.with_(m)}
    owner = cfg.owner(m)
    live = s.alive.has(owner)
    if cfg.has("shared_pending"):  # the owner reads the shared list, to write it back with m
        slot = s.lists[owner]
        return (
            s.post[m].is_("CacheWritten") & (~live | slot.is_("Idle")),
            {s.post[m]: POST.Acked(), slot: x.ite(live, LIST.Write(set=s.pending.with_(m)), slot)},
        )
    mine = s.pending[owner]
    return s.post[m].is_("CacheWritten"), {s.post[m]: POST.Acked(), mine: x.ite(live, mine.with_(m), mine)}


def PollRead(cfg, s, x, t):
    return s.poll[t].is_("Idle") & s.alive.has(t), {s.poll[t]: POLL.Read(snap=s.cache)}


def PollDone(cfg, s, x, t):
    guard, effects, _ = _poll_done(cfg, s, x, t)
    return guard, effects


def _poll_done(cfg, s, x, t):
    """PollDone's guard and effects, and per heal slot of t the condition that it sends a heal
    (read by the properties about heals, SPEC §7)."""
    shared = cfg.has("shared_pending")
    guard = s.poll[t].is_("Read") & s.alive.has(t)
    if shared:
        guard = guard & s.lists[t].is_("Idle")
    effects = {s.poll[t]: POLL.Idle()}
    if cfg.has("tab_view"):
        seen = _poll_view(cfg, s, x, t, effects)
    else:
        seen = x.let(s.poll[t].of("Read").snap.ids())
    pend = s.pending if shared else s.pending[t]
    missing = x.let(pend.minus(seen))
    kept = pend if cfg.has("keep_verifying") else missing
    if shared:
        effects[s.lists[t]] = LIST.Write(set=kept)
        slots = [(t, m) for m in range(cfg.messages)]
    else:
        effects[s.pending[t]] = kept
        slots = _own(cfg, t)
    sends = {}
    for h in slots:  # request a heal for each missing id whose heal is not already busy
        heal, want = s.heal[h], missing.has(msg_of(h))
        effects[heal] = x.ite(want & heal.is_("Idle"), HEAL.Requested(), heal)
        if cfg.has("fire_and_forget"):  # sent without waiting: a second one while the first runs
            heal2 = s.heal2[h]
            effects[heal2] = x.ite(want & ~heal.is_("Idle") & heal2.is_("Idle"), HEAL.Requested(), heal2)
            sends[h] = want & heal2.is_("Idle")  # the second slot is busy only if the first is
        else:
            sends[h] = want & heal.is_("Idle")
        if _counted(cfg):
            count = s.heals[h]
            effects[count] = x.ite(sends[h] & (count <= heal_bound(cfg)), count + 1, count)
    return guard, effects, sends


def _poll_view(cfg, s, x, t, effects):
    """The tab's side of a poll with ``tab_view`` (SPEC §6): the response is the cached
    messages stamped at or after the cursor (the whole cache with ``full_poll``); the page
    shows them; the cursor moves to ``clock - LAG + 1``. Returns what counts as found: the
    cache (the design), or the response and the page-load snapshot (``found_in_response``)."""
    snap = s.poll[t].of("Read").snap
    if cfg.has("full_poll") and len(channel(cfg, t)) == cfg.messages:
        resp = x.let(snap.ids())
    elif cfg.has("full_poll"):
        resp = x.let(x.ids("m", {m: snap.has(m) for m in channel(cfg, t)}))
    else:
        resp = x.let(x.ids("m", {m: snap.has(m) & (s.ts[m] >= s.cursor[t]) for m in channel(cfg, t)}))
        effects[s.cursor[t]] = _local_clock(cfg, s, t) - (LAG - 1)
    effects[s.shown[t]] = s.shown[t].union(resp)
    if not cfg.has("found_in_response"):
        return x.let(snap.ids())
    if _frozen(cfg):
        return x.let(resp.union(s.frozen[t]))
    return resp


def PendingWrite(cfg, s, x, t):
    slot = s.lists[t]
    return slot.is_("Write") & s.alive.has(t), {s.pending: slot.of("Write").set, slot: LIST.Idle()}


def _heal_ends(cfg, s, x, h, v, effects, ends=None):
    """``effects`` plus the heal in slot ``v`` ending (``ends``: when, default always). With
    ``fire_and_forget`` the slots hold the older heal in flight (``heal``) and the newer one
    (``heal2``): when the older ends, the newer becomes the older (the two are the same kind
    of request, so the states where only the second slot is busy would repeat the others)."""
    heal = getattr(s, v)[h]
    if v == "heal" and cfg.has("fire_and_forget"):
        nxt = s.heal2[h]
        effects[heal] = nxt if ends is None else x.ite(ends, nxt, effects.get(heal, heal))
        effects[nxt] = HEAL.Idle() if ends is None else x.ite(ends, HEAL.Idle(), nxt)
    elif ends is None:
        effects[heal] = HEAL.Idle()
    else:
        effects[heal] = x.ite(ends, HEAL.Idle(), effects.get(heal, heal))
    return effects


def HealKey(cfg, s, x, h, v="heal"):
    heal = getattr(s, v)[h]
    found = s.stored.has(msg_of(h))  # 404 otherwise: the heal ends
    return heal.is_("Requested"), _heal_ends(cfg, s, x, h, v, {heal: HEAL.KeyRead()}, ends=~found)


def HealRead(cfg, s, x, h, v="heal"):
    heal = getattr(s, v)[h]
    return heal.is_("KeyRead"), {heal: HEAL.CacheRead(snap=s.cache)}


def HealWrite(cfg, s, x, h, v="heal"):
    heal = getattr(s, v)[h]
    snap = heal.of("CacheRead").snap
    return heal.is_("CacheRead"), _aged(
        cfg, s, x, _heal_ends(cfg, s, x, h, v, {s.cache: cache_write(cfg, s, x, snap, msg_of(h))})
    )


def HealCache(cfg, s, x, h, v="heal"):
    heal = getattr(s, v)[h]
    return heal.is_("KeyRead"), _aged(
        cfg, s, x, _heal_ends(cfg, s, x, h, v, {s.cache: cache_write(cfg, s, x, s.cache, msg_of(h))})
    )


def PostWriteFail(cfg, s, x, m):
    """The post's cache put fails (the write limit); the worker logs it and answers 200."""
    return s.post[m].is_("CacheRead") & ~s.put_failed, {s.post[m]: POST.CacheWritten(), s.put_failed: True}


def PostReadStale(cfg, s, x, m):
    """The post's read of the cache is served an older value (another location's copy)."""
    return s.post[m].is_("KeyWritten"), {s.post[m]: POST.CacheRead(snap=s.prev)}


def HealReadStale(cfg, s, x, h, v="heal"):
    heal = getattr(s, v)[h]
    return heal.is_("KeyRead"), {heal: HEAL.CacheRead(snap=s.prev)}


def PollReadStale(cfg, s, x, t):
    return s.poll[t].is_("Idle") & s.alive.has(t), {s.poll[t]: POLL.Read(snap=s.prev)}


def PostCacheFail(cfg, s, x, m):
    return s.post[m].is_("KeyWritten") & ~s.put_failed, {s.post[m]: POST.CacheWritten(), s.put_failed: True}


def HealWriteFail(cfg, s, x, h, v="heal"):
    """The heal's cache put fails; the heal endpoint still answers success."""
    heal = getattr(s, v)[h]
    return heal.is_("CacheRead") & ~s.put_failed, _heal_ends(cfg, s, x, h, v, {s.put_failed: True})


def HealCacheFail(cfg, s, x, h, v="heal"):
    heal = getattr(s, v)[h]
    return heal.is_("KeyRead") & ~s.put_failed, _heal_ends(cfg, s, x, h, v, {s.put_failed: True})


def _twin(body, v):
    """The same step, of ``body``'s twin variable ``v``: ``heal2``, the second heal in flight
    (``fire_and_forget``), or ``claim2``, the overlapping bot poll (``bot_claims``)."""

    def step(cfg, s, x, arg):
        return body(cfg, s, x, arg, v=v)

    step.__name__ = step.__qualname__ = body.__name__ + "2"
    step.__doc__ = body.__doc__
    return step


def PostFail(cfg, s, x, m):
    """The POST fails after ``put comment:<id>``: before the cache update (the heartbeat put hits
    the write limit and the worker answers 500) or after it (the answer is lost). The message is
    stored; the client removes its optimistic copy and tracks nothing."""
    effects = {s.post[m]: POST.Failed()}
    if cfg.has("tab_view") and not _is_reply(cfg, m):  # the bot has no page
        owner = cfg.owner(m)
        effects[s.shown[owner]] = s.shown[owner].without(m)
    return s.post[m].is_("KeyWritten") | s.post[m].is_("CacheWritten"), effects


def PostAgain(cfg, s, x, m):
    """A client posts an id that already exists: the owner sends its failed POST again, same id
    and timestamp; the worker writes ``comment:<id>`` again and pushes the message again."""
    if _is_reply(cfg, m):  # the bot never resends a reply (a new attempt would have a new id)
        return _never(x), {s.post[m]: POST.KeyWritten()}
    owner = cfg.owner(m)
    effects = {s.post[m]: POST.KeyWritten()}
    if cfg.has("tab_view"):  # shown at once again (optimistic)
        effects[s.shown[owner]] = s.shown[owner].with_(m)
    return s.post[m].is_("Failed") & s.alive.has(owner), effects


def SweepList(cfg, s, x):
    return s.sweep.is_("Idle"), {s.sweep: SWEEP.Listed(list=s.stored)}


def SweepRead(cfg, s, x):
    listed = s.sweep.of("Listed").list
    return s.sweep.is_("Listed"), {s.sweep: SWEEP.Read(list=listed, snap=s.cache)}


def _add_all(cfg, s, x, snap, ids):
    """``snap`` plus each of ``ids`` once, in the cache's order (:func:`_ordered`)."""
    late = _late(cfg, s, x)
    return snap.add_all(ids) if late is None else snap.add_all(ids, late)


def _sweep_write(cfg, s, x, listed, snap):
    missing = x.let(listed.minus(snap.ids()))
    return x.ite(missing.is_empty(), s.cache, _add_all(cfg, s, x, snap, missing))


def SweepWrite(cfg, s, x):
    read = s.sweep.of("Read")
    return s.sweep.is_("Read"), _aged(
        cfg, s, x, {s.cache: _sweep_write(cfg, s, x, read.list, read.snap), s.sweep: SWEEP.Idle()}
    )


def SweepCache(cfg, s, x):
    listed = s.sweep.of("Listed").list
    return s.sweep.is_("Listed"), _aged(
        cfg, s, x, {s.cache: _sweep_write(cfg, s, x, listed, s.cache), s.sweep: SWEEP.Idle()}
    )


def ScanRead(cfg, s, x):
    """The bot's pending scan (``GET /api/queue/pending``): the worker gets the cache. Without
    ``statuses`` its gets of message keys that follow are no step; with it the scan then reads
    the key of the first copy of each id read open (``ScanKeys``), and a cache with no open
    first copy leaves no key to read: the scan has read them all."""
    if _statuses(cfg):
        return s.scan.is_("Idle"), {
            s.scan: x.ite(
                s.cache.open_first().is_empty(),
                SCAN.Keyed(snap=s.cache, found=x.ids("m", {})),
                SCAN.Read(snap=s.cache),
            )
        }
    return s.scan.is_("Idle"), {s.scan: SCAN.Read(snap=s.cache)}


def ScanKeys(cfg, s, x):
    """``statuses`` with ``bot_scan``: the scan gets ``status:<id>`` of the first copy of each
    id it read open and remembers the ids whose key is final (one step: SPEC §6)."""
    snap = s.scan.of("Read").snap
    return s.scan.is_("Read"), {s.scan: SCAN.Keyed(snap=snap, found=_scan_finals(cfg, s, x, snap))}


def ScanWrite(cfg, s, x):
    """The scan puts back the array it read, statuses patched: the ids are the ones it read, so
    whatever reached the cache since is lost; with ``statuses`` the first copy of each id it read
    open whose key it read final (at ``ScanKeys``) is patched, so a completion since the key
    reads is lost too; without it statuses are not modelled. With an atomic cache update the
    patch is a compare-and-swap that keeps the ids: no step of the model."""
    if _statuses(cfg):
        keyed = s.scan.of("Keyed")
        return s.scan.is_("Keyed"), _aged(
            cfg, s, x, {s.cache: keyed.snap.patch_first(keyed.found), s.scan: SCAN.Idle()}
        )
    snap = s.scan.of("Read").snap
    return s.scan.is_("Read"), _aged(cfg, s, x, {s.cache: snap, s.scan: SCAN.Idle()})


def _scan_finals(cfg, s, x, value):
    """The ids a pending scan of ``value`` finds to patch: those whose first copy's status is
    open (the scan reads the key of the first copy of each id only) and whose key is final."""
    first = value.open_first()
    return x.let(x.ids("m", {m: first.has(m) & s.done.has(m) for m in range(cfg.messages)}))


def ScanPatch(cfg, s, x):
    """``statuses`` without ``bot_scan``: the pending scan's atomic cache patch, every copy of
    the ids it found behind their keys, only when there is one (a scan with nothing to change
    writes nothing: no step)."""
    found = _scan_finals(cfg, s, _Inline(x), s.cache)  # the guard reads it: no x.let
    return ~found.is_empty(), _aged(cfg, s, x, {s.cache: s.cache.patch_all(found)})


def Complete(cfg, s, x, m):
    """``statuses``: the bot completes a message it found pending in the cache: ``put
    status:<id>`` final, then the cache patch of every copy (one atomic update, taken with the
    put as one step). The bot's reply has no status key (plain chat): never completed."""
    if _is_reply(cfg, m):
        return _never(x), {s.done: s.done.with_(m)}
    return s.cache.has(m) & ~s.done.has(m), _aged(
        cfg, s, x, {s.done: s.done.with_(m), s.cache: s.cache.patch_all(x.ids("m", {m: x.all([])}))}
    )


def ClaimRead(cfg, s, x, m, v="claim"):
    """A bot poll claims a message its pending scan listed (one in the cache): it gets
    ``comment:<id>``; a claimed one it leaves."""
    claim = getattr(s, v)[m]
    if _is_reply(cfg, m):  # the reply has no status: the scan never lists it for a claim
        return _never(x), {claim: CLAIM.Done()}
    return claim.is_("Idle") & s.cache.has(m), {claim: x.ite(s.claimed.has(m), CLAIM.Done(), CLAIM.Free())}


def ClaimWrite(cfg, s, x, m, v="claim"):
    """It puts ``comment:<id>`` back, claimed, and replies (a plain get then put: no check)."""
    claim = getattr(s, v)[m]
    return claim.is_("Free"), {
        claim: CLAIM.Done(),
        s.claimed: s.claimed.with_(m),
        s.replies[m]: s.replies[m] + 1,
    }


def ClaimCas(cfg, s, x, m, v="claim"):
    """``claim_cas``: the claim is one compare-and-swap of the key, which only an unclaimed
    message passes."""
    claim, free = getattr(s, v)[m], ~s.claimed.has(m)
    if _is_reply(cfg, m):
        return _never(x), {claim: CLAIM.Done()}
    return claim.is_("Idle") & s.cache.has(m), {
        claim: CLAIM.Done(),
        s.claimed: s.claimed.with_(m),
        s.replies[m]: x.ite(free, s.replies[m] + 1, s.replies[m]),
    }


def BotVerify(cfg, s, x, stale=False):
    """``bot_replies``: the bot's verification pass reads the whole cache (no cursor, no page):
    its reply, if found, leaves the list; if missing, the bot sends a heal through the tabs'
    endpoint (the reply's heal slot) and awaits its answer: no pass while that heal is in
    flight, and a pass is a step only when it changes something (the bot's other passes are
    stutters). With ``stale`` (``BotVerifyStale``) its read is served the value before the last
    write (``stale_reads``)."""
    r = cfg.reply
    seen = x.let((s.prev if stale else s.cache).has(r))
    heal = s.heal[r]
    return s.verify.has(r) & heal.is_("Idle"), {
        s.verify: x.ite(seen, s.verify.without(r), s.verify),
        heal: x.ite(seen, heal, HEAL.Requested()),
    }


def BotVerifyStale(cfg, s, x):
    return BotVerify(cfg, s, x, stale=True)


def BotRestart(cfg, s, x):
    """``bot_replies``: the bot restarts (a fault, never forced) and has forgotten its list of
    replies to verify (it was in memory only). Only a restart that forgets something is a step."""
    return ~s.verify.is_empty(), {s.verify: x.ids("m", {})}


def Crash(cfg, s, x, t):
    effects = {s.alive: s.alive.without(t), s.poll[t]: POLL.Idle()}
    if cfg.has("shared_pending"):
        effects[s.lists[t]] = LIST.Idle()
    return s.alive.has(t), effects


def Tick(cfg, s, x):
    """Time passes: the clock advances, saturating at HORIZON. With ``stale_reads`` a tick also
    refreshes every copy of the cache (the staleness bound is within a tick), so past the
    horizon it stays enabled while a stale copy exists: staleness never lasts for ever."""
    if cfg.has("stale_reads"):
        return (s.clock < HORIZON) | ~s.prev.eq(s.cache), {s.clock: s.clock + 1, s.prev: s.cache}
    return s.clock < HORIZON, {s.clock: s.clock + 1}


def Reload(cfg, s, x, t):
    """The user reloads tab t (at most once): the page starts over, the pending list (in
    localStorage) survives, the page-load snapshot is retaken from the browser's store."""
    effects = {s.poll[t]: POLL.Idle(), s.shown[t]: x.ids("m", {}), s.reloaded: s.reloaded.with_(t)}
    if _cursor(cfg):
        effects[s.cursor[t]] = _local_clock(cfg, s, t)
    if _frozen(cfg):
        effects[s.frozen[t]] = x.ids("m", {m: s.stored.has(m) for m in _browser(cfg, t)})
    guard = s.alive.has(t) & ~s.reloaded.has(t)
    if cfg.has("shared_pending"):  # the page's running task (get, push, set of the list) ends first
        guard = guard & s.lists[t].is_("Idle")
    return guard, effects


_atomic, _plain = _has("atomic_cache"), _lacks("atomic_cache")
_heal_atomic, _heal_plain = _heal_is_atomic, lambda cfg: not _heal_is_atomic(cfg)
_sweeper = _has("sweeper")
_fails = _has("put_fails")
_stale = _has("stale_reads")
_ff = _has("fire_and_forget")


def _scan_put(cfg):
    """The as-built scan's read and put are steps (``bot_scan`` without ``atomic_cache``)."""
    return cfg.has("bot_scan") and not cfg.has("atomic_cache")


# The tables read as tables (one declaration a line or two), not as the formatter would lay them out.
# fmt: off
ACTIONS = [
    ActionDef("PostKey", "m", "request", PostKey, "put comment:<id>: the message is stored",
              kv="put comment"),
    ActionDef("PostRead", "m", "request", PostRead, "get recent:comments", when=_plain, kv="get cache"),
    ActionDef("PostWrite", "m", "request", PostWrite, "put recent:comments: add(snapshot, m)", when=_plain,
              kv="put cache"),
    ActionDef("PostCache", "m", "request", PostCache, "the atomic cache update (a successful CAS)",
              when=_atomic, kv="cas cache"),
    ActionDef("PostReadStale", "m", "request", PostReadStale, "get recent:comments, served an older value",
              fair=False, when=_both(_stale, _plain), kv="get cache"),
    ActionDef("PostWriteFail", "m", "request", PostWriteFail, "put recent:comments fails (the write limit)",
              fair=False, when=_both(_fails, _plain), kv="put cache"),
    ActionDef("PostCacheFail", "m", "request", PostCacheFail,
              "the atomic cache update fails (the write limit)", fair=False, when=_both(_fails, _atomic),
              kv="cas cache"),
    ActionDef("PostFail", "m", "request", PostFail,
              "the POST fails after put comment:<id>; the client drops the message (never forced)",
              fair=False, when=_has("post_fails"), kv=""),
    ActionDef("PostAgain", "m", "request", PostAgain,
              "put comment:<id> of an id that exists: the owner resends a failed POST (never forced)",
              fair=False, when=_has("repost"), kv="put comment"),
    ActionDef("PostAck", "m", "request", PostAck, "the 200; the owner, if alive, records m as pending",
              kv=""),
    ActionDef("PollRead", "t", "tab", PollRead, "the tab's GET of the cache", group=1, kv="get cache"),
    ActionDef("PollReadStale", "t", "tab", PollReadStale, "the tab's GET, served an older value",
              fair=False, when=_stale, group=1, kv="get cache"),
    ActionDef("PollDone", "t", "tab", PollDone,
              "drop found ids (unless keep_verifying), request heals for missing ones", group=1),
    ActionDef("PendingWrite", "t", "tab", PendingWrite, "the tab writes the shared list back",
              when=_has("shared_pending"), group=2),
    ActionDef("HealKey", "heal", "heal", HealKey, "get comment:<id> (404: the heal ends)", group=3,
              kv="get comment"),
    ActionDef("HealRead", "heal", "heal", HealRead, "get recent:comments", when=_heal_plain, group=3,
              kv="get cache"),
    ActionDef("HealWrite", "heal", "heal", HealWrite, "put recent:comments: add(snapshot, m)",
              when=_heal_plain, group=3, kv="put cache"),
    ActionDef("HealCache", "heal", "heal", HealCache, "the atomic cache update of a heal",
              when=_heal_atomic, group=3, kv="cas cache"),
    ActionDef("HealReadStale", "heal", "heal", HealReadStale,
              "the heal's get recent:comments, served an older value", fair=False,
              when=_both(_stale, _heal_plain), group=3, kv="get cache"),
    ActionDef("HealWriteFail", "heal", "heal", HealWriteFail, "the heal's put fails (the write limit)",
              fair=False, when=_both(_fails, _heal_plain), group=3, kv="put cache"),
    ActionDef("HealCacheFail", "heal", "heal", HealCacheFail, "the heal's atomic update fails", fair=False,
              when=_both(_fails, _heal_atomic), group=3, kv="cas cache"),
    ActionDef("HealKey2", "heal", "heal", _twin(HealKey, "heal2"), "the second heal's get comment:<id>",
              when=_ff, group=3, kv="get comment"),
    ActionDef("HealRead2", "heal", "heal", _twin(HealRead, "heal2"), "the second heal's get recent:comments",
              when=_both(_ff, _heal_plain), group=3, kv="get cache"),
    ActionDef("HealWrite2", "heal", "heal", _twin(HealWrite, "heal2"), "the second heal's put recent:comments",
              when=_both(_ff, _heal_plain), group=3, kv="put cache"),
    ActionDef("HealCache2", "heal", "heal", _twin(HealCache, "heal2"), "the second heal's atomic cache update",
              when=_both(_ff, _heal_atomic), group=3, kv="cas cache"),
    ActionDef("HealReadStale2", "heal", "heal", _twin(HealReadStale, "heal2"),
              "the second heal's get recent:comments, served an older value", fair=False,
              when=lambda cfg: _ff(cfg) and _stale(cfg) and _heal_plain(cfg), group=3, kv="get cache"),
    ActionDef("HealWriteFail2", "heal", "heal", _twin(HealWriteFail, "heal2"), "the second heal's put fails",
              fair=False, when=lambda cfg: _ff(cfg) and _fails(cfg) and _heal_plain(cfg), group=3,
              kv="put cache"),
    ActionDef("HealCacheFail2", "heal", "heal", _twin(HealCacheFail, "heal2"),
              "the second heal's atomic update fails", fair=False,
              when=lambda cfg: _ff(cfg) and _fails(cfg) and _heal_atomic(cfg), group=3, kv="cas cache"),
    ActionDef("SweepList", "", "sweeper", SweepList, "list comment:*", when=_sweeper, group=4,
              kv="list comment"),
    ActionDef("SweepRead", "", "sweeper", SweepRead, "get recent:comments", when=_both(_sweeper, _plain),
              group=4, kv="get cache"),
    ActionDef("SweepWrite", "", "sweeper", SweepWrite, "put the cache plus the listed ids it lacks",
              when=_both(_sweeper, _plain), group=4, kv="put cache"),
    ActionDef("SweepCache", "", "sweeper", SweepCache, "the atomic sweeper write",
              when=_both(_sweeper, _atomic), group=4, kv="cas cache"),
    ActionDef("ScanRead", "", "bot", ScanRead, "the bot's pending scan: get recent:comments",
              when=_both(_has("bot_scan"), _plain), group=4, kv="get cache"),
    ActionDef("ScanKeys", "", "bot", ScanKeys, "the scan gets status:<id> of each first copy it read open",
              when=_both(_statuses, _scan_put), group=4, kv="get status"),
    ActionDef("ScanWrite", "", "bot", ScanWrite, "the scan puts back the array it read",
              when=_both(_has("bot_scan"), _plain), group=4, kv="put cache"),
    ActionDef("ScanPatch", "", "bot", ScanPatch,
              "the fixed scan's atomic patch of the copies behind their keys (none: no write)",
              when=_both(_statuses, _lacks("bot_scan")), group=4, kv="cas cache"),
    ActionDef("Complete", "m", "bot", Complete, "the bot's completion: put status:<id> final, patch every copy",
              when=_statuses, group=4, kv="put status"),
    ActionDef("ClaimRead", "m", "bot", ClaimRead, "a bot poll gets comment:<id> to claim m",
              when=_both(_has("bot_claims"), _lacks("claim_cas")), group=4, kv="get comment"),
    ActionDef("ClaimWrite", "m", "bot", ClaimWrite, "it puts comment:<id> claimed, and replies",
              when=_both(_has("bot_claims"), _lacks("claim_cas")), group=4, kv="put comment"),
    ActionDef("ClaimCas", "m", "bot", ClaimCas, "the claim as one compare-and-swap of the key",
              when=_has("claim_cas"), group=4, kv="cas comment"),
    ActionDef("ClaimRead2", "m", "bot", _twin(ClaimRead, "claim2"), "the overlapping poll gets comment:<id>",
              when=_both(_has("bot_claims"), _lacks("claim_cas")), group=4, kv="get comment"),
    ActionDef("ClaimWrite2", "m", "bot", _twin(ClaimWrite, "claim2"), "the overlapping poll puts it claimed",
              when=_both(_has("bot_claims"), _lacks("claim_cas")), group=4, kv="put comment"),
    ActionDef("ClaimCas2", "m", "bot", _twin(ClaimCas, "claim2"), "the overlapping poll's compare-and-swap",
              when=_has("claim_cas"), group=4, kv="cas comment"),
    ActionDef("BotVerify", "", "bot", BotVerify,
              "the bot reads the whole cache: its reply seen leaves its list, missing is healed",
              when=_replies, group=4, kv="get cache"),
    ActionDef("BotVerifyStale", "", "bot", BotVerifyStale,
              "the bot's whole-cache read is served an older value (never forced)", fair=False,
              when=_both(_replies, _stale), group=4, kv="get cache"),
    ActionDef("BotRestart", "", "fault", BotRestart,
              "the bot restarts and forgets its list of replies to verify (never forced)", fair=False,
              when=_replies, group=5),
    ActionDef("Crash", "t", "fault", Crash, "the tab dies (never forced: no fairness)", fair=False,
              when=_has("tab_crash"), group=5),
    ActionDef("Reload", "t", "tab", Reload, "the user reloads the tab, once (never forced: no fairness)",
              fair=False, when=_has("reload"), group=5),
    ActionDef("Tick", "", "clock", Tick, "the clock advances one lag, up to HORIZON", when=_view, group=6),
]
# fmt: on


# ---------------------------------------------------------------------------- flags (SPEC §5)
# The tables read as tables (one declaration a line or two), not as the formatter would lay them out.
# fmt: off
FLAGS = [
    FlagDef("dedupe", "every cache writer skips an id already in its snapshot", "worker",
            changes=("PostWrite", "PostCache", "HealWrite", "HealCache")),
    FlagDef("keep_verifying", "PollDone never drops an id: the tab keeps checking", "client",
            changes=("PollDone",)),
    FlagDef("atomic_cache", "the cache update is one atomic step", "worker",
            adds=("PostCache", "HealCache", "SweepCache"),
            removes=("PostRead", "PostWrite", "HealRead", "HealWrite", "SweepRead", "SweepWrite")),
    FlagDef("heal_atomic", "only the heal's cache update is atomic", "worker", adds=("HealCache",),
            removes=("HealRead", "HealWrite")),
    FlagDef("sweeper", "a server-side reconciler re-adds stored ids the cache lacks", "worker",
            adds=("SweepList", "SweepRead", "SweepWrite", "SweepCache")),
    FlagDef("tab_crash", "fault: a tab may die at any time", "fault", adds=("Crash",)),
    FlagDef("shared_pending", "one pending list for all tabs, read-modify-written by each", "client",
            adds=("PendingWrite",), changes=("PostAck", "PollDone", "Crash")),
    FlagDef("tab_view", "a clock, timestamps, a lagging cursor and the shown set per tab", "client",
            adds=("Tick",), changes=("PostKey", "PollDone")),
    FlagDef("found_in_response", "found = in the poll's response or the page-load snapshot", "client",
            changes=("PollDone",)),
    FlagDef("reload", "a tab may reload once", "client", adds=("Reload",)),
    FlagDef("full_poll", "a poll returns the whole cache, no cursor", "client",
            changes=("PollDone", "Reload")),
    FlagDef("put_fails", "fault: one cache put may fail (the write limit); the request still succeeds",
            "fault", adds=("PostWriteFail", "PostCacheFail", "HealWriteFail", "HealCacheFail")),
    FlagDef("clock_skew", "the last tab's clock is one lag behind: its timestamps and cursor", "fault",
            changes=("PostKey", "PollDone", "Reload")),
    FlagDef("stale_reads",
            "fault: a cache read may be served the value before the last write, until the next tick",
            "fault", adds=("PostReadStale", "PollReadStale", "HealReadStale", "BotVerifyStale"),
            changes=("PostWrite", "PostCache", "HealWrite", "HealCache", "SweepWrite", "SweepCache", "Tick")),
    FlagDef("post_fails", "fault: a POST may fail after put comment:<id>; the client tracks nothing", "fault",
            adds=("PostFail",)),
    FlagDef("repost", "fault: a client posts an id that exists (resends a failed POST)", "fault",
            adds=("PostAgain",)),
    FlagDef("bot_scan", "the bot's pending scan writes back the cache array it read", "worker",
            adds=("ScanRead", "ScanWrite")),
    FlagDef("ai_channel", "the last tab shows the AI channel: its polls return no human message", "client",
            changes=("PollDone",)),
    FlagDef("bot_claims", "two overlapping bot polls claim each cached message: get, then put its key",
            "worker", adds=("ClaimRead", "ClaimWrite", "ClaimRead2", "ClaimWrite2")),
    FlagDef("claim_cas", "a claim is one compare-and-swap of the message's key", "worker",
            adds=("ClaimCas", "ClaimCas2"), removes=("ClaimRead", "ClaimWrite", "ClaimRead2", "ClaimWrite2")),
    FlagDef("fire_and_forget", "heals are sent without waiting: two of one id may be in flight", "client",
            adds=("HealKey2", "HealRead2", "HealWrite2", "HealCache2", "HealReadStale2", "HealWriteFail2",
                  "HealCacheFail2"),
            changes=("PollDone",)),
    FlagDef("statuses", "a status per message in its key and in each cache copy; the bot completes messages",
            "worker", adds=("Complete", "ScanPatch", "ScanKeys"), changes=("ScanRead", "ScanWrite")),
    FlagDef("bot_replies", "the bot posts an AI reply to message 0 and verifies it from memory; it may restart",
            "worker", adds=("BotVerify", "BotVerifyStale", "BotRestart"), changes=("PostKey", "PostAck", "PollDone")),
]
# fmt: on


# ---------------------------------------------------------------------------- properties (SPEC §7)
def _acked_is_stored(cfg, s, x):
    return s.acked.subset(s.stored)


def _cache_from_store(cfg, s, x):
    return s.cache.ids().subset(s.stored)


def _no_duplicates(cfg, s, x):
    return s.cache.no_dup()


def _converges(cfg, s, x):
    return s.acked.newest(cfg.cap).subset(s.cache.ids())


def _pending_drains(cfg, s, x):
    if cfg.has("shared_pending"):
        return s.alive.is_empty() | s.pending.is_empty()
    return x.all(~s.alive.has(t) | s.pending[t].is_empty() for t in range(cfg.tabs))


def _claimed_once(cfg, s, x):
    return x.all(s.replies[m] <= 1 for m in range(cfg.messages))


def _everyone_sees(cfg, s, x):
    """Every live tab has shown every acknowledged message among the C newest of its channel."""
    newest = s.acked.newest(cfg.cap)
    parts = []
    for t in range(cfg.tabs):
        mine = channel(cfg, t)
        due = newest if len(mine) == cfg.messages else x.ids("m", {m: newest.has(m) for m in mine})
        parts.append(~s.alive.has(t) | due.subset(s.shown[t]))
    return x.all(parts)


class _Inline:
    """The value algebra with ``x.let`` as the identity: a property that runs an action's body
    evaluates it only where the action's guard holds (``~guard | ...`` short-circuits), never
    decoding the payload of a phase the variable is not in."""

    def __init__(self, x):
        self._x = x

    def let(self, v):
        return v

    def __getattr__(self, name):
        return getattr(self._x, name)


def _heals_terminate(cfg, s, x):
    return x.all(s.heals[h] <= heal_bound(cfg) for h in _heal_slots(cfg))


def _heal_only_missing(cfg, s, x):
    """No PollDone enabled now would send a heal for an id its poll's answer (the cache it
    read) holds: the state before such a request violates it."""
    y, parts = _Inline(x), []
    for t in range(cfg.tabs):
        guard, _, sends = _poll_done(cfg, s, y, t)
        snap = s.poll[t].of("Read").snap
        parts.append(~guard | ~x.any(sends[h] & snap.has(msg_of(h)) for h in sends))
    return x.all(parts)


def _scan_writes_nothing(cfg, s, x):
    """No sweeper write about to happen would put back the value it read unchanged (ids were
    missing, but adding them and trimming gives the snapshot again); with ``statuses`` and the
    as-built ``bot_scan``, no scan that has read its keys is about to put back an array in which
    it patches nothing."""
    parts = [_sweep_writes_nothing(cfg, s, x)] if _view(cfg) and cfg.has("sweeper") else []
    if _statuses(cfg) and _scan_put(cfg):
        parts.append(~s.scan.is_("Keyed") | ~s.scan.of("Keyed").found.is_empty())
    return x.all(parts)


def _statuses_converge(cfg, s, x):
    """Every cache copy of a message whose key is final has the final status."""
    open_ = s.cache.open_ids()
    return x.all(~(open_.has(m) & s.done.has(m)) for m in range(cfg.messages))


def _sweep_writes_nothing(cfg, s, x):
    if cfg.has("atomic_cache"):
        busy, listed, snap = s.sweep.is_("Listed"), s.sweep.of("Listed").list, s.cache
    else:
        read = s.sweep.of("Read")
        busy, listed, snap = s.sweep.is_("Read"), read.list, read.snap
    missing = listed.minus(snap.ids())
    return ~busy | missing.is_empty() | ~_add_all(cfg, s, x, snap, missing).eq(snap)


# The tables read as tables (one declaration a line or two), not as the formatter would lay them out.
# fmt: off
PROPERTIES = [
    PropertyDef("AckedIsStored", "invariant", _acked_is_stored, "an acknowledged message's key is stored"),
    PropertyDef("CacheFromStore", "invariant", _cache_from_store, "every id in the cache has its key stored"),
    PropertyDef("NoDuplicates", "invariant", _no_duplicates, "no id occurs twice in the cache"),
    PropertyDef("HealOnlyMissing", "invariant", _heal_only_missing,
                "a poll sends a heal only for an id absent from the cache it read", when=_view),
    PropertyDef("HealsTerminate", "invariant", _heals_terminate,
                "a tab sends at most heal_bound heals for one message (2; 3 with fire_and_forget)", when=_counted),
    PropertyDef("ScanWritesNothing", "invariant", _scan_writes_nothing,
                "a sweeper pass or a bot's scan with nothing to change writes nothing",
                when=lambda cfg: (_view(cfg) and cfg.has("sweeper")) or (_statuses(cfg) and _scan_put(cfg))),
    PropertyDef("ClaimedOnce", "invariant", _claimed_once, "each message is claimed (and replied to) once",
                when=_has("bot_claims")),
    PropertyDef("Converges", "eventually_always", _converges,
                "eventually always: the C newest acknowledged messages are in the cache"),
    PropertyDef("PendingDrains", "eventually_always", _pending_drains,
                "eventually always: every live tab's pending list is empty", when=_lacks("keep_verifying")),
    PropertyDef("StatusesConverge", "eventually_always", _statuses_converge,
                "eventually always: every cache copy of a message whose key is final has the final status",
                when=_statuses),
    PropertyDef("EveryoneSees", "eventually_always", _everyone_sees,
                "eventually always: every live tab has shown every acknowledged message among the C newest",
                when=_view),
]
# fmt: on

KVHEAL = Definition(
    "kvheal",
    VARIABLES,
    DERIVED,
    ACTIONS,
    PROPERTIES,
    FLAGS,
    heal_slots=_heal_slots,
    doc=__doc__ or "",
    validate=validate,
    cache_order=_ordered,
    cache_statuses=_statuses,
)

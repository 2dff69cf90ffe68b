"""The kvheal model: SPEC §3-5 as an explicit-state transition system.

A state is a flat tuple of small ints (the layout is below); cache values are interned
to ints, so every snapshot a phase holds is one int and two states that differ only in a
value no phase holds are equal by construction (SPEC §3). ``successors(state)`` is the
checker's hot path; ``actions``/``step``/``view`` are the readable API built on it.

Readings of SPEC where it leaves a choice (each also in the project's notes):

* ``stored`` is not a separate variable: it is ``{m : post[m] != Unsent}``, since only
  ``PostKey`` adds to it. ``AckedIsStored`` is still checked, against that definition.
* With ``atomic_cache`` the fused steps are named ``PostCache(m)``, ``HealCache(m)`` and,
  for the sweeper, ``SweepCache`` (``Listed(k)`` → the cache plus ``k``'s missing ids,
  sorted and trimmed; ``Idle``). Sweeper steps take no arguments.
* ``SweepWrite`` (and ``SweepCache``) with nothing missing writes nothing.
* ``shared_pending``: one list ``pending`` for all tabs, and per tab a list slot
  ``lists[t]`` ∈ ``Idle | Write(P)``: the value the tab has read-modified and will write
  back. A tab runs one list task at a time (JavaScript in a tab is single-threaded; tabs
  are not). ``PostAck(m)`` with a live owner needs ``lists[owner] = Idle`` and sets
  ``lists[owner] := Write(pending ∪ {m})``. ``PollDone(t)`` needs ``lists[t] = Idle``,
  reads ``P = pending``, requests heals for ids of ``P`` not in its snapshot (heals are
  per (tab, id): args ``{"t", "m"}``), and sets ``lists[t] := Write(P \\ found)`` (written
  back even when unchanged, as the app did). ``PendingWrite(t)`` (a live tab) writes the
  list: ``pending := P``, ``lists[t] := Idle``. ``Crash(t)`` drops the tab's list slot.
  ``PendingDrains`` then reads: while some tab is alive, the shared list is empty.
* ``Crash(t)`` leaves ``pending[t]`` as it was (SPEC: "stays but is never used").
* Cache values are sorted by id (= timestamp); ``add`` keeps the *largest* C entries.

State layout (indices are attributes of the model):
``cache`` | ``post[0..M-1]`` | ``pending`` (T bitmasks, or 1 with shared_pending) |
``poll[0..T-1]`` | ``heal[...]`` (M slots, or T·M with shared_pending, slot ``t*M+m``) |
``alive`` (bitmask; tab_crash only) | ``sweep`` (sweeper only) | ``lists[0..T-1]``
(shared_pending only).

Phase codes: post ``0 Unsent, 1 KeyWritten, 2 CacheWritten, 3 Acked, 4+c CacheRead(c)``;
poll ``0 Idle, 1+c Read(c)``; heal ``0 Idle, 1 Requested, 2 KeyRead, 3+c CacheRead(c)``;
sweep ``0 Idle, 1+k Listed(k), 1+2^M + k·V + c Read(k, c)`` (V cache values);
lists ``0 Idle, 1+P Write(P)``. ``c`` is an interned cache value, ``k``/``P`` bitmasks.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .config import Config

State = tuple[int, ...]

UNSENT, KEY_WRITTEN, CACHE_WRITTEN, ACKED, POST_READ = 0, 1, 2, 3, 4
IDLE = 0
REQUESTED, KEY_READ, HEAL_READ = 1, 2, 3


@dataclass(frozen=True, slots=True)
class Action:
    """One action instance: a SPEC §4 name and its arguments (``m`` and/or ``t``)."""

    name: str
    pairs: tuple[tuple[str, int], ...] = ()
    label: int = field(default=-1, compare=False)

    @property
    def args(self) -> dict[str, int]:
        """The arguments as a dict, e.g. ``{"m": 0}``."""
        return dict(self.pairs)

    def as_json(self) -> dict[str, Any]:
        """The trace step of SPEC §9: ``{"action": name, "args": {...}}``."""
        return {"action": self.name, "args": dict(self.pairs)}

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.pairs)
        return f"{self.name}({inner})"


@dataclass(frozen=True, slots=True)
class Property:
    """A SPEC §7 property: an ``invariant`` or an ``eventually_always`` goal over states."""

    name: str
    kind: str
    holds: Callable[[State], bool]
    doc: str


def _bits(mask: int) -> Iterator[int]:
    m = 0
    while mask:
        if mask & 1:
            yield m
        mask >>= 1
        m += 1


class CacheValues:
    """Interned cache values: sorted tuples of ids, length ≤ cap, closed under ``add``.

    Enumerated once, breadth-first from ``()``: ``add[c][m]`` is the code of ``add(c, m)``,
    ``ids[c]`` the bitmask of ids in ``c``, ``dup[c]`` whether an id occurs twice.
    """

    def __init__(self, messages: int, cap: int, dedupe: bool) -> None:
        self.cap = cap
        self.values: list[tuple[int, ...]] = [()]
        self.code: dict[tuple[int, ...], int] = {(): 0}
        self.add: list[list[int]] = []
        i = 0
        while i < len(self.values):
            value = self.values[i]
            row = []
            for m in range(messages):
                if dedupe and m in value:
                    row.append(i)  # never written: the writer skips; kept for a total table
                    continue
                row.append(self._intern(self.trim(value + (m,))))
            self.add.append(row)
            i += 1
        self.ids = [sum(1 << m for m in set(v)) for v in self.values]
        self.dup = [len(set(v)) != len(v) for v in self.values]
        self._union: dict[tuple[int, int], int] = {}

    def trim(self, value: tuple[int, ...]) -> tuple[int, ...]:
        """SPEC's ``add`` without the append: sort (stable) and keep the last ``cap``."""
        return tuple(sorted(value))[-self.cap :]

    def _intern(self, value: tuple[int, ...]) -> int:
        c = self.code.get(value)
        if c is None:
            c = self.code[value] = len(self.values)
            self.values.append(value)
        return c

    def union(self, c: int, missing: int) -> int:
        """The sweeper's write: ``c`` plus each id of bitmask ``missing`` once, sorted, trimmed.

        Equal to adding the ids one by one, since trimming keeps the largest entries.
        """
        key = (c, missing)
        got = self._union.get(key)
        if got is None:
            got = c
            for m in _bits(missing):
                got = self.add[got][m]
            self._union[key] = got
        return got

    def __len__(self) -> int:
        return len(self.values)


class KVHealModel:
    """SPEC §3-5 for one :class:`Config`; an instance of the checker's model protocol."""

    def __init__(self, config: Config) -> None:
        self.config = cfg = config
        T, M = cfg.tabs, cfg.messages
        self.T, self.M = T, M
        self.dedupe = cfg.has("dedupe")
        self.keep_verifying = cfg.has("keep_verifying")
        self.atomic = cfg.has("atomic_cache")
        self.sweeper = cfg.has("sweeper")
        self.tab_crash = cfg.has("tab_crash")
        self.shared = cfg.has("shared_pending")
        self.cv = CacheValues(M, cfg.cap, self.dedupe)
        self.owner = [cfg.owner(m) for m in range(M)]
        self.tab_msgs = [sum(1 << m for m in range(M) if self.owner[m] == t) for t in range(T)]

        # Field offsets of the flat state tuple.
        self.i_cache = 0
        self.i_post = 1
        self.i_pending = self.i_post + M
        n_pending = 1 if self.shared else T
        self.i_poll = self.i_pending + n_pending
        self.i_heal = self.i_poll + T
        self.n_heal = T * M if self.shared else M
        nxt = self.i_heal + self.n_heal
        self.i_alive = nxt if self.tab_crash else -1
        nxt += self.tab_crash
        self.i_sweep = nxt if self.sweeper else -1
        nxt += self.sweeper
        self.i_lists = nxt if self.shared else -1
        nxt += T if self.shared else 0
        self.width = nxt

        self.sweep_read_base = 1 + (1 << M)
        self._instances: list[Action] = []
        self._label: dict[tuple[str, tuple[tuple[str, int], ...]], int] = {}
        self._build_instances()
        self._props = self.properties()
        self._failing_memo: dict[State, int] = {}

    # ------------------------------------------------------------------ action instances
    def _instance(self, name: str, **args: int) -> int:
        pairs = tuple(sorted(args.items(), key=lambda kv: "tm".index(kv[0])))
        label = len(self._instances)
        self._instances.append(Action(name, pairs, label))
        self._label[(name, pairs)] = label
        return label

    def _build_instances(self) -> None:
        T, M = self.T, self.M
        mk = self._instance
        self.l_post_key = [mk("PostKey", m=m) for m in range(M)]
        if self.atomic:
            self.l_post_cache = [mk("PostCache", m=m) for m in range(M)]
        else:
            self.l_post_read = [mk("PostRead", m=m) for m in range(M)]
            self.l_post_write = [mk("PostWrite", m=m) for m in range(M)]
        self.l_post_ack = [mk("PostAck", m=m) for m in range(M)]
        self.l_poll_read = [mk("PollRead", t=t) for t in range(T)]
        self.l_poll_done = [mk("PollDone", t=t) for t in range(T)]
        if self.shared:
            self.l_pending_write = [mk("PendingWrite", t=t) for t in range(T)]
        slots = [(t, m) for t in range(T) for m in range(M)] if self.shared else [
            (None, m) for m in range(M)
        ]

        def heal(name: str) -> list[int]:
            return [mk(name, m=m) if t is None else mk(name, t=t, m=m) for t, m in slots]

        self.heal_slot_msg = [m for _, m in slots]
        self.l_heal_key = heal("HealKey")
        if self.atomic:
            self.l_heal_cache = heal("HealCache")
        else:
            self.l_heal_read = heal("HealRead")
            self.l_heal_write = heal("HealWrite")
        if self.sweeper:
            self.l_sweep_list = mk("SweepList")
            if self.atomic:
                self.l_sweep_cache = mk("SweepCache")
            else:
                self.l_sweep_read = mk("SweepRead")
                self.l_sweep_write = mk("SweepWrite")
        self.l_crash = [mk("Crash", t=t) for t in range(T)] if self.tab_crash else []
        self.unfair_labels = frozenset(self.l_crash)

    @property
    def instances(self) -> list[Action]:
        """Every action instance of this configuration, indexed by its label."""
        return self._instances

    def action(self, name: str, args: dict[str, int] | None = None) -> Action:
        """The action instance named ``name`` with ``args``; KeyError if there is none."""
        pairs = tuple(sorted((args or {}).items(), key=lambda kv: "tm".index(kv[0])))
        return self._instances[self._label[(name, pairs)]]

    def is_fair(self, label: int) -> bool:
        """Weak fairness applies to every action instance but ``Crash`` (SPEC §7)."""
        return label not in self.unfair_labels

    # ------------------------------------------------------------------ the protocol
    def init_states(self) -> list[State]:
        """The one initial state of SPEC §3."""
        s = [0] * self.width
        if self.tab_crash:
            s[self.i_alive] = (1 << self.T) - 1
        return [tuple(s)]

    def actions(self, state: State) -> list[Action]:
        """The enabled action instances of ``state``, in a stable order."""
        return [self._instances[label] for label, _ in self.successors(state)]

    def step(self, state: State, action: Action) -> State:
        """The state after taking ``action`` (ValueError if it is not enabled)."""
        label = self._label.get((action.name, action.pairs), -1)
        for lab, nxt in self.successors(state):
            if lab == label:
                return nxt
        raise ValueError(f"{action} is not enabled")

    def successors(self, s: State) -> list[tuple[int, State]]:
        """Every enabled action instance's label with its successor, in label order."""
        out: list[tuple[int, State]] = []
        cv = self.cv
        add, ids = cv.add, cv.ids
        cache = s[0]
        M, T = self.M, self.T
        dedupe, atomic, shared = self.dedupe, self.atomic, self.shared
        alive = s[self.i_alive] if self.tab_crash else -1
        i_post, i_pending, i_poll, i_heal, i_lists = (
            self.i_post, self.i_pending, self.i_poll, self.i_heal, self.i_lists,
        )
        owner = self.owner

        # Posts: PostKey, PostRead/PostWrite or PostCache, PostAck.
        for m in range(M):
            i = i_post + m
            p = s[i]
            if p == UNSENT:
                if alive >> owner[m] & 1:
                    out.append((self.l_post_key[m], s[:i] + (KEY_WRITTEN,) + s[i + 1 :]))
            elif p == KEY_WRITTEN:
                if atomic:
                    c = cache if dedupe and ids[cache] >> m & 1 else add[cache][m]
                    n = list(s)
                    n[0] = c
                    n[i] = CACHE_WRITTEN
                    out.append((self.l_post_cache[m], tuple(n)))
                else:
                    out.append((self.l_post_read[m], s[:i] + (POST_READ + cache,) + s[i + 1 :]))
            elif p == CACHE_WRITTEN:
                t = owner[m]
                if not alive >> t & 1:
                    out.append((self.l_post_ack[m], s[:i] + (ACKED,) + s[i + 1 :]))
                elif shared:
                    j = i_lists + t
                    if s[j] == IDLE:
                        n = list(s)
                        n[i] = ACKED
                        n[j] = 1 + (s[i_pending] | 1 << m)
                        out.append((self.l_post_ack[m], tuple(n)))
                else:
                    n = list(s)
                    n[i] = ACKED
                    n[i_pending + t] |= 1 << m
                    out.append((self.l_post_ack[m], tuple(n)))
            elif p >= POST_READ:
                snap = p - POST_READ
                n = list(s)
                if not (dedupe and ids[snap] >> m & 1):
                    n[0] = add[snap][m]
                n[i] = CACHE_WRITTEN
                out.append((self.l_post_write[m], tuple(n)))

        # Polls: PollRead, PollDone (and PendingWrite with shared_pending).
        for t in range(T):
            if not alive >> t & 1:
                continue
            i = i_poll + t
            p = s[i]
            if p == IDLE:
                out.append((self.l_poll_read[t], s[:i] + (1 + cache,) + s[i + 1 :]))
                continue
            if shared and s[i_lists + t] != IDLE:
                continue
            seen = ids[p - 1]
            n = list(s)
            n[i] = IDLE
            if shared:
                pend = s[i_pending]
                base = i_heal + t * M
                n[i_lists + t] = 1 + (pend if self.keep_verifying else pend & ~seen)
            else:
                pend = s[i_pending + t]
                base = i_heal
                if not self.keep_verifying:
                    n[i_pending + t] = pend & ~seen
            missing = pend & ~seen
            while missing:
                low = missing & -missing
                k = base + low.bit_length() - 1
                if n[k] == IDLE:
                    n[k] = REQUESTED
                missing ^= low
            out.append((self.l_poll_done[t], tuple(n)))
        if shared:
            for t in range(T):
                j = i_lists + t
                if s[j] != IDLE and alive >> t & 1:
                    n = list(s)
                    n[i_pending] = s[j] - 1
                    n[j] = IDLE
                    out.append((self.l_pending_write[t], tuple(n)))

        # Heals: HealKey, HealRead/HealWrite or HealCache. A heal is requested only for
        # an acknowledged id, so its key is always stored; the 404 branch is kept for SPEC.
        slot_msg = self.heal_slot_msg
        for h in range(self.n_heal):
            i = i_heal + h
            p = s[i]
            if p == IDLE:
                continue
            m = slot_msg[h]
            if p == REQUESTED:
                nxt = KEY_READ if s[i_post + m] != UNSENT else IDLE
                out.append((self.l_heal_key[h], s[:i] + (nxt,) + s[i + 1 :]))
            elif p == KEY_READ:
                if atomic:
                    n = list(s)
                    if not (dedupe and ids[cache] >> m & 1):
                        n[0] = add[cache][m]
                    n[i] = IDLE
                    out.append((self.l_heal_cache[h], tuple(n)))
                else:
                    out.append((self.l_heal_read[h], s[:i] + (HEAL_READ + cache,) + s[i + 1 :]))
            else:
                snap = p - HEAL_READ
                n = list(s)
                if not (dedupe and ids[snap] >> m & 1):
                    n[0] = add[snap][m]
                n[i] = IDLE
                out.append((self.l_heal_write[h], tuple(n)))

        if self.sweeper:
            self._sweep_successors(s, out)
        if self.tab_crash:
            for t in range(T):
                if alive >> t & 1:
                    n = list(s)
                    n[self.i_alive] = alive & ~(1 << t)
                    n[i_poll + t] = IDLE
                    if shared:
                        n[i_lists + t] = IDLE
                    out.append((self.l_crash[t], tuple(n)))
        return out

    def _sweep_successors(self, s: State, out: list[tuple[int, State]]) -> None:
        i = self.i_sweep
        p = s[i]
        cv = self.cv
        if p == IDLE:
            out.append((self.l_sweep_list, s[:i] + (1 + self.stored_mask(s),) + s[i + 1 :]))
        elif p < self.sweep_read_base:
            listed = p - 1
            if self.atomic:
                n = list(s)
                n[0] = cv.union(s[0], listed & ~cv.ids[s[0]])
                n[i] = IDLE
                out.append((self.l_sweep_cache, tuple(n)))
            else:
                code = self.sweep_read_base + listed * len(cv) + s[0]
                out.append((self.l_sweep_read, s[:i] + (code,) + s[i + 1 :]))
        else:
            listed, snap = divmod(p - self.sweep_read_base, len(cv))
            missing = listed & ~cv.ids[snap]
            n = list(s)
            if missing:
                n[0] = cv.union(snap, missing)
            n[i] = IDLE
            out.append((self.l_sweep_write, tuple(n)))

    # ------------------------------------------------------------------ derived values
    def stored_mask(self, s: State) -> int:
        """Bitmask of ``stored``: the ids whose ``comment:<id>`` key was written."""
        i = self.i_post
        return sum(1 << m for m in range(self.M) if s[i + m] != UNSENT)

    def acked_mask(self, s: State) -> int:
        """Bitmask of the acknowledged ids."""
        i = self.i_post
        return sum(1 << m for m in range(self.M) if s[i + m] == ACKED)

    def alive_mask(self, s: State) -> int:
        """Bitmask of the live tabs."""
        return s[self.i_alive] if self.tab_crash else (1 << self.T) - 1

    def newest(self, mask: int) -> int:
        """The ``cap`` largest ids of ``mask`` (the newest, since timestamps are ids)."""
        keep = 0
        for m in reversed(range(self.M)):
            if keep.bit_count() == self.config.cap:
                break
            if mask >> m & 1:
                keep |= 1 << m
        return keep

    # ------------------------------------------------------------------ properties
    def properties(self) -> list[Property]:
        """The SPEC §7 properties that apply to this configuration, invariants first."""
        cv = self.cv
        i_post, M = self.i_post, self.M

        def acked_is_stored(s: State) -> bool:
            # Acked is a post phase past Unsent, and stored is {m : post[m] != Unsent}.
            return all(s[i_post + m] != UNSENT for m in range(M) if s[i_post + m] == ACKED)

        def cache_from_store(s: State) -> bool:
            return cv.ids[s[0]] & ~self.stored_mask(s) == 0

        def no_duplicates(s: State) -> bool:
            return not cv.dup[s[0]]

        def converges(s: State) -> bool:
            want = self.newest(self.acked_mask(s))
            return want & ~cv.ids[s[0]] == 0

        def pending_drains(s: State) -> bool:
            alive = self.alive_mask(s)
            if self.shared:
                return alive == 0 or s[self.i_pending] == 0
            return all(s[self.i_pending + t] == 0 for t in range(self.T) if alive >> t & 1)

        props = [
            Property("AckedIsStored", "invariant", acked_is_stored,
                     "an acknowledged message's key is stored"),
            Property("CacheFromStore", "invariant", cache_from_store,
                     "every id in the cache has its key stored"),
            Property("NoDuplicates", "invariant", no_duplicates,
                     "no id occurs twice in the cache"),
            Property("Converges", "eventually_always", converges,
                     "eventually always: the C newest acknowledged messages are in the cache"),
        ]
        if not self.keep_verifying:
            props.append(Property(
                "PendingDrains", "eventually_always", pending_drains,
                "eventually always: every live tab's pending list is empty"))
        return props

    def failing(self, s: State) -> int:
        """Bit ``i`` set iff property ``i`` of :meth:`properties` is false in ``s``.

        The checker's fast path: the properties read only the cache, the posts, the pending
        lists and ``alive``, so results are memoised on that part of the state.
        """
        key = s[: self.i_poll] + ((s[self.i_alive],) if self.tab_crash else ())
        got = self._failing_memo.get(key)
        if got is None:
            got = 0
            for i, prop in enumerate(self._props):
                if not prop.holds(s):
                    got |= 1 << i
            self._failing_memo[key] = got
        return got

    # ------------------------------------------------------------------ readable view
    def snapshot(self, code: int) -> tuple[int, ...]:
        """The cache value interned as ``code``."""
        return self.cv.values[code]

    def view(self, s: State) -> dict[str, Any]:
        """The state in SPEC §3's terms (phases as tuples, ids as sorted tuples)."""
        snap = self.snapshot
        M, T = self.M, self.T

        def ids(mask: int) -> tuple[int, ...]:
            return tuple(_bits(mask))

        def post(p: int) -> tuple:
            names = {UNSENT: "Unsent", KEY_WRITTEN: "KeyWritten",
                     CACHE_WRITTEN: "CacheWritten", ACKED: "Acked"}
            return (names[p],) if p < POST_READ else ("CacheRead", snap(p - POST_READ))

        def heal(p: int) -> tuple:
            names = {IDLE: "Idle", REQUESTED: "Requested", KEY_READ: "KeyRead"}
            return (names[p],) if p < HEAL_READ else ("CacheRead", snap(p - HEAL_READ))

        v: dict[str, Any] = {
            "stored": ids(self.stored_mask(s)),
            "cache": snap(s[0]),
            "post": tuple(post(s[self.i_post + m]) for m in range(M)),
        }
        if self.shared:
            v["pending"] = ids(s[self.i_pending])
        else:
            v["pending"] = tuple(ids(s[self.i_pending + t]) for t in range(T))
        v["poll"] = tuple(
            ("Idle",) if s[self.i_poll + t] == IDLE else ("Read", snap(s[self.i_poll + t] - 1))
            for t in range(T)
        )
        if self.shared:
            v["heal"] = {(t, m): heal(s[self.i_heal + t * M + m]) for t in range(T) for m in range(M)}
        else:
            v["heal"] = {m: heal(s[self.i_heal + m]) for m in range(M)}
        alive = self.alive_mask(s)
        v["alive"] = tuple(bool(alive >> t & 1) for t in range(T))
        if self.sweeper:
            p = s[self.i_sweep]
            if p == IDLE:
                v["sweep"] = ("Idle",)
            elif p < self.sweep_read_base:
                v["sweep"] = ("Listed", ids(p - 1))
            else:
                k, c = divmod(p - self.sweep_read_base, len(self.cv))
                v["sweep"] = ("Read", ids(k), snap(c))
        else:
            v["sweep"] = ("Idle",)
        if self.shared:
            v["lists"] = tuple(
                ("Idle",) if s[self.i_lists + t] == IDLE else ("Write", ids(s[self.i_lists + t] - 1))
                for t in range(T)
            )
        return v

"""An independent, deliberately naive transcription of SPEC §3-5 for cross-checking.

Nothing here is shared with kvheal.model: states are named tuples of Python values
(frozensets, sorted tuples, phase tuples), every action is written out as SPEC's table says,
and the readings kvheal.model documents for the places SPEC leaves open are re-implemented
from their prose. Slow on purpose; only for small configurations.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple


class S(NamedTuple):
    stored: frozenset
    cache: tuple
    post: tuple  # per m: ("Unsent",) ("KeyWritten",) ("CacheRead", s) ("CacheWritten",) ("Acked",)
    pending: tuple  # per t: frozenset; with shared_pending a 1-tuple holding the shared list
    poll: tuple  # per t: ("Idle",) | ("Read", s)
    heal: tuple  # per slot: ("Idle",) ("Requested",) ("KeyRead",) ("CacheRead", s)
    alive: tuple  # per t: bool
    sweep: tuple  # ("Idle",) ("Listed", k) ("Read", k, s)
    lists: tuple  # per t: ("Idle",) | ("Write", P); empty without shared_pending


def replace(tup: tuple, i: int, v) -> tuple:
    return tup[:i] + (v,) + tup[i + 1 :]


class Reference:
    def __init__(self, tabs: int, per_tab: int = 1, cap: int | None = None, variants=()):
        self.T, self.M = tabs, tabs * per_tab
        self.C = cap if cap is not None else self.M
        self.v = set(variants)
        self.shared = "shared_pending" in self.v
        self.slots = (
            [(t, m) for t in range(self.T) for m in range(self.M)]
            if self.shared
            else [(None, m) for m in range(self.M)]
        )

    def owner(self, m):
        return m % self.T

    def add(self, s, m):
        return tuple(sorted(s + (m,)))[-self.C :]

    def write(self, snapshot, current, m):
        """A cache writer's new value (dedupe: an id in the snapshot writes nothing)."""
        if "dedupe" in self.v and m in snapshot:
            return current
        return self.add(snapshot, m)

    def init(self) -> S:
        T, M = self.T, self.M
        return S(
            frozenset(),
            (),
            (("Unsent",),) * M,
            (frozenset(),) if self.shared else (frozenset(),) * T,
            (("Idle",),) * T,
            (("Idle",),) * len(self.slots),
            (True,) * T,
            ("Idle",),
            (("Idle",),) * T if self.shared else (),
        )

    def next(self, s: S) -> list[tuple[str, S]]:
        out = []
        atomic = "atomic_cache" in self.v
        for m in range(self.M):
            o = self.owner(m)
            p = s.post[m]
            if p[0] == "Unsent" and s.alive[o]:
                out.append(
                    (
                        f"PostKey{m}",
                        s._replace(stored=s.stored | {m}, post=replace(s.post, m, ("KeyWritten",))),
                    )
                )
            if p[0] == "KeyWritten":
                if atomic:
                    out.append(
                        (
                            f"PostCache{m}",
                            s._replace(
                                cache=self.write(s.cache, s.cache, m),
                                post=replace(s.post, m, ("CacheWritten",)),
                            ),
                        )
                    )
                else:
                    out.append((f"PostRead{m}", s._replace(post=replace(s.post, m, ("CacheRead", s.cache)))))
            if p[0] == "CacheRead":
                out.append(
                    (
                        f"PostWrite{m}",
                        s._replace(
                            cache=self.write(p[1], s.cache, m), post=replace(s.post, m, ("CacheWritten",))
                        ),
                    )
                )
            if p[0] == "CacheWritten":
                acked = s._replace(post=replace(s.post, m, ("Acked",)))
                if not s.alive[o]:
                    out.append((f"PostAck{m}", acked))
                elif self.shared:
                    if s.lists[o] == ("Idle",):
                        out.append(
                            (
                                f"PostAck{m}",
                                acked._replace(lists=replace(s.lists, o, ("Write", s.pending[0] | {m}))),
                            )
                        )
                else:
                    out.append(
                        (f"PostAck{m}", acked._replace(pending=replace(s.pending, o, s.pending[o] | {m})))
                    )
        for t in range(self.T):
            if not s.alive[t]:
                continue
            if s.poll[t] == ("Idle",):
                out.append((f"PollRead{t}", s._replace(poll=replace(s.poll, t, ("Read", s.cache)))))
            elif not self.shared or s.lists[t] == ("Idle",):
                snap = s.poll[t][1]
                pend = s.pending[0] if self.shared else s.pending[t]
                heal = s.heal
                keep = set()
                for m in sorted(pend):
                    if m in snap:
                        if "keep_verifying" in self.v:
                            keep.add(m)
                    else:
                        keep.add(m)
                        k = self.slots.index((t, m) if self.shared else (None, m))
                        if heal[k] == ("Idle",):
                            heal = replace(heal, k, ("Requested",))
                n = s._replace(poll=replace(s.poll, t, ("Idle",)), heal=heal)
                if self.shared:
                    n = n._replace(lists=replace(s.lists, t, ("Write", frozenset(keep))))
                else:
                    n = n._replace(pending=replace(s.pending, t, frozenset(keep)))
                out.append((f"PollDone{t}", n))
            if self.shared and s.lists[t] != ("Idle",):
                out.append(
                    (
                        f"PendingWrite{t}",
                        s._replace(pending=(s.lists[t][1],), lists=replace(s.lists, t, ("Idle",))),
                    )
                )
        for k, (_t, m) in enumerate(self.slots):
            h = s.heal[k]
            if h[0] == "Requested":
                out.append(
                    (
                        f"HealKey{k}",
                        s._replace(heal=replace(s.heal, k, ("KeyRead",) if m in s.stored else ("Idle",))),
                    )
                )
            elif h[0] == "KeyRead":
                if atomic:
                    out.append(
                        (
                            f"HealCache{k}",
                            s._replace(
                                cache=self.write(s.cache, s.cache, m), heal=replace(s.heal, k, ("Idle",))
                            ),
                        )
                    )
                else:
                    out.append((f"HealRead{k}", s._replace(heal=replace(s.heal, k, ("CacheRead", s.cache)))))
            elif h[0] == "CacheRead":
                out.append(
                    (
                        f"HealWrite{k}",
                        s._replace(cache=self.write(h[1], s.cache, m), heal=replace(s.heal, k, ("Idle",))),
                    )
                )
        if "sweeper" in self.v:
            w = s.sweep
            if w[0] == "Idle":
                out.append(("SweepList", s._replace(sweep=("Listed", s.stored))))
            elif w[0] == "Listed" and atomic:
                out.append(
                    (
                        "SweepCache",
                        s._replace(cache=self.sweep_write(w[1], s.cache, s.cache), sweep=("Idle",)),
                    )
                )
            elif w[0] == "Listed":
                out.append(("SweepRead", s._replace(sweep=("Read", w[1], s.cache))))
            else:
                out.append(
                    ("SweepWrite", s._replace(cache=self.sweep_write(w[1], w[2], s.cache), sweep=("Idle",)))
                )
        if "tab_crash" in self.v:
            for t in range(self.T):
                if s.alive[t]:
                    n = s._replace(alive=replace(s.alive, t, False), poll=replace(s.poll, t, ("Idle",)))
                    if self.shared:
                        n = n._replace(lists=replace(s.lists, t, ("Idle",)))
                    out.append((f"Crash{t}", n))
        return out

    def sweep_write(self, listed, snapshot, current):
        missing = [m for m in listed if m not in snapshot]
        if not missing:
            return current
        return tuple(sorted(snapshot + tuple(missing)))[-self.C :]

    def explore(self) -> tuple[int, int]:
        """(distinct reachable states, enabled action instances summed over them)."""
        seen = {self.init()}
        queue = deque(seen)
        transitions = 0
        while queue:
            s = queue.popleft()
            for _, t in self.next(s):
                transitions += 1
                if t not in seen:
                    seen.add(t)
                    queue.append(t)
        return len(seen), transitions

"""Compiled loops of the exhaustive z3-vs-explicit agreement over packed states
(``test_agreement.CompiledAgreement``): a table of the combinations of read-slot codes each
instance has met, and the state-by-state comparison of the explicit successors with the
results recorded for those combinations.

A *key* is a state's words masked to the bits of the slots an instance's z3 terms read (and
writes); the table maps (instance, key) to a result number: -2 while the z3 relation has
not been evaluated for it yet, then an index into ``enabled``/``value`` (whether the
instance is enabled, and the bits of the slots it writes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = -1
PENDING = -2


@njit(cache=True, nogil=True)
def _slot(tkey, tinst, i, key):  # pragma: no cover - compiled
    """The table slot of (i, key): where it is, or the empty slot where it would go."""
    cap = len(tinst)
    h = np.uint64(i + 1) * np.uint64(0x9E3779B97F4A7C15)
    for w in range(len(key)):
        h = (h ^ np.uint64(key[w])) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    j = np.int64(h & np.uint64(cap - 1))
    while True:
        if tinst[j] == EMPTY:
            return j
        if tinst[j] == i:
            same = True
            for w in range(len(key)):
                if tkey[j, w] != key[w]:
                    same = False
                    break
            if same:
                return j
        j = (j + 1) & (cap - 1)


@njit(cache=True, nogil=True)
def new_keys(states, lo, hi, masks, tkey, tinst, tres, found, used):  # pragma: no cover - compiled
    """Record every (instance, key) of rows lo..hi the table lacks, as PENDING; ``found`` gets
    (instance, row) of each, the row being the first that has it; ``used`` is how many entries
    the table holds already (the caller's count, not a scan of the table). Returns how many, and the
    row where it stopped: ``hi``, or an earlier one when the table would pass half full or
    ``found`` is full (the caller handles what was found, grows the table, and goes on from
    that row: the keys of that row already recorded are in ``found``)."""
    ni, nw = masks.shape
    key = np.empty(nw, np.int64)
    k = 0
    for r in range(lo, hi):
        for i in range(ni):
            for w in range(nw):
                key[w] = states[r, w] & masks[i, w]
            j = _slot(tkey, tinst, i, key)
            if tinst[j] == EMPTY:
                if 2 * (used + 1) > len(tinst) or k >= len(found):
                    return k, r
                tinst[j] = i
                for w in range(nw):
                    tkey[j, w] = key[w]
                tres[j] = PENDING
                found[k, 0] = i
                found[k, 1] = r
                k += 1
                used += 1
    return k, hi


@njit(cache=True, nogil=True)
def set_result(tkey, tinst, tres, i, row, masks, res):  # pragma: no cover - compiled
    """Give (i, the key of ``row``) the result number ``res``."""
    nw = masks.shape[1]
    key = np.empty(nw, np.int64)
    for w in range(nw):
        key[w] = row[w] & masks[i, w]
    tres[_slot(tkey, tinst, i, key)] = res


@njit(cache=True, nogil=True)
def compare(
    states, lo, hi, masks, wmasks, tkey, tinst, tres, enabled, value, out, src, labs
):  # pragma: no cover
    """Walk rows lo..hi and their explicit successors ``out``/``src``/``labs`` (grouped by
    row, in the kernel's order within a row): each instance enabled by its key's result must
    be among them, exactly once, with the state's words outside the written slots and the
    result's bits inside them; no other instance may be. Returns -1, or the first row where
    they differ."""
    ni, nw = masks.shape
    key = np.empty(nw, np.int64)
    at = np.full(ni, -1, np.int64)
    k, n = 0, len(src)
    for r in range(lo, hi):
        k0 = k
        while k < n and src[k] == r:
            if at[labs[k]] >= 0:
                return r
            at[labs[k]] = k
            k += 1
        for i in range(ni):
            for w in range(nw):
                key[w] = states[r, w] & masks[i, w]
            res = tres[_slot(tkey, tinst, i, key)]
            if res < 0 or enabled[res] != (at[i] >= 0):
                return r
            if at[i] >= 0:
                for w in range(nw):
                    if out[at[i], w] != (states[r, w] & ~wmasks[i, w]) | value[res, w]:
                        return r
        for q in range(k0, k):
            at[labs[q]] = -1
    return -1 if k == n else lo


@njit(cache=True, nogil=True)
def regrow(tkey, tinst, tres, cap):  # pragma: no cover - compiled
    """The table moved into one of ``cap`` slots (every key, instance and result kept)."""
    nk = np.zeros((cap, tkey.shape[1]), np.int64)
    ni = np.full(cap, EMPTY, np.int32)
    nr = np.zeros(cap, np.int32)
    for j in range(len(tinst)):
        if tinst[j] != EMPTY:
            t = _slot(nk, ni, tinst[j], tkey[j])
            ni[t] = tinst[j]
            nr[t] = tres[j]
            for w in range(tkey.shape[1]):
                nk[t, w] = tkey[j, w]
    return nk, ni, nr

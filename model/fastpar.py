"""The partitioned steps of the compiled search on several workers (``check --workers N``).

A frontier block is expanded by N threads at once (the generated ``expand_block``, which
releases the GIL), each into its own region of shared buffers, with each successor's hash.
Each state belongs to one partition (its hash's low bits modulo N), and each partition has
its own visited table: the N insertion steps then run at once without locks, each thread
scanning the block's successors in order and inserting those it owns. New states are
numbered after the block, partition by partition; numbers still grow level by level, so
depths, counts, verdicts and shortest traces are those of one worker (the order of states
within a level, and so a lasso's loop, may differ).

Table entries are global state numbers; a state found in the current block is entered as
``-(j + 2)`` (``j`` its index among the partition's new states) until the block is numbered.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fastlive import _prefetch


@njit(cache=True, nogil=True, inline="always")
def hash_row(a, r):  # pragma: no cover - compiled
    """The 64-bit hash of row ``r`` of words: the generated ``hash_words``, word by word."""
    h = np.uint64(0x9E3779B97F4A7C15)
    for j in range(a.shape[1]):
        h = (h ^ np.uint64(a[r, j])) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(29)
    return h


@njit(cache=True, nogil=True)
def hash_rows(a):  # pragma: no cover - compiled
    """The hash of each row of words (the visited set's; partitions use it too)."""
    res = np.empty(a.shape[0], np.uint64)
    for r in range(a.shape[0]):
        res[r] = hash_row(a, r)
    return res


@njit(cache=True, nogil=True)
def slot_of(h, cap):  # pragma: no cover - compiled
    """The home slot of hash ``h`` in a table of ``cap`` slots (any size below 2**32: the
    top 32 bits scaled, so tables grow by half and stay at least half full)."""
    return np.int64(((h >> np.uint64(32)) * np.uint64(cap)) >> np.uint64(32))


@njit(cache=True, nogil=True)
def rehash(states, n, cap):  # pragma: no cover - compiled
    """A visited table of ``cap`` slots holding the first ``n`` states' numbers."""
    table = np.full(cap, -1, np.int32)
    for r in range(n):
        h = slot_of(hash_row(states, r), cap)
        while table[h] >= 0:
            h += 1
            if h == cap:
                h = 0
        table[h] = r
    return table


@njit(cache=True, nogil=True)
def owner_of(h, parts):  # pragma: no cover - compiled
    """The partition of hash ``h``: its low 32 bits scaled to ``parts`` (a multiply, not a
    division: every successor of a block is asked on every thread). A table slot comes from
    the top 32 bits: were they shared, a partition's states would fill only some of its
    home slots."""
    return np.int64(((h & np.uint64(0xFFFFFFFF)) * np.uint64(parts)) >> np.uint64(32))


# A partition's table entry (int32): -1 empty; a state number ``num`` as
# ``tag << NUM_BITS | num``; a state found in the current block, not yet numbered (the
# ``j``-th new one of the partition), as ``-2 - (tag << PEND_BITS | j)``. The tag is four
# bits of the hash that neither the slot nor the partition uses: a probe past an entry of
# another tag (15 in 16 of them) does not read that state's words. Past 2**27 states the
# tables go untagged (``tagged`` false: tag 0, the number in all 31 bits).
NUM_BITS = 27
PEND_BITS = 24
NUM_MASK = (1 << NUM_BITS) - 1
PEND_MASK = (1 << PEND_BITS) - 1
TAGGED_STATES = 1 << NUM_BITS
AHEAD = 8
FILL_AHEAD = 32


@njit(cache=True, nogil=True)
def same_row(a, r, b, i):  # pragma: no cover - compiled
    """Whether row ``r`` of ``a`` and row ``i`` of ``b`` hold the same words."""
    for j in range(a.shape[1]):
        if a[r, j] != b[i, j]:
            return False
    return True


@njit(cache=True, nogil=True)
def tag_of(h, tagged):  # pragma: no cover - compiled
    return np.int64((h >> np.uint64(16)) & np.uint64(15)) if tagged else np.int64(0)


@njit(cache=True, nogil=True)
def entry(num, tag):  # pragma: no cover - compiled
    return np.int32((tag << NUM_BITS) | num)


@njit(cache=True, nogil=True)
def pending_entry(j, tag):  # pragma: no cover - compiled
    return np.int32(-2 - ((tag << PEND_BITS) | j))


@njit(cache=True, nogil=True)
def block_counts(hs, lab, lo, hi, parts, nlabels, own):  # pragma: no cover - compiled
    """Successors ``lo..hi`` of a block (one thread's share, run on every thread at once):
    how many each partition owns, how many each action instance produced; the indices of
    those partition ``q`` owns, in order, into ``own[q, lo:]`` (stored without a branch:
    the owner of a successor is a coin toss the CPU cannot predict)."""
    owned = np.zeros(parts, np.int64)
    per_label = np.zeros(nlabels, np.int64)
    for i in range(lo, hi):
        q = owner_of(hs[i], parts)
        own[q, lo + owned[q]] = i
        owned[q] += 1
        per_label[lab[i]] += 1
    return owned, per_label


@njit(cache=True, nogil=True)
def insert_part(
    p, states, table, out, hs, own, starts, counts, res, new, new_slot, t0, x0, c, limit, tagged
):  # pragma: no cover
    """Insert partition ``p``'s successors of the block: those of thread ``t`` are
    ``own[p, starts[t]:starts[t] + counts[t]]`` (:func:`block_counts`). From position
    ``x0`` of thread ``t0`` on, with ``c`` new states found so far; stops before a new state
    past ``limit`` (the table must grow first). Returns (new states found, where it
    stopped: thread, position); the thread is ``len(starts)`` when the block is done.
    ``res[i]`` becomes successor i's number, or ``-(j + 2)`` for the partition's j-th new
    state."""
    cap = table.shape[0]
    W = states.shape[1]
    flat = states.reshape(-1)  # the words one after another, for _prefetch
    mine = own[p]
    for t in range(t0, starts.shape[0]):
        lo = x0 if t == t0 else starts[t]
        end = starts[t] + counts[t]
        for x in range(lo, end):
            # fetch ahead, so the cache misses of later successors overlap this one's: the
            # home slot of the one 2*AHEAD on, and the state in the home slot of the one
            # AHEAD on (that slot fetched AHEAD successors ago)
            if x + 2 * AHEAD < end:
                _prefetch(table, slot_of(hs[mine[x + 2 * AHEAD]], cap))
            if x + AHEAD < end:
                v = table[slot_of(hs[mine[x + AHEAD]], cap)]
                if v >= 0:
                    _prefetch(flat, (v & NUM_MASK if tagged else v) * W)
            i = mine[x]
            h = hs[i]
            tag = tag_of(h, tagged)
            slot = slot_of(h, cap)
            while True:
                v = table[slot]
                if v == -1:
                    if c >= limit:
                        return c, t, x
                    table[slot] = pending_entry(c, tag)
                    for j in range(W):
                        new[c, j] = out[i, j]
                    new_slot[c] = slot
                    res[i] = -(c + 2)
                    c += 1
                    break
                if v >= 0:
                    num = v & NUM_MASK if tagged else v
                    if (not tagged or (v >> NUM_BITS) == tag) and same_row(states, num, out, i):
                        res[i] = num
                        break
                else:
                    pv = -v - 2
                    k = pv & PEND_MASK if tagged else pv
                    if (not tagged or (pv >> PEND_BITS) == tag) and same_row(new, k, out, i):
                        res[i] = -(k + 2)
                        break
                slot += 1
                if slot == cap:
                    slot = 0
    return c, starts.shape[0], 0


@njit(cache=True, nogil=True)
def fill_pending(table, hashes, c, new_slot, tagged):  # pragma: no cover - compiled
    """Enter a block's ``c`` pending new states (hashes ``hashes``) into a fresh ``table``."""
    cap = table.shape[0]
    for j in range(c):
        slot = slot_of(hashes[j], cap)
        while table[slot] != -1:
            slot += 1
            if slot == cap:
                slot = 0
        table[slot] = pending_entry(j, tag_of(hashes[j], tagged))
        new_slot[j] = slot


@njit(cache=True, nogil=True)
def insert_part_fp(
    p, fps, table, hs, own, starts, counts, res, new_fp, new_idx, new_slot, t0, x0, c, limit, tagged
):  # pragma: no cover
    """:func:`insert_part` with hash compaction (``--fingerprint``): states are told apart
    by their 64-bit hash alone (``fps``, per state number), so two states with one hash are
    one. ``new_idx`` records which successor each new state is."""
    cap = table.shape[0]
    mine = own[p]
    for t in range(t0, starts.shape[0]):
        lo = x0 if t == t0 else starts[t]
        end = starts[t] + counts[t]
        for x in range(lo, end):
            if x + 2 * AHEAD < end:
                _prefetch(table, slot_of(hs[mine[x + 2 * AHEAD]], cap))
            if x + AHEAD < end:
                v = table[slot_of(hs[mine[x + AHEAD]], cap)]
                if v >= 0:
                    _prefetch(fps, v & NUM_MASK if tagged else v)
            i = mine[x]
            h = hs[i]
            tag = tag_of(h, tagged)
            slot = slot_of(h, cap)
            while True:
                v = table[slot]
                if v == -1:
                    if c >= limit:
                        return c, t, x
                    table[slot] = pending_entry(c, tag)
                    new_fp[c] = h
                    new_idx[c] = i
                    new_slot[c] = slot
                    res[i] = -(c + 2)
                    c += 1
                    break
                if v >= 0:
                    if (not tagged or (v >> NUM_BITS) == tag) and fps[v & NUM_MASK if tagged else v] == h:
                        res[i] = v & NUM_MASK if tagged else v
                        break
                else:
                    pv = -v - 2
                    k = pv & PEND_MASK if tagged else pv
                    if (not tagged or (pv >> PEND_BITS) == tag) and new_fp[k] == h:
                        res[i] = -(k + 2)
                        break
                slot += 1
                if slot == cap:
                    slot = 0
    return c, starts.shape[0], 0


@njit(cache=True, nogil=True)
def settle_part_fp(
    base, c, table, fps, queue, qbase, out, src, new_fp, new_idx, new_slot, par, head, tagged
):  # pragma: no cover
    """:func:`settle_part` with hash compaction: each new state's hash into ``fps``, its
    words into the queue (rows from ``qbase`` on), and when ``par`` is not empty its
    parent as an offset from the block's first row ``head`` (a block has < 2**16 rows)."""
    W = queue.shape[1]
    for j in range(c):
        num = base + j
        i = new_idx[j]
        fps[num] = new_fp[j]
        for w in range(W):
            queue[num - qbase, w] = out[i, w]
        if par.shape[0] > 0:
            par[num] = np.uint16(src[i] + qbase - head)
        table[new_slot[j]] = settled(table[new_slot[j]], num, tagged)


@njit(cache=True, nogil=True)
def settled(v, num, tagged):  # pragma: no cover - compiled
    """The entry of a pending entry ``v`` once its state is numbered ``num`` (same tag)."""
    return entry(num, ((-v - 2) >> PEND_BITS) if tagged else 0)


@njit(cache=True, nogil=True)
def settle_part(base, c, table, states, new, new_slot, tagged):  # pragma: no cover
    """Number partition's ``c`` new states from ``base`` on: into the states and the table."""
    W = states.shape[1]
    for j in range(c):
        for w in range(W):
            states[base + j, w] = new[j, w]
        table[new_slot[j]] = settled(table[new_slot[j]], base + j, tagged)


@njit(cache=True, nogil=True)
def edges_of(lo, hi, res, hs, bases, parts, dst, lab_in, lab_out, at):  # pragma: no cover
    """The block's edge targets (in order) as global numbers, written from ``at`` on."""
    for i in range(lo, hi):
        r = res[i]
        if r < 0:
            r = bases[owner_of(hs[i], parts)] + (-r - 2)
        dst[at + i - lo] = r
        lab_out[at + i - lo] = lab_in[i]


@njit(cache=True, nogil=True)
def enter(table, h, num, tagged):  # pragma: no cover - compiled
    """Enter state ``num`` (hash ``h``) into the first free slot from its home slot."""
    cap = table.shape[0]
    slot = slot_of(h, cap)
    while table[slot] != -1:
        slot += 1
        if slot == cap:
            slot = 0
    table[slot] = entry(np.int64(num), tag_of(h, tagged))


@njit(cache=True, nogil=True)
def fill_part(table, hs, p, parts, tagged):  # pragma: no cover - compiled
    """Enter every state ``i`` (hash ``hs[i]``) owned by ``p`` into ``table``."""
    for i in range(hs.shape[0]):
        if owner_of(hs[i], parts) == p:
            enter(table, hs[i], i, tagged)


@njit(cache=True, nogil=True)
def fill_part_rows(table, states, n, p, parts, tagged):  # pragma: no cover - compiled
    """:func:`fill_part` over the first ``n`` rows of words, each hashed as it is read;
    the home slot of row ``i + FILL_AHEAD`` is fetched while row ``i`` is entered (the
    hashes in a ring in between), so the misses of the random writes overlap."""
    cap = table.shape[0]
    ring = np.empty(FILL_AHEAD, np.uint64)
    for i in range(min(n, FILL_AHEAD)):
        ring[i] = hash_row(states, i)
    for i in range(n):
        h = ring[i % FILL_AHEAD]
        j = i + FILL_AHEAD
        if j < n:
            hj = hash_row(states, j)
            ring[j % FILL_AHEAD] = hj
            if owner_of(hj, parts) == p:
                _prefetch(table, slot_of(hj, cap))
        if owner_of(h, parts) == p:
            enter(table, h, i, tagged)

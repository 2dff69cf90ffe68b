"""A design of one's own: kvheal's model, but the heal's cache write is a compare-and-swap
that is retried until it wins.

HealRead reads the cache as before; HealWrite now swaps only if the cache still holds what
the heal read, and a new action, HealRetry, sends a heal whose swap lost back to read the
cache again. Posts keep their plain read-modify-write. Check it with

    kvheal check --design docs/examples/heal_cas.py:HEAL_CAS --tabs 2 --variant dedupe
    kvheal prove --design docs/examples/heal_cas.py:HEAL_CAS --tabs 2 --property NoDuplicates
"""

from kvheal.model.definition import HEAL, KVHEAL, cache_write, msg_of
from kvheal.model.dsl import ActionDef


def HealWrite(cfg, s, x, h):
    """Swap in add(snapshot, m), only if the cache still equals the snapshot."""
    heal = s.heal[h]
    snap = heal.of("CacheRead").snap
    return (
        heal.is_("CacheRead") & snap.eq(s.cache),
        {s.cache: cache_write(cfg, s, x, snap, msg_of(h)), heal: HEAL.Idle()},
    )


def HealRetry(cfg, s, x, h):
    """The swap lost (the cache changed since the read): read it again."""
    heal = s.heal[h]
    return heal.is_("CacheRead") & ~heal.of("CacheRead").snap.eq(s.cache), {heal: HEAL.KeyRead()}


_plain = next(a for a in KVHEAL.actions if a.name == "HealWrite").when

HEAL_CAS = KVHEAL.derive(
    "heal_cas",
    replace=[
        ActionDef(
            "HealWrite",
            "heal",
            "heal",
            HealWrite,
            "compare-and-swap add(snapshot, m)",
            when=_plain,
            group=3,
            kv="cas cache",
        )
    ],
    add=[
        ActionDef(
            "HealRetry",
            "heal",
            "heal",
            HealRetry,
            "the swap lost: read the cache again",
            when=_plain,
            group=3,
        )
    ],
)

"""Design variants (SPEC §5 flag names) and the worker's configuration.

Which flags change the worker (`dedupe`, `atomic_cache`, `heal_atomic`, `sweeper`) and which
the client (`keep_verifying`, `shared_pending`; `tab_crash` is a fault that tests and the
stress runner inject into clients) is the registry's word (`kvheal.flags`). One
`WorkerConfig` carries everything the worker needs, so a test can build a worker in any design (or a subclass with a planted fault) without touching globals.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from kvheal.flags import CLIENT_VARIANTS, IMPL_VARIANTS, VARIANTS, WORKER_VARIANTS, ConfigError
from kvheal.flags import parse_variants as parse_any_variants

__all__ = [
    "VARIANTS",
    "WORKER_VARIANTS",
    "CLIENT_VARIANTS",
    "ConfigError",
    "parse_variants",
    "WorkerConfig",
]


# The design flags, which part of the system each changes, their parser and the one error
# type are the registry's (kvheal.flags), shared with the model and the command line.


#: the bot's flags (SPEC §6): its pending scan and claims (`kvheal.impl.queue_api`), which the
#: queue endpoints read
QUEUE_VARIANTS = frozenset({"bot_scan", "bot_claims", "claim_cas"})


def parse_variants(spec) -> frozenset[str]:
    """The registry's parser, refusing flags the implementation does not have (modelled only,
    such as the as-built app's clock and cursors): one line naming the flag."""
    flags = parse_any_variants(spec)
    missing = sorted(flags - set(IMPL_VARIANTS) - QUEUE_VARIANTS)
    if missing:
        raise ConfigError(
            f"{missing[0]} is modelled only: the worker and the client do not implement it "
            "(kvheal check and prove decide it)"
        )
    return flags


@dataclass(frozen=True)
class WorkerConfig:
    """How the worker behaves: the design flags, cache capacity, limits, heal secret, sweeper."""

    variants: frozenset[str] = frozenset()
    cap: int = 200
    #: key of the HMAC that makes heal tokens; give every process of one deployment the same
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    max_body: int = 16 * 1024
    max_text: int = 2000
    #: compare-and-swap attempts per cache update before giving up (the post still answers 200);
    #: None: never give up (the backoff is bounded, and `cache_lock` keeps contention low)
    max_cas_attempts: int | None = None
    #: with atomic_cache, send this process's cache updates through one flusher task that adds
    #: every message queued meanwhile in one atomic update (group commit), so swaps race only
    #: between processes. Off in the lockstep tests (the model lets any update go first)
    cache_lock: bool = True
    #: with atomic_cache, let a store that serialises a read-modify-write itself (`KV.update`:
    #: SQLite, Redis, memory) do the cache update in one call instead of the get_versioned/cas
    #: loop; off in the lockstep tests (SPEC §8's calls are get_versioned and cas)
    store_update: bool = True
    #: skip a post's or heal's cache write that would change nothing (the message is older than a
    #: full cache's window, so `add` trims it away); the model writes its snapshot back, so
    #: lockstep tests turn this off
    skip_noop_cache_write: bool = True
    #: after the n-th lost compare-and-swap, wait a random time up to min(base * 2**(n-1), 8) ms
    #: before reading again, so racing writers spread out (0 = retry at once). No KV call.
    cas_backoff_ms: float = 1.0
    #: seconds between sweeper passes
    sweep_interval: float = 5.0
    #: run the sweeper loop inside the app (lifespan); off when one process runs it for many
    sweeper_in_app: bool = True
    #: skip the sweeper's write when adding the missing ids changes nothing (all trimmed away);
    #: SPEC §5's SweepWrite writes anyway, so lockstep tests with eviction set this to False
    sweeper_skip_noop_write: bool = True
    #: most messages a GET returns (the original: min(limit or 50, 1000))
    default_limit: int = 50
    max_limit: int = 1000
    #: refuse timestamps more than this many ms ahead of the server's clock (None: no bound)
    max_future_ms: int | None = 60_000
    #: per client address, token buckets: posts and heals per second, and burst sizes (rate 0: off)
    post_rate: float = 0.0
    post_burst: int = 20
    heal_rate: float = 0.0
    heal_burst: int = 60
    #: origins allowed to call the API from a browser (CORS); empty: no CORS headers at all
    cors_origins: tuple[str, ...] = ()
    #: Host header values served (e.g. "chat.example.org", "*.example.org"); empty: any
    allowed_hosts: tuple[str, ...] = ()
    #: seconds a request body may take to arrive (408 and the connection closed after)
    body_timeout: float = 10.0
    #: deepest JSON nesting accepted in a body
    max_json_depth: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", parse_variants(self.variants))
        if self.cap < 1:
            raise ConfigError(f"cap must be at least 1, got {self.cap}")
        if self.max_cas_attempts is not None and self.max_cas_attempts < 1:
            raise ConfigError("max_cas_attempts must be at least 1")
        if isinstance(self.secret, str):
            object.__setattr__(self, "secret", self.secret.encode())
        if not self.secret:
            raise ConfigError("the heal-token secret must not be empty")
        for name in ("cors_origins", "allowed_hosts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("post_rate", "heal_rate"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be at least 0 (0: no limit)")
        for name in ("post_burst", "heal_burst"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.body_timeout <= 0:
            raise ConfigError("body_timeout must be positive")
        if self.max_json_depth < 2:
            raise ConfigError("max_json_depth must be at least 2")
        if self.max_future_ms is not None and self.max_future_ms < 0:
            raise ConfigError("max_future_ms must be at least 0")

    @property
    def dedupe(self) -> bool:
        """Whether cache writers skip an id already in their snapshot."""
        return "dedupe" in self.variants

    @property
    def atomic_cache(self) -> bool:
        """Whether the cache update is a compare-and-swap loop."""
        return "atomic_cache" in self.variants

    @property
    def heal_atomic(self) -> bool:
        """Whether a heal's cache update is atomic (a CAS loop), with atomic_cache or alone."""
        return "heal_atomic" in self.variants or self.atomic_cache

    @property
    def sweeper(self) -> bool:
        """Whether a background reconciler repairs the cache from the `comment:` keys."""
        return "sweeper" in self.variants

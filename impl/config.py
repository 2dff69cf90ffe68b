"""Design variants (SPEC §5 flag names) and the worker's configuration.

`dedupe`, `atomic_cache` and `sweeper` change the worker; `keep_verifying` and
`shared_pending` change the client; `tab_crash` is a fault that tests and the stress runner
inject into clients. One `WorkerConfig` carries everything the worker needs, so a test can
build a worker in any design (or a subclass with a planted fault) without touching globals.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

__all__ = ["VARIANTS", "WORKER_VARIANTS", "CLIENT_VARIANTS", "ConfigError", "parse_variants",
           "WorkerConfig"]

#: every flag of SPEC §5, in its order
VARIANTS: tuple[str, ...] = ("dedupe", "keep_verifying", "atomic_cache", "sweeper", "tab_crash",
                             "shared_pending")
WORKER_VARIANTS = frozenset({"dedupe", "atomic_cache", "sweeper"})
CLIENT_VARIANTS = frozenset({"keep_verifying", "tab_crash", "shared_pending"})


class ConfigError(ValueError):
    """An invalid configuration: the message says what is wrong and how to fix it."""


def parse_variants(spec: str | list[str] | tuple[str, ...] | frozenset[str] | None) -> frozenset[str]:
    """The set of flags in a comma-separated list (or an iterable); ConfigError on an unknown one."""
    if spec is None:
        return frozenset()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    flags = frozenset(item.strip() for item in items if item.strip())
    unknown = sorted(flags - set(VARIANTS))
    if unknown:
        raise ConfigError(f"unknown variant {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
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
    #: compare-and-swap attempts per cache update before giving up (the post still answers 200)
    max_cas_attempts: int = 100
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", parse_variants(self.variants))
        if self.cap < 1:
            raise ConfigError(f"cap must be at least 1, got {self.cap}")
        if self.max_cas_attempts < 1:
            raise ConfigError("max_cas_attempts must be at least 1")
        if isinstance(self.secret, str):
            object.__setattr__(self, "secret", self.secret.encode())

    @property
    def dedupe(self) -> bool:
        """Whether cache writers skip an id already in their snapshot."""
        return "dedupe" in self.variants

    @property
    def atomic_cache(self) -> bool:
        """Whether the cache update is a compare-and-swap loop."""
        return "atomic_cache" in self.variants

    @property
    def sweeper(self) -> bool:
        """Whether a background reconciler repairs the cache from the `comment:` keys."""
        return "sweeper" in self.variants

"""Per-client token buckets for the worker's write endpoints (posts and heals).

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; a request takes
one token or is refused with the seconds until one is available (the 429's Retry-After). Buckets
are keyed by the client's address, kept per process (each uvicorn process limits on its own, so
with N processes a client gets at most N times the rate), and forgotten once full again, so
memory stays bounded by the clients active in the last `burst / rate` seconds (and at most
`max_clients`; the oldest bucket is dropped first).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets keyed by client; `rate` 0 means no limit."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        """Whether this limiter limits anything."""
        return self.rate > 0

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 if granted, else the seconds to wait before retrying."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        self._prune(now)
        return wait

    def retry_after(self, wait: float) -> str:
        """A Retry-After header value (whole seconds, at least 1) for a refusal of `wait` s."""
        return str(max(1, math.ceil(wait)))

    def _prune(self, now: float) -> None:
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        # drop buckets that have refilled (a fresh bucket is the same); a few per call suffice
        for _ in range(2):
            if not self._buckets:
                return
            key, (tokens, at) = next(iter(self._buckets.items()))
            if tokens + (now - at) * self.rate >= self.burst:
                del self._buckets[key]
            else:
                return

    def __len__(self) -> int:
        return len(self._buckets)

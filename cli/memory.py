"""Memory budgets for long runs: how much this process may use, and how much it uses now.

The checker must never die of memory (a numpy MemoryError traceback and exit status 1 would
read as "a property is violated"): commands give the engine a :class:`MemoryBudget`, which
it asks every few thousand states and before it builds the liveness graph; past the budget
the search stops with "unknown". The default is a safe fraction of what the machine (or the
process's address-space limit, ``ulimit -v``) allows.

    >>> parse_size("4G"), parse_size("512m"), parse_size("1.5GiB")
    (4294967296, 536870912, 1610612736)
"""

from __future__ import annotations

import os
import re
import resource
from dataclasses import dataclass

__all__ = ["MemoryBudget", "parse_size", "default_budget", "fmt_size"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def parse_size(text: str) -> int:
    """Bytes of ``4G``, ``512M``, ``1.5GiB``, ``800000000``; ValueError naming the problem."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise ValueError(f"not a size: {text!r} (try 4G, 512M or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def fmt_size(n: float) -> str:
    """``n`` bytes as GiB or MiB with one decimal."""
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def _machine_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _address_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True)
class MemoryBudget:
    """At most ``resident`` bytes of resident memory and, under ``ulimit -v``, at most
    ``address`` bytes of address space; :meth:`used` says how far this process is."""

    resident: int
    address: int | None = None

    def used(self) -> tuple[int, int]:
        """This process's (resident, address space) bytes now."""
        try:
            with open("/proc/self/statm", encoding="ascii") as f:
                size, rss = (int(x) for x in f.read().split()[:2])
            return rss * _PAGE, size * _PAGE
        except OSError:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return peak, 0

    def room(self) -> int:
        """Bytes left before the budget (negative when over it)."""
        rss, size = self.used()
        left = self.resident - rss
        if self.address is not None and size:
            left = min(left, self.address - size)
        return left

    def describe(self) -> str:
        text = fmt_size(self.resident)
        if self.address is not None:
            text += f" (address space {fmt_size(self.address)})"
        return text


def default_budget() -> MemoryBudget:
    """Three quarters of the memory available now, and 85% of an address-space limit."""
    limit = _address_limit()
    resident = int(_machine_bytes() * 0.75)
    address = int(limit * 0.85) if limit is not None else None
    if address is not None:
        resident = min(resident, address)
    return MemoryBudget(resident, address)

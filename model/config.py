"""Model configuration: SPEC §2 parameters and §5 design flags, validated at construction.

A configuration that the model cannot honour (tabs < 1, an unknown flag, a size whose
encoding would not fit in memory) raises :class:`ConfigError` at once, with a one-line
reason that names the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb
from typing import Any

from kvheal.flags import VARIANTS, ConfigError, parse_variants, variant_label

__all__ = ["VARIANTS", "ConfigError", "Config", "parse_variants", "MAX_MESSAGES", "MAX_CACHE_VALUES"]

# The design flags, their parser and the one error type are the registry's (kvheal.flags),
# shared with the implementation and the CLI.
#: Largest number of distinct cache values the explicit encoding interns (each is a
#: small int in a state); past this the state space is far beyond exhaustive reach anyway.
MAX_CACHE_VALUES = 200_000
#: Messages are bits of an int bitmask in the encoding; keep traces and tables readable.
MAX_MESSAGES = 24


@dataclass(frozen=True, slots=True)
class Config:
    """The parameters of one model instance (SPEC §2) and its design flags (SPEC §5).

    ``cap`` is the effective cache capacity (T·K when not given). Build one with
    :meth:`make`, which validates; the constructor validates too.
    """

    tabs: int = 2
    per_tab: int = 1
    cap: int | None = None
    variants: frozenset[str] = frozenset()
    #: the flags the model's definition knows (kvheal's: the registry's)
    known: tuple[str, ...] = field(default=VARIANTS, compare=False, hash=False, repr=False)
    #: the model's definition (a :class:`~kvheal.model.dsl.Definition`); None is kvheal's own
    design: Any = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("tabs", "per_tab"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        if self.tabs < 1:
            raise ConfigError(f"tabs must be at least 1, got {self.tabs}")
        if self.per_tab < 1:
            raise ConfigError(f"per_tab must be at least 1, got {self.per_tab}")
        object.__setattr__(self, "variants", parse_variants(self.variants, self.known))
        if self.cap is None:
            object.__setattr__(self, "cap", self.messages)
        elif isinstance(self.cap, bool) or not isinstance(self.cap, int):
            raise ConfigError(f"cap must be an integer, got {self.cap!r}")
        elif self.cap < 1:
            raise ConfigError(f"cap must be at least 1, got {self.cap}")
        if self.messages > MAX_MESSAGES:
            raise ConfigError(
                f"tabs*per_tab = {self.messages} messages is beyond the encoding's limit of {MAX_MESSAGES}"
            )
        if self.cache_value_bound() > MAX_CACHE_VALUES:
            raise ConfigError(
                f"{self.messages} messages with cap {self.cap} give up to "
                f"{self.cache_value_bound():,} cache values, beyond the encoding's limit of "
                f"{MAX_CACHE_VALUES:,}; lower --cap, --tabs or --per-tab"
            )

    @classmethod
    def make(
        cls,
        tabs: int = 2,
        per_tab: int = 1,
        cap: int | None = None,
        variants: str | frozenset[str] | set[str] | tuple[str, ...] | list[str] | None = None,
        design: Any = None,
    ) -> Config:
        """A validated configuration; ``variants`` may be a comma-separated string. ``design``
        is a user's :class:`~kvheal.model.dsl.Definition` (None: kvheal's own); its flags
        are the ones ``variants`` may name."""
        from .definition import KVHEAL  # the definition imports the registry, not this module

        known = design.flag_names() if design is not None else VARIANTS
        cfg = cls(
            tabs=tabs,
            per_tab=per_tab,
            cap=cap,
            variants=parse_variants(variants, known),
            known=tuple(known),
            design=design,
        )
        (design or KVHEAL).validate(cfg)  # what the definition cannot honour (tab_view needs cap >= M)
        return cfg

    def design_name(self) -> str:
        """The name of the definition this configuration is for (``kvheal`` by default)."""
        return self.design.name if self.design is not None else "kvheal"

    @property
    def messages(self) -> int:
        """M, the number of messages; message ids are ``0..M-1``: T·K, and with ``bot_replies``
        one more, the bot's reply (SPEC §6), whose id is T·K."""
        return self.tab_messages + (1 if "bot_replies" in self.variants else 0)

    @property
    def tab_messages(self) -> int:
        """T·K, the messages the tabs post (ids ``0..T·K-1``)."""
        return self.tabs * self.per_tab

    @property
    def reply(self) -> int | None:
        """The id of the bot's reply (``bot_replies``, SPEC §6): T·K; None without the flag."""
        return self.tab_messages if "bot_replies" in self.variants else None

    def owner(self, m: int) -> int | None:
        """The tab that posts message ``m`` (SPEC §2: ``m mod T``); None for the bot's reply,
        which no tab posts."""
        if m == self.reply:
            return None
        return m % self.tabs

    def has(self, flag: str) -> bool:
        """Whether design flag ``flag`` is on."""
        return flag in self.variants

    def variant_label(self) -> str:
        """The flags in SPEC order joined by commas, or ``seed`` for none."""
        return variant_label(self.variants, self.known)

    def cache_value_bound(self) -> int:
        """An upper bound on distinct cache values: sorted tuples of length ≤ cap over M ids
        (sets only with dedupe)."""
        m, c = self.messages, self.cap or self.messages
        if "dedupe" in self.variants:
            return sum(comb(m, k) for k in range(min(c, m) + 1))
        return sum(comb(m + k - 1, k) for k in range(c + 1))
